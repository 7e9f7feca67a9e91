"""CIFAR-10/100-LT as the literature builds it (`ltzoo.data.cifar_lt`, ``--split-protocol cao2019``), checked
against the line-for-line reimplementation of the reference in benchmarks/check_cifar_lt.py."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import make_imagefolder

from ltzoo.data import load_dataset
from ltzoo.data.args import add_data_args, dataset_kwargs
from ltzoo.data.cifar_lt import cao2019_counts, cao2019_select, validation_from_leftovers
from ltzoo.data.datasets import default_split_protocol
from ltzoo.errors import ArgumentParser

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("check_cifar_lt", ROOT / "benchmarks" / "check_cifar_lt.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _layout(num_classes: int, n: int = 50_000, seed: int = 0) -> np.ndarray:
    """CIFAR's training labels in a shuffled layout, n / C per class."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), n // num_classes))


@pytest.mark.parametrize("num_classes,total", [(10, 12_406), (100, 10_847)])
def test_counts_are_the_literatures(check, num_classes, total):
    img_max = 50_000 // num_classes
    assert sum(cao2019_counts(img_max, num_classes, 100)) == total
    for rho in (1, 2.5, 10, 37.5, 50, 100, 200, 256):
        for profile in ("exp", "step"):
            assert cao2019_counts(img_max, num_classes, rho, profile) == check.reference_counts(
                50_000, num_classes, profile, 1.0 / rho
            ), (rho, profile)


@pytest.mark.parametrize("num_classes", [10, 100])
def test_picks_equal_the_reference_on_the_full_label_layout(check, num_classes):
    labels = _layout(num_classes)
    for rho, profile in ((100, "exp"), (10, "exp"), (100, "step")):
        counts = cao2019_counts(50_000 // num_classes, num_classes, rho, profile)
        ours = cao2019_select(labels, counts)
        ref = check.reference_lt(labels.tolist(), num_classes, profile, 1.0 / rho)
        assert len(ours) == len(ref) == num_classes
        assert all(np.array_equal(a, b) for a, b in zip(ours, ref)), (rho, profile)


def test_picks_leave_numpys_global_generator_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    cao2019_select(_layout(10, 1000), [100] * 10)
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("fine", [False, True])
def test_cao2019_dataset_has_the_references_images(check, tmp_path, fine):
    """The whole check on a small generated folder: same images in the same order, validation from the leftovers,
    and ltzoo's default protocol picking other images."""
    root = check.write_cifar(tmp_path, fine, n_train=3000 if fine else 600, n_test=200)
    row = check.check_one(root, "cifar100_lt" if fine else "cifar10_lt", fine, 10.0, val_per_class=1 if fine else 5)
    num_classes = 100 if fine else 10
    assert row["pass"] and row["classes_same_images_in_order"] == num_classes
    assert row["val_absent_classes"] == [0] and row["val_disjoint_from_reference_train"]
    assert row["ltzoo_val0_classes_differing"] > 0  # the default protocol draws other images


def test_validation_comes_from_the_leftovers_balanced_without_the_head(caplog):
    labels = torch.as_tensor(_layout(10, 1000))  # 100 per class
    counts = cao2019_counts(100, 10, 10)  # 100, 77, ..., 10: class 1 has 23 left
    kept = torch.from_numpy(np.concatenate(cao2019_select(labels.numpy(), counts)))
    idx, absent, k = validation_from_leftovers(labels, kept, 10, per_class=5)
    assert absent == [0] and k == 5 and len(idx) == 45
    assert not bool(torch.isin(idx, kept).any())
    assert torch.bincount(labels[idx], minlength=10).tolist() == [0] + [5] * 9
    with caplog.at_level(logging.WARNING):
        idx, absent, k = validation_from_leftovers(labels, kept, 10, per_class=50)
    assert k == 100 - counts[1] and "smallest leftover" in caplog.text  # bounded by class 1's leftover
    assert torch.bincount(labels[idx], minlength=10).tolist() == [0] + [k] * 9
    assert validation_from_leftovers(labels, torch.arange(1000), 10, 5)[2] == 0  # nothing left: no split


def test_cao2019_ignores_the_seed_and_records_itself(check, tmp_path):
    root = check.write_cifar(tmp_path, False, n_train=600, n_test=100)
    a = load_dataset("cifar10_lt", str(root), imbalance=10, split_protocol="cao2019", val_per_class=5, seed=0)
    b = load_dataset("cifar10_lt", str(root), imbalance=10, split_protocol="cao2019", val_per_class=5, seed=3)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.val.images, b.val.images)
    s = a.summary()
    assert s["split_protocol"] == "cao2019" and s["val_absent_classes"] == [0] and s["val_per_class"] == 5
    assert "cao2019" in s["train_source"] and "left out" in s["val_source"]
    ltzoo = load_dataset("cifar10_lt", str(root), imbalance=10, val_per_class=5, split_protocol="ltzoo")
    assert ltzoo.info["split_protocol"] == "ltzoo"
    none = load_dataset("cifar10_lt", str(root), imbalance=10, split_protocol="cao2019", val_per_class=0)
    assert none.val is None and len(none.train) == len(a.train)


