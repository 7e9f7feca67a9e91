"""Transfer benchmark: does a pretrained backbone lift the tail, and does LoRA-BTM match full BTM, at what cost?

    python benchmarks/transfer.py                          # the grid (what is missing), then the tables
    python benchmarks/transfer.py --archs vit_pico_patch4_28 --seeds 0
    python benchmarks/transfer.py --only-table
    python benchmarks/transfer.py --members                # member time and peak memory: adapters vs full

Source task: Fashion-MNIST's classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat), balanced, all
their 30,000 training images (dataset ``fmnist_source5``): one model per architecture, trained from scratch
with the stage-1 recipe, is the pretrained backbone. Target task: the other five classes (Sandal, Shirt,
Sneaker, Bag, Ankle boot) made long-tailed, rho = 100 (``fmnist_target5_lt``: 5,900 down to 59 training
images), a balanced validation split (100 per class) and the balanced test split (1,000 per class).

Rows, for ltzoo's CIFAR-style ResNet-20 and a small ViT (`vit_pico_patch4_28`: timm's VisionTransformer at
28 px, 4-px patches):
- from scratch: the stage-1 recipe (CE) on the target alone;
- linear probe: ``--init SOURCE --new-head --peft head`` (the classifier alone trains);
- full fine-tuning: ``--init SOURCE --new-head`` (every weight trains);
- LoRA: ``--init SOURCE --new-head --peft lora`` (LoRA on the family's targets + the classifier);
- each + BTM + GML: the BTM recipe on that run (``--init RUN``), its members trained the row's way (full
  members for from scratch and full fine-tuning, ``--peft head`` / ``--peft lora`` members otherwise),
  GML head ensembled.
Every run is a real recipe (`python -m ltzoo.recipes.<recipe>`, one thread); the test split is evaluated
once, on the model chosen on the validation split. Schedules are short (this benchmark runs on a shared
2-core CPU): `TARGET_EPOCHS` epochs per target run, the same for every row, so the table compares methods
at one budget, not each at its best. Seconds: training time of the stage the row adds (the target run, or
the BTM stage on one device); peak MB: the recipe process's peak resident memory (timings beside other jobs
on a shared machine are noise).

Output: benchmarks/results/transfer_<arch>.{md,csv} and, with --members, transfer_members.md (one
member's training time and peak memory, full vs adapter, in fresh processes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from method_table import COLUMNS, PRECISION, _cell, source_commit  # noqa: E402  (benchmarks/ is on sys.path when this script runs)

from ltzoo.runfolder.provenance import git_commit  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BASE = ROOT / "runs" / "transfer"
ARCHS = ("resnet20_cifar", "vit_pico_patch4_28")
SOURCE_EPOCHS = {"resnet20_cifar": 2, "vit_pico_patch4_28": 1}  # 30,000 images per epoch (a shared CPU: short)
TARGET_EPOCHS = 3  # every target run (8,600 images per epoch)
#: from-scratch optimisation per architecture: ltzoo's stage-1 SGD for the ResNet, AdamW for the ViT
SCRATCH = {
    "resnet20_cifar": ["--optimizer", "sgd", "--lr", "0.1", "--weight-decay", "5e-4"],
    "vit_pico_patch4_28": ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05"],
}
#: fine-tuning from the source (ltzoo/recipes/configs/fmnist_target5_lt/*.yaml hold the same values)
FINETUNE = ["--optimizer", "adamw", "--weight-decay", "0.05", "--warmup-epochs", "0.5"]
STARTS = {  # row -> (pretrain flags beyond the data and the start, BTM member flags)
    "scratch": (None, []),
    "probe": (
        FINETUNE + ["--peft", "head", "--lr", "1e-2"],
        ["--optimizer", "adamw", "--weight-decay", "0.05", "--peft", "head", "--member-lr", "5e-3"],
    ),
    "full": (
        FINETUNE + ["--lr", "1e-3", "--layer-decay", "0.75"],
        ["--optimizer", "adamw", "--weight-decay", "0.05", "--member-lr", "5e-4"],
    ),
    "lora": (
        FINETUNE + ["--peft", "lora", "--lora-rank", "4", "--lora-alpha", "8", "--lr", "3e-3"],
        [
            "--optimizer",
            "adamw",
            "--weight-decay",
            "0.05",
            "--peft",
            "lora",
            "--lora-rank",
            "4",
            "--lora-alpha",
            "8",
            "--member-lr",
            "2e-3",
        ],
    ),
}
LABELS = {"scratch": "from scratch (CE)", "probe": "linear probe", "full": "full fine-tuning", "lora": "LoRA r=4"}
BTM = ["--subsets", "4", "--shots", "50", "--member-epochs", "5", "--member-batch-size", "64", "--classifier", "gml"]
COMMON = ["--no-progress", "--threads", "1", "--workers", "0"]


def source_dir(arch: str) -> Path:
    return BASE / "source" / arch


def run_dir(arch: str, seed: int, name: str) -> Path:
    return BASE / arch / f"s{seed}" / name


def recipe(module: str, args: list[str], log) -> bool:
    """Run one recipe to completion (skipped when its results.json exists); False if it failed."""
    out = Path(args[args.index("--output") + 1])
    if (out / "results.json").is_file():
        return True
    cmd = [sys.executable, "-m", f"ltzoo.recipes.{module}", *args]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    log.write(f"\n$ {' '.join(cmd)}\n{proc.stdout[-20000:]}")
    log.flush()
    ok = proc.returncode == 0
    print(f"  {out.relative_to(BASE)}: {'done' if ok else 'FAILED'} in {time.perf_counter() - start:.0f} s", flush=True)
    return ok


def run_source(arch: str, log) -> bool:
    args = [
        "--dataset",
        "fmnist_source5",
        "--model",
        arch,
        "--epochs",
        str(SOURCE_EPOCHS[arch]),
        "--seed",
        "0",
        "--output",
        str(source_dir(arch)),
        *SCRATCH[arch],
        *COMMON,
    ]
    return recipe("pretrain", args, log)


def run_target(arch: str, seed: int, row: str, log) -> None:
    flags, member_flags = STARTS[row]
    data = ["--dataset", "fmnist_target5_lt", "--seed", str(seed), *COMMON]
    out = run_dir(arch, seed, row)
    start = (
        ["--model", arch, *SCRATCH[arch]] if flags is None else ["--init", str(source_dir(arch)), "--new-head", *flags]
    )
    if not recipe("pretrain", [*data, *start, "--epochs", str(TARGET_EPOCHS), "--output", str(out)], log):
        return
    recipe(
        "btm", [*data, "--init", str(out), *BTM, *member_flags, "--output", str(run_dir(arch, seed, row + "_btm"))], log
    )


# ------------------------------------------------------------------------------------------ the table
def metrics_of(path: Path, btm: bool) -> dict | None:
    if not (path / "results.json").is_file():
        return None
    res = json.loads((path / "results.json").read_text())
    m, val = res["metrics"]["test"], (res["metrics"].get("val") or {})
    sec = res.get("seconds", {})
    precision = (res.get("speed") or {}).get("mixed_precision")
    # the BTM stage with its merged model's evaluation (as runs before seconds.evaluation counted it)
    secs = sec.get("btm_total_one_device", 0) + sec.get("evaluation", 0) if btm else res.get("train_seconds")
    members = sec.get("member_train_seconds") or []
    return {
        **{c: m.get(c) for c in COLUMNS},
        "val_hm": val.get("hm"),
        "seconds": secs,
        "member_seconds": statistics.mean(members) if members else None,
        "peak_memory_mb": res.get("peak_memory_mb"),
        "hardware": res.get("hardware")
        and (f"{res['hardware']}, {PRECISION.get(precision, precision)} training" if precision else res["hardware"]),
        "commit": source_commit(BASE, path),
    }


def aggregate(arch: str, seeds: list[int]) -> list[dict]:
    rows = []
    for row in STARTS:
        for btm in (False, True):
            per_seed = [
                m for m in (metrics_of(run_dir(arch, s, row + ("_btm" if btm else "")), btm) for s in seeds) if m
            ]
            if not per_seed:
                continue
            out = {"method": LABELS[row] + (" + BTM + GML" if btm else ""), "seeds": len(per_seed)}
            for c in COLUMNS + ("val_hm", "seconds", "member_seconds", "peak_memory_mb"):
                vals = [m[c] for m in per_seed if m[c] is not None]
                out[c] = statistics.mean(vals) if vals else None
                out[c + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
            out["hardware"] = "; ".join(sorted({m["hardware"] for m in per_seed if m["hardware"]}))
            out["commits"] = "; ".join(sorted({m["commit"] for m in per_seed}))
            rows.append(out)
    return rows


def source_line(arch: str) -> str:
    path = source_dir(arch) / "results.json"
    if not path.is_file():
        return f"source model {arch}: not trained"
    res = json.loads(path.read_text())
    return (
        f"Source model ({source_dir(arch).relative_to(ROOT)}): {arch} trained from scratch on fmnist_source5 "
        f"(30,000 images, {SOURCE_EPOCHS[arch]} epochs), test accuracy {100 * res['metrics']['test']['acc']:.2f}% "
        f"on its 5 classes, {res.get('train_seconds', 0):.0f} s."
    )


def write_table(arch: str, rows: list[dict], seeds: list[int], rerun: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"transfer_{arch}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    hardware = sorted({h for r in rows for h in r["hardware"].split("; ") if h})
    commits = sorted({c for r in rows for c in r["commits"].split("; ")})
    lines = [
        f"Transfer to Fashion-MNIST-LT classes 5-9 (fmnist_target5_lt, rho=100) from a {arch} trained on classes "
        f"0-4; test split (1,000 images per class), model chosen on the balanced validation split (`val hm`); "
        f"{TARGET_EPOCHS} epochs per target run, BTM with 4 members x 50 shots x 5 epochs; mean ± std over the "
        f"seeds run (of {seeds}); a row run on fewer seeds says so (`1 of 3`).",
        source_line(arch),
        f"Hardware: {' / '.join(hardware)}, shared with other jobs (seconds are noisy). Code: commit"
        f"{'s' if len(commits) > 1 else ''} {', '.join(commits)}. Seconds: training time of the stage the row adds "
        "(the target run, or the BTM stage on one device with its merged model's evaluation); "
        "member s: one BTM member's mean training time; peak "
        "MB: the recipe process's peak resident memory.",
        "",
        "| method | seeds | " + " | ".join(COLUMNS) + " | val hm | seconds | member s | peak MB |",
        "|---|---|" + "---|" * (len(COLUMNS) + 4),
    ]
    for r in rows:
        n = f"{r['seeds']}" if r["seeds"] == len(seeds) else f"{r['seeds']} of {len(seeds)}"
        member = f"{r['member_seconds']:.1f}" if r["member_seconds"] is not None else "-"
        lines.append(
            f"| {r['method']} | {n} | "
            + " | ".join(_cell(r, c) for c in COLUMNS + ("val_hm",))
            + f" | {r['seconds'] or 0:.0f} | {member} | {r['peak_memory_mb'] or 0:.0f} |"
        )
    lines += ["", f"Re-run: `{rerun}`"]
    (RESULTS / f"transfer_{arch}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# ----------------------------------------------------------------------------- member cost, measured alone
MEMBER_PROBE = r"""
import json, resource, sys, time, copy, torch
torch.set_num_threads(1)
from ltzoo.runfolder.model_io import load_model
from ltzoo.methods import adapters
from ltzoo.training.optim import create_optimizer
arch_dir, method, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = load_model(arch_dir)
model.reset_classifier(5)
spec = adapters.AdapterSpec(method, 4, 8.0)
net = adapters.wrap(model, spec)
opt = create_optimizer(net, "adamw", 1e-3, 0.05)
c, h, w = model.pretrained_cfg["input_size"]
x, y = torch.randn(64, c, h, w), torch.randint(0, 5, (64,))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
net.train()
for _ in range(steps):
    loss = torch.nn.functional.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
