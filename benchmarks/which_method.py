"""README's "Which method should I use?" table, read off the method tables' CSV files.

    python benchmarks/which_method.py        # after method_table.py has written its tables
    python benchmarks/which_method.py --rho 50 --eta 0.3            # the regime table's answer for that shape
    python benchmarks/which_method.py --data-dir D [--setting transfer]   # ... for an image folder's train/ counts

For each table (rho = 100 own order, the hard-tail order, rho = 10) and each goal (test HM, test min recall,
test accuracy), the best method by test mean among the rows run on every seed of their table, and every
row tied with it: a row ties when the seeds cannot separate it from the best, by Welch's two-sided t-test
on the per-seed test values (from the tables' means and standard deviations over seeds; unequal
variances) at the 5% level (`TIE_P`): p >= 0.05 is a tie. With 3 seeds a side the test is weak (4 degrees of
freedom): means two standard deviations apart can still tie, so it names more ties than the old rule (overlapping
mean ± std) did. The test's unit is the seed: it asks whether the methods differ beyond seed-to-seed variation
(training noise) on this test set; the test images' own sampling noise is the paired bootstrap's business
(`ltzoo compare`, on one seed's predictions). The last line is the pick by validation HM alone, all a user can see
before testing. The
ceilings, the balanced reference and the fp32 precision checks are not methods to choose, and are left out. Writes
benchmarks/results/which_method.md and README.md between its <!-- which-method --> markers.

By shape of data: the regime benchmark (benchmarks/regimes.py, `regimes.csv`) answers per imbalance ratio rho and
head-tail ratio eta (the share of head classes), with the same rule; `--rho/--eta`, `--counts` or `--data-dir` pick
the nearest regime run (rho on a log scale) and print its answer.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from method_table import write_between_markers  # benchmarks/ is on sys.path when this script runs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: column title -> the method table's CSV
TABLES = {
    "rho = 100, own order": RESULTS / "method_table_rho100.csv",
    "rho = 100, hard-tail order": RESULTS / "h200" / "method_table_rho100_hard.csv",
    "rho = 10": RESULTS / "h200" / "method_table_rho10.csv",
}
GOALS = {"the best HM": "hm", "the best min recall": "min_recall", "the best accuracy": "acc"}
REGIMES = RESULTS / "regimes.csv"
MAX_NAMED = 6  # a tie of more rows names its best 3
TIE_P = 0.05  # Welch's t-test p-value at or above which two rows are a tie


def separated(a: dict, b: dict, key: str) -> bool:
    """Whether the seeds separate rows ``a`` and ``b`` on ``key``: Welch's t-test p < `TIE_P`."""
    from scipy.stats import ttest_ind_from_stats

    ma, mb, sa, sb = float(a[key]), float(b[key]), float(a[f"{key}_std"]), float(b[f"{key}_std"])
    na, nb = int(a["seeds"]), int(b["seeds"])
    if sa == 0 and sb == 0:  # no spread over seeds (or one seed): only equal means tie
        return ma != mb
    return float(ttest_ind_from_stats(ma, sa, na, mb, sb, nb, equal_var=False).pvalue) < TIE_P


def candidates(path: Path) -> list[dict]:
    """The rows of a table a user can choose: run on the table's full number of seeds; no ceiling, no fp32 check."""
    rows = list(csv.DictReader(path.open()))
    full = max(int(r["seeds"]) for r in rows)
    return [
        r
        for r in rows
        if int(r["seeds"]) == full
        and not r["method"].startswith(("Ceiling", "Reference"))
        and "fp32" not in r["method"]
    ]


def cell(rows: list[dict], key: str) -> str:
    mean = lambda r: float(r[key])  # noqa: E731
    std = lambda r: float(r[f"{key}_std"])  # noqa: E731
    ranked = sorted(rows, key=mean, reverse=True)
    best = ranked[0]
    tied = [r for r in ranked if r is best or not separated(best, r, key)]
    fmt = lambda r: f"{r['method']} {100 * mean(r):.2f} ± {100 * std(r):.2f}"  # noqa: E731
    if len(tied) == 1:
        return f"{fmt(best)}" + (f" (next: {fmt(ranked[1])})" if len(ranked) > 1 else "")
    if len(tied) > MAX_NAMED:
        return (
            f"tie of {len(tied)} of {len(rows)} methods: "
            + ", ".join(fmt(r) for r in tied[:3])
            + f" and {len(tied) - 3} more down to {100 * mean(tied[-1]):.2f}"
        )
    return "tie: " + ", ".join(fmt(r) for r in tied)


def build() -> str:
    tables = {title: candidates(path) for title, path in TABLES.items() if path.is_file()}
    lines = ["| you want | " + " | ".join(tables) + " |", "|---|" + "---|" * len(tables)]
    for goal, key in GOALS.items():
        lines.append(f"| {goal} | " + " | ".join(cell(rows, key) for rows in tables.values()) + " |")
    picks = [max(rows, key=lambda r: float(r["val_hm"])) for rows in tables.values()]
    lines.append(
        "| the best validation HM | "
        + " | ".join(f"{r['method']} ({100 * float(r['val_hm']):.2f})" for r in picks)
        + " |"
    )
    seeds = sorted({max(int(r["seeds"]) for r in rows) for rows in tables.values()})
    note = (
        f"Rows on {' or '.join(map(str, seeds))} seeds; a tie: Welch's t-test on the seeds' test values cannot "
        f"separate the row from the best (two-sided p >= {TIE_P}). Written by `python benchmarks/which_method.py` from "
        + ", ".join(f"`{p.relative_to(ROOT)}`" for p in TABLES.values() if p.is_file())
        + "."
    )
    return "\n".join(lines) + "\n\n" + note


