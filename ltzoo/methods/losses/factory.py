"""The loss registry and factory: build any ltzoo loss by name.

Usage::

    criterion = create_loss("ldam_drw", class_counts=[500, 100, 20], drw_epoch=160)
    for epoch in range(epochs):
        criterion.set_epoch(epoch)        # every epoch, whatever the loss
        ...
        loss = criterion(logits, target)

Each registry entry (:class:`LossSpec`) carries what the rest of ltzoo needs to know about a loss:
its class and fixed / default hyper-parameters, a display name, the BibTeX keys of the papers to
cite (entries of ``ltzoo/references.bib``), and, through its class, whether it takes soft (mixup /
cutmix) targets. A variant of a loss (balanced softmax = logit-adjusted CE with tau = 1) is an
entry, not a class.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ltzoo.methods.losses.ce import CrossEntropyLoss
from ltzoo.methods.losses.class_balanced import ClassBalancedLoss
from ltzoo.methods.losses.focal import FocalLoss
from ltzoo.methods.losses.geometric_mean import GeometricMeanLoss
from ltzoo.methods.losses.las import LabelAwareSmoothingLoss
from ltzoo.methods.losses.ldam import LDAMLoss
from ltzoo.methods.losses.logit_adjust import LogitAdjustedLoss
from ltzoo.methods.losses.long_tail_loss import LongTailLoss, as_class_counts

DEFAULT_DRW_EPOCH = 160  # Cao et al. 2019: re-weighting from epoch 160 of 200 on CIFAR-LT


@dataclass(frozen=True)
class LossSpec:
    """One registry entry.

    Attributes:
        cls: the loss class.
        display_name: how cards and tables name the loss.
        cite: BibTeX keys (in ``ltzoo/references.bib``) of the papers that define it.
        needs_counts: whether it takes the per-class training counts.
        fixed: hyper-parameters the entry pins (not accepted as keyword arguments).
        defaults: hyper-parameter defaults that differ from the class's.
    """

    cls: type[LongTailLoss]
    display_name: str
    cite: tuple[str, ...] = ()
    needs_counts: bool = True
    fixed: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def accepts_soft_targets(self) -> bool:
        """Whether the loss takes (N, C) soft targets (mixup / cutmix)."""
        return self.cls.accepts_soft_targets


_LOSSES: dict[str, LossSpec] = {
    "ce": LossSpec(CrossEntropyLoss, "cross-entropy", needs_counts=False),
    "focal": LossSpec(FocalLoss, "focal loss", ("lin2017focal",), needs_counts=False),
    "cb": LossSpec(
        ClassBalancedLoss, "class-balanced cross-entropy", ("cui2019class",), fixed={"base": "ce", "gamma": 2.0}
    ),  # gamma unused with base='ce'
    "cb_focal": LossSpec(
        ClassBalancedLoss, "class-balanced focal loss", ("cui2019class", "lin2017focal"), fixed={"base": "focal"}
    ),
    "bsce": LossSpec(
        LogitAdjustedLoss, "balanced softmax cross-entropy", ("ren2020balanced",), fixed={"tau": 1.0}
    ),  # balanced softmax is logit adjustment with tau = 1
    "la": LossSpec(LogitAdjustedLoss, "logit-adjusted cross-entropy", ("menon2021long",)),
    "ldam": LossSpec(
        LDAMLoss, "LDAM loss", ("cao2019learning",), fixed={"drw_epoch": None, "beta": 0.9999}
    ),  # beta only serves DRW
    "ldam_drw": LossSpec(LDAMLoss, "LDAM-DRW", ("cao2019learning",), defaults={"drw_epoch": DEFAULT_DRW_EPOCH}),
    "gml": LossSpec(GeometricMeanLoss, "geometric mean loss (GML)", ("du2023no",)),
    "las": LossSpec(LabelAwareSmoothingLoss, "label-aware smoothing (MiSLAS)", ("zhong2021improving",)),
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


def loss_spec(name: str) -> LossSpec:
    """The registry entry of a loss (any name :func:`create_loss` accepts).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    return _LOSSES[_canonical(name)]


def accepts_soft_targets(name: str) -> bool:
    """Whether the loss ``name`` takes soft (N, C) targets, as mixup and cutmix produce.

    Raises:
        ValueError: unknown name.
    """
    return loss_spec(name).accepts_soft_targets


def soft_target_losses() -> list[str]:
    """Canonical names of the losses that take soft (mixup / cutmix) targets."""
    return [name for name, spec in _LOSSES.items() if spec.accepts_soft_targets]


def _accepted_kwargs(spec: LossSpec) -> list[str]:
    params = inspect.signature(spec.cls).parameters
    return [p for p in params if p not in ("self", "class_counts") and p not in spec.fixed]


def create_loss(
    name: str,
    class_counts: Sequence[int] | torch.Tensor | None = None,
    **kwargs: Any,
) -> LongTailLoss:
    """Builds a loss by name.

    Args:
        name: one of :func:`list_losses` (case-insensitive, '-' or '_'), or an alias
            ('balanced_softmax' for 'bsce', 'logit_adjust' for 'la').
        class_counts: training samples per class (length C). Required by every loss except
            'ce' and 'focal' (which ignore it); all entries must be > 0.
        **kwargs: hyper-parameters of the loss: 'ce': smoothing; 'focal': gamma; 'cb': beta;
            'cb_focal': beta, gamma; 'bsce': none; 'la': tau; 'ldam': max_m, s; 'ldam_drw':
            max_m, s, drw_epoch (default 160), beta; 'gml': p; 'las': eps_head, eps_tail, form.

    Returns:
        The loss module; its ``loss_name`` is the canonical name.

    Raises:
        ValueError: unknown name, missing or invalid class_counts, invalid hyper-parameters.
        TypeError: a keyword argument the loss does not take.
    """
    key = _canonical(name)
    spec = _LOSSES[key]
    accepted = _accepted_kwargs(spec)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"loss {key!r} got unexpected keyword arguments {unknown}; it accepts {accepted}")
    params = {**spec.defaults, **kwargs, **spec.fixed}
    if key == "ldam_drw" and params.get("drw_epoch") is None:
        raise ValueError("loss 'ldam_drw' needs an integer drw_epoch (use 'ldam' for LDAM without DRW)")
    if spec.needs_counts:
        loss = spec.cls(as_class_counts(class_counts, key), **params)
    else:
        loss = spec.cls(**params)
    loss.loss_name = key
    return loss
