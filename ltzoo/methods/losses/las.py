"""Label-aware smoothing (LAS): MiSLAS's classifier-stage loss.

Zhong et al., 2021, "Improving Calibration for Long-Tailed Recognition", CVPR 2021
(dvlab-research/MiSLAS). Label smoothing whose strength depends on the class: a head class (many
training images, an over-confident classifier) is smoothed more than a tail class.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ltzoo.methods.losses.long_tail_loss import ClassCounts, LongTailLoss

#: the forms of the map from a class's training count to its smoothing (the paper's f, Eq. 9)
LAS_FORMS = ("concave", "linear", "convex")


def label_aware_epsilons(
    class_counts: torch.Tensor, eps_head: float, eps_tail: float, form: str = "concave"
) -> torch.Tensor:
    """Each class's smoothing epsilon_c from its training count N_c (float64, shape (C,)).

    With N_1 the largest and N_K the smallest count and t_c = (N_c - N_K) / (N_1 - N_K) in [0, 1]:

        concave: eps_c = eps_K + (eps_1 - eps_K) * sin(pi / 2 * t_c)
        linear:  eps_c = eps_K + (eps_1 - eps_K) * t_c
        convex:  eps_c = eps_1 + (eps_1 - eps_K) * sin(3 pi / 2 + pi / 2 * t_c)

    so the most frequent class gets eps_1 (``eps_head``) and the rarest eps_K (``eps_tail``) in every
    form; the forms differ in between (concave above the line, convex below). All counts equal: every
    class gets ``eps_head``.

    Raises:
        ValueError: an unknown form, or an epsilon outside [0, 1).
    """
    if form not in LAS_FORMS:
        raise ValueError(f"unknown label-aware smoothing form {form!r}; choose one of {', '.join(LAS_FORMS)}")
    for name, eps in (("eps_head", eps_head), ("eps_tail", eps_tail)):
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"label-aware smoothing: {name} must be in [0, 1), got {eps}")
    n = class_counts.double()
    span = n.max() - n.min()
    if span == 0:
        return torch.full_like(n, float(eps_head))
    t = (n - n.min()) / span
    if form == "concave":
        return eps_tail + (eps_head - eps_tail) * torch.sin(math.pi / 2 * t)
    if form == "linear":
        return eps_tail + (eps_head - eps_tail) * t
    return eps_head + (eps_head - eps_tail) * torch.sin(1.5 * math.pi + math.pi / 2 * t)


class LabelAwareSmoothingLoss(LongTailLoss):
    """Cross-entropy with a per-class label smoothing epsilon_y (see :func:`label_aware_epsilons`):

        L_i = (1 - eps_{y_i}) * (-log p_{i, y_i}) + eps_{y_i} * mean_c(-log p_{i, c})

    averaged over the batch: the target puts 1 - eps_y + eps_y / C on the true class and eps_y / C on each
    other, as MiSLAS's ``LabelAwareSmoothing``. With every epsilon 0 it is plain cross-entropy.

    Args:
        class_counts: training images per class.
        eps_head: eps_1, the smoothing of the most frequent class (MiSLAS's ``smooth_head``).
        eps_tail: eps_K, the smoothing of the rarest class (``smooth_tail``).
        form: 'concave' (the paper's default), 'linear' or 'convex'.
    """

    def __init__(
        self, class_counts: ClassCounts, eps_head: float = 0.3, eps_tail: float = 0.0, form: str = "concave"
    ) -> None:
        super().__init__("las")
        self.eps_head, self.eps_tail, self.form = float(eps_head), float(eps_tail), form
        self.register_buffer("epsilons", label_aware_epsilons(self._counts(class_counts), eps_head, eps_tail, form))

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=-1)
        eps = self.epsilons.to(log_p.dtype)[target]
        nll = -log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        return ((1 - eps) * nll - eps * log_p.mean(dim=-1)).mean()

    def extra_repr(self) -> str:
        return f"eps_head={self.eps_head}, eps_tail={self.eps_tail}, form={self.form!r}"
