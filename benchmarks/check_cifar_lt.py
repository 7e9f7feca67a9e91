"""Check ltzoo's CIFAR-10/100-LT against the literature's construction (Cao et al. 2019, kaidic/LDAM-DRW).

    python benchmarks/check_cifar_lt.py [--rhos 100 50 10] [--step-rhos 100] [--keep DIR]

No CIFAR images are on these machines, so the script writes a CIFAR folder in torchvision's python
format (``cifar-10-batches-py/``, ``cifar-100-python/``) at the real sizes: 50,000 training images of
32x32, 5,000 (CIFAR-10) or 500 (CIFAR-100) per class, labels shuffled into a seeded order as in the real
batches, and random pixels (every image distinct, so an image names its index). Then, for each dataset
and imbalance ratio:

1. ``reference_lt`` reimplements ``IMBALANCECIFAR10/100`` of ``imbalance_cifar.py`` line for line
   (torchvision's reading of the batches, NumPy's global generator seeded with ``rand_number`` 0, a
   per-class in-place shuffle, the first n_c kept) and returns the indices each class keeps;
2. ``ltzoo.data.load_dataset(..., split_protocol="cao2019")`` builds the dataset; every training image
   is mapped back to its index in the folder, and the indices are compared class by class, in order, and
   the images and labels with the reference's stacked ``data`` and ``targets``;
3. the validation split is checked to hold only images the reference left out;
4. ltzoo's own protocol (``--split-protocol ltzoo``, the default of every other dataset, with its default
   validation split and with ``--val-per-class 0``) is compared the same way, counting the classes whose images
   differ.

Writes benchmarks/results/cifar_lt_check.{json,md}. Took 160 s on one CPU thread beside other jobs.
"""

from __future__ import annotations

import argparse
import pickle
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ltzoo.data import load_dataset
from ltzoo.files import atomic_path, write_json
from ltzoo.runfolder.provenance import git_commit

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "cifar_lt_check"
DATASETS = {"cifar10_lt": False, "cifar100_lt": True}  # name -> CIFAR-100 (fine labels)


