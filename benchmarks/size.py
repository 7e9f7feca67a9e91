"""Size benchmark: ltzoo's defaults against a class-balanced linear baseline, from 50 to 6,000 images per head class.

    python benchmarks/size.py                               # the grid (what is missing), then the table and plot
    python benchmarks/size.py --n-max 200 --rho 20 --seeds 0 --starts scratch
    python benchmarks/size.py --only-table

Each cell is a Fashion-MNIST image folder (PNG files, ``train/<class>/``, ``test/<class>/``, no ``val/``: ltzoo
holds its validation images out of train/ itself) made long-tailed with the exponential profile: the largest class
``n_max`` images, the smallest ``n_max / rho``, the classes' order drawn from the seed. Test: 500 images per class
from Fashion-MNIST's test split. Two starts:

- ``scratch``: all ten classes, ``ltzoo.recipes.btm --dataset imagefolder --data-dir D`` (no other flag);
- ``transfer``: the five classes 5-9, ``btm --init SOURCE --new-head`` from the transfer benchmark's source model
  (a resnet20_cifar trained on classes 0-4, benchmarks/transfer.py; trained here first if missing);
- ``lora``: the same with ``--peft lora`` (LoRA stage 1 and LoRA members, at their default rates).

Every run uses ltzoo's defaults only (plus --no-progress and the run folder); the linear baseline is the one every
run reports (``results.json["baseline"]``: scikit-learn's class-balanced logistic regression on the pixels from
scratch, on the source model's frozen features from it). Rows: test HM, accuracy and min recall of the exported
model and of the baseline, the run's wall time. Output: benchmarks/results/size.{json,md,png}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BASE = ROOT / "runs" / "size"
FMNIST = Path("/usr/share/datasets/fashion-mnist")
NAMES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
N_MAX = (50, 200, 1000, 6000)
RHOS = (20, 100)
SEEDS = (0, 1, 2)
STARTS = ("scratch", "transfer", "lora")
CLASSES = {"scratch": list(range(10)), "transfer": [5, 6, 7, 8, 9], "lora": [5, 6, 7, 8, 9]}
TITLES = {
    "scratch": "from scratch (10 classes)",
    "transfer": "--init SOURCE --new-head (5 classes)",
    "lora": "--init SOURCE --new-head --peft lora",
}
TEST_PER_CLASS = 500
#: one thread per run: the benchmark shares a 2-core machine (the results do not depend on it, the seconds do)
THREADS = int(os.environ.get("SIZE_THREADS", "1"))
SOURCE = ROOT / "runs" / "transfer" / "source" / "resnet20_cifar"


def read_idx(name: str) -> np.ndarray:
    path = next(p for p in (FMNIST / name, FMNIST / f"{name}.gz") if p.exists())
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def longtail_counts(n_max: int, rho: float, k: int) -> list[int]:
    return [max(1, int(n_max * rho ** (-i / (k - 1)))) for i in range(k)]


def make_folder(root: Path, classes: list[int], n_max: int, rho: float, seed: int) -> dict:
    """A long-tailed PNG image folder of the Fashion-MNIST ``classes``; returns its class counts."""
    from PIL import Image

    done = root / "counts.json"
    if done.is_file():
        return json.loads(done.read_text())
    rng = np.random.default_rng(seed)
    xtr, ytr = read_idx("train-images-idx3-ubyte"), read_idx("train-labels-idx1-ubyte")
    xte, yte = read_idx("t10k-images-idx3-ubyte"), read_idx("t10k-labels-idx1-ubyte")
    order = list(rng.permutation(classes))
    counts = dict(zip(order, longtail_counts(n_max, rho, len(classes))))
    tmp = root.with_name(root.name + ".tmp")
    for split, x, y, per in (("train", xtr, ytr, counts), ("test", xte, yte, dict.fromkeys(classes, TEST_PER_CLASS))):
        for c in classes:
            idx = rng.choice(np.nonzero(y == c)[0], per[c], replace=False)
            folder = tmp / split / NAMES[c]
            folder.mkdir(parents=True, exist_ok=True)
            for i in idx:
                Image.fromarray(x[i]).save(folder / f"{i}.png")
    record = {NAMES[c]: int(n) for c, n in counts.items()}
    (tmp / "counts.json").write_text(json.dumps(record))
    os.replace(tmp, root)
    return record


def make_digits_folder(root: Path, classes: list[int], n_max: int | None, rho: float, seed: int) -> dict:
    """scikit-learn's 8x8 digits (bundled with it, no download) as a PNG image folder: the ``classes``, long-tailed
    (``n_max`` None: balanced, 100 per class) in train/, the rest of their images in test/."""
    from PIL import Image
    from sklearn.datasets import load_digits

    done = root / "counts.json"
    if done.is_file():
        return json.loads(done.read_text())
    digits = load_digits()
    x = np.clip(digits.images * 16, 0, 255).astype(np.uint8)  # 0..16 -> 0..255
    y = digits.target
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(classes))
    counts = dict(zip(order, longtail_counts(n_max, rho, len(classes)))) if n_max else dict.fromkeys(classes, 100)
    tmp = root.with_name(root.name + ".tmp")
    for c in classes:
        idx = rng.permutation(np.nonzero(y == c)[0])
        for split, part in (("train", idx[: counts[c]]), ("test", idx[100:])):
            folder = tmp / split / f"digit{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                Image.fromarray(x[i]).save(folder / f"{i}.png")
    record = {f"digit{c}": int(n) for c, n in counts.items()}
    (tmp / "counts.json").write_text(json.dumps(record))
    os.replace(tmp, root)
    return record


DIGITS_SOURCE = BASE / "digits" / "source"


def run_digits(seed: int, log) -> None:
    """The issue's second data set, never tuned on: digits 5-9 at rho 10 (100 down to 10 training images), from
    scratch and from a model trained on digits 0-4 (ltzoo's defaults: `pretrain` on a balanced folder)."""
    src_data = BASE / "digits" / "data" / "source0-4"
    make_digits_folder(src_data, [0, 1, 2, 3, 4], None, 1, 0)
    if not (DIGITS_SOURCE / "results.json").is_file():
        cmd = [sys.executable, "-m", "ltzoo.recipes.pretrain", "--dataset", "imagefolder", "--data-dir", str(src_data)]
        cmd += ["--model", "resnet20_cifar", "--output", str(DIGITS_SOURCE), "--no-progress", "--threads", str(THREADS)]
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, check=True)
    data = BASE / "digits" / "data" / f"target5-9-rho10-s{seed}"
    make_digits_folder(data, [5, 6, 7, 8, 9], 100, 10, seed)
    for start, extra in (
        ("scratch", []),
        ("transfer", ["--init", str(DIGITS_SOURCE), "--new-head"]),
        ("lora", ["--init", str(DIGITS_SOURCE), "--new-head", "--peft", "lora"]),
    ):
        out = BASE / "digits" / "runs" / f"{start}-s{seed}"
        if (out / "results.json").is_file():
            continue
        cmd = [sys.executable, "-m", "ltzoo.recipes.btm", "--dataset", "imagefolder", "--data-dir", str(data)]
        cmd += ["--seed", str(seed), "--output", str(out), "--no-progress", "--threads", str(THREADS), *extra]
        t0 = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] digits {start} s{seed}: {' '.join(cmd[1:])}", file=log, flush=True)
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode == 0:
            (out / "wall.json").write_text(json.dumps({"wall_seconds": time.perf_counter() - t0}))


