"""Plots of per-class recall (bars for a few classes; recall against training images on a log axis for many,
with a binned mean, the shot groups and the worst classes named), its distribution, and the other metric plots."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from ltzoo.files import atomic_path

_logger = logging.getLogger(__name__)

#: Up to this many classes the per-class plot is one labelled bar per class; above it, a scatter on a log count axis.
BARS_UP_TO = 50
#: The lowest-recall classes named on the many-class plot.
WORST_NAMED = 5
#: The shot cut-offs when neither the metrics nor the caller give them (`longtail_metrics`' defaults).
DEFAULT_SHOTS = {"many": 100, "few": 20}
_GROUPS = (  # name, colour, label
    ("many", "#4c72b0", "many-shot"),
    ("medium", "#dd8452", "medium-shot"),
    ("few", "#c44e52", "few-shot"),
)
_SUMMARY_LINES = (  # key, label, colour, style
    ("hm", "HM", "#7b3294", "--"),
    ("gm", "GM", "#1b7837", "-."),
    ("min_recall", "min", "#555555", ":"),
)


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
    *,
    shot_thresholds: Mapping[str, int] | Sequence[int] | None = None,
    worst: int = WORST_NAMED,
) -> Path:
    """Save a PNG of the per-class recall and its distribution (`build_per_class_figure`), written atomically.

    Args:
        metrics: a `longtail_metrics` result (its ``shot_thresholds`` place the shot groups).
        train_counts: training images per class; None keeps class order (few classes) or ranks by recall (many).
        path: where to write the PNG.
        title: figure title (say which split the numbers come from).
        class_names: names for the x ticks (few classes) or the worst classes (many).
        shot_thresholds: ``{"many": m, "few": f}`` or ``(m, f)``; overrides the metrics' own.
        worst: how many of the lowest-recall classes the many-class plot names.

    Returns:
        The path written.
    """
    plt = _pyplot()
    fig = build_per_class_figure(
        metrics, train_counts, title, class_names, shot_thresholds=shot_thresholds, worst=worst
    )
    _logger.debug("per-class recall plot: %s layout", fig.get_label())
    return _save(plt, fig, path, tight=fig.get_label() == "bars")


def build_per_class_figure(
    metrics: Mapping,
    train_counts: Sequence[int] | None,
    title: str = "",
    class_names: Sequence[str] | None = None,
    *,
    shot_thresholds: Mapping[str, int] | Sequence[int] | None = None,
    worst: int = WORST_NAMED,
):
    """The per-class recall figure, not saved; its label (``fig.get_label()``) names the layout chosen.

    - ``"bars"`` (at most `BARS_UP_TO` classes): one bar per class, sorted by training images (most first) and
      coloured by shot group, each labelled with its name and count; HM, GM and min recall as lines.
    - ``"scatter"`` (more classes, with training counts): each class's recall against its training images on a
      log axis, the mean (with a band of one standard deviation) per log-count bin, the many / medium / few
      groups shaded at their cut-offs with their size and mean, and the ``worst`` lowest-recall classes circled
      and named.
    - ``"profile"`` (more classes, no counts): the recalls ranked from best to worst, the worst named.

    Beside it: the histogram of per-class recall, stacked by shot group, each bar's class count written at
    its end so a bin of two tail classes reads as well as one of three hundred head classes. Classes absent
    from the evaluation (recall None) are left out.
    """
    import numpy as np

    plt = _pyplot()
    recall = metrics["per_class_recall"]
    present = np.array([r is not None for r in recall], dtype=bool)
    index = np.flatnonzero(present)
    values = np.array([recall[c] for c in index], dtype=float)
    counts = None if train_counts is None else np.asarray(list(train_counts), dtype=float)[index]
    cuts = _shot_cuts(metrics, shot_thresholds)
    groups = None if counts is None else _group_of(counts, cuts)
    names = [_class_name(class_names, c) for c in index]
    title = title or f"per-class recall (acc {100 * metrics['acc']:.1f}%)"
    if len(values) <= BARS_UP_TO:
        fig, (ax, axh) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 1]}, sharey=True)
        _bars(ax, metrics, values, counts, groups, names, cuts, title)
        layout = "bars"
    else:
        fig = plt.figure(figsize=(15, 5.4))  # laid out by hand: an automatic layout would double the time to write it
        grid = fig.add_gridspec(
            1, 3, width_ratios=[3.3, 1.1, 1.35], left=0.05, right=0.995, bottom=0.1, top=0.93, wspace=0.05
        )
        ax = fig.add_subplot(grid[0])
        axh = fig.add_subplot(grid[1], sharey=ax)
        axw = fig.add_subplot(grid[2])
        ranked = _worst(values, counts, worst)
        absent = len(recall) - len(values)
        title = f"{title}  ({len(values):,} classes" + (f"; {absent:,} absent from the split)" if absent else ")")
        if counts is not None:
            _scatter(ax, metrics, values, counts, groups, cuts, ranked, title)
            layout = "scatter"
        else:
            _profile(ax, metrics, values, ranked, title)
            layout = "profile"
        _worst_list(axw, values, counts, groups, names, ranked)
    _recall_histogram(axh, values, groups)
    if layout != "bars":  # one legend, beside the plot rather than over its points
        handles, labels = axh.get_legend_handles_labels()
        more = ax.get_legend_handles_labels()
        axw.legend(handles + more[0], labels + more[1], loc="lower left", fontsize=8, frameon=False)
    fig.set_label(layout)
    return fig


def _shot_cuts(metrics: Mapping, given) -> dict:
    """``{"many": m, "few": f}``: the caller's, else the metrics', else `longtail_metrics`' defaults."""
    if given is None:
        given = metrics.get("shot_thresholds") or DEFAULT_SHOTS
    if not isinstance(given, Mapping):
        given = dict(zip(("many", "few"), given))
    return {"many": int(given["many"]), "few": int(given["few"])}


