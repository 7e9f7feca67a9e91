"""Long-tailed datasets by name, each with a balanced validation split that never touches the test set.

Names:
- ``fmnist_lt``, ``cifar10_lt``, ``cifar100_lt``: a balanced training set made long-tailed by seeded
  subsampling (profile 'exp' or 'step', imbalance rho, default 100). The validation split is drawn,
  balanced, from the training images the profile left out; to leave every class enough of them, the
  largest class keeps ``min_c N_c - val_per_class`` images unless ``n_max`` says otherwise (5900 for
  Fashion-MNIST with its default 100 per class; ``val_per_class=0`` gives the literature's exact
  counts, 6000 down to 60 at rho=100, and no validation split).
- ``imagenet_lt``, ``places_lt``, ``inat2018``: the published split lists (``path label`` lines) over an
  image root; the validation split is the official val list (iNaturalist 2018 has none: its official
  val list is the test set, as in the literature, and ``val_per_class`` images per class are held out
  of training).
- ``imagefolder``: ``data_dir/{train,test[,val]}/<class>/*``; ``hf:<name or path>``: a Hugging Face
  `datasets` image dataset. Both are used as they are, or made long-tailed when ``imbalance`` is given.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ltzoo.data import check as data_check
from ltzoo.data import formats
from ltzoo.data.profiles import class_indices, longtail_counts, subsample_longtail
from ltzoo.data.splits import LTDataset, Split, check_split_labels

_logger = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FMNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one named dataset."""

    reader: Callable[..., tuple[Split, Split, Split | None, list[str]]]
    default_imbalance: float | None
    lists: tuple[str | None, str | None, str | None] = (None, None, None)
    input_size: tuple[int, int, int] | None = None
    val_per_class: int = 20  # images per class of a validation split ltzoo draws itself (0: none)
    shots: tuple[int, int] = (100, 20)  # many-shot: more than shots[0] images; few-shot: fewer than shots[1]


def _resolve_fmnist_dir(data_dir: str | None) -> Path:
    for cand in (data_dir, FMNIST_SYSTEM_DIR):
        if cand and formats._find(Path(cand), ["train-images-idx3-ubyte"]) is not None:
            return Path(cand)
    target = Path(data_dir or os.path.expanduser("~/.cache/ltzoo/fashion-mnist"))
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(target), download=True)
        return target
    except Exception as exc:  # offline, or torchvision's mirror unreachable
        raise FileNotFoundError(
            f"Fashion-MNIST IDX files not found in {data_dir or '(no --data-dir)'} nor {FMNIST_SYSTEM_DIR}, "
            f"and downloading failed ({exc}). Install Debian's package: apt-get install dataset-fashion-mnist"
        ) from exc


def _read_fmnist(data_dir, **_):
    train, test, names = formats.read_fmnist(_resolve_fmnist_dir(data_dir))
    return train, test, None, names


def _read_cifar(fine: bool):
    def read(data_dir, **_):
        train, test, names = formats.read_cifar(_require_dir(data_dir, "cifar100_lt" if fine else "cifar10_lt"), fine)
        return train, test, None, names
    return read


def _require_dir(data_dir: str | None, name: str) -> Path:
    if not data_dir:
        raise ValueError(f"dataset {name!r} needs --data-dir pointing at its files")
    path = Path(data_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"data dir {path} does not exist (dataset {name!r})")
    return path


def _read_lists(data_dir, train_list=None, val_list=None, test_list=None, spec: DatasetSpec = None, name="", **_):
    root = _require_dir(data_dir, name) if data_dir else Path(".")
    splits: list[Split | None] = []
    for split, given, default in zip(("train", "val", "test"), (train_list, val_list, test_list), spec.lists):
        path = Path(given) if given else (root / default if default else None)
        if path is None or (not given and not path.is_file()):
            splits.append(None)
        elif not path.is_file():
            raise FileNotFoundError(f"{name}: the {split} list {path} does not exist")
        else:
            splits.append(formats.read_split_list(path, root, split))
    train, val, test = splits
    if train is None:
        raise FileNotFoundError(
            f"{name}: no training list; pass --train-list or put {spec.lists[0]} in --data-dir "
            f"(the published lists: {', '.join(d for d in spec.lists if d)})"
        )
    num_classes = int(train.labels.max()) + 1
    return train, test, val, formats.class_names_from_paths(train, num_classes)