def test_cao2019_refuses_what_the_construction_cannot_do(check, tmp_path):
    root = check.write_cifar(tmp_path / "c", False, n_train=600, n_test=100)
    with pytest.raises(ValueError, match="own class order"):
        load_dataset("cifar10_lt", str(root), imbalance=10, split_protocol="cao2019", class_order="reverse")
    with pytest.raises(ValueError, match="keeps all 60 images"):
        load_dataset("cifar10_lt", str(root), imbalance=10, split_protocol="cao2019", n_max=50)
    with pytest.raises(ValueError, match="unknown split protocol"):
        load_dataset("cifar10_lt", str(root), split_protocol="cao2020")
    folder = make_imagefolder(tmp_path / "f", {"train": [6, 4, 4], "test": [1, 1, 1]})
    with pytest.raises(ValueError, match="used as it is"):
        load_dataset("imagefolder", str(folder), split_protocol="cao2019")
    with pytest.raises(ValueError, match="balanced training set"):
        load_dataset("imagefolder", str(folder), imbalance=2, split_protocol="cao2019", val_per_class=0)


def test_a_dataset_that_bears_the_literatures_name_is_the_literatures_by_default(check, tmp_path):
    """cifar10_lt and cifar100_lt draw Cao et al.'s images unless told otherwise; every other dataset ltzoo's."""
    root = check.write_cifar(tmp_path, False, n_train=600, n_test=100)
    default = load_dataset("cifar10_lt", str(root), imbalance=10, val_per_class=0)
    cao = load_dataset("cifar10_lt", str(root), imbalance=10, val_per_class=0, split_protocol="cao2019")
    assert default.info["split_protocol"] == "cao2019" and torch.equal(default.train.images, cao.train.images)
    assert default_split_protocol("cifar100_lt") == "cao2019" and default_split_protocol("fmnist_lt") == "ltzoo"
    assert default_split_protocol("imagefolder") == "ltzoo" and default_split_protocol("hf:org/data") == "ltzoo"
    with pytest.raises(ValueError, match="use --split-protocol ltzoo"):  # the other protocol, by name
        load_dataset("cifar10_lt", str(root), imbalance=10, class_order="reverse")


def test_the_flag_reaches_load_dataset():
    p = ArgumentParser()
    add_data_args(p, seed=True)
    assert dataset_kwargs(p.parse_args([]))["split_protocol"] is None  # the dataset's own
    assert dataset_kwargs(p.parse_args(["--split-protocol", "cao2019"]))["split_protocol"] == "cao2019"


@pytest.mark.slow
def test_ldam_drw_config_runs_on_the_cao2019_split(check, tmp_path, fresh_accelerate):
    """The packaged LDAM-DRW recipe, shortened, on a generated CIFAR-10 folder: the cao2019 images, the step
    schedule with DRW, and the validation split without the head class, recorded in results.json."""
    from ltzoo.recipes import pretrain

    root = check.write_cifar(tmp_path / "data", False, n_train=600, n_test=100)
    out = tmp_path / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = pretrain.main(
            [
                "-c",
                "cifar10_lt/ldam_drw",
                "--data-dir",
                str(root),
                "--imbalance",
                "10",
                "--val-per-class",
                "5",
                "--epochs",
                "3",
                "--warmup-epochs",
                "1",
                "--lr-steps",
                "2",
                "--drw-epoch",
                "2",
                "--batch-size",
                "64",
                "--model",
                "resnet20_cifar",
                "--workers",
                "0",
                "--mixed-precision",
                "no",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    data = results["dataset"]
    assert data["split_protocol"] == "cao2019" and data["train_images"] == 240 and data["val_absent_classes"] == [0]
    assert results["metrics"]["val"]["absent_classes"] == [0] and results["config"]["optimizer"] == "momentum"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == pytest.approx([0.1, 0.1 * 0.01, 0.1 * 0.01])  # each epoch's last step's rate


def test_cards_reproduce_line_names_the_protocol():
    from ltzoo.hub.card import _eval_command

    assert "--split-protocol" not in _eval_command("org/m", {"dataset": "cifar100_lt", "split_protocol": "cao2019"})
    assert "--split-protocol cao2019" in _eval_command("org/m", {"dataset": "fmnist_lt", "split_protocol": "cao2019"})
    assert "--split-protocol ltzoo" in _eval_command("org/m", {"dataset": "cifar100_lt", "split_protocol": "ltzoo"})
    assert "--split-protocol" not in _eval_command("org/m", {"dataset": "cifar100_lt", "split_protocol": None})
    assert "--split-protocol" not in _eval_command("org/m", {"dataset": "fmnist_lt", "split_protocol": "ltzoo"})
