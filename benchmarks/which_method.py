"""README's "Which method should I use?" table, read off the method tables' CSV files.

    python benchmarks/which_method.py        # after method_table.py has written its tables

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
"""

from __future__ import annotations

import csv
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


def main() -> int:
    text = build()
    (RESULTS / "which_method.md").write_text(text + "\n")
    write_between_markers("which-method", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