def digits_rows() -> list[dict]:
    rows = []
    for start in STARTS:
        runs = []
        for seed in SEEDS:
            out = BASE / "digits" / "runs" / f"{start}-s{seed}"
            if (out / "results.json").is_file():
                runs.append(json.loads((out / "results.json").read_text()))
        if runs:
            row = {"start": start, "seeds": len(runs), "train_images": sum(runs[0]["train_counts"])}
            for key in ("hm", "acc", "min_recall"):
                row[f"model_{key}"] = [100 * r["metrics"]["test"][key] for r in runs]
                row[f"baseline_{key}"] = [100 * r["baseline"]["test"][key] for r in runs]
            rows.append(row)
    return rows


def cell_name(start: str, n_max: int, rho: int, seed: int) -> str:
    return f"{start}-n{n_max}-rho{rho}-s{seed}"


def train_source(log) -> None:
    if (SOURCE / "results.json").is_file():
        return
    import transfer  # benchmarks/ is on sys.path when this script runs

    if not transfer.run_source("resnet20_cifar", log):
        raise SystemExit(f"the source model did not train: see {log.name}")


def run_cell(start: str, n_max: int, rho: int, seed: int, log) -> dict | None:
    name = cell_name(start, n_max, rho, seed)
    out = BASE / "runs" / name
    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    data = (
        BASE / "data" / f"{'all10' if start == 'scratch' else 'target5'}-n{n_max}-rho{rho}-s{seed}"
    )  # lora: transfer's
    make_folder(data, CLASSES[start], n_max, rho, seed)
    cmd = [
        sys.executable,
        "-m",
        "ltzoo.recipes.btm",
        "--dataset",
        "imagefolder",
        "--data-dir",
        str(data),
        "--seed",
        str(seed),
        "--output",
        str(out),
        "--no-progress",
        "--threads",
        str(THREADS),
    ]
    if start in ("transfer", "lora"):
        cmd += ["--init", str(SOURCE), "--new-head"] + (["--peft", "lora"] if start == "lora" else [])
    t0 = time.perf_counter()
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(cmd[1:])}", file=log, flush=True)
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        print(f"{name}: exit {proc.returncode}", file=log, flush=True)
        return None
    res = json.loads((out / "results.json").read_text())
    res["_wall"] = time.perf_counter() - t0
    (out / "wall.json").write_text(json.dumps({"wall_seconds": res["_wall"]}))
    return res


