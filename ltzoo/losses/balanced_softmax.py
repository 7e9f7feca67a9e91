"""Balanced softmax cross-entropy.

Ren, Yu, Sheng, Ma, Zhao, Yi and Li, 2020, "Balanced Meta-Softmax for Long-Tailed Visual
Recognition", NeurIPS 2020 (arXiv:2007.10740).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ltzoo.losses._utils import ClassCounts, as_class_counts, check_logits, check_target, upcast
from ltzoo.losses.base import LongTailLoss


class BalancedSoftmaxLoss(LongTailLoss):
    """Balanced softmax: cross-entropy on logits shifted by the log class counts.

        L = mean_i  -log softmax(z_i + log n)_{y_i}

    with n the (C,) training class counts. At test time the plain logits z are used. Soft
    (mixup / cutmix) targets (N, C) are accepted as in :class:`CrossEntropyLoss`.

    Args:
        class_counts: training samples per class, length C, all > 0.
    """

    log_counts: torch.Tensor

    def __init__(self, class_counts: ClassCounts) -> None:
        super().__init__()
        counts = as_class_counts(class_counts, "bsce")
        self.num_classes = counts.numel()
        self.register_buffer("log_counts", counts.log())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Computes the loss.

        Args:
            logits: (N, C) scores, any floating dtype (computed in float32 or higher).
            target: (N,) int64 class indices, or (N, C) target probabilities.

        Returns:
            The scalar mean loss.
        """
        check_logits(logits, self.num_classes, "bsce")
        check_target(target, logits, "bsce")
        logits = upcast(logits)
        if target.is_floating_point():
            target = target.to(logits.dtype)
        return F.cross_entropy(logits + self.log_counts.to(logits.dtype), target)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"
