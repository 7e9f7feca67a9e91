"""Classifier retraining on a frozen backbone, on cached features: GML, cRT, LWS, tau-norm, logit adjustment,
weight balancing, MiSLAS's label-aware smoothing (LAS), nearest class mean (NCM).

The backbone's pooled features are computed once; every method below then trains or adjusts only the
linear classifier on those tensors, so retraining costs seconds, not epochs of backbone passes.

- GML (Du & Wu, 2023, "No One Left Behind: Improving the Worst Categories in Long-Tailed Learning"):
  retrain the classifier with the geometric mean loss; optionally ensemble it with the original head.
- cRT (Kang et al., 2020, "Decoupling Representation and Classifier for Long-Tailed Recognition"):
  retrain the classifier with class-balanced sampling and cross-entropy.
- LWS (same paper): learn one scale per class on the frozen classifier, class-balanced sampling.
- tau-norm (same paper): W_c <- W_c / ||W_c||^tau, tau chosen on the validation split.
- Post-hoc logit adjustment (Menon et al., 2021): z_c - tau * log(prior_c), tau chosen on validation.
- LAS, MiSLAS's classifier stage (Zhong et al., 2021, "Improving Calibration for Long-Tailed Recognition"):
  fine-tune the classifier, jointly with one learnt scale per class (LWS), on class-balanced batches with
  label-aware smoothing (`ltzoo.methods.losses.las`: a head class smoothed by eps_1, the rarest by eps_K, concave /
  linear / convex in between), the form and eps_1 chosen on validation. MiSLAS pairs it with shifted batch
  normalisation, which needs image passes, not cached features: `ltzoo.methods.shifted_bn` re-estimates the
  backbone's BN statistics on class-balanced batches before the features are cached (the recipes'
  `--shift-bn`; on by default for `btm --classifier las`).
- NCM (Kang et al., 2020): nearest class mean on the training features, cosine (class means of the
  L2-normalised features, as Kang et al.) or Euclidean (`ncm_l2`, raw features). Both are linear in the
  raw features and ship as a plain linear head (`ncm_head` says how).
- Weight balancing, stage 2 (Alshammari et al., 2022, "Long-Tailed Recognition via Weight Balancing"):
  fine-tune the classifier with the class-balanced loss (effective numbers, beta = 0.9999), weight decay
  (chosen on validation) and MaxNorm: after every step, each class's weight vector is projected into the
  ball of radius min + 0.1 * (max - min) of the stage-1 classifier's per-class norms, as the authors' code
  sets it. Stage 1 of weight balancing is plain CE with a tuned (larger) weight decay: `--weight-decay`.
  Differences from the authors' code: ltzoo's class-balanced loss is weighted cross-entropy (theirs is a
  binary cross-entropy on the softmax, whose gradients are about 1/C as large), on cached features with
  the heads' one-cycle schedule over `epochs`; their learning rate (0.01) is the default, and the weight
  decay is chosen on validation from `WB_WEIGHT_DECAYS` rather than fixed at their 0.1.

Every method returns a plain `Head` (weight, bias): post-hoc corrections and the GML ensemble are
folded into one linear layer, so an exported model is vanilla timm. The ensemble combines the two
heads' temperature-scaled log-probabilities, log softmax(z1 / T1) + log softmax(z2 / T2), which ranks
classes exactly as the single linear head W1 / T1 + W2 / T2 (the log-normalisers are per-sample
constants). The GML paper averages probabilities instead; that mix is not linear in the features and
could not ship as a plain timm model, so ltzoo uses the log-linear form.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn
from tqdm.auto import tqdm

from ltzoo.data.samplers import create_sampler
from ltzoo.methods.losses import LAS_FORMS, create_loss
from ltzoo.metrics import longtail_metrics, selection_score

_logger = logging.getLogger(__name__)


@dataclass
class Head:
    """A linear classifier: logits = features @ weight.T + bias."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        return feats @ self.weight.T + self.bias

    @classmethod
    def from_module(cls, fc: nn.Module) -> Head:
        if not isinstance(fc, nn.Linear):
            raise TypeError(
                f"classifier retraining needs a plain nn.Linear classifier, this model has {type(fc).__name__}"
            )
        bias = fc.bias if fc.bias is not None else torch.zeros(fc.out_features)
        return cls(fc.weight.detach().float().cpu().clone(), bias.detach().float().cpu().clone())

    def write_to(self, fc: nn.Linear) -> None:
        """Copy this head into a model's classifier (which must have a bias for a non-zero one)."""
        with torch.no_grad():
            fc.weight.copy_(self.weight.to(fc.weight))
            if fc.bias is not None:
                fc.bias.copy_(self.bias.to(fc.bias))
            elif bool(self.bias.abs().gt(0).any()):
                raise ValueError("this model's classifier has no bias; the adjusted head needs one")


