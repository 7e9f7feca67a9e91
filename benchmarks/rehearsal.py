"""Dress rehearsal of the flagship configs: a generated tree shaped like ImageNet-LT or Places-LT, every config run
end to end on it with a small model and a small budget, each phase timed.

``generate`` writes a tree that ``--dataset imagenet_lt --data-dir TREE`` (or ``places_lt``) reads: the published
``path label`` lists (ImageNet_LT_{train,val,test}.txt ...) and a JPEG at every path they name. The shape is the
real one: ImageNet-LT's per-class training counts (splits/derived/ImageNet_LT_train_cls_freq.json, 1,280 down to 5)
and its real val and test lists (ImageNet-LT's training list is not here: its files are named as ImageNet names
them, ``train/<wnid>/<wnid>_<k>.JPEG``, avoiding the names the val list takes); Places-LT's three real lists.
iNaturalist 2018's lists are not here, so there is no inat2018 rehearsal. ``--classes N`` keeps N classes spread
over the count order (head to tail, relabelled 0..N-1) and ``--max-per-class M`` caps every split's images per
class: a reduced tree.

Images are cheap synthetic JPEGs with class-dependent content: a class's fixed low-resolution colour pattern,
upsampled to ``--size``, plus noise. Each class gets ``--variants`` encoded files, and every path of the class is a
hard link to one of them (a copy where links fail), so the full ImageNet-LT tree (185,846 files) takes a minute,
not hours. ``--size 400x350 --quality 94`` gives ImageNet-like files (about 110 KB) for speed measurements
(benchmarks/loader_speed.py); the default 32 px ones are for a CPU rehearsal.

``run`` generates a tree (or takes ``--tree``) and runs, under ``accelerate launch`` on the CPU: stage 1
(``imagenet_lt/ce``), BTM on it (``imagenet_lt/btm``), the two LoRA stage 1s (``lora_clip``, ``lora_in21k``, from a
weights file: no download) and BTM over LoRA members (``btm_lora``), each exporting its run folder; then ``ltzoo
card`` of every run, ``ltzoo eval`` of the BTM run and ``ltzoo compare`` of stage 1 with BTM. The configs' budgets
are overridden (one epoch, a CIFAR ResNet-20 and a pico ViT, two BTM members) and every override is recorded.
Results: benchmarks/results/rehearsal_<dataset>.{json,md}.

    python benchmarks/rehearsal.py generate --dataset imagenet_lt --out /tmp/imagenet_lt_tree
    python benchmarks/rehearsal.py run --dataset imagenet_lt --classes 100 --max-per-class 40
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ROOT.parent / "shared" / "data" / "splits"
RESULTS = ROOT / "benchmarks" / "results"
LISTS = {
    "imagenet_lt": ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt"),
    "places_lt": ("Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"),
}


# ------------------------------------------------------------------------------------------- shape
def _read_list(path: Path) -> list[tuple[str, int]]:
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            out.append((parts[0], int(parts[1])))
    return out


def dataset_shape(dataset: str, splits: Path = SPLITS) -> dict[str, list[tuple[str, int]]]:
    """The real ``path label`` entries of each split of ``dataset`` (ImageNet-LT's training paths generated from
    its per-class counts, its training list not being here)."""
    if dataset not in LISTS:
        raise SystemExit(
            f"no split lists for {dataset!r} under {splits} (iNaturalist 2018's are not in this checkout's shared "
            f"data); choose one of {', '.join(LISTS)}"
        )
    names = LISTS[dataset]
    missing = [n for n in names[1:] if not (splits / n).is_file()]
    if missing:
        raise SystemExit(f"{splits} lacks {', '.join(missing)}; pass --splits, the folder of the published lists")
    val, test = _read_list(splits / names[1]), _read_list(splits / names[2])
    if (splits / names[0]).is_file():
        return {"train": _read_list(splits / names[0]), "val": val, "test": test}
    freq = splits / "derived" / "ImageNet_LT_train_cls_freq.json"
    counts = json.loads(freq.read_text()) if freq.is_file() else None
    if counts is None:
        counts = json.loads((ROOT / "benchmarks" / "imagenet_lt.json").read_text())["train_class_counts"]
    folder = {y: Path(p).parent.name for p, y in val + test}
    taken = {Path(p).name for p, _ in val}
    train = []
    for c, n in enumerate(counts):
        k = 0
        for _ in range(n):
            while f"{folder[c]}_{k}.JPEG" in taken:
                k += 1
            train.append((f"train/{folder[c]}/{folder[c]}_{k}.JPEG", c))
            k += 1
    return {"train": train, "val": val, "test": test}


def reduce_shape(shape: dict, classes: int | None = None, max_per_class: int | None = None) -> dict:
    """``classes`` classes spread evenly over the training-count order (most images first), relabelled 0..N-1 in
    their original order, each split capped at ``max_per_class`` images per class."""
    counts = np.bincount([y for _, y in shape["train"]])
    keep = list(range(len(counts)))
    if classes is not None and classes < len(counts):
        ranked = np.argsort(-counts, kind="stable")
        keep = sorted(int(ranked[i]) for i in np.linspace(0, len(counts) - 1, classes).round().astype(int))
    relabel = {c: i for i, c in enumerate(keep)}
    out = {}
    for split, entries in shape.items():
        seen: dict[int, int] = {}
        kept = []
        for p, y in entries:
            if y in relabel and (max_per_class is None or seen.get(y, 0) < max_per_class):
                seen[y] = seen.get(y, 0) + 1
                kept.append((p, relabel[y]))
        out[split] = kept
    return out


# ------------------------------------------------------------------------------------------ images
def class_jpegs(c: int, variants: int, size: tuple[int, int], quality: int, noise: float) -> list[bytes]:
    """``variants`` JPEGs of class ``c``: its fixed 4x5 colour pattern upsampled to ``size`` (w, h), plus noise."""
    from PIL import Image

    pattern = np.random.default_rng(10_007 + c).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(pattern).resize(size, Image.BILINEAR), dtype=np.int16)
    rng = np.random.default_rng(c * 7919 + 1)
    out = []
    for _ in range(variants):
        luma = rng.normal(0, noise, (size[1], size[0], 1))
        chroma = rng.normal(0, noise / 3, (size[1], size[0], 3))
        img = np.clip(base + luma + chroma, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def write_tree(
    shape: dict,
    out: Path,
    dataset: str,
    size: tuple[int, int] = (32, 32),
    quality: int = 90,
    noise: float | None = None,
    variants: int = 4,
) -> dict:
    """Write the lists and images of ``shape`` under ``out``; return what was written."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    noise = (30.0 if min(size) >= 128 else 12.0) if noise is None else noise
    labels = sorted({y for entries in shape.values() for _, y in entries})
    sources = out / ".variants"
    sources.mkdir(exist_ok=True)
    variant_files = {}
    for c in labels:
        for v, blob in enumerate(class_jpegs(c, variants, size, quality, noise)):
            path = sources / f"{c}_{v}.jpg"
            path.write_bytes(blob)
            variant_files[c, v] = path
    made, linked = set(), 0
    for split, name in zip(("train", "val", "test"), LISTS[dataset]):
        lines = []
        for i, (rel, y) in enumerate(shape[split]):
            dest = out / rel
            if dest.parent not in made:
                dest.parent.mkdir(parents=True, exist_ok=True)
                made.add(dest.parent)
            if not dest.exists():
                src = variant_files[y, i % variants]
                try:
                    os.link(src, dest)
                    linked += 1
                except OSError:
                    shutil.copyfile(src, dest)
            lines.append(f"{rel} {y}")
        (out / name).write_text("\n".join(lines) + "\n")
    sizes = [p.stat().st_size for p in variant_files.values()]
    return {
        "tree": str(out),
        "dataset": dataset,
        "classes": len(labels),
        "images": {s: len(e) for s, e in shape.items()},
        "image_size": list(size),
        "jpeg_quality": quality,
        "mean_file_kib": round(float(np.mean(sizes)) / 1024, 1),
        "distinct_jpegs": len(variant_files),
        "hard_links": linked,
        "seconds": round(time.perf_counter() - start, 1),
    }


