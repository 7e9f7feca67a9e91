"""The optimiser and the learning-rate schedule of every training loop in the recipes.

The optimiser is timm's (`timm.optim.create_optimizer_v2`): SGD with Nesterov momentum 0.9 ('sgd'),
SGD with plain momentum 0.9 ('momentum', as LDAM-DRW and MiSLAS train CIFAR-LT) or AdamW, weight decay on
the weights only (timm's filter: no decay on parameters with ndim <= 1, i.e. biases
and norm layers, nor on those a model lists in ``no_weight_decay()``). The schedule is torch's: a linear
warm-up (`LinearLR`) then a cosine decay to zero (`CosineAnnealingLR`), or, given milestones, step decay
(`MultiStepLR`: the rate times ``gamma`` at each milestone, the schedule of LDAM-DRW's and MiSLAS's CIFAR
recipes), chained by `SequentialLR` and stepped once per optimiser step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.optim import create_optimizer_v2
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, MultiStepLR, SequentialLR

from ltzoo.errors import UserError


def create_optimizer(
    model: torch.nn.Module, name: str, lr: float, weight_decay: float, layer_decay: float | None = None
) -> torch.optim.Optimizer:
    """``name`` ('sgd': Nesterov momentum 0.9, 'momentum': plain momentum 0.9, or 'adamw') over the model's
    trainable parameters.

    Parameters with ``requires_grad=False`` are left out (BTM's members train part of the network, adapters
    (`ltzoo.methods.adapters`) the adapter and the classifier). ``layer_decay``: timm's layer-wise rate decay, by the
    timm model's block structure (its ``group_matcher``; a peft wrapper's timm model is used).
    """
    if layer_decay is not None:
        from ltzoo.methods.adapters import base_model

        model = base_model(model)
        if not hasattr(model, "group_matcher"):
            raise UserError(
                f"--layer-decay needs the model's layer structure, and {type(model).__name__} has no group_matcher",
                "drop --layer-decay for this model",
            )
    return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay, momentum=0.9, layer_decay=layer_decay)


def create_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> LRScheduler:
    """Linear warm-up to the peak rate over ``warmup_steps`` (from peak / warmup_steps at step 0), then cosine
    decay to zero at ``total_steps``; or, with ``milestones`` (optimiser steps, after the warm-up), the peak
    rate times ``gamma`` once per milestone passed (0.1, 0.01 ... of the peak for gamma 0.1)."""
    if any(m <= warmup_steps or m >= total_steps for m in milestones) or list(milestones) != sorted(set(milestones)):
        raise ValueError(
            f"learning-rate milestones {list(milestones)} must increase and lie after the warm-up "
            f"({warmup_steps} steps) and before the end ({total_steps} steps)"
        )
    if milestones:
        main = MultiStepLR(optimizer, [m - warmup_steps for m in milestones], gamma=gamma)
    else:
        main = CosineAnnealingLR(optimizer, T_max=max(total_steps - warmup_steps, 1))
    if warmup_steps <= 0:
        return main
    warmup = LinearLR(optimizer, start_factor=1 / warmup_steps, end_factor=1.0, total_iters=warmup_steps - 1)
    return SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])