def _group_of(counts, cuts: Mapping[str, int]):
    """Each class's shot group name, as `longtail_metrics` draws them (many: > many; few: < few)."""
    import numpy as np

    return np.where(counts > cuts["many"], "many", np.where(counts < cuts["few"], "few", "medium"))


def _class_name(class_names: Sequence[str] | None, c: int, width: int = 30) -> str:
    name = str(class_names[c]) if class_names is not None and c < len(class_names) else f"class {c}"
    name = name if len(name) <= width else name[: width - 1] + "\u2026"
    return name.replace("$", r"\$")  # a literal dollar sign, not matplotlib's mathtext


def _percent_axis(ax) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))


def _summary_lines(ax, metrics: Mapping) -> None:
    """HM, GM and min recall as horizontal lines, their values in the legend."""
    for key, label, color, style in _SUMMARY_LINES:
        if metrics.get(key) is not None:
            ax.axhline(
                metrics[key], color=color, linestyle=style, linewidth=1.3, label=f"{label} {100 * metrics[key]:.1f}%"
            )


def _bars(ax, metrics, values, counts, groups, names, cuts, title) -> None:
    """The few-class chart: one bar per class (most training images first), coloured by shot group."""
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    order = np.argsort(-counts, kind="stable") if counts is not None else np.arange(len(values))
    x = np.arange(len(order))
    if groups is None:
        ax.bar(x, values[order], width=0.8, color=_GROUPS[0][1])
    else:
        for name, color, label in _GROUPS:
            sel = groups[order] == name
            if sel.any():
                ax.bar(x[sel], values[order][sel], width=0.8, color=color, label=_group_label(name, label, cuts))
    _summary_lines(ax, metrics)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(-0.6, len(order) - 0.4)
    _percent_axis(ax)
    ax.set_ylabel("recall")
    ax.set_xlabel("classes, by training images (most first)" if counts is not None else "class")
    labels = [names[i] if len(names[i]) <= 24 else names[i][:23] + "\u2026" for i in order]
    room = 12 * 72 * 0.72 / len(order)  # points of x axis per class
    if max((len(t) for t in labels), default=0) * 4.3 <= room:  # names fit side by side: name over its count
        ticks = [f"{t}\n({int(counts[i])})" if counts is not None else t for t, i in zip(labels, order)]
        ax.set_xticks(x, ticks, fontsize=7)
    else:  # rotated, one line each
        ticks = [f"{t} ({int(counts[i])})" if counts is not None else t for t, i in zip(labels, order)]
        ax.set_xticks(x, ticks, fontsize=6.5 if len(order) > 30 else 7)
        ax.tick_params(axis="x", labelrotation=90 if len(order) > 30 else 35)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
        ax.figure.set_size_inches(12, 4 + max(len(t) for t in ticks) * 4.0 / 72 * (1.0 if len(order) > 30 else 0.6))
    pairs = list(zip(*ax.get_legend_handles_labels()))
    rows = [[p for p in pairs if not isinstance(p[0], Line2D)], [p for p in pairs if isinstance(p[0], Line2D)]]
    rows = [r for r in rows if r]
    if rows:
        ncol = max(len(r) for r in rows)
        blank = (Patch(visible=False), "")
        cells = [(r + [blank] * (ncol - len(r)))[c] for c in range(ncol) for r in rows]  # a legend fills by column,
        handles, labels = [h for h, _ in cells], [t for _, t in cells]  # so: shot groups above, summary lines below
        ax.legend(
            handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=ncol, fontsize=7.5, frameon=False
        )
    ax.set_title(title, pad=34)