@dataclass
class Features:
    """Cached pooled features and labels of one split."""

    x: torch.Tensor
    y: torch.Tensor


def score(logits: torch.Tensor, labels: torch.Tensor, train_counts: Sequence[int], key: str = "hm") -> tuple:
    """Validation selection key of a head's logits (`ltzoo.metrics.selection_score`, the key epochs are chosen by)."""
    return selection_score(longtail_metrics(labels, logits.argmax(-1), num_classes=len(train_counts)), key)


def max_norm_radius(weight: torch.Tensor, thresh: float = 0.1) -> float:
    """MaxNorm's radius for a classifier: min + ``thresh`` * (max - min) of its per-class weight norms (the
    weight-balancing authors' per-layer threshold; ``thresh`` = 0.1 in their code).

    Raises:
        ValueError: for a classifier whose classes all have the same norm (an all-zero or untrained-looking
            head), where the radius would mean nothing.
    """
    norms = weight.float().norm(dim=1)
    if not bool(norms.max() > norms.min()):
        raise ValueError(
            f"MaxNorm needs a trained classifier: its {len(norms)} per-class weight norms are all "
            f"{float(norms.max()):.3g}, so they give no radius; retrain it with another method (gml, crt)"
        )
    return float(norms.min() + thresh * (norms.max() - norms.min()))


def project_max_norm(weight: torch.Tensor, radius: float) -> None:
    """MaxNorm by projection, in place: every row (class) whose L2 norm exceeds ``radius`` is scaled onto the
    ball; shorter rows are left alone."""
    with torch.no_grad():
        weight.mul_((radius / weight.norm(dim=1, keepdim=True).clamp(min=1e-12)).clamp(max=1.0))


@dataclass(frozen=True)
class HeadFit:
    """What every head method is fitted with: the training counts, the schedule of a trained head, the GML
    exponent ``p`` and the validation metric choices are made on (``select``); ``progress``: a bar over a trained
    head's epochs, named ``desc``."""

    train_counts: Sequence[int]
    epochs: int = 30
    lr: float = 0.1
    batch_size: int = 512
    seed: int = 0
    p: float = 1.0
    select: str = "hm"
    progress: bool = False
    desc: str = "head"


