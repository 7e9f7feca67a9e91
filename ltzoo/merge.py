"""Weight averaging of fine-tuned models (model soups) and BatchNorm re-estimation.

BTM (Balanced Training and Merging; "Reviving Undersampling for Long-Tailed Learning", 2024) averages
the weights of models fine-tuned from one start on different balanced subsets, as in model soups
(Wortsman et al., 2022). `average_checkpoints` is the uniform soup: a pure function of the member
files, streamed one at a time so that only the running sum and one member are in memory.
`greedy_soup` adds members in order of validation score and keeps one only if the soup improves.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch
from safetensors.torch import load_file
from torch import nn

_logger = logging.getLogger(__name__)

StateDict = Mapping[str, torch.Tensor]


def _load(member: str | Path | StateDict) -> StateDict:
    if isinstance(member, (str, Path)):
        return load_file(str(member))
    return member


def average_checkpoints(members: Iterable[str | Path | StateDict], weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """Weighted average of state dicts (paths to safetensors files or dicts), streaming one at a time.

    Floating-point tensors (weights, BN running statistics) are averaged in float64 and cast back to
    their dtype; integer tensors (BN's ``num_batches_tracked``) are taken from the first member.

    Args:
        members: the state dicts or safetensors files to merge; all must share keys and shapes.
        weights: per-member weights (normalised to sum to 1); None is the uniform average.

    Returns:
        The merged state dict.
    """
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    weight_sum = 0.0
    for i, member in enumerate(members):
        sd = _load(member)
        w = 1.0 if weights is None else float(weights[i])
        if i == 0:
            dtypes = {k: v.dtype for k, v in sd.items()}
            total = {k: v.double() * w if v.is_floating_point() else v.clone() for k, v in sd.items()}
        else:
            _check_same_keys(total, sd, i)
            for k, v in sd.items():
                if v.is_floating_point():
                    total[k].add_(v.double(), alpha=w)
        weight_sum += w
    if not total:
        raise ValueError("nothing to average: no members given")
    return {k: (v / weight_sum).to(dtypes[k]) if v.is_floating_point() else v for k, v in total.items()}


def _check_same_keys(ref: Mapping, sd: Mapping, i: int) -> None:
    if ref.keys() != sd.keys():
        missing, extra = sorted(set(ref) - set(sd))[:3], sorted(set(sd) - set(ref))[:3]
        raise ValueError(f"member {i} has other parameters than member 0 (missing {missing}, extra {extra}); "
                         "only models fine-tuned from one start can be merged")
    for k in ref:
        if ref[k].shape != sd[k].shape:
            raise ValueError(f"member {i}: {k} has shape {tuple(sd[k].shape)}, member 0 {tuple(ref[k].shape)}")


def greedy_soup(
    members: Sequence[str | Path],
    scores: Sequence[float],
    evaluate: Callable[[dict[str, torch.Tensor]], float],
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Greedy soup: add members in order of validation score, keeping each only if the soup's score rises.

    Args:
        members: safetensors files of the fine-tuned members.
        scores: each member's own validation score (sets the order).
        evaluate: the validation score of a merged state dict (higher is better).

    Returns:
        The merged state dict and the indices of the members it holds.
    """
    order = sorted(range(len(members)), key=lambda i: -scores[i])
    chosen = [order[0]]
    best_sd = average_checkpoints([members[order[0]]])
    best = evaluate(best_sd)
    for i in order[1:]:
        candidate = average_checkpoints([members[j] for j in chosen + [i]])
        score = evaluate(candidate)
        _logger.info("greedy soup: member %d -> %.4f (best %.4f)", i, score, best)
        if score >= best:
            chosen, best_sd, best = chosen + [i], candidate, score
    return best_sd, sorted(chosen)


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Recompute every BatchNorm's running mean and variance as the plain average over ``batches``.

    The model's other weights are unchanged; it is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model.eval()
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the exact mean over the batches seen
    model.train()
    for x in batches:
        model(x)
    for m, (momentum, _) in zip(norms, saved):
        m.momentum = momentum
    return model.eval()