def _group_label(name: str, label: str, cuts: Mapping[str, int]) -> str:
    rule = {"many": f"> {cuts['many']}", "medium": f"{cuts['few']}\u2013{cuts['many']}", "few": f"< {cuts['few']}"}
    return f"{label} ({rule[name]} images)"


def _binned_mean(counts, values):
    """The median count, mean recall and recall's standard deviation over the classes of each log-count bin;
    neighbouring bins are merged until each holds enough classes for a steady mean."""
    import numpy as np

    logc = np.log10(np.maximum(counts, 0.5))
    lo, hi = float(logc.min()), float(logc.max())
    edges = np.linspace(lo, hi, 25) if hi > lo else np.array([lo, lo + 1.0])
    which = np.clip(np.searchsorted(edges, logc, side="right") - 1, 0, len(edges) - 2)
    need = max(8, len(values) // 60)
    bins, members = [], []
    for b in range(len(edges) - 1):
        members.extend(np.flatnonzero(which == b).tolist())
        if len(members) >= need:
            bins.append(members)
            members = []
    if members:  # a short last bin joins the one before it
        if bins:
            bins[-1] = bins[-1] + members
        else:
            bins.append(members)
    rows = [(np.median(counts[s]), values[s].mean(), values[s].std()) for s in (np.array(m) for m in bins)]
    return np.array(rows, dtype=float).T


def _worst(values, counts, k: int):
    """Positions of the ``k`` lowest recalls; ties go to the class with more training images (the more
    surprising failure), then to the lower class index."""
    import numpy as np

    more = -counts if counts is not None else np.zeros(len(values))
    return np.lexsort((np.arange(len(values)), more, values))[: max(0, min(k, len(values)))]


def _scatter(ax, metrics, values, counts, groups, cuts, ranked, title) -> None:
    """Recall against training images (log axis), the binned mean and spread, shot groups and the worst classes."""
    import matplotlib.patheffects as pe
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator

    n = len(values)
    shown = np.maximum(counts, 0.5)  # a class with no training image sits at the axis' left edge
    xlo, xhi = float(shown.min()) / 1.3, float(shown.max()) * 1.3
    ylo, yhi = -0.04, 1.17
    bounds = {"few": (xlo, cuts["few"] - 0.5), "medium": (cuts["few"] - 0.5, cuts["many"] + 0.5)}
    bounds["many"] = (cuts["many"] + 0.5, xhi)
    size, alpha = (12, 0.45) if n <= 2000 else (6, 0.22)
    jx, jy, jitter = shown, values, _coarse(values) and n >= 200
    if jitter:  # few test images per class put thousands of points on a handful of rows: spread them a little
        rng = np.random.default_rng(0)
        jx = shown + rng.uniform(-0.35, 0.35, n) * np.minimum(1.0, shown)
        jy = values + rng.uniform(-1, 1, n) * min(0.03, 0.25 / _recall_grid(values))
    tags = []  # (centre of the group's span in axes fraction, text, colour)
    for name, color, label in _GROUPS:
        sel = groups == name
        left, right = max(bounds[name][0], xlo), min(bounds[name][1], xhi)
        if not sel.any() or right <= left:
            continue
        ax.axvspan(left, right, color=color, alpha=0.07, linewidth=0)
        ax.scatter(jx[sel], jy[sel], s=size, alpha=alpha, color=color, linewidths=0, zorder=2)
        text = f"{_group_label(name, label, cuts)}\n{int(sel.sum()):,} classes, mean {100 * values[sel].mean():.1f}%"
        middle = math.log(left * right) / 2
        tags.append(((middle - math.log(xlo)) / (math.log(xhi) - math.log(xlo)), text, color))
    _group_tags(ax, tags)
    for cut in (cuts["few"] - 0.5, cuts["many"] + 0.5):
        if xlo < cut < xhi:
            ax.axvline(cut, color="#777777", linewidth=0.8, linestyle=(0, (4, 3)), zorder=1)
    ax.axhline(1.0, color="#bbbbbb", linewidth=0.6, zorder=1)
    x, mean, sd = _binned_mean(shown, values)
    band = "\u00b11 s.d. of the bin's classes"
    ax.fill_between(
        x,
        np.clip(mean - sd, 0, 1),
        np.clip(mean + sd, 0, 1),
        color="#111111",
        alpha=0.12,
        linewidth=0,
        zorder=3,
        label=band,
    )
    ax.plot(
        x,
        mean,
        "-o",
        color="#111111",
        markersize=3,
        linewidth=2.2,
        zorder=4,
        label="mean per log-count bin",
        path_effects=[pe.Stroke(linewidth=4, foreground="white"), pe.Normal()],
    )
    _summary_lines(ax, metrics)
    ax.set_xscale("log")
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, yhi)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    _percent_axis(ax)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("recall")
    _mark_worst(ax, shown, values, ranked, (math.log10(xlo), math.log10(xhi)), (ylo, yhi), log=True)
    if jitter:
        ax.text(
            0.995,
            0.005,
            "points jittered",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
            color="#666666",
        )
    ax.set_title(title)


