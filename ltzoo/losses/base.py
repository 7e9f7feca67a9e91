"""Shared base class of the ltzoo losses.

Every loss in :mod:`ltzoo.losses` is an :class:`torch.nn.Module` with
``forward(logits, target) -> scalar`` and a ``set_epoch(epoch)`` hook, so a training loop can
call ``criterion.set_epoch(epoch)`` at the start of every epoch whatever loss it was given. Only
schedule-dependent losses (LDAM with deferred re-weighting) act on it.
"""
from __future__ import annotations

from torch import nn


class LongTailLoss(nn.Module):
    """Base class: an ``nn.Module`` loss with a (default no-op) epoch hook."""

    def set_epoch(self, epoch: int) -> None:
        """Tells the loss which epoch (0-based) is starting; a no-op unless overridden.

        Args:
            epoch: the epoch about to start, counted from 0.
        """
        del epoch
