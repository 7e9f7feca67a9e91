"""Losses for long-tailed classification.

Every loss is an ``nn.Module`` called as ``loss(logits, target) -> scalar`` with int64 (N,)
targets ('ce', 'bsce' and 'la' also take soft (N, C) mixup / cutmix targets), computes in float32
under mixed precision, keeps its class-count-derived tensors as float64 buffers (exact; moved by
``.to(device)`` and cast to the compute dtype in ``forward``), and has ``set_epoch(epoch)``
(which only LDAM-DRW uses). Build them by name with :func:`create_loss`.
"""
from ltzoo.losses.balanced_softmax import BalancedSoftmaxLoss
from ltzoo.losses.base import LongTailLoss
from ltzoo.losses.ce import CrossEntropyLoss
from ltzoo.losses.class_balanced import ClassBalancedLoss, effective_number_weights
from ltzoo.losses.factory import create_loss, list_losses
from ltzoo.losses.focal import FocalLoss
from ltzoo.losses.gml import GeometricMeanLoss
from ltzoo.losses.ldam import LDAMLoss, ldam_margins
from ltzoo.losses.logit_adjust import LogitAdjustedLoss

__all__ = [
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "GeometricMeanLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "LongTailLoss",
    "create_loss",
    "effective_number_weights",
    "ldam_margins",
    "list_losses",
]