def _group_tags(ax, tags: list) -> None:
    """Each shot group's name, size and mean recall above the points, centred on its span; pushed apart (left to
    right, kept inside the axes) where spans are too narrow for their text."""
    box = ax.get_position()
    per_char = 5.3 / (box.width * ax.figure.get_figwidth() * 72)  # a bold 8-point character, in axes fraction
    tags = sorted(tags)
    widths = [max(len(line) for line in t.split("\n")) * per_char for _, t, _ in tags]
    xs = [x for x, _, _ in tags]
    if xs:
        xs[0] = max(xs[0], widths[0] / 2 + 0.005)
    for i in range(1, len(xs)):  # push right past the one before
        xs[i] = max(xs[i], xs[i - 1] + (widths[i - 1] + widths[i]) / 2 + 0.01)
    if xs:
        xs[-1] = min(xs[-1], 1 - widths[-1] / 2 - 0.005)
    for i in range(len(xs) - 2, -1, -1):  # then back left, from the right edge
        xs[i] = min(xs[i], xs[i + 1] - (widths[i] + widths[i + 1]) / 2 - 0.01)
    for x, (_, text, color) in zip(xs, tags):
        ax.text(
            x, 0.94, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, color=color, fontweight="bold"
        )


def _profile(ax, metrics, values, ranked, title) -> None:
    """Without training counts: the recalls ranked best first, the worst classes circled and numbered."""
    import numpy as np

    order = np.argsort(-values, kind="stable")
    rank = np.empty(len(values))
    rank[order] = np.arange(1, len(values) + 1)
    ax.fill_between(rank[order], values[order], color=_GROUPS[0][1], alpha=0.35, linewidth=0, step="mid")
    ax.plot(rank[order], values[order], color=_GROUPS[0][1], linewidth=1.2, drawstyle="steps-mid")
    _summary_lines(ax, metrics)
    ylo, yhi = -0.04, 1.04
    ax.set_xlim(0, len(values) + 1)
    ax.set_ylim(ylo, yhi)
    _percent_axis(ax)
    ax.set_xlabel("classes ranked by recall (best first)")
    ax.set_ylabel("recall")
    _mark_worst(ax, rank, values, ranked, (0, len(values) + 1), (ylo, yhi), log=False)
    ax.set_title(title)


def _mark_worst(ax, x, values, ranked, xlim, ylim, log: bool) -> None:
    """Circle the worst classes and number them (1 = lowest). Points that nearly coincide share one label; each
    label takes the first of a few spots around its point whose box overlaps no label placed before it."""
    import numpy as np

    if not len(ranked):
        return
    ax.scatter(x[ranked], values[ranked], s=70, facecolors="none", edgecolors="#111111", linewidths=1.2, zorder=5)
    box = ax.get_position()  # the axes' size in points, before layout: close enough to keep labels apart
    width, height = box.width * ax.figure.get_figwidth() * 72, box.height * ax.figure.get_figheight() * 72
    px = ((np.log10(x[ranked]) if log else x[ranked]) - xlim[0]) / (xlim[1] - xlim[0]) * width
    py = (values[ranked] - ylim[0]) / (ylim[1] - ylim[0]) * height
    clusters: list[list[int]] = []  # positions in `ranked` whose points nearly coincide
    for i in range(len(ranked)):
        for cl in clusters:
            if abs(px[cl[0]] - px[i]) < 6 and abs(py[cl[0]] - py[i]) < 6:
                cl.append(i)
                break
        else:
            clusters.append([i])
    spots = [(7, 8), (7, 22), (-7, 8), (-7, 22), (7, -20), (-7, -20), (7, 36), (-7, 36), (7, 50), (-7, 50)]
    placed: list[tuple[float, float, float, float]] = []
    for cl in clusters:
        text = ",".join(str(i + 1) for i in cl)
        w, h = 5.6 * len(text) + 4, 13.0
        x0, y0 = px[cl[0]], py[cl[0]]
        for dx, dy in spots:
            left = x0 + dx if dx > 0 else x0 + dx - w
            rect = (left, y0 + dy, left + w, y0 + dy + h)
            inside = rect[0] >= 0 and rect[2] <= width and rect[1] >= 0 and rect[3] <= height
            if inside and not any(_overlap(rect, q) for q in placed):
                break
        else:
            dx, dy = spots[0][0], spots[0][1] + 14 * len(placed)
            left = x0 + dx
            rect = (left, y0 + dy, left + w, y0 + dy + h)
        placed.append(rect)
        ax.annotate(
            text,
            (x[ranked[cl[0]]], values[ranked[cl[0]]]),
            xytext=(dx, dy),
            textcoords="offset points",
            ha="left" if dx > 0 else "right",
            va="bottom",
            fontsize=8.5,
            fontweight="bold",
            color="#111111",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
            arrowprops={"arrowstyle": "-", "color": "#111111", "linewidth": 0.7, "shrinkA": 0, "shrinkB": 4},
            zorder=6,
        )


