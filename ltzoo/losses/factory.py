"""Loss factory: build any ltzoo loss by name.

Usage::

    criterion = create_loss("ldam_drw", class_counts=[500, 100, 20], drw_epoch=160)
    for epoch in range(epochs):
        criterion.set_epoch(epoch)        # every epoch, whatever the loss
        ...
        loss = criterion(logits, target)
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ltzoo.losses._utils import as_class_counts
from ltzoo.losses.balanced_softmax import BalancedSoftmaxLoss
from ltzoo.losses.ce import CrossEntropyLoss
from ltzoo.losses.class_balanced import ClassBalancedLoss
from ltzoo.losses.focal import FocalLoss
from ltzoo.losses.gml import GeometricMeanLoss
from ltzoo.losses.ldam import LDAMLoss
from ltzoo.losses.logit_adjust import LogitAdjustedLoss

DEFAULT_DRW_EPOCH = 160  # Cao et al. 2019: re-weighting from epoch 160 of 200 on CIFAR-LT

# name -> (class, needs class_counts, fixed kwargs, default kwargs)
_LOSSES: dict[str, tuple[Callable[..., nn.Module], bool, dict[str, Any], dict[str, Any]]] = {
    "ce": (CrossEntropyLoss, False, {}, {}),
    "focal": (FocalLoss, False, {}, {}),
    "cb": (ClassBalancedLoss, True, {"base": "ce", "gamma": 2.0}, {}),  # gamma unused with base='ce'
    "cb_focal": (ClassBalancedLoss, True, {"base": "focal"}, {}),
    "bsce": (BalancedSoftmaxLoss, True, {}, {}),
    "la": (LogitAdjustedLoss, True, {}, {}),
    "ldam": (LDAMLoss, True, {"drw_epoch": None, "beta": 0.9999}, {}),  # beta only serves DRW
    "ldam_drw": (LDAMLoss, True, {}, {"drw_epoch": DEFAULT_DRW_EPOCH}),
    "gml": (GeometricMeanLoss, True, {}, {}),
}

_ALIASES = {
    "balanced_softmax": "bsce",
    "logit_adjust": "la",
}


def list_losses() -> list[str]:
    """Canonical loss names accepted by :func:`create_loss` (aliases not included)."""
    return list(_LOSSES)


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _LOSSES:
        valid = ", ".join(list_losses() + sorted(_ALIASES))
        raise ValueError(f"unknown loss {name!r}; valid names: {valid}")
    return key


def _accepted_kwargs(cls: Callable[..., nn.Module], fixed: dict[str, Any]) -> list[str]:
    params = inspect.signature(cls).parameters
    return [p for p in params if p not in ("self", "class_counts") and p not in fixed]


def create_loss(
    name: str,
    class_counts: Sequence[int] | torch.Tensor | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Builds a loss by name.

    Args:
        name: one of :func:`list_losses` (case-insensitive, '-' or '_'), or an alias
            ('balanced_softmax' for 'bsce', 'logit_adjust' for 'la').
        class_counts: training samples per class (length C). Required by every loss except
            'ce' and 'focal' (which ignore it); all entries must be > 0.
        **kwargs: hyper-parameters of the loss: 'ce': smoothing; 'focal': gamma; 'cb': beta;
            'cb_focal': beta, gamma; 'bsce': none; 'la': tau; 'ldam': max_m, s; 'ldam_drw':
            max_m, s, drw_epoch (default 160), beta; 'gml': p.

    Returns:
        The loss module (a :class:`ltzoo.losses.base.LongTailLoss`).

    Raises:
        ValueError: unknown name, missing or invalid class_counts, invalid hyper-parameters.
        TypeError: a keyword argument the loss does not take.
    """
    key = _canonical(name)
    cls, needs_counts, fixed, defaults = _LOSSES[key]
    accepted = _accepted_kwargs(cls, fixed)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"loss {key!r} got unexpected keyword arguments {unknown}; it accepts {accepted}")
    params = {**defaults, **kwargs, **fixed}
    if key == "ldam_drw" and params.get("drw_epoch") is None:
        raise ValueError("loss 'ldam_drw' needs an integer drw_epoch (use 'ldam' for LDAM without DRW)")
    if not needs_counts:
        return cls(**params)
    return cls(as_class_counts(class_counts, key), **params)
