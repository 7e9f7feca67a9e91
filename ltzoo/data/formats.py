"""Readers for the standard on-disk formats of the long-tail benchmarks.

Each reader returns `Split`s with raw uint8 images in memory or file paths, and the class names. None
of them unpickles arbitrary objects: CIFAR's python batches go through a restricted unpickler that
admits only the builtin containers and numpy arrays they hold.
"""

from __future__ import annotations

import gzip
import logging
import pickle
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ltzoo.data.splits import Split

_logger = logging.getLogger(__name__)

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FMNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# --------------------------------------------------------------------------------------------- IDX
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST / Fashion-MNIST format), gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a truncated or corrupt .gz
        raise ValueError(
            f"{path} is not a readable gzip file ({exc}); it is truncated or corrupt, re-download it"
        ) from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number); re-download it")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header is cut short; re-download it")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        what = "truncated" if body.size < int(np.prod(shape)) else "corrupt (longer than its header says)"
        raise ValueError(f"{path} is {what}: expected {int(np.prod(shape))} values, found {body.size}; re-download it")
    return body.reshape(shape)


def _find(root: Path, stems: Sequence[str]) -> Path | None:
    for stem in stems:
        for cand in (
            root / stem,
            root / f"{stem}.gz",
            root / "raw" / stem,
            root / "raw" / f"{stem}.gz",
            root / "FashionMNIST" / "raw" / stem,
            root / "FashionMNIST" / "raw" / f"{stem}.gz",
        ):
            if cand.is_file():
                return cand
    return None


def read_fmnist(root: Path) -> tuple[Split, Split, list[str]]:
    """Fashion-MNIST from its IDX files (Debian's layout or torchvision's FashionMNIST/raw/)."""
    files = {}
    for key, stem in (
        ("train_x", "train-images-idx3-ubyte"),
        ("train_y", "train-labels-idx1-ubyte"),
        ("test_x", "t10k-images-idx3-ubyte"),
        ("test_y", "t10k-labels-idx1-ubyte"),
    ):
        files[key] = _find(root, [stem])
        if files[key] is None:
            raise FileNotFoundError(f"Fashion-MNIST file {stem}[.gz] not found under {root}")
    x_tr, y_tr = read_idx(files["train_x"]), read_idx(files["train_y"])
    x_te, y_te = read_idx(files["test_x"]), read_idx(files["test_y"])
    for x, y, split in ((x_tr, y_tr, "train"), (x_te, y_te, "test")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"Fashion-MNIST {split} files under {root} disagree: images {x.shape}, labels {y.shape}")
    train = Split("train", torch.from_numpy(y_tr.astype(np.int64)), images=torch.from_numpy(x_tr.copy())[:, None])
    test = Split(
        "test",
        torch.from_numpy(y_te.astype(np.int64)),
        images=torch.from_numpy(x_te.copy())[:, None],
        source="official test set",
    )
    return train, test, list(FMNIST_CLASSES)


# ------------------------------------------------------------------------------------------- CIFAR
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that admits only numpy arrays and builtin containers (CIFAR's python batches)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
        ("builtins", "bytes"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: not a CIFAR batch file")


def _load_cifar_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        try:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError) as exc:
            raise ValueError(
                f"{path} is not a valid CIFAR batch file ({exc or 'it ends early'}); re-download it"
            ) from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict; re-download it")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_python(root: Path, fine: bool) -> tuple[Split, Split, list[str]] | None:
    base = root / ("cifar-100-python" if fine else "cifar-10-batches-py")
    if not base.is_dir():
        return None
    train_files = ["train"] if fine else [f"data_batch_{i}" for i in range(1, 6)]
    test_file = "test" if fine else "test_batch"
    label_key = "fine_labels" if fine else "labels"

    def load(names: list[str], split: str) -> Split:
        xs, ys = [], []
        for n in names:
            d = _load_cifar_pickle(base / n)
            xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d[label_key], dtype=np.int64))
        return Split(split, torch.from_numpy(np.concatenate(ys)), images=torch.from_numpy(np.concatenate(xs)))

    meta = _load_cifar_pickle(base / ("meta" if fine else "batches.meta"))
    names = [
        n.decode() if isinstance(n, bytes) else str(n)  # bytes when the file was written by Python 3
        for n in meta["fine_label_names" if fine else "label_names"]
    ]
    return load(train_files, "train"), load([test_file], "test"), names


