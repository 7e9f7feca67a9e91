"""The long-tail metrics as text: the Markdown summary table every recipe and ``ltzoo eval`` print."""
from __future__ import annotations

from typing import Any, Sequence

from ltzoo.metrics.longtail import SUMMARY_KEYS


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def summary_table(rows: dict[str, dict[str, dict]], splits: Sequence[str] = ("val", "test")) -> str:
    """A Markdown table: one row per (model, split), the long-tail metrics as percentages."""
    head = "| model | split | " + " | ".join(f"{k} %" for k in SUMMARY_KEYS) + " |"
    lines = [head, "|" + "---|" * (len(SUMMARY_KEYS) + 2)]
    for name, by_split in rows.items():
        for split in splits:
            m = by_split.get(split)
            if m:
                lines.append(f"| {name} | {split} | " + " | ".join(_pct(m.get(k)) for k in SUMMARY_KEYS) + " |")
    return "\n".join(lines)


def brief(metrics: dict) -> dict:
    """The headline numbers of a metrics dict (no per-class lists), for logs."""
    return {k: metrics.get(k) for k in SUMMARY_KEYS}
