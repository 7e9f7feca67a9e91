"""The skeleton every ltzoo loss shares: count validation, target checks, the float32 upcast.

A loss subclasses :class:`LongTailLoss` and implements only :meth:`LongTailLoss.compute` on logits
that are already checked and upcast; :meth:`LongTailLoss.forward` does the rest, the same way for
every loss. Count-derived tensors are registered as float64 buffers (exact; moved by ``.to(device)``
and cast to the compute dtype in ``compute``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

ClassCounts = Sequence[int] | Sequence[float] | np.ndarray | torch.Tensor


def as_class_counts(class_counts: ClassCounts | None, loss_name: str) -> torch.Tensor:
    """Validates per-class training counts and returns them as a float64 1-D tensor.

    Every loss that consumes counts takes log(n_c) or a power / exponent of n_c, so all entries
    must be strictly positive.

    Args:
        class_counts: number of training samples of each class, length C.
        loss_name: name of the calling loss, used in error messages.

    Returns:
        A float64 CPU tensor of shape (C,).

    Raises:
        ValueError: if the counts are missing, not 1-D, empty, non-finite or not all > 0.
    """
    if class_counts is None:
        raise ValueError(
            f"loss '{loss_name}' needs the per-class training counts: pass class_counts=[n_0, ..., n_(C-1)]"
        )
    if isinstance(class_counts, torch.Tensor):
        counts = class_counts.detach().to(device="cpu", dtype=torch.float64)
    else:
        counts = torch.as_tensor(np.asarray(class_counts, dtype=np.float64))
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(
            f"loss '{loss_name}': class_counts must be a non-empty 1-D sequence, got shape {tuple(counts.shape)}"
        )
    if not torch.isfinite(counts).all():
        raise ValueError(f"loss '{loss_name}': class_counts must be finite, got {counts.tolist()}")
    bad = (counts <= 0).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"loss '{loss_name}' takes log / powers of the class counts, so every count must be > 0; "
            f"classes {bad[:10]}{'...' if len(bad) > 10 else ''} have count <= 0 "
            "(drop empty classes from the label space, or use 'ce' / 'focal')"
        )
    return counts


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """Promotes half / bfloat16 (mixed-precision) logits to float32; float64 is kept as is."""
    return logits if logits.dtype == torch.float64 else logits.float()


def check_logits(logits: torch.Tensor, num_classes: int | None, loss_name: str) -> None:
    """Checks that logits are (N, C) with the C the loss was built for.

    Raises:
        ValueError: on a shape mismatch.
    """
    if logits.ndim != 2:
        raise ValueError(f"loss '{loss_name}' expects logits of shape (N, C), got {tuple(logits.shape)}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"loss '{loss_name}' was built for {num_classes} classes (len(class_counts)) "
            f"but got logits with {logits.shape[1]} columns"
        )


def check_target(target: torch.Tensor, logits: torch.Tensor, loss_name: str, soft_ok: bool) -> None:
    """Checks a target: (N,) integer class indices, or (N, C) probabilities where ``soft_ok``.

    Raises:
        ValueError: on a soft target the loss cannot take, or a shape / batch size mismatch.
    """
    if soft_ok and target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(
                f"loss '{loss_name}': soft targets must have the logits' shape {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}"
            )
        return
    if target.is_floating_point() or target.ndim != 1:
        raise ValueError(
            f"loss '{loss_name}' expects integer class indices of shape (N,), got dtype {target.dtype} "
            f"shape {tuple(target.shape)}; soft (mixup / cutmix) targets need a loss that accepts them "
            "(ltzoo.methods.losses.soft_target_losses())"
        )
    if target.shape[0] != logits.shape[0]:
        raise ValueError(f"loss '{loss_name}': {logits.shape[0]} logits rows but {target.shape[0]} targets")


class LongTailLoss(nn.Module):
    """Base class of the ltzoo losses: ``loss(logits, target) -> scalar`` plus an epoch hook.

    Subclasses set ``accepts_soft_targets`` and implement :meth:`compute`; ``loss_name`` (the
    registry name, set by the subclass or by :func:`ltzoo.methods.losses.create_loss`) names the loss in
    error messages, and ``num_classes`` (None: any) is checked against the logits.
    """

    accepts_soft_targets: ClassVar[bool] = False
    num_classes: int | None = None

    def __init__(self, loss_name: str) -> None:
        super().__init__()
        self.loss_name = loss_name

    def _counts(self, class_counts: ClassCounts) -> torch.Tensor:
        """Validates the class counts (float64, all > 0) and records C."""
        counts = as_class_counts(class_counts, self.loss_name)
        self.num_classes = counts.numel()
        return counts

    def prepare(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Checks shapes and target kind, upcasts the logits, casts soft targets to their dtype."""
        check_logits(logits, self.num_classes, self.loss_name)
        check_target(target, logits, self.loss_name, self.accepts_soft_targets)
        logits = upcast(logits)
        if target.is_floating_point():
            target = target.to(logits.dtype)
        return logits, target

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Computes the loss.

        Args:
            logits: (N, C) scores, any floating dtype (computed in float32 or higher).
            target: (N,) int64 class indices, or (N, C) target probabilities for the losses that
                accept soft (mixup / cutmix) targets.

        Returns:
            The scalar loss.
        """
        return self.compute(*self.prepare(logits, target))

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss on checked, float32-or-wider logits (see :meth:`forward`)."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Tells the loss which epoch (0-based) is starting; a no-op unless overridden (LDAM-DRW).

        Args:
            epoch: the epoch about to start, counted from 0.
        """
        del epoch
