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

A dataset made long-tailed by a profile takes a class order (``class_order``, see
`ltzoo.data.profiles.resolve_class_order`): which class keeps the most images, which the fewest. Its
validation split is drawn from the images the dataset's own order leaves out, and the training set
keeps each class's images from the same seeded permutation, skipping the validation ones; so every
class order validates on the same images, and the own order's draw is the one it always was.

Many / medium / few-shot cut-offs are chosen for the training counts (`ltzoo.metrics.shots`: the
literature's >100 / <20 where they fit, thirds of the log-count range otherwise) unless ``shot_cuts``
gives them.

``split_protocol='cao2019'`` builds a subsampled dataset as Cao et al. (LDAM-DRW, 2019) built CIFAR-10/100-LT,
the same counts and the same images (`ltzoo.data.cifar_lt`): 12,406 training images for CIFAR-10-LT and
10,847 for CIFAR-100-LT at rho=100, whatever the seed; its validation split comes from the images that
construction leaves out, and the head class, which keeps all its images, has none there.

- ``fmnist_source5`` and ``fmnist_target5_lt``: Fashion-MNIST's first five classes, balanced and whole, and
  its last five made long-tailed (rho 100), the source and target tasks of benchmarks/transfer.py.
- ``fmnist_ctx_lt``: ``fmnist_lt`` in RGB with an irrelevant background context, fixed per class in the
  tail half of the training set (see `ltzoo.data.fmnist_ctx_lt`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ltzoo.data import check as data_check
from ltzoo.data import formats
from ltzoo.data.cifar_lt import REFERENCE_SEED, cao2019_counts, cao2019_select, validation_from_leftovers
from ltzoo.data.fmnist_ctx_lt import add_context
from ltzoo.data.profiles import (
    class_indices,
    counts_in_class_order,
    longtail_counts,
    resolve_class_order,
    subsample_longtail,
)
from ltzoo.data.splits import LTDataset, Split, check_split_labels
from ltzoo.metrics.shots import check_shot_cuts, choose_shot_cuts

_logger = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FMNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
#: how a dataset made long-tailed by a profile picks its images: ltzoo's own draw, or Cao et al.'s construction
SPLIT_PROTOCOLS = ("ltzoo", "cao2019")


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one named dataset."""

    reader: Callable[..., tuple[Split, Split, Split | None, list[str]]]
    default_imbalance: float | None
    lists: tuple[str | None, str | None, str | None] = (None, None, None)
    input_size: tuple[int, int, int] | None = None
    val_per_class: int = 20  # images per class of a validation split ltzoo draws itself (0: none)
    shots: tuple[int, int] | None = None  # fixed (many, few) shot cuts; None: chosen for the data (ltzoo.metrics.shots)
    display_name: str = ""  # how cards name it
    hub_id: str | None = None  # the Hub dataset its images come from (cards link it), if there is one
    finish: Callable | None = None  # (train, val, test, num_classes, info) -> (train, val, test), after long-tailing
    #: how a profile picks the images by default: the literature's construction for a dataset that bears its name
    split_protocol: str = "ltzoo"


def default_split_protocol(name: str) -> str:
    """How ``name`` picks its long-tailed images unless told: 'cao2019' for the CIFAR-LT datasets (the images the
    literature trains on), 'ltzoo' for every other dataset."""
    spec = DATASETS.get(name)
    return spec.split_protocol if spec is not None else "ltzoo"


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


def _read_fmnist_classes(classes: Sequence[int]):
    """A reader of the Fashion-MNIST classes ``classes`` only, relabelled 0..len-1 in that order (the transfer
    benchmark's source and target tasks, benchmarks/transfer.py)."""

    def read(data_dir, **_):
        train, test, names = formats.read_fmnist(_resolve_fmnist_dir(data_dir))
        return _keep_classes(train, classes), _keep_classes(test, classes), None, [names[c] for c in classes]

    return read


def _keep_classes(split: Split, classes: Sequence[int]) -> Split:
    index = torch.cat([torch.nonzero(split.labels == c).flatten() for c in classes]).sort().values
    kept = split.subset(index)
    relabel = torch.full((int(split.labels.max()) + 1,), -1, dtype=torch.long)
    relabel[torch.as_tensor(list(classes))] = torch.arange(len(classes))
    kept.labels = relabel[kept.labels]
    return kept


def _read_cifar(fine: bool):
    def read(data_dir, **_):
        train, test, names = formats.read_cifar(_require_dir(data_dir, "cifar100_lt" if fine else "cifar10_lt"), fine)
        return train, test, None, names

    return read


#: What --data-dir holds, by reader: the fix of a --data-dir that is missing or not a folder.
_DATA_DIR_HOLDS = {
    "imagefolder": "the folder that holds train/ and test/ (one subfolder per class; docs/data.md)",
    "cifar10_lt": "the folder that holds cifar-10-batches-py/ or cifar-10-batches-bin/ (docs/cifar-lt.md)",
    "cifar100_lt": "the folder that holds cifar-100-python/ or cifar-100-binary/ (docs/cifar-lt.md)",
}


def _require_dir(data_dir: str | None, name: str) -> Path:
    holds = _DATA_DIR_HOLDS.get(name, "the root folder the paths of the split lists start from (docs/data.md)")
    if not data_dir:
        raise ValueError(f"dataset {name!r} needs --data-dir pointing at its files; pass --data-dir {holds}")
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data dir {data_dir} does not exist (dataset {name!r}); pass --data-dir {holds}")
    if not path.is_dir():
        raise FileNotFoundError(
            f"data dir {data_dir} is a file, not a folder (dataset {name!r}); pass --data-dir {holds}"
        )
    return path


def _read_lists(data_dir, train_list=None, val_list=None, test_list=None, spec: DatasetSpec = None, name="", **_):
    root = _require_dir(data_dir, name) if data_dir else Path(".")
    splits: list[Split | None] = []
    for split, given, default in zip(("train", "val", "test"), (train_list, val_list, test_list), spec.lists):
        path = Path(given) if given else (root / default if default else None)
        if path is None or (not given and not path.is_file()):
            splits.append(None)
        elif not path.is_file():
            raise FileNotFoundError(
                f"{name}: the {split} list {path} does not exist; pass --{split}-list the `path label` list of the "
                f"{split} images (the published lists: docs/data.md)"
            )
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
    return (
        formats.decode_to_tensor(train),
        formats.decode_to_tensor(test),
        None if val is None else formats.decode_to_tensor(val),
        classes,
    )


DATASETS: dict[str, DatasetSpec] = {
    # 10-class sets: 100 validation images per class
    "fmnist_lt": DatasetSpec(
        _read_fmnist, 100.0, val_per_class=100, display_name="Fashion-MNIST-LT", hub_id="zalando-datasets/fashion_mnist"
    ),
    "fmnist_ctx_lt": DatasetSpec(
        _read_fmnist,
        100.0,
        val_per_class=100,
        finish=add_context,
        display_name="Fashion-MNIST-LT with irrelevant contexts",
    ),
    # the transfer benchmark (benchmarks/transfer.py): Fashion-MNIST's classes 0-4 (T-shirt/top, Trouser, Pullover,
    # Dress, Coat) balanced, all their training images, as the source task; classes 5-9 (Sandal, Shirt, Sneaker,
    # Bag, Ankle boot) long-tailed as the target
    "fmnist_source5": DatasetSpec(
        _read_fmnist_classes((0, 1, 2, 3, 4)), None, val_per_class=0, display_name="Fashion-MNIST classes 0-4"
    ),
    "fmnist_target5_lt": DatasetSpec(
        _read_fmnist_classes((5, 6, 7, 8, 9)), 100.0, val_per_class=100, display_name="Fashion-MNIST-LT classes 5-9"
    ),
    "cifar10_lt": DatasetSpec(
        _read_cifar(False),
        100.0,
        val_per_class=100,
        display_name="CIFAR-10-LT",
        hub_id="uoft-cs/cifar10",
        split_protocol="cao2019",
    ),
    "cifar100_lt": DatasetSpec(
        _read_cifar(True), 100.0, display_name="CIFAR-100-LT", hub_id="uoft-cs/cifar100", split_protocol="cao2019"
    ),
    "imagenet_lt": DatasetSpec(
        _read_lists,
        None,
        ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt"),
        (3, 224, 224),
        val_per_class=0,
        display_name="ImageNet-LT",
        hub_id="ILSVRC/imagenet-1k",
    ),
    "places_lt": DatasetSpec(
        _read_lists,
        None,
        ("Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"),
        (3, 224, 224),
        val_per_class=0,
        display_name="Places-LT",
    ),
    "inat2018": DatasetSpec(
        _read_lists,
        None,
        ("iNaturalist18_train.txt", None, "iNaturalist18_val.txt"),
        (3, 224, 224),
        val_per_class=0,
        display_name="iNaturalist 2018",
    ),
    "imagefolder": DatasetSpec(_read_folder, None, display_name="image folder"),
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
    class_order: str | Sequence[str | int] | None = None,
    shot_cuts: Sequence[int] | None = None,
    check_files: bool = True,
    skip_bad: bool = False,
    split_protocol: str | None = None,
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
        class_order: which class keeps the most images under the profile, which the fewest: None or
            'own' (the dataset's order), 'reverse', 'random:<seed>', a named order ('hard_tail' for
            Fashion-MNIST's classes) or a list of every class, by name or index, most images first.
            Only for datasets made long-tailed by a profile; labels and class names do not change.
        shot_cuts: ``(many, few)``: many-shot classes have more than ``many`` training images, few-shot
            fewer than ``few``; None chooses them for the training counts (`ltzoo.metrics.shots`).
        check_files: check that every image file of a file-backed split exists and decodes, before
            anything else (see `ltzoo.data.check`).
        skip_bad: drop the files that fail that check instead of raising; ``info['skipped_files']``
            (in ``summary()``, hence in results.json) says how many per split.
        split_protocol: for a dataset made long-tailed by a profile: 'ltzoo' (a seeded draw that holds a
            balanced validation split out first) or 'cao2019' (Cao et al.'s CIFAR-LT construction, the
            literature's images, validation from the leftovers; `ltzoo.data.cifar_lt`). None: the dataset's
            own (`default_split_protocol`: 'cao2019' for cifar10_lt and cifar100_lt, 'ltzoo' for the others).

    Returns:
        An `LTDataset` whose splits say where they came from (``split.source``).
    """
    split_protocol = split_protocol or default_split_protocol(name)
    if split_protocol not in SPLIT_PROTOCOLS:
        raise ValueError(f"unknown split protocol {split_protocol!r}; choose one of {', '.join(SPLIT_PROTOCOLS)}")
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
            data_dir, train_list=train_list, val_list=val_list, test_list=test_list, spec=spec, name=name, check=check
        )
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())}")
    if test is None and require_test:
        raise FileNotFoundError(f"{name}: no test split found; pass --test-list or put the test list in --data-dir")
    if test is None:
        test = train.subset(torch.zeros(0, dtype=torch.long), name="test", source="none")
    imbalance = spec.default_imbalance if imbalance is None else imbalance
    val_rule = None
    if val_per_class is None and val is None and imbalance is None:  # a folder used as is, no val split given
        val_per_class, val_rule = default_val_per_class(train.counts(len(classes)), spec.val_per_class)
    val_per_class = spec.val_per_class if val_per_class is None else val_per_class
    num_classes = len(classes)
    for split in (train, val, test):  # before any per-class indexing, which needs labels in range
        check_split_labels(name, split, num_classes)
    train, val, test = check(train), check(val), check(test)
    data_check.check_classes(name, classes, train, val, test)
    info = {"profile": None, "imbalance": None, "seed": seed, "class_order": None, "class_order_classes": None}
    if imbalance is not None and split_protocol == "cao2019":
        train, val, info = _make_cao2019(
            name, train, val, classes, imbalance, profile, val_per_class, n_max, class_order
        )
    elif split_protocol == "cao2019":
        raise ValueError(
            f"{name}: --split-protocol cao2019 subsamples a balanced training set, and {name} is used "
            "as it is; pass --imbalance, or drop --split-protocol"
        )
    elif imbalance is not None:
        train, val, info = _make_longtail(
            train, val, classes, imbalance, profile, seed, val_per_class, n_max, class_order
        )
    elif class_order not in (None, "own"):
        raise ValueError(
            f"{name}: a class order applies to data made long-tailed by a profile, and {name} is used "
            "as it is; pass --imbalance to subsample it, or drop --class-order"
        )
    elif val is None and val_per_class > 0:
        train, val = _hold_out_val(train, num_classes, val_per_class, seed)
    if val_rule is not None:
        info["val_rule"] = val_rule
    if val is not None:
        info["val_resolution"] = val_resolution(val.counts(num_classes))
    info.update(_shot_cuts(train.counts(num_classes), shot_cuts, spec, name))
    if spec.finish is not None:
        train, val, test = spec.finish(train, val, test, num_classes, info)
    if any(skipped.values()):
        info["skipped_files"] = {k: v for k, v in skipped.items() if v}
    ds = LTDataset(name, classes, train, val, test, _input_size(train, spec), *_mean_std(train), info=info)
    ds.check_labels()
    _logger.info(
        "loaded %s: %d train / %d val / %d test images, %d classes",
        name,
        len(train),
        0 if val is None else len(val),
        len(test),
        num_classes,
    )
    return ds


def _make_longtail(train, val, classes, imbalance, profile, seed, val_per_class, n_max, class_order):
    num_classes = len(classes)
    ranked, order_name = resolve_class_order(class_order, classes)
    full = train.counts(num_classes)
    need_val = val is None and val_per_class > 0
    if n_max is None:
        n_max = min(full) - (val_per_class if need_val else 0)
        if n_max < 1:
            raise ValueError(
                f"the smallest class has {min(full)} training images, too few to keep any after holding out a "
                f"balanced validation split of {val_per_class}/class; pass a val split or a smaller --val-per-class"
            )
    own_counts = longtail_counts(n_max, num_classes, imbalance, profile)  # class ranked r keeps own_counts[r]
    source = f"{profile} profile, rho={imbalance:g}, n_max={n_max}, seed={seed}"
    if order_name != "own":
        source += f", class order {order_name}"
    val_idx = None
    if need_val:  # from what the own order leaves out: the same validation images for every class order
        val_idx = _draw_val(
            train, subsample_longtail(train.labels, own_counts, seed)[1], num_classes, val_per_class, seed, n_max
        )
        val = train.subset(
            val_idx,
            name="val",
            source=f"balanced, {val_per_class}/class, drawn from the training images the long-tail profile left out",
        )
    kept, _ = subsample_longtail(train.labels, counts_in_class_order(own_counts, ranked), seed, exclude=val_idx)
    info = {
        "profile": profile,
        "imbalance": imbalance,
        "n_max": n_max,
        "seed": seed,
        "split_protocol": "ltzoo",
        "train_source": source,
        "class_order": order_name,
        "class_order_classes": [classes[c] for c in ranked],
    }
    return train.subset(kept, source=source), val, info


def _make_cao2019(name, train, val, classes, imbalance, profile, val_per_class, n_max, class_order):
    """Cao et al.'s construction (`ltzoo.data.cifar_lt`): its counts, its images, in its order."""
    num_classes = len(classes)
    full = train.counts(num_classes)
    if class_order not in (None, "own"):
        raise ValueError(
            f"{name}: --split-protocol cao2019 is the reference's construction, in the dataset's own "
            "class order; drop --class-order, or use --split-protocol ltzoo"
        )
    if len(set(full)) != 1:
        raise ValueError(
            f"{name}: --split-protocol cao2019 subsamples a balanced training set, and this one has "
            f"{min(full)} to {max(full)} images per class; use --split-protocol ltzoo"
        )
    if n_max is not None and n_max != full[0]:
        raise ValueError(
            f"{name}: cao2019 keeps all {full[0]} images of the largest class, as the reference does; "
            "drop n_max, or use --split-protocol ltzoo"
        )
    counts = cao2019_counts(full[0], num_classes, imbalance, profile)
    kept = torch.from_numpy(np.concatenate(cao2019_select(train.labels.numpy(), counts, REFERENCE_SEED)))
    source = (
        f"cao2019: Cao et al.'s CIFAR-LT construction, {profile} profile, rho={imbalance:g}, "
        f"n_max={full[0]}, NumPy seed {REFERENCE_SEED} (the reference's rand_number, whatever --seed)"
    )
    info = {
        "profile": profile,
        "imbalance": imbalance,
        "n_max": full[0],
        "seed": REFERENCE_SEED,
        "split_protocol": "cao2019",
        "train_source": source,
        "class_order": "own",
        "class_order_classes": list(classes),
    }
    if val is None and val_per_class > 0:
        val_idx, absent, k = validation_from_leftovers(train.labels, kept, num_classes, val_per_class, REFERENCE_SEED)
        info.update(val_per_class=k, val_absent_classes=absent)
        if k == 0:
            _logger.warning(
                "%s: cao2019 keeps every training image at rho=%g, so there is no validation split", name, imbalance
            )
        else:
            val = train.subset(
                val_idx,
                name="val",
                source=(
                    f"{k}/class from the training images cao2019 left out, "
                    f"over the {num_classes - len(absent)} classes "
                    f"with any left; none of classes {absent[:10]}{' ...' if len(absent) > 10 else ''}, which keep all "
                    "their images"
                ),
            )
    return train.subset(kept, source=source), val, info


def _draw_val(
    train: Split, left: torch.Tensor, num_classes: int, per_class: int, seed: int, n_max: int
) -> torch.Tensor:
    """``per_class`` seeded images of each class among ``left`` (indices into ``train``)."""
    by_class = _shuffled_by_class(train.labels[left], num_classes, seed)
    short = [c for c, i in enumerate(by_class) if len(i) < per_class]
    if short:
        raise ValueError(
            f"n_max={n_max} leaves {len(short)} classes fewer than {per_class} images for a balanced "
            f"validation split (e.g. class {short[0]}: {len(by_class[short[0]])}); lower n_max or --val-per-class"
        )
    return left[torch.cat([i[:per_class] for i in by_class])]


def _shot_cuts(counts: list[int], given: Sequence[int] | None, spec: DatasetSpec, name: str) -> dict:
    if given is not None:
        many, few = check_shot_cuts(given)
        rule = "given"
    elif spec.shots is not None:
        (many, few), rule = spec.shots, f"{name}'s fixed cuts"
    else:
        many, few, rule = choose_shot_cuts(counts)
    return {"shot_thresholds": {"many": many, "few": few}, "shot_rule": rule}


#: At most this share of the smallest class is held out when an unset --val-per-class meets a small class.
VAL_SHARE_OF_SMALLEST = 4


def default_val_per_class(train_counts: list[int], usual: int) -> tuple[int, str]:
    """Validation images per class to hold out of a dataset used as is, when --val-per-class is unset.

    ``usual`` (20) while every class has more; else a quarter of the smallest class (rounded down): each
    class keeps at least three quarters of its images to train on, and the run goes on (with no validation
    split, its last epoch kept, where the smallest class has fewer than 4). Returns the count and its rule.
    """
    smallest = min((n for n in train_counts if n > 0), default=0)
    if smallest > usual:
        return usual, f"{usual}/class (the default; the smallest class has {smallest} training images)"
    per = smallest // VAL_SHARE_OF_SMALLEST
    return per, (
        f"{per}/class: a quarter of the smallest class's {smallest} training images, so that every class "
        f"keeps at least three quarters to train on (the usual {usual}/class does not fit; --val-per-class "
        f"sets it)"
        if per
        else f"none: the smallest class has {smallest} training images, too few to hold any out (the last "
        f"epoch is kept; --val-per-class or a val split gives one)"
    )


def validation_lines(info: dict) -> list[str]:
    """The ``validation: ...`` lines of a dataset's ``info``: the rule that sized a validation split held out of a
    dataset used as is (`default_val_per_class`), and how coarse the split is (`val_resolution`); the lines a
    recipe prints when it loads the data, and ``ltzoo data``."""
    return [f"validation: {info[note]}" for note in ("val_rule", "val_resolution") if info.get(note)]


def val_resolution(val_counts: list[int]) -> str:
    """How coarse a validation split is: the step of a class's recall, and so of the epoch choice it makes."""
    fewest = min(val_counts) if val_counts else 0
    if fewest == 0:
        return "a class has no validation image: its recall, and HM/GM, are undefined or 0 on validation"
    return (
        f"{fewest} validation images in the smallest class: its recall moves in steps of {1 / fewest:.0%}, "
        f"so epochs are told apart only by differences that coarse"
    )


def _hold_out_val(train: Split, num_classes: int, per_class: int, seed: int) -> tuple[Split, Split]:
    by_class = _shuffled_by_class(train.labels, num_classes, seed)
    short = [c for c, i in enumerate(by_class) if 0 < len(i) <= per_class]
    if short:
        raise ValueError(
            f"{len(short)} classes have {per_class} or fewer training images, too few to hold out a balanced "
            f"validation split of {per_class}/class (e.g. class {short[0]}); "
            "pass a val split or a smaller --val-per-class"
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
