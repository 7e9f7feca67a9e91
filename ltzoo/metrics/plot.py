"""Plots of per-class recall: bars sorted by training count with HM / GM / min marked, and its distribution."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

_logger = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_per_class_recall(
    metrics: Mapping,
    train_counts: Sequence[int] | None,
    path: str | Path,
    title: str = "",
    class_names: Sequence[str] | None = None,
) -> Path:
    """Save a PNG: per-class recall bars (classes sorted by training count) and the recall histogram.

    Args:
        metrics: a `longtail_metrics` result.
        train_counts: training images per class (sorts the bars and labels the x axis); None keeps class order.
        path: where to write the PNG.
        title: figure title (say which split the numbers come from).
        class_names: names for the x ticks when there are few classes.

    Returns:
        The path written.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    recall = metrics["per_class_recall"]
    classes = [c for c, r in enumerate(recall) if r is not None]
    if train_counts is not None:
        classes.sort(key=lambda c: -train_counts[c])
    values = [recall[c] for c in classes]
    fig, (ax, axh) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 1]})
    ax.bar(range(len(values)), values, width=1.0 if len(values) > 50 else 0.8, color="#4c72b0")
    for key, color, style in (("hm", "#c44e52", "--"), ("gm", "#dd8452", "-."), ("min_recall", "#55a868", ":")):
        ax.axhline(metrics[key], color=color, linestyle=style, label=f"{key} = {100 * metrics[key]:.1f}%")
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("recall")
    ax.set_xlabel("classes, by training images (most first)" if train_counts is not None else "class")
    if len(classes) <= 30:
        names = [class_names[c] if class_names else str(c) for c in classes]
        ticks = [f"{n}\n({train_counts[c]})" if train_counts is not None else n for n, c in zip(names, classes)]
        ax.set_xticks(range(len(classes)), ticks, fontsize=7, rotation=45 if len(classes) > 10 else 0)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title or f"per-class recall (acc {100 * metrics['acc']:.1f}%)")
    axh.hist(values, bins=20, range=(0, 1), color="#4c72b0", orientation="horizontal")
    axh.set_ylim(0, 1.0)
    axh.set_xlabel("classes")
    axh.xaxis.set_major_locator(MaxNLocator(integer=True))
    axh.set_title("recall distribution")
    return _save(plt, fig, path)


def plot_reliability(bins: Mapping, path: str | Path, title: str = "", ece: float | None = None) -> Path:
    """Save a reliability diagram PNG: accuracy against mean confidence per bin, the share of images below.

    Args:
        bins: `ltzoo.metrics.probability.reliability_bins` of the logits.
        path: where to write the PNG.
        title: figure title (say which model and split).
        ece: the expected calibration error, shown in the legend.
    """
    plt = _pyplot()
    edges, count = bins["edges"], bins["count"]
    width = edges[1] - edges[0]
    centers = [lo + width / 2 for lo in edges[:-1]]
    total = max(1, sum(count))
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = [i for i, n in enumerate(count) if n]
    ax.bar(
        [centers[i] for i in filled],
        [bins["accuracy"][i] for i in filled],
        width=width * 0.95,
        color="#4c72b0",
        label="accuracy" + (f" (ECE {100 * ece:.2f}%)" if ece is not None else ""),
    )
    ax.bar(
        [centers[i] for i in filled],
        [bins["confidence"][i] - bins["accuracy"][i] for i in filled],
        bottom=[bins["accuracy"][i] for i in filled],
        width=width * 0.95,
        color="#c44e52",
        alpha=0.35,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "reliability diagram")
    axc.bar(centers, [n / total for n in count], width=width * 0.95, color="#888888")
    axc.set_xlim(0, 1)
    axc.set_xlabel(f"confidence (top-label probability, {len(count)} bins)")
    axc.set_ylabel("share of images")
    return _save(plt, fig, path)


def plot_prior_sweep(rows: Sequence[Mapping], path: str | Path, title: str = "") -> Path:
    """Save a PNG: accuracy under each shifted test prior, as predicted and after prior correction."""
    plt = _pyplot()
    names = [r["prior"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4))
    for kind, label, style in (
        ("plain", "as predicted", "o-"),
        ("given", "logit adjustment, true prior", "s--"),
        ("em", "logit adjustment, EM-estimated prior", "^:"),
    ):
        ax.plot(range(len(rows)), [100 * r[kind]["acc"] for r in rows], style, label=label)
    ax.set_xticks(range(len(rows)), names, rotation=45, fontsize=8)
    ax.set_ylabel("accuracy under the test prior (%)")
    ax.set_xlabel("test class prior (forward: the training order; backward: reversed; number: imbalance ratio)")
    ax.legend(fontsize=8)
    ax.set_title(title or "shifted test priors")
    return _save(plt, fig, path)


def _save(plt, fig, path: str | Path) -> Path:
    """Lay out, write (its folder made) and close a figure; the path written."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    _logger.info("wrote %s", path)
    return path