state = adapters.trainable_state(net, spec) if spec.enabled else model.state_dict()
print(json.dumps({"seconds_per_step": seconds / steps, "peak_mb": peak, "train_mb": peak - before,
                  "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad),
                  "member_file_kb": sum(v.numel() * v.element_size() for v in state.values()) / 1024}))
"""


def measure_members(archs: list[str], steps: int = 20) -> None:
    """One member's cost, full vs adapters, each in a fresh process (batch 64, AdamW, `steps` steps)."""
    lines = [
        "One BTM member's cost on the source backbones: batch 64 of target-size images, AdamW, "
        f"{steps} steps, one thread, each setting in a fresh process (train MB: peak resident memory the "
        "training steps add over the loaded model; member file: what a member saves). CPU shared with other "
        "jobs: seconds are noisy.",
        "",
        "| arch | members | trainable params | s / step | train MB | peak MB | member file KB |",
        "|---|---|---|---|---|---|---|",
    ]
    load = os.getloadavg()[0]
    got: dict[tuple[str, str], dict] = {}
    for arch in archs:
        for method in ("none", "lora", "head"):
            proc = subprocess.run(
                [sys.executable, "-c", MEMBER_PROBE, str(source_dir(arch)), method, str(steps)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            if proc.returncode != 0:
                print(proc.stderr[-2000:])
                continue
            r = got[arch, method] = json.loads(proc.stdout.strip().splitlines()[-1])
            name = {"none": "full", "lora": "LoRA r=4", "head": "linear probe"}[method]
            lines.append(
                f"| {arch} | {name} | {r['trainable']:,} | {r['seconds_per_step']:.3f} | {r['train_mb']:.0f} | "
                f"{r['peak_mb']:.0f} | {r['member_file_kb']:.0f} |"
            )
    commit = (git_commit(ROOT) or "unknown")[:7]
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} when it started "
        f"(other jobs make seconds noisy); code: commit {commit}.",
    ]
    for arch in archs:
        full, lora = got.get((arch, "none")), got.get((arch, "lora"))
        if full and lora:
            lines.append(
                f"{arch}: a LoRA member trains {lora['trainable'] / full['trainable']:.0%} of the full "
                f"member's parameters and saves {lora['member_file_kb'] / full['member_file_kb']:.0%} of "
                f"its bytes; its step takes {lora['seconds_per_step'] / full['seconds_per_step']:.2f}x the "
                f"time and {lora['train_mb'] - full['train_mb']:+.0f} MB of training memory (LoRA keeps "
                "the activations for the backward pass through the frozen layers and adds its own matmuls)."
            )
    lines += ["", "Re-run: `python benchmarks/transfer.py --members` (after the source models exist)"]
    (RESULTS / "transfer_members.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", default=list(STARTS), choices=list(STARTS))
    p.add_argument("--only-table", action="store_true")
    p.add_argument("--members", action="store_true", help="only measure member cost (full vs adapters)")
    args = p.parse_args()
    if args.members:
        measure_members(args.archs)
        return
    rerun = (
        "python benchmarks/transfer.py"
        + (f" --archs {' '.join(args.archs)}" if args.archs != list(ARCHS) else "")
        + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0, 1, 2] else "")
    )
    if not args.only_table:
        BASE.mkdir(parents=True, exist_ok=True)
        with open(BASE / "grid.log", "a") as log:
            sources = {arch: run_source(arch, log) for arch in args.archs}
            for seed in args.seeds:  # seed-major: every row of seed 0 first
                for arch in args.archs:
                    if not sources[arch]:
                        continue
                    for row in args.rows:
                        run_target(arch, seed, row, log)
                    rows = aggregate(arch, args.seeds)
                    if rows:
                        write_table(arch, rows, args.seeds, rerun)
    for arch in args.archs:
        rows = aggregate(arch, args.seeds)
        if rows:
            write_table(arch, rows, args.seeds, rerun)


if __name__ == "__main__":
    main()