def stage1_epochs(out: Path) -> int | None:
    """The epochs BTM's own stage 1 decided (its results.json's config)."""
    path = out / "stage1" / "results.json"
    return json.loads(path.read_text())["config"].get("epochs") if path.is_file() else None


def collect() -> list[dict]:
    rows = []
    for start in STARTS:
        for rho in RHOS:
            for n_max in N_MAX:
                runs = []
                for seed in SEEDS:
                    out = BASE / "runs" / cell_name(start, n_max, rho, seed)
                    if not (out / "results.json").is_file():
                        continue
                    res = json.loads((out / "results.json").read_text())
                    wall = (
                        json.loads((out / "wall.json").read_text())["wall_seconds"]
                        if (out / "wall.json").is_file()
                        else None
                    )
                    runs.append((seed, res, wall))
                if not runs:
                    continue
                row = {"start": start, "rho": rho, "n_max": n_max, "seeds": [s for s, _, _ in runs]}
                row["train_images"] = [sum(r["train_counts"]) for _, r, _ in runs][0]
                for key in ("hm", "acc", "min_recall"):
                    row[f"model_{key}"] = [100 * r["metrics"]["test"][key] for _, r, _ in runs]
                    row[f"baseline_{key}"] = [100 * r["baseline"]["test"][key] for _, r, _ in runs]
                row["wall_seconds"] = [w for _, _, w in runs]
                row["epochs"] = [stage1_epochs(BASE / "runs" / cell_name(start, n_max, rho, s)) for s, _, _ in runs]
                rows.append(row)
    return rows


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def write_table(rows: list[dict]) -> None:
    from ltzoo.runfolder.provenance import git_commit

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "size.json").write_text(
        json.dumps({"commit": git_commit(), "rows": rows, "digits": digits_rows()}, indent=1)
    )
    lines = [
        "# ltzoo's defaults vs a class-balanced linear baseline, by dataset size",
        "",
        "Fashion-MNIST image folders (PNG, no val/: ltzoo holds its validation images out), exponential profile; "
        "`btm` with no flag but the data (from scratch, 10 classes), or `--init SOURCE --new-head` (transfer, classes "
        "5-9, from a resnet20_cifar trained on classes 0-4), or that with `--peft lora` (lora). Test split: 500 images "
        "per class. Mean ± std over the "
        "seeds (each seed: another draw of images and another class order). Baseline: the run's own "
        "`results.json['baseline']`, scikit-learn's `LogisticRegression(class_weight='balanced')` on the pixels "
        "(scratch) or on the source model's frozen features (transfer). Seconds: the whole run's wall time on a "
        "shared 2-core CPU (noisy).",
        "",
        "| start | rho | n_max | train images | seeds | model HM | baseline HM | model acc | baseline acc "
        "| model min recall | stage-1 epochs | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['start']} | {r['rho']} | {r['n_max']} | {r['train_images']:,} | {len(r['seeds'])} | "
            f"{_ms(r['model_hm'])} | {_ms(r['baseline_hm'])} | {_ms(r['model_acc'])} | {_ms(r['baseline_acc'])} | "
            f"{_ms(r['model_min_recall'])} | {r['epochs'][0]} | "
            f"{statistics.mean([w for w in r['wall_seconds'] if w]) if any(r['wall_seconds']) else float('nan'):.0f} |"
        )
    digits = digits_rows()
    if digits:
        source = BASE / "digits" / "source" / "results.json"
        acc = json.loads(source.read_text())["metrics"]["test"]["acc"] if source.is_file() else None
        lines += [
            "",
            "## A data set the defaults were not tuned on: scikit-learn's 8x8 digits",
            "",
            "Digits 5-9, rho 10 (100 down to 10 training images per class, class order drawn from the seed), the "
            "rest of their images as the test split; the source model: `pretrain` with its defaults on digits 0-4 "
            f"(100 per class{f', test accuracy {100 * acc:.1f}%' if acc is not None else ''}).",
            "",
            "| start | train images | seeds | model HM | baseline HM | model acc | baseline acc | model min recall |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in digits:
            lines.append(
                f"| {r['start']} | {r['train_images']} | {r['seeds']} | {_ms(r['model_hm'])} | {_ms(r['baseline_hm'])} "
                f"| {_ms(r['model_acc'])} | {_ms(r['baseline_acc'])} | {_ms(r['model_min_recall'])} |"
            )
    commits = sorted(
        {
            str(yaml.safe_load(c.read_text()).get("git_commit"))[:7]
            for root in (BASE / "runs", BASE / "digits")  # (the digits folder may be a link: globbed from it)
            for c in root.glob("**/run_config.yaml")
            if "stage1" not in c.parts
        }
    )
    lines += [
        "",
        f"Code: the runs were made at commit{'s' * (len(commits) > 1)} {', '.join(commits)} (a run records its own).",
        "",
        "Re-run: `python benchmarks/size.py` (cells already run are read back; `--digits` the digits rows).",
    ]
    (RESULTS / "size.md").write_text("\n".join(lines) + "\n")
    plot(rows)


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(STARTS), figsize=(5 * len(STARTS), 4), sharey=True)
    for ax, start in zip(axes, STARTS):
        for rho, color in zip(RHOS, ("tab:blue", "tab:orange")):
            rs = sorted((r for r in rows if r["start"] == start and r["rho"] == rho), key=lambda r: r["n_max"])
            if not rs:
                continue
            x = [r["n_max"] for r in rs]
            for key, style, label in (
                ("model_hm", "-o", "ltzoo btm (defaults)"),
                ("baseline_hm", "--s", "linear baseline"),
            ):
                m = [statistics.mean(r[key]) for r in rs]
                s = [statistics.stdev(r[key]) if len(r[key]) > 1 else 0 for r in rs]
                ax.errorbar(x, m, yerr=s, fmt=style, color=color, capsize=3, label=f"{label}, rho {rho}")
        ax.set_xscale("log")
        ax.set_xlabel("images in the largest class (n_max)")
        ax.set_title(TITLES[start])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test HM of per-class recall (%)")
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(RESULTS / "size.png", dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-max", type=int, nargs="+", default=list(N_MAX))
    p.add_argument("--rho", type=int, nargs="+", default=list(RHOS))
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--starts", nargs="+", default=list(STARTS), choices=STARTS)
    p.add_argument("--only-table", action="store_true")
    p.add_argument("--digits", action="store_true", help="run the digits rows (for --seeds) instead of the grid")
    args = p.parse_args()
    if args.digits:
        BASE.mkdir(parents=True, exist_ok=True)
        with open(BASE / "size.log", "a") as log:
            for seed in args.seeds:
                run_digits(seed, log)
    elif not args.only_table:
        BASE.mkdir(parents=True, exist_ok=True)
        with open(BASE / "size.log", "a") as log:
            if {"transfer", "lora"} & set(args.starts):
                train_source(log)
            for seed in args.seeds:
                for start in args.starts:
                    for rho in args.rho:
                        for n_max in args.n_max:
                            run_cell(start, n_max, rho, seed, log)
    write_table(collect())
    print((RESULTS / "size.md").read_text())


if __name__ == "__main__":
    main()
