"""Generators of small on-disk dataset fixtures, in the formats ltzoo's readers accept.

Every generator is deterministic given its ``seed`` and writes class-dependent images: each class has a
fixed random template (drawn from the class id alone, so it is the same in every split and every call)
and each image is that template plus a little noise, so a small model can learn to tell the classes apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "class_template",
    "class_images",
    "make_imagefolder",
    "make_cifar_python",
    "make_cifar_binary",
    "make_split_lists",
    "make_hf_dataset",
    "make_fmnist_idx",
    "write_idx",
]


def class_template(c: int, size: tuple[int, int] = (8, 8), channels: int = 3) -> np.ndarray:
    """The fixed uint8 (H, W, C) pattern of class ``c``: a random 0/255 pattern seeded by the class id."""
    rng = np.random.default_rng(10_007 + int(c))
    return (rng.random((size[0], size[1], channels)) < 0.5).astype(np.uint8) * 200 + 20


def class_images(
    c: int,
    n: int,
    size: tuple[int, int] = (8, 8),
    channels: int = 3,
    rng: np.random.Generator | None = None,
    noise: int = 20,
) -> np.ndarray:
    """``n`` uint8 images (N, H, W, C) of class ``c``: its template plus uniform noise in [-noise, noise]."""
    rng = rng or np.random.default_rng(0)
    base = class_template(c, size, channels).astype(np.int16)
    jitter = rng.integers(-noise, noise + 1, size=(n, size[0], size[1], channels), dtype=np.int16)
    return np.clip(base[None] + jitter, 0, 255).astype(np.uint8)


def _save_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr, mode="L" if arr.shape[-1] == 1 else "RGB").save(path)


def class_name(c: int, num_classes: int) -> str:
    return f"class_{c:0{max(2, len(str(num_classes - 1)))}d}"


def make_imagefolder(
    root, counts_per_split: dict[str, list[int]], size=(8, 8), channels: int = 3, seed: int = 0
) -> Path:
    """Write ``root/<split>/<class>/<i>.png`` for each split (e.g. train/val/test) of ``counts_per_split``.

    ``counts_per_split[split][c]`` images of class ``c``; class folders are ``class_00, class_01, ...``
    (so sorted order is class-id order); a class with count 0 gets no folder in that split. Returns ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, counts in counts_per_split.items():
        for c, n in enumerate(counts):
            if n <= 0:
                continue
            for i, img in enumerate(class_images(c, n, size, channels, rng)):
                _save_png(img, root / split / class_name(c, len(counts)) / f"{i:05d}.png")
    return root


# --------------------------------------------------------------------------------------------- CIFAR
def _labelled_images(counts: Sequence[int], size, channels, rng) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, C) and labels (N,) of ``counts[c]`` images per class, interleaved in a random order."""
    xs = [class_images(c, n, size, channels, rng) for c, n in enumerate(counts) if n > 0]
    ys = [np.full(n, c, dtype=np.int64) for c, n in enumerate(counts) if n > 0]
    x = np.concatenate(xs) if xs else np.zeros((0, *size, channels), np.uint8)
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    order = rng.permutation(len(y))
    return x[order], y[order]


def cifar_class_names(fine: bool) -> list[str]:
    """The class names the CIFAR fixtures write (CIFAR-10's real ones; ``fine_00..fine_99`` for CIFAR-100)."""
    if fine:
        return [f"fine_{c:02d}" for c in range(100)]
    return ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _cifar_arrays(fine: bool, n_train_per_class: int, n_test_per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    num_classes = 100 if fine else 10
    tr = _labelled_images([n_train_per_class] * num_classes, (32, 32), 3, rng)
    te = _labelled_images([n_test_per_class] * num_classes, (32, 32), 3, rng)
    # CIFAR stores each image as 3072 bytes: the 1024 red values, then green, then blue (row-major)
    flat = lambda x: np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), 3072))  # noqa: E731
    return (flat(tr[0]), tr[1]), (flat(te[0]), te[1])


