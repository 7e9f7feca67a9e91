"""Logit-adjusted cross-entropy (and balanced softmax, its tau = 1 case).

Menon, Jayasumana, Rawat, Jain, Veit and Kumar, 2021, "Long-Tail Learning via Logit
Adjustment", ICLR 2021 (arXiv:2007.07314). Balanced softmax: Ren et al., 2020, "Balanced
Meta-Softmax for Long-Tailed Visual Recognition", NeurIPS 2020 (arXiv:2007.10740), registered as
``create_loss('bsce')``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltzoo.methods.losses.long_tail_loss import ClassCounts, LongTailLoss


class LogitAdjustedLoss(LongTailLoss):
    """Logit-adjusted softmax cross-entropy.

    With the training label prior pi_c = n_c / sum_k n_k and temperature tau,

        L = mean_i  -log softmax(z_i + tau * log pi)_{y_i}

    tau = 1 is balanced softmax: softmax is invariant to adding a constant, so shifting by log pi
    or by log n is the same loss. Soft (mixup / cutmix) targets (N, C) are accepted as in
    :class:`~ltzoo.methods.losses.ce.CrossEntropyLoss`.

    Args:
        class_counts: training samples per class, length C, all > 0.
        tau: adjustment strength (1.0 in the paper).
    """

    accepts_soft_targets = True
    log_prior: torch.Tensor

    def __init__(self, class_counts: ClassCounts, tau: float = 1.0) -> None:
        super().__init__("la")
        counts = self._counts(class_counts)
        self.tau = float(tau)
        self.register_buffer("log_prior", (counts / counts.sum()).log())

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits + self.tau * self.log_prior.to(logits.dtype), target)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, tau={self.tau}"


def BalancedSoftmaxLoss(class_counts: ClassCounts) -> LogitAdjustedLoss:  # noqa: N802 (the loss's usual name)
    """Balanced softmax cross-entropy: :class:`LogitAdjustedLoss` with tau = 1 (``create_loss('bsce')``)."""
    loss = LogitAdjustedLoss(class_counts, tau=1.0)
    loss.loss_name = "bsce"
    return loss
