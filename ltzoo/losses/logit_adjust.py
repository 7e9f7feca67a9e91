"""Logit-adjusted cross-entropy.

Menon, Jayasumana, Rawat, Jain, Veit and Kumar, 2021, "Long-Tail Learning via Logit
Adjustment", ICLR 2021 (arXiv:2007.07314).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ltzoo.losses._utils import ClassCounts, as_class_counts, check_logits, check_target, upcast
from ltzoo.losses.base import LongTailLoss


class LogitAdjustedLoss(LongTailLoss):
    """Logit-adjusted softmax cross-entropy.

    With the training label prior pi_c = n_c / sum_k n_k and temperature tau,

        L = mean_i  -log softmax(z_i + tau * log pi)_{y_i}

    tau = 1 coincides with balanced softmax (log pi and log n differ by a constant). Soft
    (mixup / cutmix) targets (N, C) are accepted as in :class:`CrossEntropyLoss`.

    Args:
        class_counts: training samples per class, length C, all > 0.
        tau: adjustment strength (1.0 in the paper).
    """

    log_prior: torch.Tensor
    loss_name = "la"  # in error messages

    def __init__(self, class_counts: ClassCounts, tau: float = 1.0) -> None:
        super().__init__()
        counts = as_class_counts(class_counts, self.loss_name)
        self.tau = float(tau)
        self.num_classes = counts.numel()
        self.register_buffer("log_prior", (counts / counts.sum()).log())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Computes the loss.

        Args:
            logits: (N, C) scores, any floating dtype (computed in float32 or higher).
            target: (N,) int64 class indices, or (N, C) target probabilities.

        Returns:
            The scalar mean loss.
        """
        check_logits(logits, self.num_classes, self.loss_name)
        check_target(target, logits, self.loss_name)
        logits = upcast(logits)
        if target.is_floating_point():
            target = target.to(logits.dtype)
        return F.cross_entropy(logits + self.tau * self.log_prior.to(logits.dtype), target)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, tau={self.tau}"
