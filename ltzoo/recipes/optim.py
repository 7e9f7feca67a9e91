"""The optimiser and the learning-rate schedule of every training loop in the recipes.

The optimiser is timm's (`timm.optim.create_optimizer_v2`): SGD with Nesterov momentum 0.9 or AdamW,
weight decay on the weights only (timm's filter: no decay on parameters with ndim <= 1, i.e. biases
and norm layers, nor on those a model lists in its ``no_weight_decay()``).
"""
from __future__ import annotations

import math

import torch
from timm.optim import create_optimizer_v2


def create_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``name`` ('sgd': Nesterov momentum 0.9, or 'adamw') over the model's trainable parameters.

    Parameters with ``requires_grad=False`` are left out (BTM's members train part of the network).
    """
    return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay, momentum=0.9)


def create_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak rate over ``warmup_steps``, then cosine decay to zero at ``total_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
