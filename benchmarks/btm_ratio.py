"""What BTM's own stage costs beside stage 1 (goal: at most 10%), measured interleaved.

    python benchmarks/btm_ratio.py --reps 3
    python benchmarks/btm_ratio.py --reps 3 --compare-tree OTHER_CHECKOUT

Each repetition trains a stage 1 (resnet20_cifar, --stage1-epochs epochs on Fashion-MNIST-LT rho=100,
this tree's pretrain recipe), then runs the BTM stage (BTM's defaults: 4 members x 10 epochs of 50
shots per class, merge, GML head + ensemble) on it with this tree's recipe and, given --compare-tree,
with that tree's recipe (another checkout, e.g. before the heads' features were cached at the run's
precision), one right after the other. Every run is a recipe through its public entry point
(``python -m ltzoo.recipes.NAME``), one process, one thread, the CPU's auto precision.

The ratio is BTM's recorded training time on one device (``seconds.btm_total_one_device``: every member's
fine-tuning, the merge, the classifier) over the stage-1 time BTM's default 15 epochs would take
(stage 1's recorded ``train_seconds`` per epoch x 15, so the ratio of BTM's defaults whatever
--stage1-epochs saves). Neither side counts evaluation for reporting: stage 1's time leaves out its validation
passes, and BTM's leaves out the merged model's evaluation on val and test for the table's BTM row
(``seconds.evaluation``, reported beside it, with the ratio it would give if counted). A compare tree older
than ``seconds.evaluation`` counts that evaluation in its BTM time: its rows are compared on the ratio with
evaluation, and the table says so. The machine may be shared: each repetition's ratio is taken from runs made
minutes apart, which is why they are interleaved; their spread is reported. The validation HM of the
exported model says whether the cheaper features change what BTM picks.
Output: benchmarks/results/btm_ratio.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from method_table import PRECISION  # noqa: E402  (benchmarks/ is on sys.path when this script runs)

from ltzoo.runfolder.provenance import cpu_info, git_commit  # noqa: E402

STAGE1_EPOCHS_OF_BTM = 15  # BTM's default --epochs for its own stage 1


def run_recipe(tree: Path, recipe: str, args: list[str], threads: int) -> dict:
    """A recipe of ``tree`` in a fresh process; its results.json."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "OMP_NUM_THREADS": str(threads),
        "ACCELERATE_USE_CPU": "true",
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    out = Path(args[args.index("--output") + 1])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            f"ltzoo.recipes.{recipe}",
            *args,
            "--threads",
            str(threads),
            "--no-progress",
            "--workers",
            "0",
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        sys.exit(f"{recipe} in {tree} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads((out / "results.json").read_text())


def tree_label(tree: Path) -> str:
    """``commit abc1234`` (``-dirty`` with uncommitted code) of a checkout, else its path."""
    sha = git_commit(tree)
    return f"commit {sha[:7]}{'-dirty' if sha.endswith('-dirty') else ''}" if sha else str(tree)


def machine() -> str:
    """The machine, with the CPU's bf16 units, which decide the runs' auto precision (bf16 where native)."""
    has = [f for f in ("amx_bf16", "avx512_bf16", "avx512f") if f in cpu_info()["flags"]]
    return f"{platform.machine()}, {os.cpu_count()} cores, " + (
        "with " + ", ".join(has) if has else "no AVX-512 or bf16 units"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--stage1-epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compare-tree", type=Path, default=None, help="another ltzoo checkout whose BTM stage to time too")
    p.add_argument("--rows", type=Path, default=None, help="a log of a run's printed rows: rebuild the results from it")
    a = p.parse_args()
    trees = {"this": ROOT, **({"compare": a.compare_tree.resolve()} if a.compare_tree else {})}
    labels = {k: tree_label(v) for k, v in trees.items()}
    if a.rows:  # the labels and the machine as the rows recorded them
        rows = [json.loads(ln) for ln in a.rows.read_text().splitlines() if ln.startswith("{")]
        write(rows, rows[0].get("trees", labels), a.stage1_epochs, a.threads, len(rows))
        return
    reps = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):
            stage1 = Path(tmp) / f"r{rep}" / "stage1"
            s1 = run_recipe(
                ROOT,
                "pretrain",
                [
                    "--dataset",
                    "fmnist_lt",
                    "--model",
                    "resnet20_cifar",
                    "--epochs",
                    str(a.stage1_epochs),
                    "--seed",
                    str(rep),
                    "--output",
                    str(stage1),
                ],
                a.threads,
            )
            per_epoch = s1["train_seconds"] / a.stage1_epochs
            row = {
                "rep": rep,
                "stage1_seconds_per_epoch": per_epoch,
                "precision": s1["speed"]["mixed_precision"],
                "machine": machine(),
                "trees": labels,
            }
            for name, tree in trees.items():
                btm = run_recipe(
                    tree,
                    "btm",
                    [
                        "--dataset",
                        "fmnist_lt",
                        "--init",
                        str(stage1),
                        "--seed",
                        str(rep),
                        "--output",
                        str(Path(tmp) / f"r{rep}" / f"btm-{name}"),
                    ],
                    a.threads,
                )
                sec = btm["seconds"]
                if "evaluation" not in sec:  # an older tree: its btm_total_one_device counts the evaluation in
                    sec = {**sec, "evaluation": 0.0}
                    row.setdefault("evaluation_counted_in", []).append(name)
                row[name] = {
                    "btm_one_device": sec["btm_total_one_device"],
                    "classifier": sec["classifier"],
                    "merge": sec["merge"],
                    "members": sum(sec["member_train_seconds"]),
                    "evaluation": sec["evaluation"],
                    "ratio": sec["btm_total_one_device"] / (per_epoch * STAGE1_EPOCHS_OF_BTM),
                    "ratio_with_evaluation": (sec["btm_total_one_device"] + sec["evaluation"])
                    / (per_epoch * STAGE1_EPOCHS_OF_BTM),
                    "val_hm": btm["metrics"]["val"]["hm"],
                    "test_hm_not_used": btm["metrics"]["test"]["hm"],
                }
            reps.append(row)
            print(json.dumps(row), flush=True)
    write(reps, labels, a.stage1_epochs, a.threads, a.reps)


def write(reps: list[dict], trees: dict, stage1_epochs: int, threads: int, n_reps: int) -> None:
    """benchmarks/results/btm_ratio.{json,md} from the repetitions' rows."""
    med = statistics.median
    summary = {
        name: {
            "ratio_median": med(r[name]["ratio"] for r in reps),
            "ratio_min": min(r[name]["ratio"] for r in reps),
            "ratio_max": max(r[name]["ratio"] for r in reps),
            "ratio_with_evaluation_median": med(r[name].get("ratio_with_evaluation", r[name]["ratio"]) for r in reps),
            **{
                f"{part}_median_s": med(r[name].get(part, 0.0) for r in reps)
                for part in ("members", "merge", "classifier", "evaluation", "btm_one_device")
            },
        }
        for name in trees
    }
    stage1_15 = med(r["stage1_seconds_per_epoch"] for r in reps) * STAGE1_EPOCHS_OF_BTM
    out = {"reps": reps, "summary": summary, "trees": trees, "stage1_epochs_timed": stage1_epochs, "threads": threads}
    res = ROOT / "benchmarks" / "results"
    (res / "btm_ratio.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [
        "BTM stage / stage 1 (BTM's defaults: 15 stage-1 epochs, 4 members x 10 epochs, GML head + ensemble), "
        f"Fashion-MNIST-LT rho=100, resnet20_cifar, {threads} thread, "
        f"{PRECISION.get(reps[0]['precision'], reps[0]['precision'])} training; stage 1 "
        f"timed over {stage1_epochs} epochs and scaled to 15 (median: {stage1_15:.0f} s). Stage 1 and BTM run one "
        "right after the other in each repetition (the machine may be shared: seconds are noisy, ratios within a "
        "repetition less so). Neither side counts evaluation for reporting: stage 1 leaves out its validation "
        "passes, BTM the merged model's evaluation for the table's BTM row (`evaluation s`; the ratio counting "
        "it too is `with evaluation`); classifier: the features of train and val, then the heads. "
        f"Machine: {reps[0].get('machine', 'not recorded')}."
        + (
            " In the rows of "
            + ", ".join(sorted({n for r in reps for n in r.get("evaluation_counted_in", [])}))
            + ", the BTM time counts the evaluation in (a tree older than seconds.evaluation): compare its ratio "
            "with `with evaluation`."
            if any(r.get("evaluation_counted_in") for r in reps)
            else ""
        ),
        "",
        "| tree | ratio (median) | min | max | with evaluation | members s | merge s | classifier s | evaluation s "
        "| BTM stage s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {name} ({trees.get(name, name)}) | {s['ratio_median']:.1%} | {s['ratio_min']:.1%} | {s['ratio_max']:.1%} | "
        f"{s['ratio_with_evaluation_median']:.1%} | {s['members_median_s']:.0f} | {s['merge_median_s']:.0f} | "
        f"{s['classifier_median_s']:.0f} | {s['evaluation_median_s']:.0f} | {s['btm_one_device_median_s']:.0f} |"
        for name, s in summary.items()
    ]
    md += [
        "",
        "| rep | stage-1 s/epoch | " + " | ".join(f"{n} ratio | {n} val HM" for n in trees) + " |",
        "|---|---|" + "---|---|" * len(trees),
    ]
    md += [
        f"| {r['rep']} | {r['stage1_seconds_per_epoch']:.1f} | "
        + " | ".join(f"{r[n]['ratio']:.1%} | {r[n]['val_hm']:.4f}" for n in trees)
        + " |"
        for r in reps
    ]
    md += [
        "",
        f"Re-run: `python benchmarks/btm_ratio.py --reps {n_reps} --stage1-epochs {stage1_epochs}"
        + (" --compare-tree OTHER_CHECKOUT" if "compare" in trees else "")
        + "` (`--rows LOG` rebuilds these files "
        "from the rows a run printed)",
    ]
    (res / "btm_ratio.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