def _pickle(obj, path: Path) -> None:
    import pickle

    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_cifar_python(root, fine: bool, n_train_per_class: int, n_test_per_class: int, seed: int = 0) -> Path:
    """Write torchvision's CIFAR layout: ``cifar-10-batches-py/`` (data_batch_1..5, test_batch,
    batches.meta) or ``cifar-100-python/`` (train, test, meta), pickled (protocol 2) dicts with bytes keys
    and a uint8 ``b'data'`` array of shape (N, 3072), like the real files. Returns the folder it wrote.

    Images are 32x32 RGB from :func:`class_images`; ``tests.fixtures.cifar_class_names(fine)`` are the names.
    """
    root = Path(root)
    (tr_x, tr_y), (te_x, te_y) = _cifar_arrays(fine, n_train_per_class, n_test_per_class, seed)
    names = cifar_class_names(fine)

    def batch(x, y, label):
        d = {
            b"batch_label": label.encode(),
            b"data": x,
            b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(y))],
        }
        if fine:
            d[b"fine_labels"] = [int(v) for v in y]
            d[b"coarse_labels"] = [int(v) // 5 for v in y]
        else:
            d[b"labels"] = [int(v) for v in y]
        return d

    if fine:
        base = root / "cifar-100-python"
        base.mkdir(parents=True, exist_ok=True)
        _pickle(batch(tr_x, tr_y, "training batch 1 of 1"), base / "train")
        _pickle(batch(te_x, te_y, "testing batch 1 of 1"), base / "test")
        _pickle(
            {
                b"fine_label_names": [n.encode() for n in names],
                b"coarse_label_names": [f"coarse_{c:02d}".encode() for c in range(20)],
            },
            base / "meta",
        )
    else:
        base = root / "cifar-10-batches-py"
        base.mkdir(parents=True, exist_ok=True)
        for i, part in enumerate(np.array_split(np.arange(len(tr_y)), 5), 1):
            _pickle(batch(tr_x[part], tr_y[part], f"training batch {i} of 5"), base / f"data_batch_{i}")
        _pickle(batch(te_x, te_y, "testing batch 1 of 1"), base / "test_batch")
        _pickle(
            {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": 10000, b"num_vis": 3072},
            base / "batches.meta",
        )
    return base


def make_cifar_binary(
    root, fine: bool, n_train_per_class: int, n_test_per_class: int, seed: int = 0, write_names: bool = True
) -> Path:
    """Write the official binary CIFAR layout: ``cifar-10-batches-bin/`` (data_batch_1..5.bin,
    test_batch.bin, batches.meta.txt) or ``cifar-100-binary/`` (train.bin, test.bin, fine_label_names.txt,
    coarse_label_names.txt). Records are ``<label> <3072 pixels>`` (CIFAR-10) or ``<coarse> <fine> <pixels>``
    (CIFAR-100). ``write_names=False`` leaves out the class-name files. Returns the folder it wrote.
    """
    root = Path(root)
    (tr_x, tr_y), (te_x, te_y) = _cifar_arrays(fine, n_train_per_class, n_test_per_class, seed)
    names = cifar_class_names(fine)

    def records(x, y) -> bytes:
        labels = np.stack([y // 5, y], 1) if fine else y[:, None]
        return np.concatenate([labels.astype(np.uint8), x], 1).tobytes()

    base = root / ("cifar-100-binary" if fine else "cifar-10-batches-bin")
    base.mkdir(parents=True, exist_ok=True)
    if fine:
        (base / "train.bin").write_bytes(records(tr_x, tr_y))
        (base / "test.bin").write_bytes(records(te_x, te_y))
        if write_names:
            (base / "fine_label_names.txt").write_text("\n".join(names) + "\n")
            (base / "coarse_label_names.txt").write_text("\n".join(f"coarse_{c:02d}" for c in range(20)) + "\n")
    else:
        for i, part in enumerate(np.array_split(np.arange(len(tr_y)), 5), 1):
            (base / f"data_batch_{i}.bin").write_bytes(records(tr_x[part], tr_y[part]))
        (base / "test_batch.bin").write_bytes(records(te_x, te_y))
        if write_names:
            (base / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    return base


# --------------------------------------------------------------------------------------- split lists
#: The published list names of the list datasets (train, val, test); None where the dataset has none.
LIST_NAMES = {
    "imagenet_lt": ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt"),
    "places_lt": ("Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"),
    "inat2018": ("iNaturalist18_train.txt", None, "iNaturalist18_val.txt"),
}


def make_split_lists(
    root, counts: dict[str, list[int]], dataset: str | None = None, size=(8, 8), channels: int = 3, seed: int = 0
) -> dict[str, Path]:
    """Write ImageNet-LT / Places-LT / iNaturalist style ``relative/path label`` lists and their images.

    Images go to ``root/<split>/<class>/<i>.png`` (class folders ``class_00, ...``); the list of split
    ``s`` (lines in a shuffled order) to ``root/<name>``, where ``name`` is the published list name of
    ``dataset`` (see `LIST_NAMES`; e.g. ``counts={'train': ..., 'test': ...}`` for ``inat2018``, whose
    'test' split is its official val list) or ``<split>.txt`` when ``dataset`` is None.
    Returns ``{split: list path}``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    order = ("train", "val", "test")
    out: dict[str, Path] = {}
    for split, per_class in counts.items():
        lines = []
        for c, n in enumerate(per_class):
            folder = f"{split}/{class_name(c, len(per_class))}"
            for i, img in enumerate(class_images(c, n, size, channels, rng)):
                _save_png(img, root / folder / f"{i:05d}.png")
                lines.append(f"{folder}/{i:05d}.png {c}")
        lines = [lines[i] for i in rng.permutation(len(lines))]
        if dataset is not None:
            name = LIST_NAMES[dataset][order.index(split)]
            if name is None:
                raise ValueError(f"{dataset} has no {split} list")
        else:
            name = f"{split}.txt"
        out[split] = root / name
        out[split].write_text("\n".join(lines) + "\n")
    return out


# ------------------------------------------------------------------------------------ Hugging Face
def make_hf_dataset(
    path,
    counts: dict[str, list[int]],
    size=(8, 8),
    channels: int = 3,
    seed: int = 0,
    image_column: str = "image",
    label_column: str = "label",
) -> Path:
    """Save a `datasets.DatasetDict` (``save_to_disk``) with an ``Image()`` and a ``ClassLabel`` column.

    ``counts`` maps split names ('train', 'validation', 'test', ...) to images per class; the class
    names are ``class_00, ...``. Returns ``path``.
    """
    import datasets
    from PIL import Image

    path = Path(path)
    rng = np.random.default_rng(seed)
    num_classes = max(len(v) for v in counts.values())
    features = datasets.Features(
        {
            image_column: datasets.Image(),
            label_column: datasets.ClassLabel(names=[class_name(c, num_classes) for c in range(num_classes)]),
        }
    )
    splits = {}
    for split, per_class in counts.items():
        x, y = _labelled_images(per_class, size, channels, rng)
        images = [Image.fromarray(a[..., 0] if channels == 1 else a, mode="L" if channels == 1 else "RGB") for a in x]
        splits[split] = datasets.Dataset.from_dict(
            {image_column: images, label_column: [int(v) for v in y]}, features=features
        )
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return path


# ------------------------------------------------------------------------------------ Fashion-MNIST
def write_idx(path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzipped when ``path`` ends with .gz)."""
    import gzip
    import struct

    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def make_fmnist_idx(
    root, n_per_class: int, n_test_per_class: int | None = None, seed: int = 0, gz: bool = True, layout: str = "debian"
) -> Path:
    """Write Fashion-MNIST's four IDX files with ``n_per_class`` 28x28 training images per class (10 classes)
    and ``n_test_per_class`` test images (default ``max(1, n_per_class // 6)``).

    ``layout='debian'`` writes them in ``root`` (like /usr/share/datasets/fashion-mnist), ``'torchvision'``
    in ``root/FashionMNIST/raw``; ``gz`` gzips them. Returns ``root``.
    """
    root = Path(root)
    base = root if layout == "debian" else root / "FashionMNIST" / "raw"
    n_test = max(1, n_per_class // 6) if n_test_per_class is None else n_test_per_class
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_per_class), ("t10k", n_test)):
        x, y = _labelled_images([n] * 10, (28, 28), 1, rng)
        write_idx(base / f"{prefix}-images-idx3-ubyte{ext}", x[..., 0])
        write_idx(base / f"{prefix}-labels-idx1-ubyte{ext}", y)
    return root