def _cifar_binary(root: Path, fine: bool) -> tuple[Split, Split, list[str]] | None:
    base = root / ("cifar-100-binary" if fine else "cifar-10-batches-bin")
    if not base.is_dir():
        return None
    train_files = ["train.bin"] if fine else [f"data_batch_{i}.bin" for i in range(1, 6)]
    test_file = "test.bin" if fine else "test_batch.bin"
    nlab = 2 if fine else 1

    def load(names: list[str], split: str) -> Split:
        raw = np.concatenate([np.fromfile(base / n, dtype=np.uint8) for n in names])
        if raw.size % (nlab + 3072):
            raise ValueError(f"{base}: file size is not a multiple of a CIFAR record; the files are corrupt")
        rec = raw.reshape(-1, nlab + 3072)
        return Split(
            split,
            torch.from_numpy(rec[:, nlab - 1].astype(np.int64)),
            images=torch.from_numpy(rec[:, nlab:].reshape(-1, 3, 32, 32).copy()),
        )

    meta = base / ("fine_label_names.txt" if fine else "batches.meta.txt")
    names = [s for s in meta.read_text().split("\n") if s.strip()] if meta.is_file() else None
    train, test = load(train_files, "train"), load([test_file], "test")
    return train, test, names or [str(i) for i in range(100 if fine else 10)]


def read_cifar(root: Path, fine: bool = False) -> tuple[Split, Split, list[str]]:
    """CIFAR-10/100 from torchvision's on-disk format (python batches) or the official binary one."""
    for reader in (_cifar_python, _cifar_binary):
        found = reader(root, fine)
        if found is not None:
            train, test, names = found
            test.source = "official test set"
            return train, test, names
    want = "cifar-100-python/ or cifar-100-binary/" if fine else "cifar-10-batches-py/ or cifar-10-batches-bin/"
    raise FileNotFoundError(
        f"CIFAR-{100 if fine else 10} not found under {root}: expected {want} there "
        "(torchvision.datasets.CIFAR10/100(root, download=True) writes that layout)"
    )


# ---------------------------------------------------------------------------------- split lists
def read_split_list(path: Path, root: Path, name: str) -> Split:
    """A split list of ``relative/path label`` lines (the format of ImageNet-LT, Places-LT, iNat)."""
    files, labels = [], []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{lineno}: expected 'relative/path label', got {line.strip()!r}")
            files.append(str(root / parts[0]))
            labels.append(int(parts[1]))
    if not labels:
        raise ValueError(f"{path} holds no 'path label' lines")
    return Split(name, torch.tensor(labels), files=files, source=f"split list {Path(path).name}")


def class_names_from_paths(split: Split, num_classes: int) -> list[str]:
    """Name each class after the folder its images sit in, when that is consistent; else its id."""
    names: dict[int, str] = {}
    for f, y in zip(split.files or [], split.labels.tolist()):
        names.setdefault(y, Path(f).parent.name)
    distinct = len(set(names.values())) == len(names)
    return [names.get(c, str(c)) if distinct else str(c) for c in range(num_classes)]


# ---------------------------------------------------------------------------------- image folder
def _scan_folder(split_dir: Path, classes: list[str], name: str) -> Split:
    files, labels = [], []
    for c, cls in enumerate(classes):
        d = split_dir / cls
        if not d.is_dir():
            continue
        found = sorted(p for p in d.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
        files += [str(p) for p in found]
        labels += [c] * len(found)
    unknown = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise ValueError(f"{split_dir} has class folders not in train/: {unknown[:5]}; every class needs train images")
    return Split(name, torch.tensor(labels, dtype=torch.long), files=files, source=f"folder {split_dir.name}/")


def read_image_folder(root: Path) -> tuple[Split, Split, Split | None, list[str]]:
    """An image folder: ``root/{train,test[,val]}/<class>/<image>``."""
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise FileNotFoundError(f"{root} must hold train/ and test/ (and optionally val/), one subfolder per class")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root / 'train'} has no class subfolders")
    val = _scan_folder(root / "val", classes, "val") if (root / "val").is_dir() else None
    return _scan_folder(root / "train", classes, "train"), _scan_folder(root / "test", classes, "test"), val, classes


def decode_to_tensor(split: Split, max_bytes: int = 1 << 30) -> Split:
    """Decode a file- or HF-backed split into a uint8 tensor when its images share one small size."""
    from PIL import Image

    arrays = []
    total = 0
    for i in range(len(split)):
        img = Image.open(split.files[i]) if split.files is not None else split.hf[i][split.hf_image_key]
        arr = np.asarray(img.convert("L" if img.mode in ("L", "1", "I", "I;16") else "RGB"))
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if arrays and arr.shape != arrays[0].shape:
            return split
        total += arr.nbytes
        if total > max_bytes:
            return split
        arrays.append(arr)
    if not arrays:
        return split
    return Split(split.name, split.labels, images=torch.from_numpy(np.stack(arrays)), source=split.source)
