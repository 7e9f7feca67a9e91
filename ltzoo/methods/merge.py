"""Weight averaging of fine-tuned models (model soups) and BatchNorm re-estimation.

BTM (Balanced Training and Merging; "Reviving Undersampling for Long-Tailed Learning", 2024) averages
the weights of models fine-tuned from one start on different balanced subsets, as in model soups
(Wortsman et al., 2022). `average_checkpoints` is the uniform soup: a pure function of the member
files, streamed one at a time so that only the running sum and one member are in memory.
`greedy_soup` adds members in order of validation score and keeps one only if the soup improves.
`sequential_weights` is LT-Soups' merge (Aminbeidokhti et al., 2025): members mixed in one by one into the
start, ``new = (1 - lm) * new + lm * member``, as one weighted average.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

_logger = logging.getLogger(__name__)

StateDict = Mapping[str, torch.Tensor]


def _load(member: str | Path | StateDict) -> StateDict:
    if isinstance(member, (str, Path)):
        return load_file(str(member))
    return member


def average_checkpoints(
    members: Iterable[str | Path | StateDict], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
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
    weight_sum, count = 0.0, 0
    for i, member in enumerate(members):
        sd = _load(member)
        if weights is not None and i >= len(weights):
            raise ValueError(f"more members than the {len(weights)} weights given")
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
        count = i + 1
        del sd  # before the next member is loaded: one member in memory at a time
    if not total:
        raise ValueError("nothing to average: no members given")
    if weights is not None and len(weights) != count:
        raise ValueError(f"{len(weights)} weights for {count} members")
    if weight_sum <= 0:
        raise ValueError(f"the member weights sum to {weight_sum}; they must sum to a positive number")
    return {k: (v / weight_sum).to(dtypes[k]) if v.is_floating_point() else v for k, v in total.items()}


def sequential_weights(members: int, lm: float) -> list[float]:
    """The weights of ``[start, member 0, ..., member n-1]`` that LT-Soups' sequential merge gives: starting from
    the start model, each member in turn mixed in as ``new = (1 - lm) * new + lm * member``; the start gets
    ``(1 - lm) ** n``, member i ``lm * (1 - lm) ** (n - 1 - i)`` (the last member the most for lm > 1/2).
    They sum to 1; pass them to `average_checkpoints` with the start first."""
    if members < 1:
        raise ValueError(f"a sequential merge needs at least one member, not {members}")
    if not 0.0 < lm <= 1.0:
        raise ValueError(f"the merge rate lm must be in (0, 1], not {lm}")
    return [(1 - lm) ** members] + [lm * (1 - lm) ** (members - 1 - i) for i in range(members)]


def _check_same_keys(ref: Mapping, sd: Mapping, i: int) -> None:
    if ref.keys() != sd.keys():
        missing, extra = sorted(set(ref) - set(sd))[:3], sorted(set(sd) - set(ref))[:3]
        raise ValueError(
            f"member {i} has other parameters than member 0 (missing {missing}, extra {extra}); "
            "only models fine-tuned from one start can be merged"
        )
    for k in ref:
        if ref[k].shape != sd[k].shape:
            raise ValueError(f"member {i}: {k} has shape {tuple(sd[k].shape)}, member 0 {tuple(ref[k].shape)}")
        if ref[k].is_floating_point() != sd[k].is_floating_point():
            raise ValueError(f"member {i}: {k} is {sd[k].dtype}, member 0 {ref[k].dtype}")


def greedy_soup(
    members: Sequence[str | Path],
    scores: Sequence[float],
    evaluate: Callable[[dict[str, torch.Tensor]], float],
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Greedy soup: add members in order of validation score, keeping each unless the soup's score falls.

    As in model soups' greedy recipe, a candidate is kept when the soup with it scores at least as well
    as the soup without it (a tie keeps it: more members, same validation score).

    Args:
        members: safetensors files of the fine-tuned members.
        scores: each member's own validation score (sets the order).
        evaluate: the validation score of a merged state dict (higher is better).

    Returns:
        The merged state dict and the indices of the members it holds.
    """
    if not members or len(scores) != len(members):
        raise ValueError(f"greedy soup needs one score per member ({len(members)} members, {len(scores)} scores)")
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
    """Recompute every BatchNorm's running mean and variance over all the images of ``batches``.

    The model runs forward in training mode (each BN normalises by its batch's statistics, as in
    training) while each BN's inputs are accumulated, in float64, over every batch: its running mean
    becomes the exact per-channel mean of all its inputs and its running variance their unbiased
    variance (BN's convention for ``running_var``), whatever the batch sizes, not an average of
    per-batch statistics. The model's other weights are unchanged; it is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return model.eval()
    stats: dict[nn.Module, list] = {m: [0, 0.0, 0.0] for m in norms}  # count, mean, sum of squared deviations

    def accumulate(mod: nn.Module, inputs: tuple) -> None:
        x = inputs[0].detach().double()
        dims = [0] + list(range(2, x.dim()))
        n_b = x.numel() // x.shape[1]
        mean_b = x.mean(dims)
        m2_b = (x - mean_b.view(1, -1, *[1] * (x.dim() - 2))).square().sum(dims)
        n, mean, m2 = stats[mod]
        total = n + n_b
        delta = mean_b - mean
        stats[mod] = [total, mean + delta * (n_b / total), m2 + m2_b + delta.square() * (n * n_b / total)]

    hooks = [m.register_forward_pre_hook(accumulate) for m in norms]
    batches_seen = 0
    try:
        model.train()
        for x in batches:
            model(x)
            batches_seen += 1
    finally:
        for h in hooks:
            h.remove()
        model.eval()
    if not batches_seen:
        raise ValueError("reestimate_bn: no batches to estimate the BatchNorm statistics on")
    for m in norms:
        n, mean, m2 = stats[m]
        if n == 0:  # a BatchNorm the forward pass never reached keeps its statistics
            continue
        m.running_mean.copy_(mean)
        m.running_var.copy_(m2 / max(n - 1, 1))
        m.num_batches_tracked.fill_(batches_seen)
    return model.eval()
