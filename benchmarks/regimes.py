"""Regime benchmark: which method for which shape of data, across the imbalance ratio rho and the head-tail ratio eta.

    python benchmarks/regimes.py                                  # the grid (what is missing), then the tables
    python benchmarks/regimes.py --rho 10 --eta 0.5 --seeds 0     # one cell
    python benchmarks/regimes.py --only-table
    python benchmarks/regimes.py --jobs 2                         # two cells at a time (one thread each)

Data: Fashion-MNIST made long-tailed with the two-level (step) profile, ``--profile step:ETA``: a share eta of the
classes keeps ``N_MAX`` training images, the rest ``N_MAX / rho`` (eta 0.2 tail-heavy, 0.5 the classic step, 0.8
head-heavy); the class order drawn from the seed; a balanced validation split of 100 per class; the test split's
1,000 per class. Two settings:

- from scratch, 10 classes, ltzoo's CIFAR ResNet-20 with ltzoo's defaults: CE and Balanced Softmax (``pretrain``),
  CE + cRT (the cRT head of ``gml --init CE --baselines``), BTM + GML (``btm --init CE``), LT-Soups (``btm --init CE
  -c fmnist_lt/btm_ltsoups``), and LT-Soups with the authors' script's merge (``... --merge sequential``);
- transfer, the 5 classes 5-9 (``fmnist_target5_lt``), from the transfer benchmark's source model (a resnet20_cifar
  trained on classes 0-4): LoRA (``pretrain --init SOURCE --new-head --peft lora``) and LoRA-BTM (``btm --init LORA
  --peft lora``), beside full fine-tuning + BTM (``btm --init SOURCE --new-head``) and LT-Soups from it (both merges).

Every model choice is made on the validation split; the test split is read once per run. Rows: test HM, min recall,
accuracy, many/few (mean ± std over the seeds) and the exported model's bootstrap 95% interval of test HM (seed 0;
the cRT row is a head of the gml run's table and has none). Which method per regime: the best test-HM mean and every
row the seeds cannot separate from it (Welch's t-test, benchmarks/which_method.py's rule, on the seeds every row of
the cell was run on). BTM against LT-Soups (each merge; from the same stage 1): the per-seed test-HM differences
(the same data draw and test set on both sides), their mean and 95% t-interval over the seeds, and seed 0's paired
stratified bootstrap interval of the difference on its test images (`ltzoo compare`'s). Output:
benchmarks/results/regimes.{csv,md,json} and regimes.png (the regime map: the best method per cell, and BTM -
LT-Soups' documented setting, per setting).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from which_method import ranked_ties, shared_seed_rows  # benchmarks/ is on sys.path when this script runs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BASE = ROOT / "runs" / "regimes"
SOURCE = ROOT / "runs" / "transfer" / "source" / "resnet20_cifar"
RHOS = (10, 100)
ETAS = (0.2, 0.5, 0.8)
SEEDS = (0, 1, 2)
N_MAX = 300  # head classes: 300 images; tails 30 (rho 10) or 3 (rho 100); the grid fits a 2-core CPU in hours
THREADS = 1
SEQ = ["--merge", "sequential"]  # LT-Soups as the authors' script merges (--merge-lm 0.7)
KEYS = ("hm", "min_recall", "acc", "many", "few")
#: per setting: (BTM's row, an LT-Soups row), each from the same stage 1; the first LT-Soups is its documented setting
#: (the members averaged), the second the authors' script's sequential merge (``--merge sequential``)
SEQUENTIAL = " (sequential merge)"
VERSUS = {
    "scratch": [("BTM + GML", "LT-Soups"), ("BTM + GML", "LT-Soups" + SEQUENTIAL)],
    "transfer": [
        ("full FT + BTM + GML", "full FT + LT-Soups"),
        ("full FT + BTM + GML", "full FT + LT-Soups" + SEQUENTIAL),
    ],
}


def runs_of(setting: str, rho: int, eta: float, seed: int) -> list[tuple[str, str, list[str], str | None]]:
    """(row, recipe, flags, the row's key in the run's table or None for the exported model), in order."""
    cell = BASE / setting / f"rho{rho}-eta{eta:g}-s{seed}"
    data = ["--imbalance", str(rho), "--profile", f"step:{eta:g}", "--n-max", str(N_MAX), "--seed", str(seed)]
    data += ["--class-order", f"random:{seed}", "--no-progress", "--threads", str(THREADS)]
    if setting == "scratch":
        data = ["--dataset", "fmnist_lt", *data]
        ce = str(cell / "ce")
        return [
            ("CE", "pretrain", [*data, "--model", "resnet20_cifar", "--output", ce], None),
            ("Balanced Softmax", "pretrain", [*data, "--loss", "bsce", "--output", str(cell / "bsce")], None),
            ("CE + cRT", "gml", [*data, "--init", ce, "--baselines", "--output", str(cell / "gml")], "crt"),
            ("BTM + GML", "btm", [*data, "--init", ce, "--output", str(cell / "btm")], None),
            (
                "LT-Soups",
                "btm",
                [*data, "--init", ce, "-c", "fmnist_lt/btm_ltsoups", "--output", str(cell / "soup")],
                None,
            ),
            (
                "LT-Soups" + SEQUENTIAL,
                "btm",
                [*data, "--init", ce, "-c", "fmnist_lt/btm_ltsoups", *SEQ, "--output", str(cell / "soup_seq")],
                None,
            ),
        ]
    data = ["--dataset", "fmnist_target5_lt", *data]
    src = ["--init", str(SOURCE), "--new-head"]
    lora = str(cell / "lora")
    return [
        ("LoRA", "pretrain", [*data, *src, "--peft", "lora", "--output", lora], None),
        ("LoRA-BTM", "btm", [*data, "--init", lora, "--peft", "lora", "--output", str(cell / "lora_btm")], None),
        ("full FT + BTM + GML", "btm", [*data, *src, "--output", str(cell / "btm")], None),
        (
            "full FT + LT-Soups",
            "btm",
            [*data, *src, "-c", "fmnist_lt/btm_ltsoups", "--output", str(cell / "soup")],
            None,
        ),
        (
            "full FT + LT-Soups" + SEQUENTIAL,
            "btm",
            [*data, *src, "-c", "fmnist_lt/btm_ltsoups", *SEQ, "--output", str(cell / "soup_seq")],
            None,
        ),
    ]


def _out(flags: list[str]) -> Path:
    return Path(flags[flags.index("--output") + 1])


def run_cell(setting: str, rho: int, eta: float, seed: int, log) -> None:
    for row, recipe, flags, _ in runs_of(setting, rho, eta, seed):
        if (_out(flags) / "results.json").is_file():
            continue
        cmd = [sys.executable, "-m", f"ltzoo.recipes.{recipe}", *flags]
        print(f"[{time.strftime('%H:%M:%S')}] {setting} rho {rho} eta {eta} s{seed} {row}", file=log, flush=True)
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode != 0:
            print(f"  FAILED: {' '.join(cmd)}", file=log, flush=True)
            return  # the cell's later rows need this one


def collect() -> list[dict]:
    rows = []
    for setting in ("scratch", "transfer"):
        for rho in RHOS:
            for eta in ETAS:
                by_row: dict[str, list[dict]] = {}
                seeds_of: dict[str, list[int]] = {}
                intervals: dict[str, list] = {}
                for seed in SEEDS:
                    for row, _, flags, key in runs_of(setting, rho, eta, seed):
                        path = _out(flags) / "results.json"
                        if not path.is_file():
                            continue
                        res = json.loads(path.read_text())
                        test = res["table"][key]["test"] if key else res["metrics"]["test"]
                        by_row.setdefault(row, []).append(test)
                        seeds_of.setdefault(row, []).append(seed)
                        if not key and seed == 0:
                            intervals[row] = (
                                (res["metrics"]["test"].get("bootstrap") or {}).get("intervals", {}).get("hm")
                            )
                for row, tests in by_row.items():
                    rec = {"setting": setting, "rho": rho, "eta": eta, "method": row, "seeds": len(tests)}
                    for k in KEYS:
                        vals = [100 * t[k] for t in tests if t.get(k) is not None]
                        rec[f"{k}_mean"] = statistics.mean(vals) if vals else None
                        rec[f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
                    iv = intervals.get(row)
                    rec["hm_interval_seed0"] = [100 * v for v in iv] if iv else None
                    rec["by_seed"] = {  # every key, per seed: which_method compares on the seeds a regime shares
                        s: {k: 100 * t[k] for k in KEYS if t.get(k) is not None} for s, t in zip(seeds_of[row], tests)
                    }
                    rows.append(rec)
    return rows


def winners(rows: list[dict], setting: str, rho: int, eta: float) -> list[dict]:
    """The best test-HM row of a cell and every row tied with it, best first (which_method's rule, on the seeds every
    row of the cell was run on: each a `which_method.shared_seed_rows` row, with its ``seeds``); empty when none."""
    cell = shared_seed_rows([r for r in rows if (r["setting"], r["rho"], r["eta"]) == (setting, rho, eta)])
    return ranked_ties(cell, "hm")[1] if cell else []


def versus(rows: list[dict]) -> list[dict]:
    """BTM - LT-Soups in test HM per cell (points): the paired per-seed differences' mean and 95% t-interval over
    the seeds both ran, and seed 0's paired bootstrap interval of the difference on its test images."""
    from scipy.stats import t as student

    out = []
    for setting, pairs in VERSUS.items():
        for btm, soup in pairs:
            for rho in RHOS:
                for eta in ETAS:
                    by = {r["method"]: r for r in rows if (r["setting"], r["rho"], r["eta"]) == (setting, rho, eta)}
                    if btm not in by or soup not in by:
                        continue
                    a, b = by[btm]["by_seed"], by[soup]["by_seed"]
                    seeds = sorted(set(a) & set(b))
                    if not seeds:  # no seed run on both sides
                        continue
                    diffs = [a[s]["hm"] - b[s]["hm"] for s in seeds]
                    rec = {"setting": setting, "rho": rho, "eta": eta, "seeds": len(seeds), "btm": btm, "soup": soup}
                    rec["difference"] = statistics.mean(diffs)
                    rec["interval"] = None
                    if len(diffs) > 1:
                        half = student.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
                        rec["interval"] = [rec["difference"] - half, rec["difference"] + half]
                    rec["bootstrap_seed0"] = paired_interval(setting, rho, eta, btm, soup) if 0 in seeds else None
                    out.append(rec)
    return out