def generate(args: argparse.Namespace, out: Path) -> dict:
    shape = reduce_shape(dataset_shape(args.dataset, Path(args.splits)), args.classes, args.max_per_class)
    return write_tree(shape, out, args.dataset, _size(args.size), args.quality, args.noise, args.variants)


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h or w)


# --------------------------------------------------------------------------------------- rehearsal
def _env(hf_home: Path) -> dict:
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _launch(recipe: str, flags: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_machines",
        "1",
        "--num_processes",
        "1",
        "--cpu",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(ROOT / "recipes" / f"{recipe}.py"),
        *flags,
    ]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ltzoo", *args]


def phases(dataset: str, tree: Path, runs: Path, weights: Path, workers: int, epochs: int) -> list[dict]:
    """The rehearsal's phases: name, command, the files it must leave."""
    data = ["--data-dir", str(tree), "--workers", str(workers), "--no-progress", "--threads", "1"]
    cnn = ["--model", "resnet20_cifar", "--batch-size", "32", "--epochs", str(epochs)]
    if _config(dataset, "ce").get("pretrained"):  # Places-LT's stage 1 starts from ImageNet weights: a local file here
        cnn += ["--pretrained-file", str(tiny_weights(weights.parent / "resnet20.safetensors", "resnet20_cifar"))]
    vit = ["--model", "vit_pico_patch4_28", "--pretrained-file", str(weights), "--batch-size", "32"]
    vit += ["--epochs", str(epochs)]
    btm = ["--subsets", "2", "--member-epochs", "1", "--head-epochs", "2", "--member-batch-size", "16"]
    cfg = f"{dataset}/"
    export = ["model.safetensors", "config.json", "results.json"]
    out = []
    for name, cmd in (
        ("ce", _launch("pretrain", ["-c", cfg + "ce", *data, *cnn, "--output", str(runs / "ce")])),
        (
            "btm",
            _launch("btm", ["-c", cfg + "btm", *data, "--init", str(runs / "ce"), *btm, "--output", str(runs / "btm")]),
        ),
        ("lora_clip", _launch("pretrain", ["-c", cfg + "lora_clip", *data, *vit, "--output", str(runs / "lora_clip")])),
        (
            "lora_in21k",
            _launch("pretrain", ["-c", cfg + "lora_in21k", *data, *vit, "--output", str(runs / "lora_in21k")]),
        ),
        (
            "btm_lora",
            _launch(
                "btm",
                [
                    "-c",
                    cfg + "btm_lora",
                    *data,
                    "--init",
                    str(runs / "lora_clip"),
                    *btm,
                    "--output",
                    str(runs / "btm_lora"),
                ],
            ),
        ),
    ):
        out.append({"phase": name, "command": cmd, "expects": [str(runs / name / f) for f in export]})
    for name in ("ce", "btm", "lora_clip", "lora_in21k", "btm_lora"):
        out.append(
            {
                "phase": f"card {name}",
                "command": _cli("card", str(runs / name)),
                "expects": [str(runs / name / "README.md")],
            }
        )
    flags = ["--dataset", dataset, "--data-dir", str(tree), "--workers", str(workers)]
    out.append(
        {
            "phase": "eval btm",
            "command": _cli("eval", str(runs / "btm"), *flags, "--output", str(runs / "eval_btm")),
            "expects": [str(runs / "eval_btm")],
        }
    )
    out.append(
        {
            "phase": "compare ce btm",
            "command": _cli("compare", str(runs / "ce"), str(runs / "btm"), *flags, "--json"),
            "expects": [],
            "stdout_to": str(runs / "compare_ce_btm.json"),
        }
    )
    return out


