"""Stratified bootstrap intervals of the long-tail metrics, and the paired bootstrap of a difference.

A test set is a sample: a class with 20 test images has a recall that moves in steps of 5 points, and two
models a point apart in HM may not differ at all. The bootstrap (Efron & Tibshirani, "An Introduction to
the Bootstrap", 1993) redraws the test images with replacement and recomputes each metric; here the draw
is *stratified*, within each class, so every resample keeps the test set's class counts (the metrics are
means over classes, and a resample with a class missing would have none). The 95% interval is the 2.5th
and 97.5th percentile of the resampled values.

The paired bootstrap (Koehn, "Statistical Significance Tests for Machine Translation Evaluation", EMNLP
2004) draws the same images for two models and takes the difference of each metric in every resample: the
interval of the difference, and a two-sided p-value, the share of resampled differences at least as far
from the observed one as the observed one is from zero (the resampled differences shifted to the null of no
difference). Two identical models give a difference of 0 in every resample and p = 1.

Everything is vectorised: a chunk of resamples is one tensor of image indices, (resamples, images), drawn
within each class's block of a label-sorted copy; per-class sums come from one ``index_add_``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ltzoo.metrics.probability import confidence_bins

RESAMPLES = 1000
LEVEL = 0.95
#: The metrics the bootstrap gives intervals for (fractions; means over the test images or over classes).
INTERVAL_KEYS = ("acc", "mean_class_acc", "hm", "gm", "min_recall", "many", "medium", "few")
_CHUNK_CELLS = 4_000_000  # resamples x images x columns drawn at once: ~32 MB of float64 (+ the int64 indices)


def check_classes_present(labels: torch.Tensor, num_classes: int, what: str = "the test split") -> torch.Tensor:
    """The per-class image counts; a ValueError naming the classes without any image."""
    support = torch.bincount(torch.as_tensor(labels, dtype=torch.long).flatten(), minlength=num_classes)
    empty = torch.nonzero(support == 0).flatten().tolist()
    if empty:
        raise ValueError(
            f"{what} has no image of {len(empty)} class{'es' if len(empty) > 1 else ''} "
            f"(e.g. class {empty[0]}), so their recall, HM, GM and min recall are undefined; evaluate on "
            "a split with every class (or fewer classes)"
        )
    return support


def _stratified_draws(labels: torch.Tensor, num_classes: int, resamples: int, seed: int, columns: int = 1):
    """The stratified resamples, a chunk at a time: ``(first resample, image order, drawn positions)``, the
    positions (resamples in the chunk, images) indexing the label-sorted images ``labels[order]``, each drawn within
    its class's block. The same seed draws the same images for every caller."""
    support = check_classes_present(labels, num_classes)
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    starts = torch.cumsum(support, 0) - support
    start_of, size_of = starts[sorted_labels], support[sorted_labels].double()
    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, _CHUNK_CELLS // max(1, labels.numel() * columns))
    for lo in range(0, resamples, chunk):
        b = min(chunk, resamples - lo)
        yield lo, order, start_of + (torch.rand(b, labels.numel(), generator=gen, dtype=torch.double) * size_of).long()


def resampled_class_sums(
    labels: torch.Tensor, values: torch.Tensor, num_classes: int, resamples: int = RESAMPLES, seed: int = 0
) -> torch.Tensor:
    """Per-class sums of per-image ``values`` over stratified resamples of the images.

    Args:
        labels: (images,) class of each image; every class must have one.
        values: (images, columns) per-image numbers (e.g. one 0/1 "correct" column per model).
        resamples: how many resamples.
        seed: seed of the ``torch.Generator`` that draws them.

    Returns:
        (resamples, columns, classes) float64 sums: within each resample and class, ``values`` summed over the
        class's images drawn with replacement (as many draws as the class has images).
    """
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    values = torch.as_tensor(values).double().reshape(labels.numel(), -1)
    out = torch.empty(resamples, values.shape[1], num_classes, dtype=torch.double)
    for lo, order, draw in _stratified_draws(labels, num_classes, resamples, seed, values.shape[1]):
        sorted_labels, sorted_values = labels[order], values[order].float()
        picked = sorted_values[draw]  # (b, images, columns)
        sums = torch.zeros(draw.shape[0], num_classes, values.shape[1], dtype=torch.double)
        sums.index_add_(1, sorted_labels, picked.double())
        out[lo : lo + draw.shape[0]] = sums.transpose(1, 2)
    return out


