"""Long-tail metrics: accuracy next to the harmonic mean, geometric mean and minimum of per-class recall.

Du & Wu (2023), "No One Left Behind: Improving the Worst Categories in Long-Tailed Learning", argue for
the harmonic mean (HM) and the lowest recall as the measures that leave no class behind. Here HM and GM
are exact: one class with zero recall gives HM = GM = 0. Papers often clamp zero recalls before the
means; that variant is reported beside them as ``hm_clamped`` / ``gm_clamped`` (floor 1e-3).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

_logger = logging.getLogger(__name__)

CLAMP_FLOOR = 1e-3
SUMMARY_KEYS = ("acc", "mean_class_acc", "hm", "gm", "min_recall", "many", "medium", "few")


def per_class_recall(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Recall of every class and its number of evaluation samples (recall is NaN where it has none)."""
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    preds = torch.as_tensor(preds, dtype=torch.long).flatten()
    support = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.bincount(labels[labels == preds], minlength=num_classes).double()
    return hits / support, support


def harmonic_mean(x: torch.Tensor) -> float:
    """Exact harmonic mean; 0 if any value is 0."""
    x = x.double()
    return 0.0 if bool((x <= 0).any()) else float(len(x) / (1.0 / x).sum())


def geometric_mean(x: torch.Tensor) -> float:
    """Exact geometric mean; 0 if any value is 0."""
    x = x.double()
    return 0.0 if bool((x <= 0).any()) else float(torch.exp(torch.log(x).mean()))


def longtail_metrics(
    labels: torch.Tensor | Sequence[int],
    preds: torch.Tensor | Sequence[int],
    train_counts: Sequence[int] | None = None,
    num_classes: int | None = None,
    many: int = 100,
    few: int = 20,
) -> dict:
    """All the long-tail metrics of a set of predictions.

    Args:
        labels: true classes of the evaluation samples.
        preds: predicted classes (top-1).
        train_counts: training images per class; gives many/medium/few accuracy.
        num_classes: number of classes (default: len(train_counts), else max label + 1).
        many: a class with more than ``many`` training images is many-shot.
        few: a class with fewer than ``few`` training images is few-shot; the rest are medium.

    Returns:
        ``acc``, ``mean_class_acc``, ``hm``, ``gm``, ``min_recall``, ``hm_clamped``, ``gm_clamped``,
        ``per_class_recall`` (None for classes absent from the evaluation set), ``absent_classes``,
        ``num_samples``, and with ``train_counts`` also ``many``, ``medium``, ``few`` (mean recall of the
        group's evaluated classes, None for an empty group) and ``group_sizes``. Fractions in [0, 1].
    """
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    preds = torch.as_tensor(preds, dtype=torch.long).flatten()
    if labels.shape != preds.shape:
        raise ValueError(f"labels and preds differ in length: {labels.numel()} vs {preds.numel()}")
    if labels.numel() == 0:
        raise ValueError("no samples to evaluate")
    if num_classes is None:
        num_classes = len(train_counts) if train_counts is not None else int(labels.max()) + 1
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}); got [{int(labels.min())}, {int(labels.max())}]")
    recall, support = per_class_recall(labels, preds, num_classes)
    present = support > 0
    absent = torch.nonzero(~present).flatten().tolist()
    if absent:
        _logger.warning("%d classes have no evaluation samples and are excluded: %s", len(absent), absent[:20])
    r = recall[present]
    out = {
        "acc": float((labels == preds).double().mean()),
        "mean_class_acc": float(r.mean()),
        "hm": harmonic_mean(r),
        "gm": geometric_mean(r),
        "min_recall": float(r.min()),
        "hm_clamped": harmonic_mean(r.clamp(min=CLAMP_FLOOR)),
        "gm_clamped": geometric_mean(r.clamp(min=CLAMP_FLOOR)),
        "num_samples": int(labels.numel()),
        "num_classes": num_classes,
        "absent_classes": absent,
        "per_class_recall": [None if not p else float(v) for v, p in zip(recall.tolist(), present.tolist())],
    }
    if train_counts is not None:
        out.update(_shot_accuracy(recall, present, train_counts, many, few))
    return out


def _shot_accuracy(
    recall: torch.Tensor, present: torch.Tensor, train_counts: Sequence[int], many: int, few: int
) -> dict:
    counts = torch.as_tensor(list(train_counts), dtype=torch.long)
    if len(counts) != len(recall):
        raise ValueError(f"train_counts has {len(counts)} classes but the evaluation has {len(recall)}")
    groups = {"many": counts > many, "medium": (counts >= few) & (counts <= many), "few": counts < few}
    out: dict = {"group_sizes": {}, "shot_thresholds": {"many": many, "few": few}}
    for name, mask in groups.items():
        sel = mask & present
        out[name] = float(recall[sel].mean()) if bool(sel.any()) else None
        out["group_sizes"][name] = int(mask.sum())
    return out


def selection_score(metrics: dict, key: str = "hm") -> tuple:
    """The one model-selection key on the validation split, for epochs, heads, ratios and every other choice:
    the chosen metric, ties broken by mean class accuracy, then accuracy (``max`` keeps the first of exact ties)."""
    return (metrics[key], metrics["mean_class_acc"], metrics["acc"])