def _config(dataset: str, name: str) -> dict:
    """A packaged flagship config's values."""
    import yaml

    return yaml.safe_load((ROOT / "ltzoo" / "recipes" / "configs" / dataset / f"{name}.yaml").read_text()) or {}


def tiny_weights(path: Path, model: str = "vit_pico_patch4_28") -> Path:
    """A randomly initialised ``model`` saved as a weights file: what a config's `pretrained: true` loads here
    (--pretrained-file; no Hub)."""
    import timm
    import torch
    from safetensors.torch import save_file

    import ltzoo.models  # noqa: F401

    torch.manual_seed(0)
    save_file(timm.create_model(model, num_classes=10).state_dict(), str(path))
    return path


def tiny_vit_weights(path: Path) -> Path:
    """A randomly initialised vit_pico_patch4_28 saved as a weights file: the LoRA configs' --pretrained-file."""
    return tiny_weights(path, "vit_pico_patch4_28")


def rehearse(dataset: str, tree: Path, work: Path, workers: int = 1, epochs: int = 1, log=print) -> list[dict]:
    """Run every phase in order; a phase that fails or leaves no files stops the rehearsal (its output kept)."""
    runs = work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    weights = tiny_vit_weights(work / "vit_pico.safetensors")
    env = _env(work / "hf")
    done = []
    for ph in phases(dataset, tree, runs, weights, workers, epochs):
        start = time.perf_counter()
        proc = subprocess.run(ph["command"], cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if ph.get("stdout_to"):
            Path(ph["stdout_to"]).write_text(proc.stdout)
        missing = [f for f in ph["expects"] if not Path(f).exists()]
        row = {"phase": ph["phase"], "seconds": round(seconds, 1), "ok": proc.returncode == 0 and not missing}
        row["command"] = " ".join(Path(a).name if a == sys.executable else a for a in ph["command"])
        done.append(row)
        log(f"{ph['phase']}: {seconds:.1f} s, {'ok' if row['ok'] else 'FAILED'}")
        if not row["ok"]:
            row["error"] = (proc.stderr or proc.stdout)[-3000:] + (f"\nmissing: {missing}" if missing else "")
            break
    return done


def markdown(res: dict) -> str:
    t = res["tree"]
    lines = [
        f"# Dress rehearsal: {res['dataset']} configs end to end on a generated tree",
        "",
        f"Tree: {t['classes']} classes, {t['images']['train']:,} train / {t['images']['val']:,} val / "
        f"{t['images']['test']:,} test images ({t['image_size'][0]}x{t['image_size'][1]} px JPEGs, "
        f"{t['mean_file_kib']} KiB each, {t['distinct_jpegs']} distinct files hard-linked), generated in "
        f"{t['seconds']} s; {res['reduction']}. Overrides of every config: {res['overrides']}. "
        f"{res['machine']}, one process, {res['workers']} loader worker(s).",
        "",
        "| phase | seconds | ok |",
        "|---|---|---|",
    ]
    lines += [f"| {r['phase']} | {r['seconds']} | {'yes' if r['ok'] else 'FAILED'} |" for r in res["phases"]]
    total = sum(r["seconds"] for r in res["phases"])
    lines += ["", f"Total {total:.0f} s. Re-run: `{res['rerun']}`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("generate", "run"))
    p.add_argument("--dataset", default="imagenet_lt", help="imagenet_lt or places_lt (inat2018: no lists here)")
    p.add_argument("--splits", default=str(SPLITS), help="the folder of the published split lists")
    p.add_argument("--out", help="generate: the tree's folder; run: a work folder (default: a temporary one)")
    p.add_argument("--tree", help="run: an existing tree instead of a generated one")
    p.add_argument("--classes", type=int, help="keep this many classes, spread over the count order")
    p.add_argument("--max-per-class", type=int, help="at most this many images per class in every split")
    p.add_argument("--size", default="32", help="image size, W or WxH (400x350: ImageNet-like)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (94 at 400x350: about 110 KB files)")
    p.add_argument("--noise", type=float, help="pixel noise std (default 30 for large images, 12 for small)")
    p.add_argument("--variants", type=int, default=4, help="distinct JPEGs per class")
    p.add_argument("--workers", type=int, default=1, help="loader workers of each phase")
    p.add_argument("--epochs", type=int, default=1, help="stage-1 epochs of each config")
    p.add_argument("--results", default=str(RESULTS), help="where run writes rehearsal_<dataset>.{json,md}")
    args = p.parse_args(argv)
    if args.command == "generate":
        if not args.out:
            p.error("generate needs --out, the folder to write the tree to")
        print(json.dumps(generate(args, Path(args.out)), indent=1))
        return 0
    work = Path(args.out or tempfile.mkdtemp(prefix=f"rehearsal_{args.dataset}_"))
    if args.tree:
        tree_info = {"tree": args.tree, "given": True}
        tree = Path(args.tree)
    else:
        tree = work / "tree"
        tree_info = generate(args, tree)
        print(f"tree: {tree_info}")
    done = rehearse(args.dataset, tree, work, args.workers, args.epochs)
    import platform

    res = {
        "dataset": args.dataset,
        "tree": tree_info,
        "reduction": f"--classes {args.classes}, --max-per-class {args.max_per_class}"
        if args.classes or args.max_per_class
        else "the full shape",
        "overrides": "resnet20_cifar for resnet50 and vit_pico_patch4_28 (random weights from a file) for the "
        f"ViT-B/16s, {args.epochs} epoch(s), batch 32, BTM with 2 members of 1 epoch, head 2 epochs",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "workers": args.workers,
        "phases": done,
        "rerun": "python benchmarks/rehearsal.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"rehearsal_{args.dataset}.json").write_text(json.dumps(res, indent=1) + "\n")
    (results / f"rehearsal_{args.dataset}.md").write_text(markdown(res))
    print(markdown(res))
    return 0 if all(r["ok"] for r in done) else 1


if __name__ == "__main__":
    sys.exit(main())
