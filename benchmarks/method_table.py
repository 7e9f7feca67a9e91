"""The method table on Fashion-MNIST-LT: every method of ltzoo on one backbone, seeds, one table.

    python benchmarks/method_table.py                      # run what is missing, then write the table
    python benchmarks/method_table.py --only-table         # rebuild the table from finished runs
    python benchmarks/method_table.py --seeds 0 1 2 --imbalance 100 --groups core ceiling baselines

Each run is a real recipe under `accelerate launch` (stage 1 with ltzoo.recipes.pretrain or ltzoo.recipes.csa,
classifier retraining with ltzoo.recipes.gml, BTM with ltzoo.recipes.btm), written to runs/bench/rho<R>/s<seed>/<name>.
Finished runs (results.json present) are skipped, so the script resumes where it stopped, and
several runners can share the grid (each claims a run with a .claim file): accelerate launch gives a
CPU process one thread, so on a 2-core machine two runners use it fully. Rows come
from the runs' results.json: the test split, evaluated once on the model chosen on the validation
split. Output: benchmarks/results/method_table_rho<R>.{csv,md}, hm_vs_acc_rho<R>.png and
per_class_recall_rho<R>.png.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
STAGE1 = ["--model", "resnet20_cifar", "--epochs", "15", "--batch-size", "128", "--lr", "0.1"]  # pretrain, csa runs
STAGE1_RECIPES = ("pretrain", "csa")

# name -> (recipe, args, stage-1 run it starts from or None, group)
RUNS = {
    "ce": ("pretrain", ["--loss", "ce"], None, "core"),
    "gml_on_ce": ("gml", [], "ce", "core"),
    "btm_on_ce": ("btm", ["--classifier", "gml"], "ce", "core"),
    "ceiling": ("pretrain", ["--loss", "ce", "--imbalance", "1"], None, "ceiling"),
    "bsce": ("pretrain", ["--loss", "bsce"], None, "baselines"),
    "btm_on_bsce": ("btm", ["--classifier", "gml"], "bsce", "baselines"),
    "cb_resample": ("pretrain", ["--loss", "ce", "--sampler", "balanced"], None, "baselines"),
    "cb_reweight": ("pretrain", ["--loss", "cb"], None, "baselines"),
    "la": ("pretrain", ["--loss", "la"], None, "baselines"),
    "ldam_drw": ("pretrain", ["--loss", "ldam_drw"], None, "baselines"),
    "csa": ("csa", ["--loss", "ce"], None, "csa"),
    "btm_on_csa": ("btm", ["--classifier", "gml"], "csa", "csa"),
}

# table row -> (run, key in that run's results "table" or None for its final metrics)
ROWS = {
    "CE": ("ce", None),
    "CB re-sampling": ("cb_resample", None),
    "CB re-weighting": ("cb_reweight", None),
    "Balanced Softmax": ("bsce", None),
    "Logit adjustment (loss)": ("la", None),
    "LDAM-DRW": ("ldam_drw", None),
    "CE + cRT": ("gml_on_ce", "crt"),
    "CE + LWS": ("gml_on_ce", "lws"),
    "CE + tau-norm": ("gml_on_ce", "taunorm"),
    "CE + post-hoc LA": ("gml_on_ce", "la"),
    "CE + GML": ("gml_on_ce", "gml"),
    "CE + GML + ensemble": ("gml_on_ce", None),
    "CE + BTM": ("btm_on_ce", "BTM"),
    "CE + BTM + GML": ("btm_on_ce", None),
    "BSCE + BTM + GML": ("btm_on_bsce", None),
    "CSA (context-shift augmentation)": ("csa", None),
    "CSA + BTM": ("btm_on_csa", "BTM"),
    "CSA + BTM + GML": ("btm_on_csa", None),
    "Ceiling: CE on the full balanced set": ("ceiling", None),
}
THREADS = 1  # per run: run one runner per core (see the module docstring)
COLUMNS = ("acc", "hm", "gm", "min_recall", "many", "medium", "few")


def run_dir(base: Path, seed: int, name: str) -> Path:
    return base / f"s{seed}" / name


def claim(out: Path) -> bool:
    """Claim an unfinished run for this process, so that several runners can share the grid."""
    if (out / "results.json").is_file():
        return False
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".claim"
    if lock.is_file():
        pid = int(lock.read_text() or 0)
        try:
            os.kill(pid, 0)
            return False  # another runner is on it
        except (ProcessLookupError, ValueError):
            lock.unlink(missing_ok=True)  # its runner died: take it over (the recipe resumes)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def recipe_args(name: str, seed: int, base: Path, imbalance: float) -> tuple[str, list[str]]:
    """The recipe of run ``name`` and its flags."""
    recipe, extra, parent, _ = RUNS[name]
    out = run_dir(base, seed, name)
    args = ["--dataset", "fmnist_lt", "--imbalance", str(imbalance), "--seed", str(seed), "--output", str(out),
            "--no-progress", "--threads", str(THREADS)] + (STAGE1 if recipe in STAGE1_RECIPES else []) + extra
    if parent:
        args += ["--init", str(run_dir(base, seed, parent))]
    return recipe, args


def launch(name: str, seed: int, base: Path, imbalance: float, log) -> None:
    recipe, args = recipe_args(name, seed, base, imbalance)
    cmd = ["accelerate", "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", f"ltzoo.recipes.{recipe}"] + args
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    print(f"  {name} (seed {seed}) done in {time.perf_counter() - start:.0f} s", flush=True)


def metrics_of(base: Path, seed: int, row: str) -> dict | None:
    name, key = ROWS[row]
    path = run_dir(base, seed, name) / "results.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    m = res["metrics"]["test"] if key is None else res["table"][key]["test"]
    sec = res.get("seconds", {})
    secs = res.get("train_seconds") or sec.get("btm_total_one_device") or sec.get("btm_total") or sec.get("heads")
    return {**{c: m.get(c) for c in COLUMNS}, "seconds": secs, "peak_memory_mb": res.get("peak_memory_mb"),
            "hardware": res.get("hardware")}


def aggregate(base: Path, seeds: list[int]) -> list[dict]:
    rows = []
    for row in ROWS:
        per_seed = [m for m in (metrics_of(base, s, row) for s in seeds) if m]
        if not per_seed:
            continue
        out = {"method": row, "seeds": len(per_seed)}
        for c in COLUMNS + ("seconds", "peak_memory_mb"):
            vals = [m[c] for m in per_seed if m[c] is not None]
            out[c] = statistics.mean(vals) if vals else None
            out[c + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out["hardware"] = per_seed[0]["hardware"]
        rows.append(out)
    return rows


def write_table(rows: list[dict], imbalance: float, seeds: list[int]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = f"rho{imbalance:g}"
    with open(RESULTS / f"method_table_{tag}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    pct = lambda r, c: "-" if r[c] is None else f"{100 * r[c]:.2f} ± {100 * r[c + '_std']:.2f}"
    lines = [f"Fashion-MNIST-LT, rho={imbalance:g}, resnet20_cifar; test split (1,000 images per class), "
             f"model chosen on the balanced validation split; mean ± std over the seeds run (of {seeds}).",
             f"Hardware: {rows[0]['hardware']}. Seconds: training time of the stage the row adds "
             "(stage 1, the BTM stage, or the classifier heads).", "",
             "| method | seeds | " + " | ".join(COLUMNS) + " | seconds | peak MB |",
             "|---|---|" + "---|" * (len(COLUMNS) + 2)]
    for r in rows:
        lines.append(f"| {r['method']} | {r['seeds']} | " + " | ".join(pct(r, c) for c in COLUMNS)
                     + f" | {r['seconds'] or 0:.0f} | {r['peak_memory_mb'] or 0:.0f} |")
    lines += ["", f"Re-run: `python benchmarks/method_table.py --imbalance {imbalance:g} --seeds {' '.join(map(str, seeds))}`"]
    (RESULTS / f"method_table_{tag}.md").write_text("\n".join(lines) + "\n")
    target_text = targets(rows, tag)
    update_readme(tag, "\n".join(lines) + ("\n\n" + target_text if target_text else ""))
    plot(rows, tag)


def targets(rows: list[dict], tag: str) -> str | None:
    """BTM+GML against its stage 1 and the ceiling: the share of the HM gap closed, min recall, accuracy."""
    by = {r["method"]: r for r in rows}
    ce, btm, top = by.get("CE"), by.get("CE + BTM + GML"), by.get("Ceiling: CE on the full balanced set")
    if not (ce and btm and top):
        return None
    closed = (btm["hm"] - ce["hm"]) / (top["hm"] - ce["hm"])
    checks = [
        ("share of the HM gap to the ceiling closed", f"{100 * closed:.0f}%", ">= 50%", closed >= 0.5),
        ("min recall gain (points)", f"{100 * (btm['min_recall'] - ce['min_recall']):+.2f}", ">= +15",
         btm["min_recall"] - ce["min_recall"] >= 0.15),
        ("accuracy change (points)", f"{100 * (btm['acc'] - ce['acc']):+.2f}", ">= -1", btm["acc"] - ce["acc"] >= -0.01),
    ]
    lines = [f"BTM+GML targets on the test split, means over seeds (CE and BTM+GML: {ce['seeds']} and "
             f"{btm['seeds']} seeds; ceiling: {top['seeds']}): HM {100 * ce['hm']:.2f} (CE) -> {100 * btm['hm']:.2f} "
             f"(BTM+GML), ceiling {100 * top['hm']:.2f}.", "",
             "| target | measured | wanted | met |", "|---|---|---|---|"]
    lines += [f"| {name} | {value} | {want} | {'yes' if ok else 'NO'} |" for name, value, want, ok in checks]
    text = "\n".join(lines) + "\n"
    (RESULTS / f"btm_targets_{tag}.md").write_text(text)
    return text


def update_readme(tag: str, table: str) -> None:
    """Put the table into README.md between its <!-- method-table:TAG --> markers, if it has them."""
    readme = ROOT / "README.md"
    begin, end = f"<!-- method-table:{tag} -->", f"<!-- /method-table:{tag} -->"
    text = readme.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        readme.write_text(head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1])


def plot(rows: list[dict], tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    markers = "osD^v<>phX*"
    for i, r in enumerate(rows):
        ax.errorbar(100 * r["acc"], 100 * r["hm"], xerr=100 * r["acc_std"], yerr=100 * r["hm_std"],
                    fmt=markers[i % len(markers)], label=f"{r['method']} ({r['seeds']} seeds)", capsize=2)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_xlabel("accuracy (%)")
    ax.set_ylabel("harmonic mean of per-class recall (%)")
    ax.set_title(f"Fashion-MNIST-LT {tag}: HM against accuracy (test)")
    fig.tight_layout()
    fig.savefig(RESULTS / f"hm_vs_acc_{tag}.png", dpi=110)
    plt.close(fig)


def plot_recall(base: Path, seed: int, tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4))
    main = ["CE", "Balanced Softmax", "CE + GML + ensemble", "CE + BTM + GML", "CSA (context-shift augmentation)",
            "Ceiling: CE on the full balanced set"]
    shown = 0
    for i, row in enumerate(main):
        name, key = ROWS[row]
        path = run_dir(base, seed, name) / "results.json"
        if not path.is_file():
            continue
        if key is not None:  # table rows of a run hold summary numbers only
            continue
        recall = json.loads(path.read_text())["metrics"]["test"]["per_class_recall"]
        width = 0.8 / len(main)
        ax.bar([c + i * width for c in range(len(recall))], recall, width=width, label=row)
        shown += 1
    if shown:
        ax.set_xlabel("class (most training images first)")
        ax.set_ylabel("test recall")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        fig.savefig(RESULTS / f"per_class_recall_{tag}.png", dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--imbalance", type=float, default=100)
    p.add_argument("--groups", nargs="+", default=["core", "ceiling", "baselines", "csa"],
                   choices=("core", "ceiling", "baselines", "csa"))
    p.add_argument("--only-table", action="store_true")
    args = p.parse_args()
    base = ROOT / "runs" / "bench" / f"rho{args.imbalance:g}"
    if not args.only_table:
        base.mkdir(parents=True, exist_ok=True)
        with open(base / "runs.log", "a") as log:
            for group in args.groups:
                for seed in args.seeds:
                    for name, (_, _, _, g) in RUNS.items():
                        if g == group and claim(run_dir(base, seed, name)):
                            try:
                                launch(name, seed, base, args.imbalance, log)
                            finally:
                                (run_dir(base, seed, name) / ".claim").unlink(missing_ok=True)
    rows = aggregate(base, args.seeds)
    if rows:
        write_table(rows, args.imbalance, args.seeds)
        plot_recall(base, args.seeds[0], f"rho{args.imbalance:g}")
        print((RESULTS / f"method_table_rho{args.imbalance:g}.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