def ece_interval(
    logits: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    n_bins: int = 15,
) -> list[float]:
    """The percentile interval of the top-label ECE (`ltzoo.metrics.probability`'s bins) over the same stratified
    resamples as `stratified_bootstrap` draws with the same seed."""
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    p = torch.as_tensor(logits).float().softmax(-1).double()
    confidence, pred = p.max(-1)
    gap = (pred == labels).double() - confidence
    bins = confidence_bins(confidence, n_bins)
    samples = torch.empty(resamples, dtype=torch.double)
    for lo, order, draw in _stratified_draws(labels, num_classes, resamples, seed):
        sums = torch.zeros(draw.shape[0], n_bins + 1, dtype=torch.double)
        sums.scatter_add_(1, bins[order][draw], gap[order][draw])
        samples[lo : lo + draw.shape[0]] = sums.abs().sum(1) / labels.numel()
    return list(_percentiles(samples, level))


def summary_from_recall(
    recall: torch.Tensor, support: torch.Tensor, groups: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The long-tail metrics of many recall vectors at once: (..., classes) -> each metric (...,).

    Exact as in `ltzoo.metrics.longtail`: a class with zero recall gives HM = GM = 0.
    """
    zero = (recall <= 0).any(-1)
    safe = recall.clamp(min=1e-12)
    out = {
        "acc": (recall * support).sum(-1) / support.sum(),
        "mean_class_acc": recall.mean(-1),
        "hm": torch.where(zero, 0.0, recall.shape[-1] / (1.0 / safe).sum(-1)),
        "gm": torch.where(zero, 0.0, safe.log().mean(-1).exp()),
        "min_recall": recall.min(-1).values,
    }
    for name, mask in (groups or {}).items():
        if bool(mask.any()):
            out[name] = recall[..., mask].mean(-1)
    return out


def shot_groups(train_counts: Sequence[int] | None, many: int, few: int) -> dict[str, torch.Tensor]:
    """many / medium / few class masks (as `ltzoo.metrics.longtail`), none without training counts."""
    if train_counts is None:
        return {}
    counts = torch.as_tensor(list(train_counts))
    return {"many": counts > many, "medium": (counts >= few) & (counts <= many), "few": counts < few}


def _percentiles(samples: torch.Tensor, level: float) -> tuple[float, float]:
    lo, hi = torch.quantile(samples, torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=samples.dtype))
    return float(lo), float(hi)


def resolution(support: torch.Tensor, groups: dict[str, torch.Tensor]) -> dict[str, float]:
    """The smallest step each metric can move by on this test set, one image more or less right: exact for
    accuracy, mean class accuracy, min recall and the groups; for HM and GM the mean class accuracy's step,
    which they move by to first order."""
    n = support.double()
    out = {
        "acc": 1.0 / float(n.sum()),
        "mean_class_acc": float((1.0 / n).min()) / len(n),
        "min_recall": float((1.0 / n).max()),
        "hm": float((1.0 / n).min()) / len(n),
        "gm": float((1.0 / n).min()) / len(n),
    }
    for name, mask in groups.items():
        if bool(mask.any()):
            out[name] = float((1.0 / n[mask]).min()) / int(mask.sum())
    return out


def resolution_notes(support: torch.Tensor, intervals: dict[str, list[float]]) -> list[str]:
    """Sentences on what this test set cannot resolve: coarse min-recall steps, intervals of zero width."""
    notes = []
    smallest = int(support.min())
    step = 100.0 / smallest
    if step >= 1.0:
        notes.append(
            f"min recall moves in steps of {step:.2f} points (the smallest class has {smallest} test images): "
            "differences under a step are not resolved, and a class's recall is known to within its interval "
            "only"
        )
    flat = [k for k, (lo, hi) in intervals.items() if hi - lo == 0]
    if flat:
        notes.append(
            f"{', '.join(flat)}: every resample gives the same value (e.g. a class with all its images right, "
            "or one with none): the interval has zero width and says nothing about the uncertainty there"
        )
    return notes


def stratified_bootstrap(
    labels: torch.Tensor,
    preds: torch.Tensor,
    num_classes: int,
    train_counts: Sequence[int] | None = None,
    many: int = 100,
    few: int = 20,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict:
    """Percentile intervals of accuracy, HM, GM, min recall and many/medium/few by a stratified bootstrap.

    Returns:
        ``intervals`` (metric -> [low, high], fractions), ``resolution`` (metric -> its smallest step on this
        test set), ``notes`` (what the test set cannot resolve), ``resamples``, ``seed``, ``level`` and ``method``.
    """
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    correct = (torch.as_tensor(preds, dtype=torch.long).flatten() == labels).double()
    support = check_classes_present(labels, num_classes).double()
    hits = resampled_class_sums(labels, correct[:, None], num_classes, resamples, seed)[:, 0]
    groups = shot_groups(train_counts, many, few)
    samples = summary_from_recall(hits / support, support, groups)
    intervals = {k: list(_percentiles(v, level)) for k, v in samples.items()}
    return {
        "method": "stratified percentile bootstrap (images resampled within each class)",
        "resamples": resamples,
        "seed": seed,
        "level": level,
        "intervals": intervals,
        "resolution": resolution(support, groups),
        "notes": resolution_notes(support, intervals),
    }


def paired_bootstrap(
    labels: torch.Tensor,
    values_a: dict[str, torch.Tensor],
    values_b: dict[str, torch.Tensor],
    num_classes: int,
    train_counts: Sequence[int] | None = None,
    many: int = 100,
    few: int = 20,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict:
    """Differences B - A of the long-tail metrics (and per-image means) with a paired stratified bootstrap.

    Args:
        values_a, values_b: per-image numbers of each model: ``correct`` (0/1, required) and any others whose
            test-set mean is a metric (``nll``, ``brier``, ``top5`` hits), resampled with the same images.

    Returns:
        metric -> ``{"a", "b", "difference", "interval", "p_value"}`` and the bootstrap's settings under
        ``"bootstrap"``.
    """
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    support = check_classes_present(labels, num_classes).double()
    names = ["correct"] + [k for k in values_a if k != "correct" and k in values_b]
    cols = torch.stack([torch.as_tensor(v[k]).double().flatten() for k in names for v in (values_a, values_b)], 1)
    sums = resampled_class_sums(labels, cols, num_classes, resamples, seed)  # (B, 2 * len(names), C)
    groups = shot_groups(train_counts, many, few)
    observed = torch.stack(
        [torch.zeros(num_classes, dtype=torch.double).index_add_(0, labels, cols[:, j]) for j in range(cols.shape[1])]
    )  # (2 * len(names), C)
    out: dict = {}
    for which, source in (("observed", observed[None]), ("resampled", sums)):
        a = summary_from_recall(source[:, 0] / support, support, groups)
        b = summary_from_recall(source[:, 1] / support, support, groups)
        for i, name in enumerate(names[1:], start=1):
            a[name] = source[:, 2 * i].sum(-1) / support.sum()
            b[name] = source[:, 2 * i + 1].sum(-1) / support.sum()
        out[which] = (a, b)
    (obs_a, obs_b), (res_a, res_b) = out["observed"], out["resampled"]
    result = {}
    for key in obs_a:
        d_hat = float(obs_b[key][0] - obs_a[key][0])
        d = res_b[key] - res_a[key]
        extreme = int(((d - d_hat).abs() >= abs(d_hat) - 1e-12).sum())
        result[key] = {
            "a": float(obs_a[key][0]),
            "b": float(obs_b[key][0]),
            "difference": d_hat,
            "interval": list(_percentiles(d, level)),
            "p_value": (1 + extreme) / (1 + resamples),
        }
    result["bootstrap"] = {
        "method": "paired stratified percentile bootstrap (the same images for both models)",
        "resamples": resamples,
        "seed": seed,
        "level": level,
        "p_value": "share of resampled differences, shifted to a mean of zero, at least as far "
        "from zero as the observed one ((1 + count) / (1 + resamples))",
    }
    return result


def interval_text(value: float | None, interval: Sequence[float] | None) -> str:
    """``88.62 [87.90, 89.30]``: a percentage and its interval, for tables and cards."""
    if value is None:
        return "-"
    if not interval or any(v is None or math.isnan(v) for v in interval):
        return f"{100 * value:.2f}"
    return f"{100 * value:.2f} [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]"