def paired_interval(setting: str, rho: int, eta: float, a: str, b: str) -> list[float] | None:
    """Seed 0's paired stratified bootstrap 95% interval of row ``a`` - row ``b`` in test HM (points), from the two
    runs' kept test predictions (None when either run kept none)."""
    from ltzoo.cli.compare import per_image
    from ltzoo.metrics import paired_bootstrap
    from ltzoo.runfolder.predictions import load_predictions

    runs = {row: _out(flags) for row, _, flags, _ in runs_of(setting, rho, eta, 0)}
    files = [runs[a] / "predictions.safetensors", runs[b] / "predictions.safetensors"]
    if not all(f.is_file() for f in files):
        return None
    pa, pb = (load_predictions(f) for f in files)
    (za, labels), (zb, labels_b) = pa.split("test"), pb.split("test")
    if not bool((labels == labels_b).all()):
        raise ValueError(f"{files[0]} and {files[1]} hold different test sets")
    many, few = pa.shot_thresholds
    res = paired_bootstrap(
        labels, per_image(zb, labels), per_image(za, labels), za.shape[1], pa.train_counts, many, few
    )
    return [100 * v for v in res["hm"]["interval"]]


def write(rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    flat = [
        {
            **{k: v for k, v in r.items() if k != "by_seed"},
            "hm_per_seed": " ".join(f"{v['hm']:.2f}" for v in r["by_seed"].values()),
        }
        for r in rows
    ]
    with open(RESULTS / "regimes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(flat[0]) if flat else ["setting"])
        w.writeheader()
        w.writerows(flat)
    lines = [
        "# Which method for which regime: imbalance ratio rho x head-tail ratio eta",
        "",
        f"Fashion-MNIST, step profile `step:eta` (a share eta of the classes at {N_MAX} training images, the rest at "
        f"{N_MAX}/rho), class order drawn from the seed; test split, mean ± std over the seeds run (of "
        f"{list(SEEDS)}); every model chosen on the validation split. HM 95%: the exported model's bootstrap "
        "interval of test HM on seed 0.",
        "",
        "| setting | rho | eta | method | seeds | test HM | HM 95% (seed 0) | min recall | acc | many | few |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ms(r, k):
        m = r.get(f"{k}_mean")
        return "-" if m is None else f"{m:.2f} ± {r[f'{k}_std']:.2f}" if r["seeds"] > 1 else f"{m:.2f} (1 seed)"

    for r in rows:
        iv = r["hm_interval_seed0"]
        lines.append(
            f"| {r['setting']} | {r['rho']} | {r['eta']:g} | {r['method']} | {r['seeds']} | {ms(r, 'hm')} | "
            f"{f'{iv[0]:.1f} to {iv[1]:.1f}' if iv else '-'} | {ms(r, 'min_recall')} | {ms(r, 'acc')} | "
            f"{ms(r, 'many')} | {ms(r, 'few')} |"
        )
    lines += ["", "## Which method per regime (best test HM, and the rows the seeds cannot separate from it)", ""]
    lines += ["| setting | rho | eta | seeds | best |", "|---|---|---|---|---|"]
    for setting in ("scratch", "transfer"):
        for rho in RHOS:
            for eta in ETAS:
                best = winners(rows, setting, rho, eta)
                names = ", ".join(r["method"] for r in best) if best else "not run"
                lines.append(f"| {setting} | {rho} | {eta:g} | {best[0]['seeds'] if best else 0} | {names} |")
    lines += ["", "## BTM against LT-Soups (test HM, BTM minus LT-Soups, points)", ""]
    lines += [
        "Each setting's pair starts from the same stage 1 and is paired by seed (the same data draw and test set). "
        "95% over seeds: the t-interval of the per-seed differences' mean; bootstrap (seed 0): the paired "
        "stratified bootstrap interval of the difference on seed 0's test images (`ltzoo compare`'s).",
        "",
        "| setting | rho | eta | LT-Soups merge | seeds | BTM - LT-Soups | 95% over seeds | bootstrap (seed 0) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    vs = versus(rows)
    for v in vs:
        iv, bs = v["interval"], v["bootstrap_seed0"]
        merge = "sequential" if SEQUENTIAL in v["soup"] else "uniform"
        lines.append(
            f"| {v['setting']} | {v['rho']} | {v['eta']:g} | {merge} | "
            f"{v['seeds']} | {v['difference']:+.2f} | "
            f"{f'{iv[0]:+.2f} to {iv[1]:+.2f}' if iv else '-'} | {f'{bs[0]:+.2f} to {bs[1]:+.2f}' if bs else '-'} |"
        )
    lines += ["", "Re-run: `python benchmarks/regimes.py` (runs already made are read back)."]
    (RESULTS / "regimes.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "regimes.json").write_text(json.dumps({"rows": rows, "btm_vs_lt_soups": vs}, indent=1))
    plot(rows, vs)


def short(method: str) -> str:
    """A row's name as the map's cells print it (the tables keep the full names)."""
    for long, brief in (("full FT + ", "FT + "), (SEQUENTIAL, " (seq.)"), ("Balanced Softmax", "Bal. Softmax")):
        method = method.replace(long, brief)
    return method


def plot(rows: list[dict], vs: list[dict]) -> None:
    """The regime map, a row per setting: the best method per (rho, eta) cell (coloured by method, ties named),
    and BTM - LT-Soups in test HM points (its mean over the seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap

    settings = [s for s in ("scratch", "transfer") if any(r["setting"] == s for r in rows)] or ["scratch"]
    diffs = {  # the map: BTM against LT-Soups' documented setting
        (v["setting"], v["rho"], v["eta"]): v["difference"] for v in vs if v["soup"] == VERSUS[v["setting"]][0][1]
    }
    fig, axes = plt.subplots(len(settings), 2, figsize=(14, 4.2 * len(settings)), squeeze=False)
    palette = plt.get_cmap("tab10").colors
    for k, setting in enumerate(settings):
        methods = list(dict.fromkeys(r["method"] for r in rows if r["setting"] == setting))
        best = np.full((len(RHOS), len(ETAS)), np.nan)
        grid = np.full((len(RHOS), len(ETAS)), np.nan)
        ax = axes[k][0]
        for i, rho in enumerate(RHOS):
            for j, eta in enumerate(ETAS):
                tied = winners(rows, setting, rho, eta)
                if tied:
                    lead, seeds, names = tied[0], tied[0]["seeds"], [r["method"] for r in tied]
                    best[i, j] = methods.index(names[0])
                    text = f"{short(names[0])}\n{100 * lead['hm']:.1f} ({seeds} seed{'s' * (seeds > 1)})"
                    if len(names) > 1:
                        more = f"\nand {len(names) - 3} more" if len(names) > 3 else ""
                        text += "\ntied: " + "\n".join(short(n) for n in names[1:3]) + more
                else:
                    text = "not run"
                ax.text(j, i, text, ha="center", va="center", fontsize=7)
                d = diffs.get((setting, rho, eta))
                if d is not None:
                    grid[i, j] = d
        cmap = ListedColormap([tuple(0.55 + 0.45 * c for c in palette[m % 10]) for m in range(max(len(methods), 1))])
        ax.imshow(best, cmap=cmap, vmin=-0.5, vmax=max(len(methods), 1) - 0.5)
        ax.set_title(f"{setting}: best test HM (mean over seeds; ties by Welch's t-test)", fontsize=9)
        lim = max(float(np.nanmax(np.abs(grid))), 1.0) if np.isfinite(grid).any() else 1.0
        im = axes[k][1].imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim)
        for i in range(len(RHOS)):
            for j in range(len(ETAS)):
                if np.isfinite(grid[i, j]):
                    dark = abs(grid[i, j]) > 0.6 * lim
                    axes[k][1].text(
                        j, i, f"{grid[i, j]:+.1f}", ha="center", va="center", fontsize=10, color="w" if dark else "k"
                    )
        btm, soup = VERSUS[setting][0]
        axes[k][1].set_title(
            f"{setting}: {short(btm)} minus {short(soup)}, test HM points (blue: BTM ahead)", fontsize=9
        )
        fig.colorbar(im, ax=axes[k][1], fraction=0.046)
        for ax in axes[k]:
            ax.set_xticks(
                range(len(ETAS)),
                [f"eta {e:g}" + (" (tail-heavy)" if e < 0.5 else " (head-heavy)" if e > 0.5 else "") for e in ETAS],
            )
            ax.set_yticks(range(len(RHOS)), [f"rho {r}" for r in RHOS])
    fig.tight_layout()
    fig.savefig(RESULTS / "regimes.png", dpi=120)
    plt.close(fig)


def main() -> int:
    global N_MAX, BASE, RESULTS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rho", type=int, nargs="+", default=list(RHOS))
    p.add_argument("--eta", type=float, nargs="+", default=list(ETAS))
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--settings", nargs="+", default=["scratch", "transfer"], choices=("scratch", "transfer"))
    p.add_argument("--only-table", action="store_true")
    p.add_argument("--jobs", type=int, default=1, help="cells run at a time (each run one thread; at most the cores)")
    p.add_argument("--n-max", type=int, default=None, help="images of a head class (a smaller grid for a smoke run)")
    p.add_argument("--base", default=None, help="where the runs go (default runs/regimes)")
    p.add_argument("--results", default=None, help="where the tables and the map go (default benchmarks/results)")
    args = p.parse_args()
    N_MAX = args.n_max or N_MAX
    BASE = Path(args.base) if args.base else BASE
    RESULTS = Path(args.results) if args.results else RESULTS
    if not args.only_table:
        BASE.mkdir(parents=True, exist_ok=True)
        with open(BASE / "regimes.log", "a") as log:
            if "transfer" in args.settings and not (SOURCE / "results.json").is_file():
                import transfer

                transfer.run_source("resnet20_cifar", log)
            cells = [
                (setting, rho, eta, seed)
                for seed in args.seeds
                for setting in args.settings
                for rho in args.rho
                for eta in args.eta
            ]
            jobs = max(1, min(args.jobs, os.cpu_count() or 1))
            with ThreadPoolExecutor(jobs) as pool:  # each cell's runs in order (a row may need the one before)
                list(pool.map(lambda c: run_cell(*c, log), cells))
    write(collect())
    print((RESULTS / "regimes.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
