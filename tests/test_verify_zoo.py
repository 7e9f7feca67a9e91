"""benchmarks/verify_zoo.py: a zoo entry verifies on any CPU when its predictions are the run's, exactly, and its
metrics equal results.json to floating-point tolerance."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ltzoo.runfolder.predictions import save_predictions

ROOT = Path(__file__).resolve().parent.parent
META = {"format": "ltzoo-predictions/1", "num_classes": 4}


def _verify_zoo():
    spec = importlib.util.spec_from_file_location("verify_zoo", ROOT / "benchmarks" / "verify_zoo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_metrics_equal_to_floating_point_tolerance_not_to_the_last_digit():
    vz = _verify_zoo()
    assert vz.same_metric(0.9181971419060836, 0.9181971419060837)  # GM on an Intel AMX CPU vs results.json
    assert not vz.same_metric(0.9181971419060836, 0.9181981419060836)  # a real difference
    assert vz.same_metric(None, None) and not vz.same_metric(None, 0.5)
    assert vz.on_card(0.91819714, 91.82) and not vz.on_card(0.9172, 91.82)
    assert vz.on_card(0.123450000001, 12.35) and vz.on_card(0.12344999999, 12.35)  # the half-way tie, either side


def test_predictions_compared_exactly(tmp_path):
    vz = _verify_zoo()
    entry = tmp_path / "entry"
    entry.mkdir()
    logits, labels = torch.randn(50, 4, generator=torch.Generator().manual_seed(0)), torch.arange(50) % 4
    save_predictions(entry / "predictions.safetensors", {"test": logits}, {"test": labels}, META)
    same = save_predictions(tmp_path / "same.safetensors", {"test": logits + 1e-7}, {"test": labels}, META)
    assert vz.prediction_differences(entry, same, "test") == []  # logits a few ulps apart: the same predictions
    flipped = logits.clone()
    flipped[3] = -flipped[3]
    other = save_predictions(tmp_path / "other.safetensors", {"test": flipped}, {"test": labels}, META)
    assert vz.prediction_differences(entry, other, "test") == [
        "predictions: 1 of 50 images predicted another class than the run did"
    ]
    relabelled = save_predictions(tmp_path / "relabel.safetensors", {"test": logits}, {"test": labels.flip(0)}, META)
    assert vz.prediction_differences(entry, relabelled, "test") == ["labels differ from the run's kept predictions"]