def _read_folder(data_dir, check: Callable[[Split], Split] = lambda split: split, **_):
    train, test, val, classes = formats.read_image_folder(_require_dir(data_dir, "imagefolder"))
    train, test, val = check(train), check(test), check(val)  # before decoding, which stops at a bad file
    return formats.decode_to_tensor(train), formats.decode_to_tensor(test), \
        None if val is None else formats.decode_to_tensor(val), classes


DATASETS: dict[str, DatasetSpec] = {
    # 10-class sets: 100 validation images per class, and shot cuts that split rho=100 into 4/3/3 classes
    "fmnist_lt": DatasetSpec(_read_fmnist, 100.0, val_per_class=100, shots=(1000, 200)),
    "cifar10_lt": DatasetSpec(_read_cifar(False), 100.0, val_per_class=100, shots=(1000, 200)),
    "cifar100_lt": DatasetSpec(_read_cifar(True), 100.0),
    "imagenet_lt": DatasetSpec(_read_lists, None, ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt"),
                               (3, 224, 224), val_per_class=0),
    "places_lt": DatasetSpec(_read_lists, None, ("Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"),
                             (3, 224, 224), val_per_class=0),
    "inat2018": DatasetSpec(_read_lists, None, ("iNaturalist18_train.txt", None, "iNaturalist18_val.txt"),
                            (3, 224, 224), val_per_class=0),
    "imagefolder": DatasetSpec(_read_folder, None),
}


def list_datasets() -> list[str]:
    """The dataset names `load_dataset` accepts (plus ``hf:<name or path>``)."""
    return sorted(DATASETS) + ["hf:<name or path>"]


def load_dataset(
    name: str,
    data_dir: str | None = None,
    imbalance: float | None = None,
    profile: str = "exp",
    seed: int = 0,
    val_per_class: int | None = None,
    n_max: int | None = None,
    train_list: str | None = None,
    val_list: str | None = None,
    test_list: str | None = None,
    require_test: bool = True,
    check_files: bool = True,
    skip_bad: bool = False,
) -> LTDataset:
    """Load a long-tailed dataset by name.

    Args:
        name: one of `list_datasets()`.
        data_dir: where its files are (Fashion-MNIST falls back to Debian's copy, then a download).
        imbalance: imbalance ratio rho of the long-tailed profile; None keeps the dataset's default
            (100 for the subsampled benchmarks, as-is for the others).
        profile: 'exp' or 'step'.
        seed: seed of the subsampling and of the validation draw.
        val_per_class: images per class in a validation split ltzoo has to draw itself; None takes
            the dataset's default (100 for 10-class sets, 20 otherwise, 0 for list datasets, whose
            validation split is the official val list).
        n_max: images kept in the largest class (subsampled datasets).
        train_list, val_list, test_list: split lists for the list datasets.
        require_test: if False, a dataset without a test split loads with an empty one (for
            inspecting class counts).
        check_files: check that every image file of a file-backed split exists and decodes, before
            anything else (see `ltzoo.data.check`).
        skip_bad: drop the files that fail that check instead of raising; ``info['skipped_files']``
            (in ``summary()``, hence in results.json) says how many per split.

    Returns:
        An `LTDataset` whose splits say where they came from (``split.source``).
    """
    skipped: dict[str, int] = {}

    def check(split: Split | None) -> Split | None:
        if check_files and split is not None and split.name not in skipped:
            split, skipped[split.name] = data_check.check_files(split, name, skip_bad=skip_bad)
        return split

    if name.startswith("hf:"):
        from ltzoo.data.hf import read_hf

        train, test, val, classes = read_hf(name[3:])
        spec = DatasetSpec(read_hf, None, val_per_class=0)
    elif name in DATASETS:
        spec = DATASETS[name]
        train, test, val, classes = spec.reader(
            data_dir, train_list=train_list, val_list=val_list, test_list=test_list, spec=spec, name=name,
            check=check)
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())}")
    if test is None and require_test:
        raise FileNotFoundError(f"{name}: no test split found; pass --test-list or put the test list in --data-dir")
    if test is None:
        test = train.subset(torch.zeros(0, dtype=torch.long), name="test", source="none")
    imbalance = spec.default_imbalance if imbalance is None else imbalance
    val_per_class = spec.val_per_class if val_per_class is None else val_per_class
    num_classes = len(classes)
    for split in (train, val, test):  # before any per-class indexing, which needs labels in range
        check_split_labels(name, split, num_classes)
    train, val, test = check(train), check(val), check(test)
    data_check.check_classes(name, classes, train, val, test)
    info = {"profile": None, "imbalance": None, "seed": seed}
    if imbalance is not None:
        train, val, info = _make_longtail(train, val, num_classes, imbalance, profile, seed, val_per_class, n_max)
    elif val is None and val_per_class > 0:
        train, val = _hold_out_val(train, num_classes, val_per_class, seed)
    info["shot_thresholds"] = {"many": spec.shots[0], "few": spec.shots[1]}
    if any(skipped.values()):
        info["skipped_files"] = {k: v for k, v in skipped.items() if v}
    ds = LTDataset(name, classes, train, val, test, _input_size(train, spec), *_mean_std(train), info=info)
    ds.check_labels()
    _logger.info("loaded %s: %d train / %d val / %d test images, %d classes", name, len(train),
                 0 if val is None else len(val), len(test), num_classes)
    return ds


