"""Geometric Mean Loss (GML).

Du and Wu, 2023, "No One Left Behind: Improving the Worst Categories in Long-Tailed Learning",
CVPR 2023.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltzoo.methods.losses.long_tail_loss import ClassCounts, LongTailLoss


def class_log_power_means(
    log_q: torch.Tensor, target: torch.Tensor, num_classes: int, p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class log power means of the true-class probabilities.

    For each class c with samples S_c in the batch (|S_c| > 0),

        log M_c = (1/p) * (logsumexp_{i in S_c} (p * log q_i) - log |S_c|)    (p != 0)
        log M_c = mean_{i in S_c} log q_i                                      (p == 0, the limit)

    computed exactly in log space: a per-class max shift (treated as a constant, which leaves the
    value and the gradient unchanged) then a scatter-add of exponentials. Classes absent from the
    batch get the placeholder 0 and receive no gradient (no -inf / NaN anywhere). Everything
    stays on the device: no host synchronisation.

    Args:
        log_q: (N,) log-probabilities of each sample's true class.
        target: (N,) int64 class indices.
        num_classes: C.
        p: power of the mean (1 = arithmetic mean, 0 = geometric mean).

    Returns:
        (log_means, present): the (C,) log power means (0 where absent) and the (C,) bool mask
        of the classes present in the batch.
    """
    batch_counts = log_q.new_zeros(num_classes).index_add(0, target, torch.ones_like(log_q))
    present = batch_counts > 0
    safe_counts = torch.where(present, batch_counts, torch.ones_like(batch_counts))
    if p == 0:
        sums = log_q.new_zeros(num_classes).index_add(0, target, log_q)
        return torch.where(present, sums / safe_counts, torch.zeros_like(sums)), present
    x = p * log_q
    shift = torch.full((num_classes,), float("-inf"), dtype=x.dtype, device=x.device)
    shift = shift.scatter_reduce(0, target, x.detach(), reduce="amax", include_self=True)
    shift = torch.where(present, shift, torch.zeros_like(shift))
    sums = x.new_zeros(num_classes).index_add(0, target, torch.exp(x - shift[target]))
    safe_sums = torch.where(present, sums, torch.ones_like(sums))
    log_means = (shift + safe_sums.log() - safe_counts.log()) / p
    return torch.where(present, log_means, torch.zeros_like(log_means)), present


class GeometricMeanLoss(LongTailLoss):
    """Geometric Mean Loss on balanced-softmax probabilities, with an optional power mean.

    With q_i = softmax(z_i + log n) (n: the (C,) training class counts) and, for each class c
    present in the batch with samples S_c, the per-class power mean of the true-class
    probabilities

        M_c = ( (1/|S_c|) * sum_{i in S_c} q_{i,c}^p )^(1/p)

    the loss is

        L = (1/|P|) * sum_{c in P} -log M_c = -log( prod_{c in P} M_c )^(1/|P|)

    over the set P of classes present in the batch: minus the log of the geometric mean, over
    classes, of the per-class mean probabilities. p = 1 (the arithmetic mean) is the paper's
    loss; p = 0 is taken as the limit (geometric mean over samples, i.e. per-class mean
    log-likelihood). Every present class weighs the same, whatever its number of samples.

    Args:
        class_counts: training samples per class, length C, all > 0.
        p: power of the per-class mean (1.0 in the paper).
    """

    log_counts: torch.Tensor

    def __init__(self, class_counts: ClassCounts, p: float = 1.0) -> None:
        super().__init__("gml")
        counts = self._counts(class_counts)
        self.p = float(p)
        self.register_buffer("log_counts", counts.log())

    def class_log_means(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log of the per-class power means M_c.

        Args:
            logits: (N, C) scores.
            target: (N,) int64 class indices.

        Returns:
            (log_means, present): the (C,) values log M_c (0 for classes absent from the batch)
            and the (C,) bool mask of the classes present.
        """
        return self._log_means(*self.prepare(logits, target))

    def _log_means(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_q = F.log_softmax(logits + self.log_counts.to(logits.dtype), dim=1)
        log_q_true = log_q.gather(1, target.unsqueeze(1)).squeeze(1)
        return class_log_power_means(log_q_true, target, self.num_classes, self.p)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.numel() == 0:
            raise ValueError("loss 'gml' needs a non-empty batch")
        log_means, present = self._log_means(logits, target)
        return -log_means.sum() / present.sum()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, p={self.p}"
