"""Class-balanced loss: re-weighting by the effective number of samples.

Cui, Jia, Lin, Song and Belongie, 2019, "Class-Balanced Loss Based on Effective Number of
Samples", CVPR 2019 (arXiv:1901.05555).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltzoo.methods.losses.focal import check_gamma, focal_loss_per_sample
from ltzoo.methods.losses.long_tail_loss import ClassCounts, LongTailLoss

BASES = ("ce", "focal")


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Class weights inversely proportional to the effective number of samples.

    E_c = (1 - beta^{n_c}) / (1 - beta) and w_c = 1 / E_c, normalised so that sum_c w_c = C.
    beta = 0 gives uniform weights; beta -> 1 tends to inverse-frequency weights.

    Args:
        counts: (C,) positive class counts (float64 recommended).
        beta: hyper-parameter in [0, 1).

    Returns:
        The (C,) weights, same dtype as ``counts``.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"effective-number beta must be in [0, 1), got {beta}")
    counts = counts.to(torch.float64)
    log_beta = torch.tensor(beta, dtype=torch.float64).log()  # -inf for beta = 0: uniform weights
    effective = -torch.expm1(counts * log_beta) / (1.0 - beta)  # (1 - beta^n) / (1 - beta), accurate
    weights = 1.0 / effective
    return weights * (counts.numel() / weights.sum())


class ClassBalancedLoss(LongTailLoss):
    """Class-balanced cross-entropy (or focal) loss.

    With class weights w_c = (1 - beta) / (1 - beta^{n_c}), normalised to sum_c w_c = C,

        L = mean_i  w_{y_i} * l(z_i, y_i)

    where l is softmax cross-entropy (``base='ce'``) or the softmax focal loss
    -(1 - p_t)^gamma log p_t (``base='focal'``). As in the paper's reference implementation the
    weighted losses are averaged over the batch size N (not over sum_i w_{y_i}), so the
    normalisation of the weights sets the loss scale.

    Args:
        class_counts: training samples per class, length C, all > 0.
        beta: effective-number hyper-parameter in [0, 1) (0.9999 in the paper for CIFAR-LT).
        base: 'ce' or 'focal'.
        gamma: focal focusing parameter, used only with ``base='focal'``.
    """

    weights: torch.Tensor

    def __init__(self, class_counts: ClassCounts, beta: float = 0.9999, base: str = "ce", gamma: float = 2.0) -> None:
        if base not in BASES:
            raise ValueError(f"class-balanced base loss must be one of {BASES}, got {base!r}")
        super().__init__("cb" if base == "ce" else "cb_focal")
        self.gamma = check_gamma(gamma)
        counts = self._counts(class_counts)
        self.beta = float(beta)
        self.base = base
        self.register_buffer("weights", effective_number_weights(counts, self.beta))

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.base == "focal":
            per_sample = focal_loss_per_sample(logits, target, self.gamma)
        else:
            per_sample = F.cross_entropy(logits, target, reduction="none")
        return (self.weights.to(logits.dtype)[target] * per_sample).mean()

    def extra_repr(self) -> str:
        gamma = f", gamma={self.gamma}" if self.base == "focal" else ""
        return f"num_classes={self.num_classes}, beta={self.beta}, base={self.base!r}{gamma}"
