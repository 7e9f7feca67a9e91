"""Temperature scaling, folded into the classifier: calibrated probabilities from a plain timm model.

Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks" (ICML 2017): one temperature T,
fitted on a held-out split by minimising the negative log-likelihood of ``softmax(z / T)``, calibrates a
network's confidence without changing a single prediction (dividing every logit by the same T > 0 keeps
their order). ltzoo fits T on the validation split after the model is chosen and folds it into the
classifier (its weight and bias divided by T, `fold_temperature`), so the exported model is plain timm and
its probabilities are the calibrated ones, with no extra code for whoever loads it.

The NLL of ``softmax(beta * z)`` is convex in the inverse temperature beta (a log-sum-exp of linear functions
minus a linear one), so a golden-section search over beta finds its minimum; it runs in float64 and is
deterministic, so every process of a run folds the same T.

A temperature fitted on a handful of images is noise (and on a split the model gets entirely right, the NLL
keeps falling as T goes to 0): below ``min_images`` validation images no T is fitted and the model stays as
trained (`Calibration.rule` says so). Per-class corrections (vector scaling, a learned per-class bias) change
the predictions, so they are classifier methods chosen on validation, not calibration: ltzoo never applies one
inside calibration.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

#: fewer validation images than this: no temperature is fitted (too few to estimate one reliably)
MIN_IMAGES = 100
#: the temperatures searched (as the inverse temperature 1/T in [1/20, 1/0.05])
T_RANGE = (0.05, 20.0)
METHODS = ("temperature", "none")


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true class under ``softmax(logits / temperature)`` (float64)."""
    z = logits.double() / temperature
    return float(torch.nn.functional.cross_entropy(z, labels.long()))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, iterations: int = 80) -> float:
    """The temperature in `T_RANGE` that minimises the NLL of ``labels`` (golden-section search on 1/T)."""
    z, y = logits.double(), labels.long()
    lo, hi = 1.0 / T_RANGE[1], 1.0 / T_RANGE[0]
    ratio = (math.sqrt(5) - 1) / 2

    def loss(beta: float) -> float:
        return float(torch.nn.functional.cross_entropy(z * beta, y))

    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(iterations):  # the bracket shrinks by 0.618 a step: 80 steps reach float64 resolution
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return 1.0 / ((lo + hi) / 2)


@dataclass(frozen=True)
class Calibration:
    """What calibration did: the temperature folded into the classifier (1.0: none) and why."""

    method: str
    temperature: float
    fitted: bool
    rule: str
    images: int = 0
    val_nll_before: float | None = None
    val_nll_after: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(
    val_logits: torch.Tensor | None,
    val_labels: torch.Tensor | None,
    method: str = "temperature",
    min_images: int = MIN_IMAGES,
) -> Calibration:
    """Decide the temperature from the validation split's logits (None: no validation split)."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration {method!r}; choose one of {', '.join(METHODS)}")
    if method == "none":
        return Calibration("none", 1.0, False, "not calibrated (--calibration none)")
    if val_logits is None or val_labels is None or len(val_labels) == 0:
        return Calibration(method, 1.0, False, "not calibrated: no validation split to fit a temperature on")
    n = len(val_labels)
    if n < min_images:
        return Calibration(
            method,
            1.0,
            False,
            f"not calibrated: {n} validation images, fewer than {min_images}, are too few to fit a temperature "
            "reliably (hold out more with --val-per-class, or lower --calibration-min-images)",
            images=n,
        )
    t = fit_temperature(val_logits, val_labels)
    if min(abs(t - T_RANGE[0]), abs(t - T_RANGE[1])) < 1e-6 * t:  # no minimum inside: nothing reliable to fold
        return Calibration(
            method,
            1.0,
            False,
            f"not calibrated: the validation NLL keeps falling to the edge of the temperatures searched {T_RANGE} "
            f"(T -> {t:.3g}; a split the model gets entirely right, or entirely wrong, has no best temperature)",
            images=n,
        )
    rule = f"temperature {t:.4g} fitted on {n} validation images (minimum NLL; Guo et al. 2017)"
    return Calibration(
        method,
        t,
        True,
        rule,
        images=n,
        val_nll_before=nll(val_logits, val_labels),
        val_nll_after=nll(val_logits, val_labels, t),
    )


#: the probability metrics of a split kept from before calibration (results.json's ``metrics.<split>.uncalibrated``)
UNCALIBRATED_KEYS = ("ece", "classwise_ece", "nll", "brier")


def uncalibrated_metrics(before: dict) -> dict:
    """What a split's metrics keep of the model before calibration: its probability metrics, and the test ECE's
    bootstrap interval where the split has one."""
    out = {k: before.get(k) for k in UNCALIBRATED_KEYS}
    if "bootstrap" in before:
        out["ece_interval"] = before["bootstrap"]["intervals"].get("ece")
    return out


def changed_predictions(before: dict, after: dict) -> dict[str, int]:
    """Per split, how many images ``after``'s logits predict another class than ``before``'s (split -> (logits,
    labels)); all zero when folding a temperature kept every prediction."""
    return {s: int((after[s][0].argmax(-1) != before[s][0].argmax(-1)).sum()) for s in after}


def classifier_of(model: nn.Module) -> nn.Module:
    """The module that computes the logits (timm's ``get_classifier()``), with a weight (and a bias)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        raise ValueError(
            f"{type(model).__name__} has no classifier with a weight to fold a temperature into "
            "(timm's get_classifier())"
        )
    return head


@torch.no_grad()
def fold_temperature(model: nn.Module, temperature: float) -> dict[str, torch.Tensor]:
    """Divide the classifier's weight and bias by ``temperature`` in place: the model's logits become ``z / T``.

    Returns:
        The classifier's tensors as they were (``weight``, ``bias``), for the run folder to keep
        (`ltzoo.runfolder.layout.UNCALIBRATED_HEAD`): a later stage that trains from this model restores them.
    """
    head = classifier_of(model)
    before = {
        name: p.detach().clone().cpu() for name, p in (("weight", head.weight), ("bias", head.bias)) if p is not None
    }
    if temperature != 1.0:
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)
    return before


@torch.no_grad()
def restore_classifier(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load the classifier's uncalibrated ``weight`` (and ``bias``) back, exactly as they were trained."""
    head = classifier_of(model)
    for name, value in tensors.items():
        param = getattr(head, name)
        if param is None or param.shape != value.shape:
            raise ValueError(
                f"the uncalibrated classifier's {name} has shape {tuple(value.shape)}, the model's "
                f"{None if param is None else tuple(param.shape)}"
            )
        param.copy_(value.to(param.dtype))