def _make_longtail(train, val, num_classes, imbalance, profile, seed, val_per_class, n_max):
    full = train.counts(num_classes)
    need_val = val is None and val_per_class > 0
    if n_max is None:
        n_max = min(full) - (val_per_class if need_val else 0)
        if n_max < 1:
            raise ValueError(
                f"the smallest class has {min(full)} training images, too few to keep any after holding out a "
                f"balanced validation split of {val_per_class}/class; pass a val split or a smaller --val-per-class"
            )
    counts = longtail_counts(n_max, num_classes, imbalance, profile)
    kept, left = subsample_longtail(train.labels, counts, seed)
    source = f"{profile} profile, rho={imbalance:g}, n_max={n_max}, seed={seed}"
    if need_val:
        pool = train.subset(left)
        by_class = _shuffled_by_class(pool.labels, num_classes, seed)
        short = [c for c, i in enumerate(by_class) if len(i) < val_per_class]
        if short:
            raise ValueError(
                f"n_max={n_max} leaves {len(short)} classes fewer than {val_per_class} images for a balanced "
                f"validation split (e.g. class {short[0]}: {len(by_class[short[0]])}); lower n_max or --val-per-class"
            )
        val_idx = torch.cat([i[:val_per_class] for i in by_class])
        val = pool.subset(val_idx, name="val", source=f"balanced, {val_per_class}/class, drawn from the training "
                                                      "images the long-tail profile left out")
    info = {"profile": profile, "imbalance": imbalance, "n_max": n_max, "seed": seed, "train_source": source}
    return train.subset(kept, source=source), val, info


def _hold_out_val(train: Split, num_classes: int, per_class: int, seed: int) -> tuple[Split, Split]:
    by_class = _shuffled_by_class(train.labels, num_classes, seed)
    short = [c for c, i in enumerate(by_class) if 0 < len(i) <= per_class]
    if short:
        raise ValueError(
            f"{len(short)} classes have {per_class} or fewer training images, too few to hold out a balanced "
            f"validation split of {per_class}/class (e.g. class {short[0]}); pass a val split or a smaller --val-per-class"
        )
    val_idx = torch.cat([i[:per_class] for i in by_class])
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[val_idx] = False
    val = train.subset(val_idx, name="val", source=f"balanced, {per_class}/class, held out of the training set")
    return train.subset(torch.nonzero(keep).flatten()), val


def _shuffled_by_class(labels: torch.Tensor, num_classes: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed + 1)
    return [i[torch.randperm(len(i), generator=gen)] for i in class_indices(labels, num_classes)]


def _input_size(train: Split, spec: DatasetSpec) -> tuple[int, int, int]:
    if train.images is not None:
        return tuple(int(s) for s in train.images.shape[1:])
    return spec.input_size or (3, 224, 224)


def _mean_std(train: Split) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training images (ImageNet's for file-backed sets)."""
    if train.images is None:
        return IMAGENET_MEAN, IMAGENET_STD
    x = train.images[:50_000].float().div_(255)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())