def _overlap(a: tuple, b: tuple, pad: float = 2.0) -> bool:
    return a[0] < b[2] + pad and b[0] < a[2] + pad and a[1] < b[3] + pad and b[1] < a[3] + pad


def _worst_list(ax, values, counts, groups, names, ranked) -> None:
    """The worst classes by name, with recall, training images and shot group, in a panel of their own."""
    ax.axis("off")
    ax.set_title(f"lowest recall ({len(ranked)} of {len(values):,})", loc="left")
    lines = []
    for i, p in enumerate(ranked):
        detail = f"{100 * values[p]:.1f}%"
        if counts is not None:
            detail += f", {int(counts[p]):,} images, {groups[p]}-shot"
        lines += [f"{i + 1}  {names[p]}", f"     {detail}"]
    zero = int((values == 0).sum())
    if zero:
        lines += ["", f"{zero:,} classes at 0% recall"]
    ax.text(0.0, 1.0, "\n".join(lines), transform=ax.transAxes, va="top", ha="left", fontsize=8.5, linespacing=1.45)


def _recall_bins(values):
    """Histogram edges on [0, 1]: when every recall is k/d for one d <= 100 (equal test images per class), bins
    centred on those fractions, a whole number of them per bin, so no bin is emptier for rounding alone;
    otherwise 20 equal bins."""
    import numpy as np

    d = _recall_grid(values)
    if d is None:
        return np.linspace(0, 1, 21)
    step = math.ceil((d + 1) / 25)
    return (np.arange(0, d + step + 1, step) - 0.5) / d


def _recall_grid(values) -> int | None:
    """The smallest d <= 100 with every recall a multiple of 1/d (e.g. 50 test images per class), else None."""
    import numpy as np

    for d in range(1, 101):
        if np.all(np.abs(values * d - np.round(values * d)) < 1e-4):
            return d
    return None


def _coarse(values) -> bool:
    """Whether the recalls take at most 11 values (10 or fewer test images per class)."""
    d = _recall_grid(values)
    return d is not None and d <= 10


def _recall_histogram(ax, values, groups) -> None:
    """Horizontal histogram of per-class recall (its y axis shared with the recall plot), stacked by shot
    group, each bar's class count written at its end."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    edges = _recall_bins(values)
    height = (edges[1:] - edges[:-1]) * 0.9
    centers = (edges[1:] + edges[:-1]) / 2
    left = np.zeros(len(centers))
    for name, color, label in _GROUPS if groups is not None else ((None, _GROUPS[0][1], None),):
        sel = values if name is None else values[groups == name]
        n, _ = np.histogram(np.clip(sel, edges[0], edges[-1]), bins=edges)
        if n.any():
            ax.barh(centers, n, height=height, left=left, color=color, label=label)
        left += n
    top = left.max() if len(left) else 0
    for c, total in zip(centers, left):
        if total:
            ax.text(total + 0.015 * top, c, f"{int(total):,}", va="center", ha="left", fontsize=6.5, color="#333333")
    ax.set_xlim(0, max(1.0, top * 1.18))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.set_xlabel("classes")
    ax.tick_params(axis="y", labelleft=False)
    ax.set_title("recall distribution")


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


def _save(plt, fig, path: str | Path, tight: bool = True) -> Path:
    """Lay out (``tight``: matplotlib's tight layout), write atomically (its folder made; a crash leaves the old
    file or the new one) and close a figure; the path written."""
    path = Path(path)
    try:
        if tight:
            fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(fig)
    _logger.info("wrote %s", path)
    return path