# ------------------------------------------------------------------------------- the generated folder
def write_cifar(root: Path, fine: bool, n_train: int = 50_000, n_test: int = 10_000, seed: int = 0) -> Path:
    """A CIFAR folder in torchvision's python format: seeded label layout, random pixels; returns ``root``.
    Keys are str, as the real (Python 2) batches read under ``encoding="latin1"``."""
    rng = np.random.default_rng(seed + fine)
    num_classes = 100 if fine else 10

    def split(n: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.permutation(np.repeat(np.arange(num_classes), n // num_classes))
        return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), [int(y) for y in labels]

    def batch(x: np.ndarray, y: list[int], label: str) -> dict:
        d = {"batch_label": label, "data": x, "filenames": ["img.png"] * len(y)}
        if fine:
            return {**d, "fine_labels": y, "coarse_labels": [c // 5 for c in y]}
        return {**d, "labels": y}

    def dump(obj: dict, path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    (tr_x, tr_y), (te_x, te_y) = split(n_train), split(n_test)
    base = root / ("cifar-100-python" if fine else "cifar-10-batches-py")
    base.mkdir(parents=True, exist_ok=True)
    if fine:
        dump(batch(tr_x, tr_y, "training batch 1 of 1"), base / "train")
        dump(batch(te_x, te_y, "testing batch 1 of 1"), base / "test")
        dump(
            {
                "fine_label_names": [f"fine_{c:02d}" for c in range(100)],
                "coarse_label_names": [f"coarse_{c:02d}" for c in range(20)],
            },
            base / "meta",
        )
    else:
        for i, part in enumerate(np.array_split(np.arange(n_train), 5), 1):
            dump(batch(tr_x[part], [tr_y[j] for j in part], f"training batch {i} of 5"), base / f"data_batch_{i}")
        dump(batch(te_x, te_y, "testing batch 1 of 1"), base / "test_batch")
        dump({"label_names": [f"class_{c}" for c in range(10)]}, base / "batches.meta")
    return root


# ----------------------------------------------------------------------------- the reference, reimplemented
def read_cifar_train(root: Path, fine: bool) -> tuple[np.ndarray, list[int]]:
    """torchvision's CIFAR10/100(train=True): ``data`` (N, 32, 32, 3) uint8 and ``targets``, batch by batch.
    (Our own generated files: plain pickle is safe here; ltzoo's reader admits only numpy arrays.)"""
    base = root / ("cifar-100-python" if fine else "cifar-10-batches-py")
    data, targets = [], []
    for name in ["train"] if fine else [f"data_batch_{i}" for i in range(1, 6)]:
        with open(base / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data.append(entry["data"])
        targets.extend(entry["fine_labels"] if fine else entry["labels"])
    return np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1)), targets


def reference_counts(num_data: int, cls_num: int, imb_type: str, imb_factor: float) -> list[int]:
    """``get_img_num_per_cls`` of the reference."""
    img_max = num_data / cls_num
    img_num_per_cls = []
    if imb_type == "exp":
        for cls_idx in range(cls_num):
            num = img_max * (imb_factor ** (cls_idx / (cls_num - 1.0)))
            img_num_per_cls.append(int(num))
    elif imb_type == "step":
        for _cls_idx in range(cls_num // 2):
            img_num_per_cls.append(int(img_max))
        for _cls_idx in range(cls_num // 2):
            img_num_per_cls.append(int(img_max * imb_factor))
    else:
        img_num_per_cls.extend([int(img_max)] * cls_num)
    return img_num_per_cls


def reference_lt(
    targets, cls_num: int, imb_type: str = "exp", imb_factor: float = 0.01, rand_number: int = 0
) -> list[np.ndarray]:
    """The reference's ``__init__`` + ``gen_imbalanced_data``: the indices each class keeps, in its order.
    Uses NumPy's global generator, as the reference does (the caller's global state is restored)."""
    state = np.random.get_state()
    try:
        np.random.seed(rand_number)
        img_num_list = reference_counts(len(targets), cls_num, imb_type, imb_factor)
        targets_np = np.array(targets, dtype=np.int64)
        classes = np.unique(targets_np)
        picked = []
        for the_class, the_img_num in zip(classes, img_num_list):
            idx = np.where(targets_np == the_class)[0]
            np.random.shuffle(idx)
            picked.append(idx[:the_img_num])
        return picked
    finally:
        np.random.set_state(state)


# ------------------------------------------------------------------------------------------ the check
def image_index(data_nhwc: np.ndarray) -> dict[bytes, int]:
    """Each training image's bytes (in ltzoo's CHW layout) -> its index in the folder."""
    chw = np.ascontiguousarray(data_nhwc.transpose(0, 3, 1, 2))
    index = {chw[i].tobytes(): i for i in range(len(chw))}
    if len(index) != len(chw):
        raise ValueError("the generated images are not all distinct; an image cannot name its index")
    return index


def indices_of(split, index: dict[bytes, int]) -> np.ndarray:
    """The folder index of every image of a ltzoo split, in the split's order."""
    imgs = split.images.numpy()
    return np.array([index[imgs[i].tobytes()] for i in range(len(imgs))], dtype=np.int64)


def per_class(indices: np.ndarray, labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """``indices`` grouped by class, each group in the order it appears."""
    return [indices[labels[indices] == c] for c in range(num_classes)]


def check_one(
    root: Path, name: str, fine: bool, rho: float, profile: str = "exp", val_per_class: int | None = None
) -> dict:
    """Compare ltzoo's cao2019 and default protocols with the reference on one generated folder
    (``val_per_class``: of both protocols' validation splits; None: the dataset's default)."""
    data, targets = read_cifar_train(root, fine)
    labels = np.asarray(targets, dtype=np.int64)
    num_classes = 100 if fine else 10
    ref = reference_lt(targets, num_classes, profile, 1.0 / rho)
    ref_kept = np.concatenate(ref)
    index = image_index(data)

    ds = load_dataset(
        name, str(root), imbalance=rho, profile=profile, split_protocol="cao2019", val_per_class=val_per_class
    )
    got = indices_of(ds.train, index)
    got_by_class = per_class(got, labels, num_classes)
    same_order = [bool(np.array_equal(a, b)) for a, b in zip(got_by_class, ref)]
    ref_images = np.ascontiguousarray(data[ref_kept].transpose(0, 3, 1, 2))
    row = {
        "dataset": name,
        "rho": rho,
        "profile": profile,
        "num_classes": num_classes,
        "reference_train_images": int(len(ref_kept)),
        "cao2019_train_images": len(ds.train),
        "counts_equal": ds.train_counts == [len(r) for r in ref],
        "classes_same_images_in_order": int(sum(same_order)),
        "train_images_and_labels_equal_reference_data": bool(
            np.array_equal(ds.train.images.numpy(), ref_images)
            and np.array_equal(ds.train.labels.numpy(), labels[ref_kept])
        ),
    }
    if ds.val is not None:
        val = indices_of(ds.val, index)
        row.update(
            val_images=len(ds.val),
            val_per_class=ds.info["val_per_class"],
            val_absent_classes=ds.info["val_absent_classes"],
            val_disjoint_from_reference_train=not bool(np.isin(val, ref_kept).any()),
            val_counts_distinct=sorted({c for c in ds.val.counts(num_classes) if c}),
        )
    for tag, kw in (("ltzoo_default_val", {"val_per_class": val_per_class}), ("ltzoo_val0", {"val_per_class": 0})):
        d = load_dataset(name, str(root), imbalance=rho, profile=profile, split_protocol="ltzoo", **kw)
        by_class = per_class(indices_of(d.train, index), labels, num_classes)
        differ = sum(not np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(by_class, ref))
        row[f"{tag}_train_images"] = len(d.train)
        row[f"{tag}_classes_differing"] = int(differ)
    row["pass"] = bool(
        row["counts_equal"]
        and row["classes_same_images_in_order"] == num_classes
        and row["train_images_and_labels_equal_reference_data"]
        and row.get("val_disjoint_from_reference_train", True)
    )
    return row


def write_report(rows: list[dict], argv: list[str], seconds: float) -> None:
    rerun = "python benchmarks/check_cifar_lt.py " + " ".join(shlex.quote(a) for a in argv)
    meta = {
        "commit": git_commit(),
        "rerun": rerun.strip(),
        "seconds": round(seconds, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    write_json(OUT.with_suffix(".json"), {**meta, "rows": rows, "pass": all(r["pass"] for r in rows)})
    lines = [
        "# CIFAR-LT: ltzoo's cao2019 split against the reference construction",
        "",
        "Generated CIFAR folders in torchvision's python format, real sizes (50,000 training images, 32x32), "
        "labels in a seeded shuffled layout, random pixels. The reference is a line-for-line reimplementation of "
        "`imbalance_cifar.py` (kaidic/LDAM-DRW: NumPy's global seed `rand_number`=0, a per-class shuffle, the "
        "first n_c kept); ltzoo's images are mapped back to their index in the folder. `same images, in order`: "
        "classes whose kept indices equal the reference's, order included; `= reference data`: ltzoo's training "
        "images and labels equal the reference's stacked `data`/`targets` exactly. Validation: images per class, "
        "the classes without any (they keep all their images), and whether all come from the images the "
        "reference left out. The last columns: ltzoo's own protocol (`--split-protocol ltzoo`, the default of the "
        "other datasets), with its "
        "default validation split and with `--val-per-class 0`: training images, and classes whose images differ "
        "from the reference's.",
        "",
        "| dataset | profile, rho | train images (ref / cao2019) | same images, in order | = reference data | "
        "val (per class, "
        "absent classes, from leftovers) | ltzoo default: images, classes differing | ltzoo val 0: images, classes "
        "differing | pass |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        absent = r.get("val_absent_classes", [])
        absent = (
            f"classes {absent[0]}-{absent[-1]} ({len(absent)})"
            if len(absent) > 3 and absent == list(range(absent[0], absent[-1] + 1))
            else str(absent)
        )
        val = (
            f"{r['val_images']} ({r['val_per_class']}/class, absent {absent}, "
            f"{'yes' if r['val_disjoint_from_reference_train'] else 'NO'})"
            if "val_images" in r
            else "none"
        )
        lines.append(
            f"| {r['dataset']} | {r['profile']}, {r['rho']:g} | "
            f"{r['reference_train_images']:,} / {r['cao2019_train_images']:,} | "
            f"{r['classes_same_images_in_order']} / {r['num_classes']} | "
            f"{'yes' if r['train_images_and_labels_equal_reference_data'] else 'NO'} | {val} | "
            f"{r['ltzoo_default_val_train_images']:,}, "
            f"{r['ltzoo_default_val_classes_differing']} / {r['num_classes']} | "
            f"{r['ltzoo_val0_train_images']:,}, {r['ltzoo_val0_classes_differing']} / {r['num_classes']} | "
            f"{'PASS' if r['pass'] else 'FAIL'} |"
        )
    lines += [
        "",
        f"Re-run: `{meta['rerun']}` (commit {meta['commit']}, {meta['seconds']} s, "
        f"NumPy {meta['numpy']}; seconds taken beside other jobs).",
    ]
    with atomic_path(OUT.with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rhos", type=float, nargs="+", default=[100.0, 50.0, 10.0], help="imbalance ratios to check")
    p.add_argument("--step-rhos", type=float, nargs="*", default=[100.0], help="imbalance ratios of the step profile")
    p.add_argument("--keep", default=None, help="write the generated folders here (default: a temporary folder)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fine in DATASETS.items():
            root = write_cifar(Path(args.keep or tmp) / name, fine)
            for rho, profile in [(r, "exp") for r in args.rhos] + [(r, "step") for r in args.step_rhos]:
                rows.append(check_one(root, name, fine, rho, profile))
                print(rows[-1])
    write_report(rows, argv, time.perf_counter() - start)
    print(f"wrote {OUT.with_suffix('.md')}: {'PASS' if all(r['pass'] for r in rows) else 'FAIL'}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
