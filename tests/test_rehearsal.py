"""benchmarks/rehearsal.py: the generated tree is what `--dataset imagenet_lt --data-dir TREE` reads, shaped like the
real lists; the rehearsal (slow) runs every flagship config, card, eval and compare on a strongly reduced tree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ltzoo.data.datasets import load_dataset

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("rehearsal", ROOT / "benchmarks" / "rehearsal.py")
rehearsal = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rehearsal)
needs_lists = pytest.mark.skipif(
    not (rehearsal.SPLITS / "ImageNet_LT_val.txt").is_file(), reason="the published lists are not in ../shared"
)


def _toy_shape() -> dict:
    train = [(f"train/n{c}/n{c}_{i}.JPEG", c) for c, n in enumerate([9, 5, 3, 1]) for i in range(n)]
    evals = [(f"val/n{c}/v{c}_{i}.JPEG", c) for c in range(4) for i in range(2)]
    return {"train": train, "val": evals[:4] + evals[4:], "test": evals}


def test_reduce_keeps_head_and_tail_relabelled():
    shape = rehearsal.reduce_shape(_toy_shape(), classes=2, max_per_class=4)
    counts = [sum(1 for _, y in shape["train"] if y == c) for c in range(2)]
    assert counts == [4, 1], "the largest class (capped) and the smallest, labels 0 and 1"
    assert {p.split("/")[1] for p, _ in shape["train"]} == {"n0", "n3"}


def test_tree_loads_as_imagenet_lt(tmp_path):
    info = rehearsal.write_tree(_toy_shape(), tmp_path, "imagenet_lt", size=(20, 16), variants=2)
    assert info["distinct_jpegs"] == 8 and info["images"]["train"] == 18
    ds = load_dataset("imagenet_lt", data_dir=str(tmp_path))
    assert ds.train_counts == [9, 5, 3, 1] and len(ds.val) == 8 and len(ds.test) == 8
    from PIL import Image

    with Image.open(ds.train.files[0]) as img:
        assert img.format == "JPEG" and img.size == (20, 16)


@needs_lists
def test_imagenet_lt_shape_is_the_real_one():
    shape = rehearsal.dataset_shape("imagenet_lt")
    real = json.loads((ROOT / "benchmarks" / "imagenet_lt.json").read_text())
    assert len(shape["train"]) == real["train_images"] and len(shape["test"]) == real["test_images"]
    assert len(shape["val"]) == real["val_images"]
    assert not {p for p, _ in shape["train"]} & {p for p, _ in shape["val"]}, "train names avoid the val list's"


def test_inat_says_its_lists_are_missing():
    with pytest.raises(SystemExit, match="no split lists for 'inat2018'"):
        rehearsal.dataset_shape("inat2018")


@pytest.mark.slow
@needs_lists
def test_rehearsal_runs_every_phase(tmp_path):
    shape = rehearsal.reduce_shape(rehearsal.dataset_shape("imagenet_lt"), classes=20, max_per_class=8)
    rehearsal.write_tree(shape, tmp_path / "tree", "imagenet_lt")
    done = rehearsal.rehearse("imagenet_lt", tmp_path / "tree", tmp_path, workers=1, epochs=1, log=lambda _: None)
    failed = [r for r in done if not r["ok"]]
    assert not failed, failed[0].get("error") if failed else ""
    assert [r["phase"] for r in done][:5] == ["ce", "btm", "lora_clip", "lora_in21k", "btm_lora"]
    assert len(done) == 12, "five recipes, five cards, eval, compare"
    runs = tmp_path / "runs"
    for run in ("ce", "btm", "lora_clip", "lora_in21k", "btm_lora"):
        for f in ("model.safetensors", "config.json", "results.json", "README.md"):
            assert (runs / run / f).is_file(), f"{run}/{f}"
    assert "acc" in (runs / "compare_ce_btm.json").read_text()