def _train_head(
    head: Head,
    train: Features,
    loss_fn: nn.Module,
    fit: HeadFit,
    *,
    sampler: str,
    weight_decay: float = 5e-4,
    scales_only: bool = False,
    max_norm: float | None = None,
    head_lr_factor: float | None = None,
) -> Head:
    """SGD on cached features; trains the head (or, for LWS, one scale per class). ``max_norm``: project each
    class's weight vector into the ball of this radius after every step (projected gradient descent).
    ``head_lr_factor``: train the head at ``lr`` times it and, jointly, the per-class scales at ``lr`` (MiSLAS's
    classifier stage), both with ``weight_decay``."""
    train_counts, epochs, lr, batch_size, seed = fit.train_counts, fit.epochs, fit.lr, fit.batch_size, fit.seed
    joint = head_lr_factor is not None
    w = head.weight.clone().requires_grad_(not scales_only)
    b = head.bias.clone().requires_grad_(not scales_only)
    s = torch.ones(len(train_counts), requires_grad=scales_only or joint)
    groups = (
        [] if scales_only else [{"params": [w, b], "lr": lr * (head_lr_factor or 1.0), "weight_decay": weight_decay}]
    )
    if scales_only or joint:
        groups.append({"params": [s], "lr": lr, "weight_decay": weight_decay if joint else 0.0})
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9)
    smp = create_sampler(sampler, train.y, len(train_counts), seed=seed, total_epochs=epochs)
    steps = epochs * math.ceil(len(smp) / batch_size)
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=0.1)
        if steps
        else None
    )
    for epoch in tqdm(range(epochs), desc=fit.desc, leave=False, dynamic_ncols=True, disable=not fit.progress):
        smp.set_epoch(epoch)
        for idx in smp.indices().split(batch_size):
            logits = (train.x[idx] @ w.T + b) * s
            loss = loss_fn(logits, train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if max_norm is not None:
                project_max_norm(w, max_norm)
    with torch.no_grad():
        return Head((w * s[:, None]).detach(), (b * s).detach())


def _gml(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    new = _train_head(head, train, create_loss("gml", fit.train_counts, p=fit.p), fit, sampler="instance")
    return new, {"method": "gml", "epochs": fit.epochs, "lr": fit.lr, "p": fit.p, "sampler": "instance"}


def _la_train(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    """LT-Soups' last stage: the (merged) classifier fine-tuned on every training image with the logit-adjusted loss
    (tau 1), instance-sampled."""
    new = _train_head(head, train, create_loss("la", fit.train_counts, tau=1.0), fit, sampler="instance")
    return new, {"method": "la_train", "epochs": fit.epochs, "lr": fit.lr, "tau": 1.0, "sampler": "instance"}


def _crt(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    new = _train_head(head, train, create_loss("ce", fit.train_counts), fit, sampler="balanced")
    return new, {"method": "crt", "epochs": fit.epochs, "lr": fit.lr, "sampler": "balanced"}


def _lws(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    new = _train_head(head, train, create_loss("ce", fit.train_counts), fit, sampler="balanced", scales_only=True)
    return new, {"method": "lws", "epochs": fit.epochs, "lr": fit.lr, "sampler": "balanced"}


def _wb(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    return _weight_balanced(head, train, val, fit)


def _taunorm(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    return _choose_tau(lambda t: tau_norm(head, t), val, fit.train_counts, fit.select, "taunorm")


def _la(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    counts = torch.as_tensor(list(fit.train_counts), dtype=torch.float64)
    return _choose_tau(lambda t: logit_adjusted(head, counts, t), val, fit.train_counts, fit.select, "la")


#: MiSLAS's classifier stage, its values for CIFAR-10-LT at rho = 100 (Fashion-MNIST-LT also has 10 classes;
#: dvlab-research/MiSLAS, config/cifar10/cifar10_imb001_stage2_mislas.yaml): eps_1 (head) 0.3, eps_K (tail) 0,
#: concave f, the classifier at 0.5x the scales' learning rate 0.1, weight decay 2e-4. With a validation
#: split, the form and eps_1 are chosen on it from LAS_GRID (eps_K stays 0, the paper's value at rho = 100).
LAS = {"eps_head": 0.3, "eps_tail": 0.0, "form": "concave", "lr": 0.1, "head_lr_factor": 0.5, "weight_decay": 2e-4}
LAS_GRID = {"form": LAS_FORMS, "eps_head": (0.1, 0.2, 0.3, 0.4)}


def _las(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    return _label_aware(head, train, val, fit)


def _ncm(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    return ncm_head(train, len(fit.train_counts), "cosine"), {
        "method": "ncm",
        "features": "L2-normalised",
        "fold": NCM_FOLD["ncm"],
    }


def _ncm_l2(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    return ncm_head(train, len(fit.train_counts), "euclidean"), {
        "method": "ncm_l2",
        "features": "raw",
        "fold": NCM_FOLD["ncm_l2"],
    }


@dataclass(frozen=True)
class HeadMethod:
    """A classifier method: how cards name and cite it (BibTeX keys of ``ltzoo/references.bib``), how it is
    fitted, its default learning rate (None: nothing trained, an adjustment chosen on validation or a head
    computed in closed form), whether BTM ensembles its head with the merged one by default, and whether its
    paper re-estimates the backbone's BN statistics on class-balanced batches first (``shift_bn``: what a
    recipe's unset ``--shift-bn`` follows when this head is the one exported; `ltzoo.methods.shifted_bn`)."""

    display_name: str
    cite: tuple[str, ...] = ()
    fit: Callable[[Head, Features, Features | None, HeadFit], tuple[Head, dict]] | None = None
    lr: float | None = None
    ensembled: bool = False
    shift_bn: bool = False


#: The classifier methods `retrain` offers, in the order the recipes compare them: the registry the recipes'
#: --classifier choices, --head-lr defaults and cards read. A new head is one entry here (and its fit function).
HEAD_METHODS: dict[str, HeadMethod] = {
    "gml": HeadMethod("GML (geometric mean loss) classifier retraining", ("du2023no",), _gml, lr=0.05, ensembled=True),
    "crt": HeadMethod("cRT classifier retraining", ("kang2020decoupling",), _crt, lr=0.1, ensembled=True),
    "la_train": HeadMethod(
        "classifier fine-tuned with the logit-adjusted loss (LT-Soups' last stage)",
        ("aminbeidokhti2025ltsoups", "menon2021long"),
        _la_train,
        lr=0.05,
    ),
    "lws": HeadMethod("LWS (learnable weight scaling)", ("kang2020decoupling",), _lws, lr=0.1),
    "taunorm": HeadMethod("tau-normalised classifier", ("kang2020decoupling",), _taunorm),
    "la": HeadMethod("post-hoc logit adjustment", ("menon2021long",), _la),
    "wb": HeadMethod(
        "weight balancing (class-balanced loss, weight decay, MaxNorm)",
        ("alshammari2022long", "cui2019class"),
        _wb,
        lr=0.01,
    ),
    "las": HeadMethod(
        "MiSLAS classifier stage (label-aware smoothing, LWS; shifted BN)",
        ("zhong2021improving",),
        _las,
        lr=LAS["lr"],
        shift_bn=True,
    ),
    "ncm": HeadMethod("nearest class mean, cosine", ("kang2020decoupling",), _ncm),
    "ncm_l2": HeadMethod("nearest class mean, Euclidean", ("kang2020decoupling",), _ncm_l2),
}
METHODS = tuple(HEAD_METHODS)


def retrain(
    method: str,
    head: Head,
    train: Features,
    val: Features | None,
    train_counts: Sequence[int],
    epochs: int = 30,
    lr: float | None = None,
    batch_size: int = 512,
    seed: int = 0,
    p: float = 1.0,
    select: str = "hm",
    progress: bool = False,
) -> tuple[Head, dict]:
    """Retrain or adjust a classifier on cached features by ``method`` (a key of `HEAD_METHODS`).

    ``lr`` None is the method's own default (`HeadMethod.lr`). Hyper-parameters with no training signal
    (tau of tau-norm and logit adjustment, the weight decay of wb, the smoothing form and eps_1 of las) are
    chosen on the validation split; without one, the literature's default (tau = 1, weight decay 0.1,
    MiSLAS's concave eps_1 = 0.3) is used. ``progress``: a bar over each trained head's epochs (the caller
    shows it on one process only).

    Returns:
        The new head and a dict of what was chosen and why.
    """
    if method not in HEAD_METHODS:
        raise ValueError(f"unknown classifier method {method!r}; choose one of {METHODS}")
    spec = HEAD_METHODS[method]
    fit = HeadFit(
        train_counts,
        epochs=epochs,
        lr=lr or spec.lr,
        batch_size=batch_size,
        seed=seed,
        p=p,
        select=select,
        progress=progress,
        desc=f"head {method}",
    )
    return spec.fit(head, train, val, fit)


TAUS = tuple(round(0.1 * i, 1) for i in range(0, 21))
#: weight decays the weight-balancing head tries, largest first so that a validation tie keeps the larger one
#: (chosen on validation; 0.1, the authors' value for CIFAR-100-LT, without a validation split), and its
#: MaxNorm threshold
WB_WEIGHT_DECAYS = (1e-1, 1e-2, 1e-3, 1e-4, 0.0)
WB_THRESH = 0.1


def _weight_balanced(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    """Weight balancing's stage 2: the class-balanced loss with weight decay and MaxNorm, from the given head."""
    train_counts, epochs, lr, select = fit.train_counts, fit.epochs, fit.lr, fit.select
    loss = create_loss("cb", train_counts, beta=0.9999)
    radius = max_norm_radius(head.weight, WB_THRESH)

    def make(wd: float) -> Head:
        at = replace(fit, desc=f"{fit.desc} (weight decay {wd:g})")
        return _train_head(head, train, loss, at, sampler="instance", weight_decay=wd, max_norm=radius)

    info = {
        "method": "wb",
        "epochs": epochs,
        "lr": lr,
        "sampler": "instance",
        "loss": "cb (beta 0.9999)",
        "max_norm_thresh": WB_THRESH,
        "max_norm_radius": radius,
    }
    if val is None:
        return make(0.1), {**info, "weight_decay": 0.1, "chosen_on": "default (no validation split)"}
    heads = {wd: make(wd) for wd in WB_WEIGHT_DECAYS}
    best = max(WB_WEIGHT_DECAYS, key=lambda wd: score(heads[wd](val.x), val.y, train_counts, select))
    return heads[best], {
        **info,
        "weight_decay": best,
        "chosen_on": f"validation {select}",
        "grid": list(WB_WEIGHT_DECAYS),
    }


def _label_aware(head: Head, train: Features, val: Features | None, fit: HeadFit) -> tuple[Head, dict]:
    """MiSLAS's classifier stage on cached features: the head (at ``LAS['head_lr_factor']`` x ``lr``) and one
    scale per class (at ``lr``) trained jointly on class-balanced batches with label-aware smoothing."""
    train_counts, epochs, lr, select = fit.train_counts, fit.epochs, fit.lr, fit.select

    def make(form: str, eps_head: float) -> Head:
        loss = create_loss("las", train_counts, eps_head=eps_head, eps_tail=LAS["eps_tail"], form=form)
        return _train_head(
            head,
            train,
            loss,
            replace(fit, desc=f"{fit.desc} ({form}, eps {eps_head:g})"),
            sampler="balanced",
            weight_decay=LAS["weight_decay"],
            head_lr_factor=LAS["head_lr_factor"],
        )

    info = {
        "method": "las",
        "epochs": epochs,
        "lr": lr,
        "sampler": "balanced",
        **{k: LAS[k] for k in ("eps_tail", "head_lr_factor", "weight_decay")},
    }
    if val is None:
        return make(LAS["form"], LAS["eps_head"]), {
            **info,
            "form": LAS["form"],
            "eps_head": LAS["eps_head"],
            "chosen_on": "the paper's values (no validation split)",
        }
    grid = [(f, e) for f in LAS_GRID["form"] for e in LAS_GRID["eps_head"]]
    heads = {key: make(*key) for key in grid}
    scores = {key: score(h(val.x), val.y, train_counts, select) for key, h in heads.items()}
    best = max(grid, key=lambda key: scores[key])
    return heads[best], {
        **info,
        "form": best[0],
        "eps_head": best[1],
        "chosen_on": f"validation {select}",
        "grid": {f"{f}/{e}": round(scores[(f, e)][0], 4) for f, e in grid},
    }


#: how each NCM head becomes a plain linear layer on the raw (unnormalised) pooled features x
NCM_FOLD = {
    "ncm": "W = mu_c / ||mu_c|| (mu_c: the mean of class c's L2-normalised training features), b = 0: "
    "x . W_c = ||x|| cos(x, mu_c), the cosine scaled by a positive per-image factor, so the same ranking "
    "(the logits, and so the softmax, differ from the raw cosines; no norm layer needed)",
    "ncm_l2": "W = mu_c, b = -||mu_c||^2 / 2 (mu_c: the mean of class c's raw training features): x . W_c + b_c "
    "= -||x - mu_c||^2 / 2 + ||x||^2 / 2, the negative half squared distance up to a per-image constant "
    "(the same ranking and the same softmax)",
}


def ncm_head(train: Features, num_classes: int, distance: str = "cosine") -> Head:
    """Nearest class mean (Kang et al., 2020) as a linear head on the raw features (see ``NCM_FOLD``).

    ``distance``: 'cosine' (class means of L2-normalised features, compared by cosine) or 'euclidean' (class
    means of the raw features, nearest in L2 distance). A Euclidean NCM on normalised features would not be
    linear in the raw features (it needs ||x||), so it is not offered.

    Raises:
        ValueError: a class with no training feature, or an unknown distance.
    """
    if distance not in ("cosine", "euclidean"):
        raise ValueError(f"unknown NCM distance {distance!r}; choose 'cosine' or 'euclidean'")
    x = train.x.double()
    if distance == "cosine":
        x = nn.functional.normalize(x, dim=1)
    counts = torch.bincount(train.y, minlength=num_classes)
    if bool((counts == 0).any()):
        missing = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"NCM needs training features of every class; classes {missing[:10]} have none")
    means = x.new_zeros(num_classes, x.shape[1]).index_add_(0, train.y, x) / counts[:, None]
    if distance == "cosine":
        return Head(nn.functional.normalize(means, dim=1).float(), torch.zeros(num_classes))
    return Head(means.float(), (-means.square().sum(1) / 2).float())


def _choose_tau(make: Callable[[float], Head], val: Features | None, train_counts, select: str, name: str):
    if val is None:
        return make(1.0), {"method": name, "tau": 1.0, "chosen_on": "default (no validation split)"}
    best = max(TAUS, key=lambda t: score(make(t)(val.x), val.y, train_counts, select))
    return make(best), {"method": name, "tau": best, "chosen_on": f"validation {select}", "grid": list(TAUS)}


def tau_norm(head: Head, tau: float) -> Head:
    """tau-normalised classifier: each class's weight vector divided by its norm to the power tau."""
    norms = head.weight.norm(dim=1, keepdim=True).clamp(min=1e-12) ** tau
    return Head(head.weight / norms, head.bias / norms.squeeze(1))


def logit_adjusted(head: Head, counts: torch.Tensor, tau: float) -> Head:
    """Post-hoc logit adjustment folded into the bias: z_c - tau * log(prior_c)."""
    log_prior = torch.log(counts / counts.sum()).float()
    return Head(head.weight.clone(), head.bias - tau * log_prior)


RATIOS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def ensemble(
    original: Head, retrained: Head, val: Features | None, train_counts, select: str = "hm"
) -> tuple[Head, dict]:
    """Combine the original and a retrained head, temperatures chosen on the validation split.

    The combination z2 / T2 + z1 / T1 is folded into one linear head. Only the ratio r = T2 / T1 changes
    the predictions; it is chosen from `RATIOS` (r = 0: the retrained head alone) by validation ``select``.
    """

    def make(r: float) -> Head:
        return Head(retrained.weight + r * original.weight, retrained.bias + r * original.bias)

    if val is None:
        return make(1.0), {"ratio_T2_over_T1": 1.0, "chosen_on": "default (no validation split)"}
    best = max(RATIOS, key=lambda r: score(make(r)(val.x), val.y, train_counts, select))
    return make(best), {
        "ratio_T2_over_T1": best,
        "chosen_on": f"validation {select}",
        "grid": list(RATIOS),
        "combination": "log-linear: z_gml / T2 + z_orig / T1, folded into one linear head (T2 = 1)",
    }
