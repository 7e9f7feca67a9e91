"""Dataset loaders (`ltzoo.data.datasets`, `formats`, `hf`) on generated fixtures in every on-disk format,
on the real Fashion-MNIST files and on the published ImageNet-LT / Places-LT split lists."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import (
    cifar_class_names,
    class_template,
    make_cifar_binary,
    make_cifar_python,
    make_fmnist_idx,
    make_hf_dataset,
    make_imagefolder,
    make_split_lists,
    write_idx,
)

from ltzoo.data import DATASETS, list_datasets, load_dataset, longtail_counts, shot_groups
from ltzoo.data.datasets import FMNIST_SYSTEM_DIR, IMAGENET_MEAN, IMAGENET_STD
from ltzoo.data.formats import FMNIST_CLASSES, read_idx, read_split_list
from ltzoo.data.profiles import NAMED_CLASS_ORDERS, counts_in_class_order, resolve_class_order

SPLITS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "splits"
needs_splits = pytest.mark.skipif(
    not (SPLITS_DIR / "Places_LT_train.txt").is_file(),
    reason=f"the published split lists are not at {SPLITS_DIR} (CI puts shared/ beside the clone)",
)
needs_fmnist = pytest.mark.skipif(
    not (Path(FMNIST_SYSTEM_DIR) / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST is not installed at {FMNIST_SYSTEM_DIR} (apt-get install dataset-fashion-mnist)",
)


# ------------------------------------------------------------------------------------------ helpers
def _hashes(images: torch.Tensor) -> list[bytes]:
    return [bytes(x.numpy()) for x in images]


def _assert_disjoint_images(a: torch.Tensor, b: torch.Tensor) -> None:
    ha, hb = _hashes(a), _hashes(b)
    assert len(set(ha)) == len(ha), "fixture images should be unique"
    assert set(ha).isdisjoint(hb)


def _assert_looks_like_its_class(split, size=None, channels=None, noise=20) -> None:
    """Each image is its class template plus bounded noise (checks the reader's pixel layout)."""
    for img, y in zip(split.images[:20], split.labels[:20].tolist()):
        c, h, w = img.shape
        t = torch.from_numpy(class_template(y, (h, w), c).astype(np.int16)).permute(2, 0, 1)
        assert (img.short() - t).abs().max() <= noise


def _check_val(ds, per_class: int) -> None:
    assert ds.val is not None
    assert ds.val.counts(ds.num_classes) == [per_class] * ds.num_classes
    assert ds.val.source


# ------------------------------------------------------------------------------------- registry
def test_list_datasets_names_every_loader():
    names = list_datasets()
    for name in ("fmnist_lt", "cifar10_lt", "cifar100_lt", "imagenet_lt", "places_lt", "inat2018", "imagefolder"):
        assert name in names and name in DATASETS
    assert "hf:<name or path>" in names


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist_lt'; choose one of .*cifar10_lt.*fmnist_lt"):
        load_dataset("mnist_lt")


# ----------------------------------------------------------------------------- Fashion-MNIST (real)
@needs_fmnist
def test_fmnist_lt_exact_literature_counts_without_val():
    ds = load_dataset("fmnist_lt", val_per_class=0)
    assert ds.train_counts == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert ds.val is None
    assert len(ds.test) == 10_000 and ds.test.counts(10) == [1000] * 10
    assert ds.test.source == "official test set"
    assert ds.class_names == FMNIST_CLASSES and ds.input_size == (1, 28, 28)
    assert ds.train.in_memory and ds.train.images.dtype == torch.uint8 and ds.train.images.shape[1:] == (1, 28, 28)
    assert "exp profile, rho=100" in ds.train.source and "n_max=6000" in ds.train.source
    assert ds.summary()["many_medium_few"] == {"many": 4, "medium": 3, "few": 3}


@needs_fmnist
def test_fmnist_lt_default_val_is_balanced_disjoint_and_test_untouched():
    ds = load_dataset("fmnist_lt")
    _check_val(ds, 100)
    assert ds.train_counts == longtail_counts(5900, 10, 100) == [5900, 3536, 2120, 1271, 762, 456, 273, 164, 98, 59]
    assert ds.info["n_max"] == 5900 and ds.info["imbalance"] == 100.0
    assert "left out" in ds.val.source
    _assert_disjoint_images(ds.train.images, ds.val.images)
    assert len(ds.test) == 10_000 and ds.test.counts(10) == [1000] * 10
    assert len(ds.mean) == len(ds.std) == 1 and 0.1 < ds.mean[0] < 0.5


def test_fmnist_lt_is_deterministic_and_seeded(tmp_path):
    make_fmnist_idx(tmp_path, 40)
    a = load_dataset("fmnist_lt", data_dir=str(tmp_path), imbalance=10, val_per_class=3, seed=1)
    b = load_dataset("fmnist_lt", data_dir=str(tmp_path), imbalance=10, val_per_class=3, seed=1)
    c = load_dataset("fmnist_lt", data_dir=str(tmp_path), imbalance=10, val_per_class=3, seed=2)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.val.images, b.val.images)
    assert a.train_counts == c.train_counts == longtail_counts(37, 10, 10)
    assert not torch.equal(a.train.images, c.train.images)
    assert not torch.equal(a.val.images, c.val.images)
    assert torch.equal(a.test.images, c.test.images)  # the test set is never subsampled


