"""Label-distribution-aware margin (LDAM) loss with deferred re-weighting (DRW).

Cao, Wei, Gaidon, Arechiga and Ma, 2019, "Learning Imbalanced Datasets with Label-Distribution-
Aware Margin Loss", NeurIPS 2019 (arXiv:1906.07413).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltzoo.methods.losses.class_balanced import effective_number_weights
from ltzoo.methods.losses.long_tail_loss import ClassCounts, LongTailLoss


def ldam_margins(counts: torch.Tensor, max_m: float) -> torch.Tensor:
    """Per-class margins m_c proportional to n_c^{-1/4}, scaled so that max_c m_c = max_m.

    Args:
        counts: (C,) positive class counts.
        max_m: largest margin (that of the rarest class).

    Returns:
        The (C,) margins, same dtype as ``counts``.
    """
    margins = counts.pow(-0.25)
    return margins * (max_m / margins.max())


class LDAMLoss(LongTailLoss):
    """LDAM loss, optionally with deferred re-weighting (DRW).

    With margins m_c = max_m * n_c^{-1/4} / max_k n_k^{-1/4} and scale s,

        L = -log [ exp(s (z_{y} - m_{y})) / (exp(s (z_{y} - m_{y})) + sum_{j != y} exp(s z_j)) ]

    averaged over the batch. With DRW, from epoch ``drw_epoch`` on (see :meth:`set_epoch`) the
    per-sample losses are weighted by w_{y} with the effective-number weights
    w_c = (1 - beta) / (1 - beta^{n_c}) normalised to sum to C, and averaged as
    ``F.cross_entropy(weight=w)`` does (sum_i w_{y_i} l_i / sum_i w_{y_i}), as in the paper's
    reference implementation. Before ``drw_epoch`` (or with ``drw_epoch=None``) the loss is
    unweighted.

    The paper applies s = 30 to cosine logits (a normalised linear classifier, |z| <= 1); with a
    plain linear head the logits are unbounded and a smaller s (e.g. 1) is advisable.

    Args:
        class_counts: training samples per class, length C, all > 0.
        max_m: the largest margin (0.5 in the paper).
        s: logit scale.
        drw_epoch: first epoch (0-based) of re-weighting; None disables DRW.
        beta: effective-number hyper-parameter of the DRW weights.
    """

    margins: torch.Tensor
    drw_weights: torch.Tensor

    def __init__(
        self,
        class_counts: ClassCounts,
        max_m: float = 0.5,
        s: float = 30.0,
        drw_epoch: int | None = None,
        beta: float = 0.9999,
    ) -> None:
        if max_m <= 0:
            raise ValueError(f"LDAM max_m must be > 0, got {max_m}")
        if s <= 0:
            raise ValueError(f"LDAM scale s must be > 0, got {s}")
        if drw_epoch is not None and drw_epoch < 0:
            raise ValueError(f"drw_epoch must be >= 0 or None, got {drw_epoch}")
        super().__init__("ldam" if drw_epoch is None else "ldam_drw")
        counts = self._counts(class_counts)
        self.max_m = float(max_m)
        self.s = float(s)
        self.drw_epoch = drw_epoch
        self.beta = float(beta)
        self.epoch = 0
        self.register_buffer("margins", ldam_margins(counts, self.max_m))
        self.register_buffer("drw_weights", effective_number_weights(counts, self.beta))

    @property
    def drw_active(self) -> bool:
        """Whether deferred re-weighting applies at the current epoch."""
        return self.drw_epoch is not None and self.epoch >= self.drw_epoch

    @property
    def class_weights(self) -> torch.Tensor | None:
        """The class weights in use now: the DRW weights once active, else None (unweighted)."""
        return self.drw_weights if self.drw_active else None

    def set_epoch(self, epoch: int) -> None:
        """Records the epoch about to start; DRW switches on when ``epoch >= drw_epoch``.

        Args:
            epoch: the epoch about to start, counted from 0.
        """
        self.epoch = int(epoch)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        margin = self.margins.to(logits.dtype)[target].unsqueeze(1)
        one_hot = F.one_hot(target, self.num_classes).to(logits.dtype)
        adjusted = self.s * (logits - one_hot * margin)
        weight = self.class_weights
        if weight is not None:
            weight = weight.to(logits.dtype)
        return F.cross_entropy(adjusted, target, weight=weight)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, max_m={self.max_m}, s={self.s}, "
            f"drw_epoch={self.drw_epoch}, beta={self.beta}"
        )
