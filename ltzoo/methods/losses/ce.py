"""Cross-entropy with label smoothing, for hard or soft (mixup / cutmix) targets.

Label smoothing: Szegedy et al., 2016, "Rethinking the Inception Architecture for Computer
Vision", CVPR 2016. Soft targets as produced by mixup (Zhang et al., 2018, ICLR) and cutmix
(Yun et al., 2019, ICCV), e.g. by ``timm.data.Mixup``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltzoo.methods.losses.long_tail_loss import LongTailLoss


class CrossEntropyLoss(LongTailLoss):
    """Softmax cross-entropy with optional label smoothing, averaged over the batch.

    With logits z_i, target distribution y_i and smoothing eps over C classes,

        y~_i = (1 - eps) * y_i + eps / C
        L = mean_i  -sum_c y~_{i,c} * log softmax(z_i)_c

    where y_i is one-hot for integer targets (N,) and the given row for soft targets (N, C).
    Smoothing applies to soft targets too (the semantics of ``F.cross_entropy``): when timm's
    ``Mixup`` already smooths its targets (its ``label_smoothing`` argument), keep ``smoothing=0``
    here to avoid smoothing twice.

    Args:
        smoothing: label smoothing eps in [0, 1).
    """

    accepts_soft_targets = True

    def __init__(self, smoothing: float = 0.0) -> None:
        super().__init__("ce")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, label_smoothing=self.smoothing)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}"