# ------------------------------------------------------------------------------ Fashion-MNIST (IDX)
@pytest.mark.parametrize("gz, layout", [(True, "debian"), (False, "debian"), (True, "torchvision")])
def test_fmnist_lt_from_generated_idx(tmp_path, gz, layout):
    make_fmnist_idx(tmp_path, 30, n_test_per_class=4, gz=gz, layout=layout)
    ds = load_dataset("fmnist_lt", data_dir=str(tmp_path), imbalance=10, val_per_class=5)
    assert ds.train_counts == longtail_counts(25, 10, 10)
    _check_val(ds, 5)
    _assert_disjoint_images(ds.train.images, ds.val.images)
    assert len(ds.test) == 40 and ds.test.counts(10) == [4] * 10
    assert ds.train.images.shape[1:] == (1, 28, 28) and ds.train.images.dtype == torch.uint8
    _assert_looks_like_its_class(ds.train)
    _assert_looks_like_its_class(ds.test)
    exact = load_dataset("fmnist_lt", data_dir=str(tmp_path), imbalance=10, val_per_class=0)
    assert exact.train_counts == longtail_counts(30, 10, 10) and exact.val is None
    step = load_dataset("fmnist_lt", data_dir=str(tmp_path), imbalance=5, profile="step", val_per_class=0)
    assert step.train_counts == [30] * 5 + [6] * 5


def test_read_idx_round_trip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte", a)), a)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte.gz", a)), a)


def _corrupt(path: Path, how: str) -> None:
    raw = gzip.decompress(path.read_bytes())
    if how == "truncated_gz":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif how == "not_gzip":
        path.write_bytes(b"this is not gzip at all" * 10)
    elif how == "truncated_body":
        path.write_bytes(gzip.compress(raw[:-100]))
    elif how == "too_long":
        path.write_bytes(gzip.compress(raw + b"\0" * 7))
    elif how == "bad_magic":
        path.write_bytes(gzip.compress(b"\x08\x03\x00\x00" + raw[4:]))
    elif how == "short_header":
        path.write_bytes(gzip.compress(raw[:6]))


@pytest.mark.parametrize(
    "how, match",
    [
        ("truncated_gz", "truncated or corrupt"),
        ("not_gzip", "truncated or corrupt"),
        ("truncated_body", r"is truncated: expected \d+ values, found \d+"),
        ("too_long", "longer than its header says"),
        ("bad_magic", "bad magic number"),
        ("short_header", "header is cut short"),
    ],
)
def test_corrupt_idx_gives_a_clear_error(tmp_path, how, match):
    make_fmnist_idx(tmp_path, 5)
    target = tmp_path / "train-images-idx3-ubyte.gz"
    _corrupt(target, how)
    with pytest.raises(ValueError, match=match) as err:
        load_dataset("fmnist_lt", data_dir=str(tmp_path), val_per_class=0, imbalance=2)
    assert "train-images-idx3-ubyte.gz" in str(err.value)


def test_fmnist_images_and_labels_must_agree(tmp_path):
    make_fmnist_idx(tmp_path, 5)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(ValueError, match="disagree"):
        load_dataset("fmnist_lt", data_dir=str(tmp_path), val_per_class=0, imbalance=2)


# ------------------------------------------------------------------------------------------- CIFAR
CIFAR_WRITERS = {"python": make_cifar_python, "binary": make_cifar_binary}


