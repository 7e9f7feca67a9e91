"""Focal loss.

Lin, Goyal, Girshick, He and Dollar, 2017, "Focal Loss for Dense Object Detection", ICCV 2017
(arXiv:1708.02002). Softmax (multi-class) form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltzoo.methods.losses.long_tail_loss import LongTailLoss


def focal_loss_per_sample(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample softmax focal loss -(1 - p_t)^gamma * log p_t.

    Args:
        logits: (N, C) float32 / float64 scores.
        target: (N,) int64 class indices.
        gamma: focusing parameter >= 0 (0 gives cross-entropy).

    Returns:
        The (N,) losses.
    """
    log_pt = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    if gamma == 0:
        return -log_pt
    modulator = (1.0 - log_pt.exp()).clamp(min=0.0).pow(gamma)
    return -modulator * log_pt


def check_gamma(gamma: float) -> float:
    """The focal focusing parameter, checked to be >= 0."""
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    return float(gamma)


class FocalLoss(LongTailLoss):
    """Softmax focal loss, averaged over the batch.

    With p_t = softmax(z_i)_{y_i} the probability of the true class,

        L = mean_i  -(1 - p_{t,i})^gamma * log p_{t,i}

    gamma = 0 is plain cross-entropy.

    Args:
        gamma: focusing parameter >= 0.
    """

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__("focal")
        self.gamma = check_gamma(gamma)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss_per_sample(logits, target, self.gamma).mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"
