"""Temperature scaling folded into the classifier (`ltzoo.methods.calibration`): the fitted temperature, the
fold, the rules that skip it, and every recipe's exported model calibrated with its predictions unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from fixtures import make_imagefolder

import ltzoo  # noqa: F401  (registers resnet20_cifar)
from ltzoo.methods.calibration import (
    MIN_IMAGES,
    T_RANGE,
    calibrate,
    fit_temperature,
    fold_temperature,
    nll,
    restore_classifier,
)
from ltzoo.metrics import probability_metrics


def _sampled(temperature: float, n: int = 4000, classes: int = 6, seed: int = 0):
    """Logits, and labels drawn from softmax(logits / temperature): calibrated at exactly that temperature."""
    gen = torch.Generator().manual_seed(seed)
    logits = 4 * torch.randn(n, classes, generator=gen)
    labels = torch.multinomial((logits / temperature).softmax(-1), 1, generator=gen).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.7, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_at(true_t):
    logits, labels = _sampled(true_t)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(true_t, rel=0.08)
    assert nll(logits, labels, t) <= min(nll(logits, labels, t * 1.01), nll(logits, labels, t / 1.01))
    assert probability_metrics(logits / t, labels)["ece"] < 0.03


def test_folding_divides_the_logits_and_keeps_every_prediction():
    torch.manual_seed(0)
    model = timm.create_model("resnet20_cifar", num_classes=5, in_chans=1).eval()
    x = torch.randn(64, 1, 16, 16)
    with torch.no_grad():
        before = model(x)
        trained = fold_temperature(model, 2.5)
        after = model(x)
    assert torch.allclose(after, before / 2.5, atol=1e-5) and torch.equal(after.argmax(-1), before.argmax(-1))
    restore_classifier(model, trained)
    with torch.no_grad():
        assert torch.equal(model(x), before)  # the trained classifier back, bit for bit


def test_what_calibration_does_without_a_usable_validation_split():
    logits, labels = _sampled(2.0, n=500)
    assert calibrate(logits, labels, "none").rule == "not calibrated (--calibration none)"
    assert "no validation split" in calibrate(None, None).rule
    few = calibrate(logits[:30], labels[:30])
    assert not few.fitted and few.temperature == 1.0 and f"fewer than {MIN_IMAGES}" in few.rule
    fitted = calibrate(logits, labels)
    assert fitted.fitted and fitted.val_nll_after < fitted.val_nll_before and "fitted on 500" in fitted.rule
    perfect = torch.eye(4).repeat(50, 1) * 5, torch.arange(4).repeat(50)  # every image right: T goes to the edge
    edge = calibrate(*perfect)
    assert not edge.fitted and edge.temperature == 1.0 and f"edge of the temperatures searched {T_RANGE}" in edge.rule
    with pytest.raises(ValueError, match="unknown calibration"):
        calibrate(logits, labels, "vector")


# ------------------------------------------------------------------------------------ every recipe, end to end
COUNTS = {"train": [60, 30, 12], "val": [20, 20, 20], "test": [15, 15, 15]}


def _common(data: Path) -> list[str]:
    return ["--dataset", "imagefolder", "--data-dir", str(data), "--workers", "0", "--no-progress"]


def _fresh():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.mark.slow
def test_every_recipe_exports_a_calibrated_model_with_the_same_predictions(tmp_path):
    """pretrain, btm, gml and csa fit a temperature on validation and fold it in: the run checks, image for image,
    that the exported model predicts what the trained one did; a later stage trains from the classifier as
    trained (BTM from a calibrated stage 1 is bit for bit BTM from the same stage 1 uncalibrated)."""
    from ltzoo.recipes import btm, csa, gml, pretrain

    data = make_imagefolder(tmp_path / "data", COUNTS, size=(8, 8), channels=1, seed=0)
    calib = ["--calibration-min-images", "30"]
    train = ["--model", "resnet20_cifar", "--epochs", "4", "--batch-size", "16", "--mixed-precision", "no"]
    train += ["--optimizer", "adamw", "--lr", "0.01"]  # a model that learns something: a temperature to fit
    runs = {}
    for name, module, argv in [
        ("pretrain", pretrain, [*train, *calib]),
        ("pretrain-none", pretrain, [*train, "--calibration", "none"]),
        ("csa", csa, [*train, *calib, "--shift-after", "1", "--threshold", "0.3"]),
    ]:
        _fresh()
        runs[name] = module.main([*_common(data), *argv, "--output", str(tmp_path / name)])
    for name, module, argv in [
        ("gml", gml, ["--init", str(tmp_path / "pretrain"), "--head-epochs", "2", *calib]),
        ("btm", btm, ["--init", str(tmp_path / "pretrain"), "--member-epochs", "1", "--head-epochs", "2"]),
        (
            "btm-from-none",
            btm,
            ["--init", str(tmp_path / "pretrain-none"), "--member-epochs", "1", "--head-epochs", "2"],
        ),
    ]:
        _fresh()
        extra = calib if name.startswith("btm") else []
        runs[name] = module.main([*_common(data), *argv, *extra, "--output", str(tmp_path / name)])

    for name in ("pretrain", "csa", "gml", "btm"):
        cal = runs[name]["calibration"]
        assert cal["fitted"] and cal["temperature"] > 0 and cal["predictions_unchanged"] is True, (name, cal)
        assert (tmp_path / name / "classifier_uncalibrated.safetensors").is_file()
        for split in ("val", "test"):
            m = runs[name]["metrics"][split]
            assert m["uncalibrated"]["nll"] is not None and "ece" in m["uncalibrated"]
        assert runs[name]["metrics"]["val"]["nll"] <= runs[name]["metrics"]["val"]["uncalibrated"]["nll"] + 1e-9
        assert json.loads((tmp_path / name / "results.json").read_text())["calibration"] == cal
    assert not runs["pretrain-none"]["calibration"]["fitted"]
    # the argmax metrics are those of the model as trained: the same as the uncalibrated run's
    for split in ("val", "test"):
        for key in ("acc", "hm", "gm", "min_recall", "per_class_recall"):
            assert runs["pretrain"]["metrics"][split][key] == runs["pretrain-none"]["metrics"][split][key], key
    # BTM restores the classifier as trained: from the calibrated stage 1 it trains what it trains from the other
    for split in ("val", "test"):
        for key in ("acc", "hm", "gm", "min_recall", "nll", "ece"):
            assert runs["btm"]["metrics"][split][key] == runs["btm-from-none"]["metrics"][split][key], key

    # ltzoo calibrate: the uncalibrated run's copy gets the temperature the recipe fitted, predicts the same, and a
    # calibrated run is calibrated again from its classifier as trained (the same temperature, not T twice)
    from ltzoo.cli import main as ltzoo_cli

    flags = ["--dataset", "imagefolder", "--data-dir", str(data), "--calibration-min-images", "30", "--workers", "0"]
    copy = tmp_path / "copy"
    assert ltzoo_cli(["calibrate", str(tmp_path / "pretrain-none"), *flags, "--output", str(copy)]) == 0
    summary = json.loads((copy / "calibration.json").read_text())
    assert summary["calibration"]["predictions_unchanged"] is True
    assert summary["calibration"]["temperature"] == pytest.approx(runs["pretrain"]["calibration"]["temperature"])
    assert json.loads((copy / "results.json").read_text())["calibration"] == summary["calibration"]
    assert (copy / "classifier_uncalibrated.safetensors").is_file() and (
        copy / "reliability_uncalibrated.png"
    ).is_file()
    assert not (tmp_path / "pretrain-none" / "classifier_uncalibrated.safetensors").exists()  # the source untouched
    again = tmp_path / "again"
    assert ltzoo_cli(["calibrate", str(tmp_path / "pretrain"), *flags, "--output", str(again)]) == 0
    twice = json.loads((again / "calibration.json").read_text())["calibration"]
    assert twice["temperature"] == pytest.approx(runs["pretrain"]["calibration"]["temperature"])
    loaded = timm.create_model(f"local-dir:{copy}", pretrained=True)
    assert (
        loaded.pretrained_cfg["mean"]
        == json.loads((tmp_path / "pretrain-none" / "config.json").read_text())["pretrained_cfg"]["mean"]
    )