@pytest.mark.parametrize("fine", [False, True], ids=["cifar10", "cifar100"])
@pytest.mark.parametrize("fmt", ["python", "binary"])
def test_cifar_lt(tmp_path, fine, fmt):
    num_classes, n_train, n_test = (100, 6, 2) if fine else (10, 30, 5)
    CIFAR_WRITERS[fmt](tmp_path, fine, n_train, n_test)
    name = "cifar100_lt" if fine else "cifar10_lt"
    rho, vpc = (5, 1) if fine else (10, 5)
    # ltzoo's own draw, by name (the CIFAR-LT datasets default to Cao et al.'s: tests/test_cifar_lt.py)
    ds = load_dataset(name, data_dir=str(tmp_path), imbalance=rho, val_per_class=vpc, split_protocol="ltzoo")
    assert ds.num_classes == num_classes and ds.class_names == cifar_class_names(fine)
    assert ds.train_counts == longtail_counts(n_train - vpc, num_classes, rho)
    _check_val(ds, vpc)
    _assert_disjoint_images(ds.train.images, ds.val.images)
    assert ds.test.counts(num_classes) == [n_test] * num_classes and ds.test.source == "official test set"
    for split in (ds.train, ds.val, ds.test):
        assert split.in_memory and split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 32, 32)
        _assert_looks_like_its_class(split)
    assert ds.input_size == (3, 32, 32) and len(ds.mean) == 3
    assert ds.info["train_source"] == ds.train.source and f"rho={rho}" in ds.train.source


@pytest.mark.parametrize("fine", [False, True], ids=["cifar10", "cifar100"])
def test_cifar_python_and_binary_read_the_same_images(tmp_path, fine):
    make_cifar_python(tmp_path / "py", fine, 3, 2, seed=4)
    make_cifar_binary(tmp_path / "bin", fine, 3, 2, seed=4)
    name = "cifar100_lt" if fine else "cifar10_lt"
    a = load_dataset(name, data_dir=str(tmp_path / "py"), imbalance=1, val_per_class=0)
    b = load_dataset(name, data_dir=str(tmp_path / "bin"), imbalance=1, val_per_class=0)
    for x, y in ((a.train, b.train), (a.test, b.test)):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)


def test_cifar_binary_without_name_files_numbers_the_classes(tmp_path):
    make_cifar_binary(tmp_path, False, 3, 1, write_names=False)
    ds = load_dataset("cifar10_lt", data_dir=str(tmp_path), imbalance=1, val_per_class=0)
    assert ds.class_names == [str(c) for c in range(10)]


def test_cifar_binary_of_the_wrong_size_is_refused(tmp_path):
    base = make_cifar_binary(tmp_path, False, 3, 1)
    path = base / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="not a multiple of a CIFAR record"):
        load_dataset("cifar10_lt", data_dir=str(tmp_path), imbalance=1, val_per_class=0)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", ["os.system", "eval", "not_a_dict"])
def test_cifar_pickle_reader_refuses_malicious_pickles(tmp_path, payload):
    base = make_cifar_python(tmp_path, False, 2, 1)
    marker = tmp_path / "pwned"
    if payload == "os.system":
        obj = {b"data": _Evil(marker), b"labels": [0]}
    elif payload == "eval":
        obj = _EvalPayload(marker)
    else:
        obj = [1, 2, 3]
    with open(base / "data_batch_2", "wb") as f:
        pickle.dump(obj, f, protocol=2)
    # make sure the payload would work with an unrestricted unpickler (so the test means something)
    if payload == "os.system":
        assert b"system" in (base / "data_batch_2").read_bytes()
    match = "not a CIFAR batch dict" if payload == "not_a_dict" else "refusing to unpickle"
    with pytest.raises(ValueError, match=match) as err:
        load_dataset("cifar10_lt", data_dir=str(tmp_path), imbalance=1, val_per_class=0)
    assert "data_batch_2" in str(err.value)
    assert not marker.exists()


class _EvalPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w')",)


