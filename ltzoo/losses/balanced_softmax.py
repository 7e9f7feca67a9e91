"""Balanced softmax cross-entropy.

Ren, Yu, Sheng, Ma, Zhao, Yi and Li, 2020, "Balanced Meta-Softmax for Long-Tailed Visual
Recognition", NeurIPS 2020 (arXiv:2007.10740).
"""
from __future__ import annotations

from ltzoo.losses._utils import ClassCounts
from ltzoo.losses.logit_adjust import LogitAdjustedLoss


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax: cross-entropy on logits shifted by the log class counts.

        L = mean_i  -log softmax(z_i + log n)_{y_i}

    with n the (C,) training class counts. At test time the plain logits z are used. Softmax is
    invariant to adding a constant, so shifting by log n or by the log prior log(n / N) is the same
    loss: this is logit-adjusted cross-entropy with tau = 1, and shares its code. Soft (mixup /
    cutmix) targets (N, C) are accepted as in :class:`CrossEntropyLoss`.

    Args:
        class_counts: training samples per class, length C, all > 0.
    """

    loss_name = "bsce"

    def __init__(self, class_counts: ClassCounts) -> None:
        super().__init__(class_counts, tau=1.0)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"