def regime_rows(path: Path | None = None) -> list[dict]:
    """The regime table's rows (every row of a regime: a grid still running has some on fewer seeds), in which_method's
    units (fractions)."""
    path = path or REGIMES
    if not path.is_file():
        return []
    out = []
    for r in csv.DictReader(path.open()):
        if r["hm_mean"] in ("", "None"):
            continue
        rec = {"setting": r["setting"], "rho": float(r["rho"]), "eta": float(r["eta"]), "method": r["method"]}
        rec["seeds"] = r["seeds"]
        for key in GOALS.values():
            mean, std = r[f"{key}_mean"], r[f"{key}_std"]
            rec[key] = float(mean) / 100 if mean not in ("", "None") else float("nan")
            rec[f"{key}_std"] = float(std) / 100 if std not in ("", "None") else 0.0
        out.append(rec)
    return out


def regime_section(rows: list[dict]) -> str:
    """Per setting, a table of regimes (rho x eta): the best test HM and the rows tied with it."""
    if not rows:
        return ""
    lines = [
        "By the shape of the data (benchmarks/regimes.py: Fashion-MNIST, step profile, a share eta of the classes "
        "at the most images; test HM; seeds: the fewest any row of the regime was run on). For your data: "
        "`python benchmarks/which_method.py --data-dir D` (add `--setting transfer` when you start from weights).",
        "",
        "| setting | rho | eta | seeds | the best HM |",
        "|---|---|---|---|---|",
    ]
    for key in sorted({(r["setting"] != "scratch", r["rho"], r["eta"]) for r in rows}):
        setting = "transfer" if key[0] else "scratch"
        cell_rows = [r for r in rows if (r["setting"], r["rho"], r["eta"]) == (setting, key[1], key[2])]
        seeds = min(int(r["seeds"]) for r in cell_rows)
        lines.append(f"| {setting} | {key[1]:g} | {key[2]:g} | {seeds} | {cell(cell_rows, 'hm')} |")
    return "\n".join(lines)


def nearest_regime(rows: list[dict], rho: float, eta: float, setting: str) -> tuple[float, float]:
    """The regime run closest to (rho, eta): rho on a log scale (a factor of 10 counts as eta's whole range)."""
    cells = {(r["rho"], r["eta"]) for r in rows if r["setting"] == setting}
    if not cells:
        raise SystemExit(f"{REGIMES} has no {setting} rows: run python benchmarks/regimes.py first")
    return min(cells, key=lambda c: (math.log10(c[0]) - math.log10(rho)) ** 2 + (c[1] - eta) ** 2)


def folder_counts(data_dir: str) -> list[int]:
    """Images per class of an image folder's training split (``train/<class>/``, or the folder itself), counted as
    ltzoo's image-folder reader finds them."""
    root = Path(data_dir)
    if not root.is_dir():
        raise SystemExit(f"{root} is not a folder: pass an image folder (train/<class>/<image>)")
    from ltzoo.data.formats import IMG_EXTENSIONS

    root = root / "train" if (root / "train").is_dir() else root
    # the images ltzoo's image-folder reader would train on (ltzoo.data.formats: one level, its extensions)
    counts = [
        sum(f.suffix.lower() in IMG_EXTENSIONS for f in d.iterdir()) for d in sorted(root.iterdir()) if d.is_dir()
    ]
    if not counts:
        raise SystemExit(f"{root} has no class folders: pass an image folder (train/<class>/<image>)")
    return counts


def answer(args) -> str:
    from ltzoo.data.profiles import data_regime

    if args.data_dir or args.counts:
        counts = folder_counts(args.data_dir) if args.data_dir else args.counts
        try:
            rho, eta = data_regime(counts)
        except ValueError as e:
            raise SystemExit(f"{e}: pass the training images of each class, every one at least 1") from None
        shape = f"{len(counts)} classes, {sum(counts)} images: rho {rho:.3g}, eta {eta:.2f}"
    else:
        rho, eta = args.rho, args.eta
        if rho is None or rho < 1 or not 0 < eta < 1:
            raise SystemExit(f"--rho {rho} --eta {eta}: rho is at least 1 (largest class / smallest), eta in (0, 1)")
        shape = f"rho {rho:g}, eta {eta:g}"
    rows = regime_rows()
    near = nearest_regime(rows, rho, eta, args.setting)
    cell_rows = [r for r in rows if r["setting"] == args.setting and (r["rho"], r["eta"]) == near]
    lines = [
        f"your data: {shape}; the nearest regime run ({args.setting}): rho {near[0]:g}, eta {near[1]:g}, "
        f"{min(int(r['seeds']) for r in cell_rows)} seed(s)"
    ]
    rhos = sorted({r["rho"] for r in rows})
    if not rhos[0] / 2 <= rho <= rhos[-1] * 2:
        lines.append(f"  (outside the grid's rho {rhos[0]:g} to {rhos[-1]:g}: the nearest cell is a guess)")
    lines += [f"  {goal}: {cell(cell_rows, key)}" for goal, key in GOALS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rho", type=float, help="your imbalance ratio (largest class / smallest)")
    p.add_argument("--eta", type=float, default=0.5, help="your share of head classes (default 0.5)")
    p.add_argument("--counts", type=int, nargs="+", help="your training images per class")
    p.add_argument("--data-dir", help="an image folder: its train/<class>/ counts")
    p.add_argument("--setting", choices=("scratch", "transfer"), default="scratch", help="from scratch or from weights")
    args = p.parse_args(argv)
    if args.rho is not None or args.counts or args.data_dir:
        print(answer(args))
        return 0
    text = build()
    regimes = regime_section(regime_rows())
    if regimes:
        text += "\n\n" + regimes
    (RESULTS / "which_method.md").write_text(text + "\n")
    write_between_markers("which-method", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