def test_cifar_missing_and_truncated_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/ or cifar-10-batches-bin/"):
        load_dataset("cifar10_lt", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar-100-python/ or cifar-100-binary/"):
        load_dataset("cifar100_lt", data_dir=str(tmp_path))
    base = make_cifar_python(tmp_path, False, 2, 1)
    (base / "test_batch").write_bytes((base / "test_batch").read_bytes()[:100])
    with pytest.raises(ValueError, match="test_batch is not a valid CIFAR batch file"):
        load_dataset("cifar10_lt", data_dir=str(tmp_path), imbalance=1, val_per_class=0)


@pytest.mark.parametrize(
    "name, holds",
    [
        ("cifar10_lt", "cifar-10-batches-py/"),
        ("cifar100_lt", "cifar-100-python/"),
        ("imagefolder", "train/ and test/"),
        ("places_lt", "the root folder the paths of the split lists start from"),
    ],
)
def test_missing_data_dir(tmp_path, name, holds):
    """A --data-dir that is not there: the problem and the fix, what the folder must hold for this dataset."""
    fix = f"; pass --data-dir the folder that holds {holds}" if "/" in holds else f"; pass --data-dir {holds}"
    with pytest.raises(FileNotFoundError, match=f"data dir .*nowhere does not exist .*{name}.*{re.escape(fix)}"):
        load_dataset(name, data_dir=str(tmp_path / "nowhere"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match=f"data dir .*file is a file, not a folder .*{re.escape(fix)}"):
        load_dataset(name, data_dir=str(tmp_path / "file"))
    if name != "places_lt":  # a list dataset's lists may hold paths from the current folder: no --data-dir
        with pytest.raises(ValueError, match=f"needs --data-dir pointing at its files{re.escape(fix)}"):
            load_dataset(name)


# ------------------------------------------------------------------------------------- split lists
@pytest.mark.parametrize("name", ["imagenet_lt", "places_lt"])
def test_list_datasets_from_published_list_names(tmp_path, name):
    lists = make_split_lists(tmp_path, {"train": [9, 5, 2], "val": [2, 2, 2], "test": [3, 3, 3]}, dataset=name)
    ds = load_dataset(name, data_dir=str(tmp_path))
    assert ds.train_counts == [9, 5, 2] and ds.num_classes == 3
    assert ds.val.counts(3) == [2, 2, 2] and ds.test.counts(3) == [3, 3, 3]
    assert ds.class_names == ["class_00", "class_01", "class_02"]
    for split in ("train", "val", "test"):
        s = getattr(ds, split)
        assert s.source == f"split list {lists[split].name}"
        assert not s.in_memory and all(Path(f).is_file() for f in s.files)
        assert all(Path(f).parent.name == ds.class_names[y] for f, y in zip(s.files, s.labels.tolist()))
    assert set(ds.train.files).isdisjoint(ds.val.files)
    assert ds.input_size == (3, 224, 224) and (ds.mean, ds.std) == (IMAGENET_MEAN, IMAGENET_STD)
    # explicit lists override the names in data_dir
    ds2 = load_dataset(name, data_dir=str(tmp_path), train_list=str(lists["val"]), val_list=str(lists["test"]))
    assert ds2.train_counts == [2, 2, 2] and ds2.val.counts(3) == [3, 3, 3]


def test_inat2018_has_no_val_list_and_holds_out_a_balanced_val(tmp_path):
    make_split_lists(tmp_path, {"train": [8, 6, 4], "test": [3, 3, 3]}, dataset="inat2018")
    ds = load_dataset("inat2018", data_dir=str(tmp_path))
    assert ds.val is None and ds.train_counts == [8, 6, 4]
    assert ds.test.source == "split list iNaturalist18_val.txt"
    ds = load_dataset("inat2018", data_dir=str(tmp_path), val_per_class=2)
    _check_val(ds, 2)
    assert "held out" in ds.val.source
    assert ds.train_counts == [6, 4, 2]
    assert set(ds.train.files).isdisjoint(ds.val.files)
    assert ds.test.counts(3) == [3, 3, 3]
    with pytest.raises(ValueError, match=r"1 classes have 4 or fewer training images.*class 2"):
        load_dataset("inat2018", data_dir=str(tmp_path), val_per_class=4)


def _write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_split_list_label_out_of_range_is_named(tmp_path):
    lists = make_split_lists(tmp_path, {"train": [3, 3, 3], "test": [2, 2, 2]})
    bad = _write(tmp_path / "bad_test.txt", ["test/class_00/00000.png 0", "test/class_01/00000.png 5"])
    with pytest.raises(
        ValueError,
        match=r"places_lt: the test split \(split list bad_test.txt\) has labels in "
        r"\[0, 5\] but the dataset has 3 classes \(labels must be 0..2\)",
    ):
        load_dataset("places_lt", data_dir=str(tmp_path), train_list=str(lists["train"]), test_list=bad)
    neg = _write(tmp_path / "neg_train.txt", ["train/class_00/00000.png -1", "train/class_01/00000.png 1"])
    with pytest.raises(ValueError, match=r"the train split .*labels in \[-1, 1\]"):
        load_dataset("inat2018", data_dir=str(tmp_path), train_list=neg, test_list=str(lists["test"]), val_per_class=1)


@pytest.mark.parametrize(
    "lines, match",
    [
        (["train/a.png"], r"bad.txt:1: expected 'relative/path label', got 'train/a.png'"),
        (["train/a.png 0", "", "train/b.png one"], r"bad.txt:3: expected 'relative/path label'"),
        (["", "  "], "holds no 'path label' lines"),
    ],
)
def test_malformed_split_list(tmp_path, lines, match):
    path = _write(tmp_path / "bad.txt", lines)
    with pytest.raises(ValueError, match=match):
        read_split_list(Path(path), tmp_path, "train")


def test_list_dataset_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training list; pass --train-list or put ImageNet_LT_train.txt"):
        load_dataset("imagenet_lt", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="the train list .*nope.txt does not exist; pass --train-list the"):
        load_dataset("imagenet_lt", data_dir=str(tmp_path), train_list=str(tmp_path / "nope.txt"))
    with pytest.raises(FileNotFoundError, match="data dir .*missing does not exist"):
        load_dataset("places_lt", data_dir=str(tmp_path / "missing"))
    lists = make_split_lists(tmp_path, {"train": [2, 2]})
    with pytest.raises(FileNotFoundError, match="no test split found"):
        load_dataset("places_lt", data_dir=str(tmp_path), train_list=str(lists["train"]))
    ds = load_dataset("places_lt", data_dir=str(tmp_path), train_list=str(lists["train"]), require_test=False)
    assert len(ds.test) == 0 and ds.test.source == "none"


# --------------------------------------------------------------------------- class order, shot cuts
HARD_TAIL = list(NAMED_CLASS_ORDERS["hard_tail"][0])


@needs_fmnist
def test_fmnist_lt_class_orders_share_the_validation_split():
    own = load_dataset("fmnist_lt")
    assert own.info["class_order"] == "own" and own.info["class_order_classes"] == FMNIST_CLASSES
    assert own.shot_thresholds == (1000, 200) and own.summary()["many_medium_few"] == {"many": 4, "medium": 3, "few": 3}
    for order in ("reverse", "hard_tail"):
        ds = load_dataset("fmnist_lt", class_order=order)
        ranked, _ = resolve_class_order(order, FMNIST_CLASSES)
        assert ds.train_counts == counts_in_class_order(own.train_counts, ranked)
        assert torch.equal(ds.val.images, own.val.images) and torch.equal(ds.val.labels, own.val.labels)
        _assert_disjoint_images(ds.train.images, ds.val.images)
        assert ds.class_names == FMNIST_CLASSES and ds.shot_thresholds == (1000, 200)
    assert ds.train_counts[FMNIST_CLASSES.index("Shirt")] == 59 and ds.train_counts[1] == 5900  # hard_tail
    assert ds.info["class_order_classes"] == HARD_TAIL and "class order hard_tail" in ds.train.source


@pytest.mark.parametrize(
    "order",
    ["reverse", "random:1", "hard_tail", HARD_TAIL, [3, 1, 4, 0, 5, 9, 2, 6, 8, 7], ",".join(reversed(FMNIST_CLASSES))],
)
def test_class_order_moves_counts_not_labels(tmp_path, order):
    make_fmnist_idx(tmp_path, 40)
    kw = dict(data_dir=str(tmp_path), imbalance=10, val_per_class=3, seed=2)
    own = load_dataset("fmnist_lt", **kw)
    ds = load_dataset("fmnist_lt", class_order=order, **kw)
    ranked, label = resolve_class_order(order, FMNIST_CLASSES)
    assert ranked != list(range(10))
    assert ds.train_counts == counts_in_class_order(longtail_counts(37, 10, 10), ranked)
    assert ds.class_names == own.class_names == FMNIST_CLASSES
    _assert_looks_like_its_class(ds.train)  # each image still carries its own class's label
    # the validation split is the own order's, whatever the order; train never overlaps it
    assert torch.equal(ds.val.images, own.val.images) and torch.equal(ds.val.labels, own.val.labels)
    _assert_disjoint_images(ds.train.images, ds.val.images)
    assert torch.equal(ds.test.images, own.test.images)
    s = ds.summary()
    assert s["class_order"] == label and s["class_order_classes"] == [FMNIST_CLASSES[c] for c in ranked]
    assert s["class_counts"] == ds.train_counts and f"class order {label}" in ds.train.source
    assert "class order" not in own.train.source and own.summary()["class_order"] == "own"


@pytest.mark.parametrize("with_val", [True, False], ids=["val_folder", "held_out_val"])
def test_class_order_on_an_image_folder(tmp_path, with_val):
    counts = {"train": [12, 12, 12], "test": [1, 1, 1]}
    if with_val:
        counts["val"] = [2, 2, 2]
    make_imagefolder(tmp_path, counts, channels=1)
    kw = dict(data_dir=str(tmp_path), imbalance=4, val_per_class=2)
    own = load_dataset("imagefolder", **kw)
    ds = load_dataset("imagefolder", class_order="class_01,class_02,class_00", **kw)
    n_max = 12 if with_val else 10
    assert own.train_counts == longtail_counts(n_max, 3, 4) == [n_max, n_max // 2, n_max // 4]
    assert ds.train_counts == [n_max // 4, n_max, n_max // 2]
    assert torch.equal(ds.val.images, own.val.images)
    _assert_disjoint_images(ds.train.images, ds.val.images)
    _assert_looks_like_its_class(ds.train)


def test_class_order_errors(tmp_path):
    make_imagefolder(tmp_path, {"train": [6, 6], "test": [1, 1]}, channels=1)
    with pytest.raises(ValueError, match="imagefolder: a class order applies to data made long-tailed by a profile"):
        load_dataset("imagefolder", data_dir=str(tmp_path), val_per_class=0, class_order="reverse")
    assert (
        load_dataset("imagefolder", data_dir=str(tmp_path), val_per_class=0, class_order="own").info["class_order"]
        is None
    )
    with pytest.raises(ValueError, match=r"missing \['class_01'\]; duplicated \['class_00'\]"):
        load_dataset("imagefolder", data_dir=str(tmp_path), imbalance=2, val_per_class=0, class_order=["class_00"] * 2)
    with pytest.raises(
        ValueError,
        match="'hard_tail' is defined for the classes Trouser, Bag, Ankle boot, ..., "
        "not for this dataset.s \\(class_00",
    ):
        load_dataset("imagefolder", data_dir=str(tmp_path), imbalance=2, val_per_class=0, class_order="hard_tail")


def test_shot_cuts_chosen_for_the_data_or_given(tmp_path):
    make_fmnist_idx(tmp_path, 30)
    kw = dict(data_dir=str(tmp_path), imbalance=10, val_per_class=5)
    ds = load_dataset("fmnist_lt", **kw)  # 25 down to 2 images: the literature's cuts make every class few-shot
    assert ds.train_counts == [25, 19, 14, 11, 8, 6, 5, 4, 3, 2]
    assert ds.shot_thresholds == (10, 5) and ds.info["shot_rule"].startswith("thirds of the log-count range 2..25")
    s = ds.summary()
    assert s["many_medium_few"] == {"many": 4, "medium": 3, "few": 3}
    assert s["shot_thresholds"] == {"many": ">10", "medium": "5..10", "few": "<5"}
    given = load_dataset("fmnist_lt", shot_cuts=(14, 4), **kw)
    assert given.shot_thresholds == (14, 4) and given.summary()["shot_rule"] == "given"
    assert given.summary()["many_medium_few"] == {"many": 2, "medium": 6, "few": 2}
    with pytest.raises(ValueError, match=r"shot cuts \(many=4, few=14\) must be integers with many >= few >= 0"):
        load_dataset("fmnist_lt", shot_cuts=(4, 14), **kw)


def test_image_folder_of_tens_gets_three_shot_groups(tmp_path):
    # a small long-tailed folder as a user brings it (no profile): the literature's cuts leave many-shot empty
    train = [60, 40, 25, 16, 10, 7, 4, 3]
    make_imagefolder(tmp_path, {"train": train, "val": [1] * 8, "test": [1] * 8}, channels=1)
    ds = load_dataset("imagefolder", data_dir=str(tmp_path))
    s = ds.summary()
    assert s["class_counts"] == train and ds.info["class_order"] is None
    assert shot_groups(train, 100, 20)["many"] == []
    assert ds.shot_thresholds == (20, 10) and s["many_medium_few"] == {"many": 3, "medium": 2, "few": 3}
    assert "would give 0/3/5 classes" in s["shot_rule"]


# ------------------------------------------------------------------------------------- image folder
@pytest.mark.parametrize("channels", [1, 3], ids=["gray", "rgb"])
@pytest.mark.parametrize("with_val", [True, False], ids=["val_folder", "held_out_val"])
def test_imagefolder(tmp_path, channels, with_val):
    counts = {"train": [12, 8, 6], "test": [3, 3, 3]}
    if with_val:
        counts["val"] = [2, 2, 2]
    make_imagefolder(tmp_path, counts, size=(8, 8), channels=channels)
    ds = load_dataset("imagefolder", data_dir=str(tmp_path), val_per_class=2)
    assert ds.class_names == ["class_00", "class_01", "class_02"]
    assert ds.train_counts == ([12, 8, 6] if with_val else [10, 6, 4])
    _check_val(ds, 2)
    assert ds.val.source == ("folder val/" if with_val else "balanced, 2/class, held out of the training set")
    assert ds.train.source == "folder train/" and ds.test.source == "folder test/"
    assert ds.test.counts(3) == [3, 3, 3]
    for split in (ds.train, ds.val, ds.test):
        assert split.in_memory and split.images.dtype == torch.uint8 and split.images.shape[1:] == (channels, 8, 8)
        _assert_looks_like_its_class(split)
    _assert_disjoint_images(ds.train.images, ds.val.images)
    assert ds.input_size == (channels, 8, 8) and len(ds.mean) == len(ds.std) == channels
    assert ds.info["profile"] is None


@pytest.mark.parametrize("with_val", [True, False], ids=["val_folder", "held_out_val"])
def test_imagefolder_made_longtailed(tmp_path, with_val):
    counts = {"train": [20, 20, 20, 20], "test": [2, 2, 2, 2]}
    if with_val:
        counts["val"] = [3, 3, 3, 3]
    make_imagefolder(tmp_path, counts, channels=3)
    ds = load_dataset("imagefolder", data_dir=str(tmp_path), imbalance=4, val_per_class=2)
    n_max = 20 if with_val else 18
    assert ds.train_counts == longtail_counts(n_max, 4, 4) and ds.info["n_max"] == n_max
    _check_val(ds, 3 if with_val else 2)
    _assert_disjoint_images(ds.train.images, ds.val.images)
    assert ds.test.counts(4) == [2] * 4
    step = load_dataset("imagefolder", data_dir=str(tmp_path), imbalance=4, profile="step", val_per_class=2)
    assert step.train_counts == [n_max] * 2 + [n_max // 4] * 2


def test_small_folder_runs_by_default_with_a_smaller_validation_split(tmp_path):
    """An unset --val-per-class on a folder whose smallest class has 20 or fewer images: a quarter of it."""
    make_imagefolder(tmp_path / "a", {"train": [30, 12, 9], "test": [1, 1, 1]}, channels=1)
    ds = load_dataset("imagefolder", data_dir=str(tmp_path / "a"))
    assert ds.val.counts(3) == [2, 2, 2] and ds.train_counts == [28, 10, 7]  # 9 // 4 = 2 held out per class
    assert ds.info["val_rule"].startswith("2/class: a quarter of the smallest class's 9")
    assert "steps of 50%" in ds.info["val_resolution"] and "val_rule" in ds.summary()
    make_imagefolder(tmp_path / "b", {"train": [30, 3], "test": [1, 1]}, channels=1)
    ds = load_dataset("imagefolder", data_dir=str(tmp_path / "b"))
    assert ds.val is None and ds.train_counts == [30, 3] and ds.info["val_rule"].startswith("none: the smallest")
    make_imagefolder(tmp_path / "c", {"train": [30, 25], "test": [1, 1]}, channels=1)
    ds = load_dataset("imagefolder", data_dir=str(tmp_path / "c"))
    assert ds.val.counts(2) == [20, 20] and "steps of 5%" in ds.info["val_resolution"]


def test_imagefolder_too_few_images_for_a_val_hold_out(tmp_path):
    make_imagefolder(tmp_path, {"train": [30, 3], "test": [1, 1]}, channels=1)
    with pytest.raises(ValueError, match=r"1 classes have 20 or fewer training images.*class 1"):
        load_dataset("imagefolder", data_dir=str(tmp_path), val_per_class=20)  # given: the user's to lower
    with pytest.raises(ValueError, match=r"smallest class has 3 training images, too few .* 5/class"):
        load_dataset("imagefolder", data_dir=str(tmp_path), imbalance=2, val_per_class=5)
    ds = load_dataset("imagefolder", data_dir=str(tmp_path), val_per_class=0)
    assert ds.val is None and ds.train_counts == [30, 3]
    # an explicit n_max that leaves a class too few images for the validation draw
    make_imagefolder(tmp_path / "b", {"train": [30, 12], "test": [1, 1]}, channels=1)
    with pytest.raises(ValueError, match=r"n_max=20 leaves 1 classes fewer than 3 images .*class 1: 2"):
        load_dataset("imagefolder", data_dir=str(tmp_path / "b"), imbalance=2, val_per_class=3, n_max=20)


def test_imagefolder_of_mixed_sizes_stays_on_disk(tmp_path):
    from PIL import Image

    make_imagefolder(tmp_path, {"train": [3, 3], "test": [1, 1]})
    Image.new("RGB", (12, 10)).save(tmp_path / "train" / "class_01" / "big.png")
    ds = load_dataset("imagefolder", data_dir=str(tmp_path), val_per_class=0)
    assert not ds.train.in_memory and len(ds.train.files) == 7 and ds.train_counts == [3, 4]
    assert ds.test.in_memory
    assert ds.input_size == (3, 224, 224)


def test_imagefolder_layout_errors(tmp_path):
    make_imagefolder(tmp_path, {"train": [2, 2]})
    with pytest.raises(FileNotFoundError, match="must hold train/ and test/"):
        load_dataset("imagefolder", data_dir=str(tmp_path))
    make_imagefolder(tmp_path, {"test": [1, 1, 1]})
    with pytest.raises(ValueError, match=r"class folders not in train/: \['class_02'\]"):
        load_dataset("imagefolder", data_dir=str(tmp_path), val_per_class=0)


# ------------------------------------------------------------------------------------ Hugging Face
@pytest.mark.parametrize("channels", [1, 3], ids=["gray", "rgb"])
def test_hf_dataset_from_disk(tmp_path, channels):
    path = make_hf_dataset(
        tmp_path / "hf", {"train": [7, 5, 3], "validation": [2, 2, 2], "test": [2, 2, 2]}, channels=channels
    )
    ds = load_dataset(f"hf:{path}")
    assert ds.name == f"hf:{path}"
    assert ds.class_names == ["class_00", "class_01", "class_02"]
    assert ds.train_counts == [7, 5, 3] and ds.val.counts(3) == [2, 2, 2] and ds.test.counts(3) == [2, 2, 2]
    assert ds.train.source == "hf split 'train'" and ds.val.source == "hf split 'val'"
    for split in (ds.train, ds.val, ds.test):
        assert split.in_memory and split.images.shape[1:] == (channels, 8, 8) and split.images.dtype == torch.uint8
        _assert_looks_like_its_class(split)
    _assert_disjoint_images(ds.train.images, ds.val.images)
    assert ds.input_size == (channels, 8, 8)


def test_hf_dataset_val_hold_out_and_longtail(tmp_path):
    path = make_hf_dataset(tmp_path / "hf", {"train": [10, 10, 10], "test": [2, 2, 2]})
    ds = load_dataset(f"hf:{path}")
    assert ds.val is None and ds.train_counts == [10, 10, 10]
    ds = load_dataset(f"hf:{path}", val_per_class=2)
    _check_val(ds, 2)
    assert ds.train_counts == [8, 8, 8]
    _assert_disjoint_images(ds.train.images, ds.val.images)
    ds = load_dataset(f"hf:{path}", imbalance=4, val_per_class=2)
    assert ds.train_counts == longtail_counts(8, 3, 4)
    _check_val(ds, 2)
    _assert_disjoint_images(ds.train.images, ds.val.images)
    assert ds.test.counts(3) == [2, 2, 2]


def test_hf_dataset_errors(tmp_path):
    import datasets

    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"label": [0]})}).save_to_disk(str(tmp_path / "a"))
    with pytest.raises(ValueError, match="a 'train' split is needed"):
        load_dataset(f"hf:{tmp_path / 'a'}")
    no_image = datasets.Dataset.from_dict({"x": [0], "label": [0]})
    datasets.DatasetDict({"train": no_image}).save_to_disk(str(tmp_path / "b"))
    with pytest.raises(ValueError, match=r"needs an Image column and a 'label' column; found columns \['x', 'label'\]"):
        load_dataset(f"hf:{tmp_path / 'b'}")


# ------------------------------------------------------------------------- published split lists
@needs_splits
def test_places_lt_train_list():
    ds = load_dataset(
        "places_lt", train_list=str(SPLITS_DIR / "Places_LT_train.txt"), require_test=False, check_files=False
    )
    counts = ds.train_counts
    assert ds.num_classes == 365 and len(ds.train) == sum(counts) == 62_500
    assert max(counts) == 4980 and min(counts) == 5
    assert {k: len(v) for k, v in shot_groups(counts).items()} == {"many": 131, "medium": 163, "few": 71}
    assert ds.summary()["many_medium_few"] == {"many": 131, "medium": 163, "few": 71}
    assert ds.class_names[0] == "airfield"


@needs_splits
def test_places_lt_all_published_lists():
    ds = load_dataset("places_lt", data_dir=str(SPLITS_DIR), check_files=False)
    assert ds.num_classes == 365
    assert ds.val.counts(365) == [20] * 365 and ds.test.counts(365) == [100] * 365
    assert ds.val.source == "split list Places_LT_val.txt"
    assert set(ds.train.files).isdisjoint(ds.val.files)


@needs_splits
@pytest.mark.parametrize("name, per_class", [("ImageNet_LT_val.txt", 20), ("ImageNet_LT_test.txt", 50)])
def test_imagenet_lt_lists(name, per_class):
    split = read_split_list(SPLITS_DIR / name, Path("/imagenet"), "val")
    assert int(split.labels.max()) + 1 == 1000
    assert split.counts(1000) == [per_class] * 1000
    assert split.files[0].startswith("/imagenet/")


@needs_splits
def test_imagenet_lt_train_class_frequencies():
    counts = json.loads((SPLITS_DIR / "derived" / "ImageNet_LT_train_cls_freq.json").read_text())
    assert len(counts) == 1000 and sum(counts) == 115_846
    assert max(counts) == 1280 and min(counts) == 5
    assert {k: len(v) for k, v in shot_groups(counts).items()} == {"many": 385, "medium": 479, "few": 136}
