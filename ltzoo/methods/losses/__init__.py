"""Losses for long-tailed classification.

Every loss is a :class:`LongTailLoss`: an ``nn.Module`` called as ``loss(logits, target) -> scalar``
with int64 (N,) targets (the losses whose ``accepts_soft_targets`` is true, see
:func:`soft_target_losses`, also take soft (N, C) mixup / cutmix targets). It computes in float32
under mixed precision, keeps its class-count-derived tensors as float64 buffers (exact; moved by
``.to(device)`` and cast to the compute dtype), and has ``set_epoch(epoch)`` (which only LDAM-DRW
uses). Build them by name with :func:`create_loss`; :func:`loss_spec` gives a loss's registry entry
(display name, BibTeX keys, soft-target support).
"""

from ltzoo.methods.losses.ce import CrossEntropyLoss
from ltzoo.methods.losses.class_balanced import ClassBalancedLoss, effective_number_weights
from ltzoo.methods.losses.factory import (
    LossSpec,
    accepts_soft_targets,
    create_loss,
    list_losses,
    loss_spec,
    soft_target_losses,
)
from ltzoo.methods.losses.focal import FocalLoss
from ltzoo.methods.losses.geometric_mean import GeometricMeanLoss
from ltzoo.methods.losses.las import LAS_FORMS, LabelAwareSmoothingLoss, label_aware_epsilons
from ltzoo.methods.losses.ldam import LDAMLoss, ldam_margins
from ltzoo.methods.losses.logit_adjust import BalancedSoftmaxLoss, LogitAdjustedLoss
from ltzoo.methods.losses.long_tail_loss import LongTailLoss

__all__ = [
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "GeometricMeanLoss",
    "LAS_FORMS",
    "LDAMLoss",
    "LabelAwareSmoothingLoss",
    "LogitAdjustedLoss",
    "LongTailLoss",
    "LossSpec",
    "accepts_soft_targets",
    "create_loss",
    "effective_number_weights",
    "label_aware_epsilons",
    "ldam_margins",
    "list_losses",
    "loss_spec",
    "soft_target_losses",
]
