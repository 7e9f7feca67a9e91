"""README's "Which method should I use?" table, read off the method tables' CSV files.

    python benchmarks/which_method.py        # after method_table.py has written its tables: rewrites the files below
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

By shape of data: the regime benchmark (benchmarks/regimes.py, `regimes.json`) answers per imbalance ratio rho and
head-tail ratio eta (the share of head classes: classes with at least the geometric middle of the largest and
smallest counts, `ltzoo.data.profiles.data_regime`), with the same rule on the seeds every row of a regime was run
on; `--rho/--eta`, `--counts` or `--data-dir` pick the nearest regime run (rho on a log scale), print its answer
and write nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
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
REGIMES = RESULTS / "regimes.json"
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


def ranked_ties(rows: list[dict], key: str) -> tuple[list[dict], list[dict]]:
    """``rows`` best first by the mean of ``key``, and the best with every row the seeds cannot separate from it."""
    ranked = sorted(rows, key=lambda r: float(r[key]), reverse=True)
    best = ranked[0]
    return ranked, [r for r in ranked if r is best or not separated(best, r, key)]


def cell(rows: list[dict], key: str) -> str:
    mean = lambda r: float(r[key])  # noqa: E731
    std = lambda r: float(r[f"{key}_std"])  # noqa: E731
    ranked, tied = ranked_ties(rows, key)
    best = ranked[0]
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
    """The regime benchmark's rows (benchmarks/regimes.py's regimes.json: each row's test values per seed)."""
    path = path or REGIMES
    return json.loads(path.read_text())["rows"] if path.is_file() else []


def shared_seed_rows(cell_rows: list[dict]) -> list[dict]:
    """A regime's rows in which_method's units (fractions), each the mean ± std over the seeds *every* row of the
    regime was run on: a grid still running has rows on more seeds than others, and a mean over other data draws
    is not comparable. Empty when no seed is shared."""
    common = sorted(set.intersection(*(set(r["by_seed"]) for r in cell_rows)), key=int) if cell_rows else []
    out = []
    for r in cell_rows if common else []:
        rec = {"method": r["method"], "seeds": len(common)}
        for key in GOALS.values():
            vals = [r["by_seed"][s][key] / 100 for s in common if r["by_seed"][s].get(key) is not None]
            rec[key] = statistics.mean(vals) if vals else float("nan")
            rec[f"{key}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(rec)
    return out


def regimes_of(rows: list[dict]) -> dict[tuple[str, float, float], list[dict]]:
    """(setting, rho, eta) -> the regime's `shared_seed_rows`; scratch first, then rho, then eta."""
    keys = sorted({(r["setting"], r["rho"], r["eta"]) for r in rows}, key=lambda k: (k[0] != "scratch", *k[1:]))
    return {k: shared_seed_rows([r for r in rows if (r["setting"], r["rho"], r["eta"]) == k]) for k in keys}


def regime_section(rows: list[dict]) -> str:
    """Per setting, a table of regimes (rho x eta): the best test HM and the rows tied with it."""
    if not rows:
        return ""
    lines = [
        "By the shape of the data (benchmarks/regimes.py: Fashion-MNIST, step profile, a share eta of the classes "
        "at the most images; test HM, mean ± std over the seeds every row of the regime was run on). For your data: "
        "`python benchmarks/which_method.py --data-dir D` (add `--setting transfer` when you start from weights).",
        "",
        "| setting | rho | eta | seeds | the best HM |",
        "|---|---|---|---|---|",
    ]
    for (setting, rho, eta), cell_rows in regimes_of(rows).items():
        best = cell(cell_rows, "hm") if cell_rows else "no seed shared by every row yet"
        seeds = cell_rows[0]["seeds"] if cell_rows else 0
        lines.append(f"| {setting} | {rho:g} | {eta:g} | {seeds} | {best} |")
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
        rho, eta = args.rho, 0.5 if args.eta is None else args.eta
        if not (math.isfinite(rho) and rho >= 1 and 0 < eta < 1):
            raise SystemExit(
                f"--rho {rho:g} --eta {eta:g}: rho is a number of at least 1 (the largest class's training images over "
                "the smallest's), eta a share in (0, 1) (the classes with many images over all classes)"
            )
        shape = f"rho {rho:g}, eta {eta:g}" + (" (--eta not given: 0.5)" if args.eta is None else "")
    rows = regime_rows()
    near = nearest_regime(rows, rho, eta, args.setting)
    cell_rows = regimes_of(rows)[(args.setting, *near)]
    lines = [f"your data: {shape}", f"the nearest regime run ({args.setting}): rho {near[0]:g}, eta {near[1]:g}"]
    if rho < 2:
        lines.append("  (your classes are about balanced: a long-tail method may not be needed; the answer is a guess)")
    else:
        rhos = sorted({r["rho"] for r in rows})
        if not rhos[0] / 2 <= rho <= rhos[-1] * 2:
            lines.append(f"  (outside the grid's rho {rhos[0]:g} to {rhos[-1]:g}: the nearest cell is a guess)")
    if not cell_rows:
        return "\n".join([*lines, "  no seed is shared by every row of that regime yet: run benchmarks/regimes.py"])
    lines += [f"  {goal}: {cell(cell_rows, key)}" for goal, key in GOALS.items()]
    start = "10 classes from scratch" if args.setting == "scratch" else "5 classes from the transfer source model"
    lines.append(
        f"(benchmarks/results/regimes.md: Fashion-MNIST, {start}, "
        f"at most 300 training images a class; test split, mean ± std over the {cell_rows[0]['seeds']} seed(s) every "
        f"method of the regime was run on, every model chosen on validation; a tie: Welch's t-test cannot separate "
        f"the row from the best, p >= {TIE_P})"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    shape = p.add_argument_group(
        "your data's shape (one of --rho, --counts, --data-dir: prints the nearest regime's answer, writes nothing)"
    )
    given = shape.add_mutually_exclusive_group()
    given.add_argument(
        "--rho", type=float, help="your imbalance ratio: the largest class's training images / the smallest's"
    )
    shape.add_argument(
        "--eta",
        type=float,
        help="with --rho: your head-tail ratio, the share of classes with many images (default 0.5, about an "
        "exponential profile's)",
    )
    given.add_argument("--counts", type=int, nargs="+", help="your training images per class (rho and eta read off)")
    given.add_argument("--data-dir", help="an image folder: its train/<class>/ counts (rho and eta read off)")
    shape.add_argument("--setting", choices=("scratch", "transfer"), help="from scratch (default) or from weights")
    args = p.parse_args(argv)
    if args.rho is not None or args.counts or args.data_dir:
        if args.eta is not None and args.rho is None:
            p.error("--eta goes with --rho (--counts and --data-dir read eta off the counts)")
        args.setting = args.setting or "scratch"
        print(answer(args))
        return 0
    if args.eta is not None or args.setting:
        p.error("--eta and --setting describe your data: add --rho, --counts or --data-dir")
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
