"""The long-tail metrics as text: the Markdown summary table every recipe and ``ltzoo eval`` print."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ltzoo.metrics.longtail import SUMMARY_KEYS

CALIBRATION_KEYS = ("ece", "nll")  # the probability metrics the summary table shows


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _calibration_cell(m: dict, key: str) -> str:
    value = m.get(key)
    if value is None:
        return "-"
    text = f"{value:.3f}" if key == "nll" else _pct(value)
    before = (m.get("uncalibrated") or {}).get(key)
    if before is not None:
        text = (f"{before:.3f}" if key == "nll" else _pct(before)) + " -> " + text
    return text


def summary_table(
    rows: dict[str, dict[str, dict]], splits: Sequence[str] = ("val", "test"), calibration: bool = False
) -> str:
    """A Markdown table: one row per (model, split), the long-tail metrics as percentages; with ``calibration``,
    then ECE and NLL where the rows have them (``uncalibrated -> calibrated`` for a row calibration changed)."""
    calib = [
        k
        for k in (CALIBRATION_KEYS if calibration else ())
        if any(m.get(k) is not None for d in rows.values() for m in d.values())
    ]
    head = "| model | split | " + " | ".join(f"{k} %" for k in SUMMARY_KEYS)
    head += "".join(f" | {'ECE %' if k == 'ece' else 'NLL'}" for k in calib) + " |"
    lines = [head, "|" + "---|" * (len(SUMMARY_KEYS) + len(calib) + 2)]
    for name, by_split in rows.items():
        for split in splits:
            m = by_split.get(split)
            if m:
                cells = [_pct(m.get(k)) for k in SUMMARY_KEYS] + [_calibration_cell(m, k) for k in calib]
                lines.append(f"| {name} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def brief(metrics: dict) -> dict:
    """The headline numbers of a metrics dict (no per-class lists), for logs."""
    return {k: metrics.get(k) for k in SUMMARY_KEYS}


PROBABILITY_KEYS = ("top5", "ece", "classwise_ece", "nll", "brier")


def interval_table(metrics: dict) -> str:
    """A Markdown table of the metrics with their bootstrap intervals, the probability metrics and the notes."""
    boot = metrics.get("bootstrap") or {}
    intervals = boot.get("intervals", {})
    level = f"{100 * boot.get('level', 0.95):g}%"
    lines = [
        f"| metric | value | {level} interval |" if boot else "| metric | value |",
        "|---|---|---|" if boot else "|---|---|",
    ]
    for k in SUMMARY_KEYS:
        if metrics.get(k) is None:
            continue
        iv = intervals.get(k)
        cell = f" {_pct(iv[0])} to {_pct(iv[1])} |" if iv else (" - |" if boot else "")
        lines.append(f"| {k} % | {_pct(metrics[k])} |" + cell)
    before = metrics.get("uncalibrated") or {}
    for k in PROBABILITY_KEYS:
        if metrics.get(k) is not None:
            value = f"{metrics[k]:.4f}" if k in ("nll", "brier") else _pct(metrics[k])
            unit = "" if k in ("nll", "brier") else " %"
            if before.get(k) is not None:  # calibrated: the value before the temperature was folded in, too
                was = f"{before[k]:.4f}" if k in ("nll", "brier") else _pct(before[k])
                value += f" (uncalibrated {was})"
            iv = intervals.get(k)
            cell = f" {_pct(iv[0])} to {_pct(iv[1])} |" if iv else (" - |" if boot else "")
            lines.append(f"| {k}{unit} | {value} |" + cell)
    if boot:
        lines.append("")
        lines.append(f"Intervals: {boot['method']}, {boot['resamples']} resamples, seed {boot['seed']}.")
        lines += [f"Note: {n}." for n in boot.get("notes", [])]
    return "\n".join(lines)
