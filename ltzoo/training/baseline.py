"""A class-balanced linear baseline beside every model: what a logistic regression gets on the same data.

A run trained from scratch is compared with scikit-learn's ``LogisticRegression(class_weight='balanced')`` on the
images' pixels (average-pooled to at most `PIXEL_SIZE` px a side); a run that starts from weights, with the same
classifier on the frozen features of its start model (timm's pre-logits: ``forward_head(pre_logits=True)``).
The features are standardised on the training images; at most `MAX_TRAIN_IMAGES` of them train it (each class
keeps up to an equal share, every image of a class below it); its regularisation is scikit-learn's default (C = 1),
fixed, so nothing is chosen on any split. It is evaluated on the validation and test splits like the model, and
a model below it on validation HM is told so in one line.

    baseline = linear_baseline(accelerator, ds, None, prep, batch_size=512, workers=4, seed=0)
    baseline["test"]["hm"], baseline["features"]     # -> 0.646, 'pixels (28x28, 784 values)'
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from ltzoo.data.loader import make_loader
from ltzoo.training.evaluation import metrics_from_logits, predict

#: the most training images the baseline fits on (a class-balanced cap: every tail image, a share of the head's)
MAX_TRAIN_IMAGES = 20_000
#: pixels are average-pooled to at most this many a side (28-px Fashion-MNIST keeps its 784)
PIXEL_SIZE = 32
METHOD = "logistic regression, class_weight='balanced' (scikit-learn, C = 1, standardised features)"
#: L-BFGS iterations of the logistic regression
MAX_ITER = 500


def capped_indices(labels: torch.Tensor, num_classes: int, cap: int = MAX_TRAIN_IMAGES, seed: int = 0) -> torch.Tensor:
    """At most ``cap`` training images, class-balanced: the largest per-class share ``q`` with sum min(n_c, q) <= cap,
    drawn at random (seeded) within each class; every image when they fit."""
    if len(labels) <= cap:
        return torch.arange(len(labels))
    counts = torch.bincount(labels, minlength=num_classes)
    lo, hi = 1, int(counts.max())
    while lo < hi:  # the largest share that fits
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if int(counts.clamp(max=mid).sum()) <= cap else (lo, mid - 1)
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[:lo]])
    return torch.cat(keep).sort().values


class _Pixels(nn.Module):
    """A batch's pixels, average-pooled to at most `PIXEL_SIZE` a side and flattened (the from-scratch features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if max(h, w) > PIXEL_SIZE:
            x = F.adaptive_avg_pool2d(x.float(), (min(h, PIXEL_SIZE), min(w, PIXEL_SIZE)))
        return x.float().flatten(1)


def _features(accelerator, model, loader, prep, progress: bool, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    if model is None:
        outs, labels = [], []
        pixels = _Pixels()
        for x, y in loader:
            x = prep(x.to(accelerator.device))
            out, y = accelerator.gather_for_metrics((pixels(x).contiguous(), y.to(accelerator.device)))
            outs.append(out.cpu())
            labels.append(y.cpu())
        return torch.cat(outs), torch.cat(labels)
    return predict(accelerator, model, loader, prep, features=True, progress=progress, desc=desc)


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's class-balanced logistic regression on standardised ``x``, folded into one linear map:
    ``(weight, bias)`` such that ``x @ weight.T + bias`` are its decision values (classes absent from ``y`` get
    a bias of -1e9: never predicted)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    xn = x.double().numpy()
    scaler = StandardScaler().fit(xn)
    clf = LogisticRegression(class_weight="balanced", max_iter=MAX_ITER, random_state=seed)
    clf.fit(scaler.transform(xn), y.numpy())
    scale = torch.from_numpy(scaler.scale_)
    mean = torch.from_numpy(scaler.mean_)
    coef, intercept = torch.from_numpy(clf.coef_), torch.from_numpy(clf.intercept_)
    if coef.shape[0] == 1:  # two classes: scikit-learn keeps one row (the second class's logit)
        coef, intercept = torch.cat([-coef, coef]) / 2, torch.cat([-intercept, intercept]) / 2
    w_fold = coef / scale
    b_fold = intercept - w_fold @ mean
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64)
    bias = torch.full((num_classes,), -1e9, dtype=torch.float64)
    present = torch.as_tensor(clf.classes_, dtype=torch.long)
    weight[present], bias[present] = w_fold, b_fold
    return weight.float(), bias.float()


def linear_baseline(
    accelerator,
    ds,
    model: nn.Module | None,
    prep,
    batch_size: int,
    workers: int,
    seed: int = 0,
    transform=None,
    progress: bool = True,
) -> dict:
    """The baseline's metrics on the validation and test splits, and what it was fitted on.

    Args:
        model: the start model whose frozen features it fits on; None: the pixels (a run from scratch).
        prep: the run's `BatchPreprocess` (the model's input: normalised, at its size).
        transform: the evaluation transform of file-backed splits.
    """
    t0 = time.perf_counter()
    keep = capped_indices(ds.train.labels, ds.num_classes, seed=seed)
    splits = {"train": ds.train.subset(keep) if len(keep) < len(ds.train) else ds.train, "val": ds.val, "test": ds.test}
    feats = {}
    for name, split in splits.items():
        if split is None:
            continue
        loader = accelerator.prepare(make_loader(split, batch_size, transform=transform, num_workers=workers))
        feats[name] = _features(accelerator, model, loader, prep, progress, f"baseline features {name}")
    x, y = feats["train"]
    weight, bias = fit_logistic(x, y, ds.num_classes, seed)
    result = {
        "method": METHOD,
        "features": (
            f"pixels ({x.shape[1]:,} values per image, pooled to at most {PIXEL_SIZE} px a side)"
            if model is None
            else f"the start model's frozen features ({x.shape[1]:,} per image)"
        ),
        "train_images": len(y),
        "selection": "nothing chosen: fixed regularisation",
    }
    for name in ("val", "test"):
        if name in feats:
            fx, fy = feats[name]
            logits = fx @ weight.T + bias
            result[name] = metrics_from_logits(logits, fy, ds.train_counts, ds.shot_thresholds, name)
    result["seconds"] = time.perf_counter() - t0
    return result


def baseline_from_features(feats: dict, ds, what: str, seed: int = 0) -> dict:
    """The baseline on features already extracted (``feats``: split -> an object with ``x`` and ``y``, GML's)."""
    t0 = time.perf_counter()
    train = feats["train"]
    keep = capped_indices(train.y, ds.num_classes, seed=seed)
    weight, bias = fit_logistic(train.x[keep], train.y[keep], ds.num_classes, seed)
    result = {
        "method": METHOD,
        "features": what,
        "train_images": len(keep),
        "selection": "nothing chosen: fixed regularisation",
    }
    for name in ("val", "test"):
        if name in feats:
            logits = feats[name].x @ weight.T + bias
            result[name] = metrics_from_logits(logits, feats[name].y, ds.train_counts, ds.shot_thresholds, name)
    result["seconds"] = time.perf_counter() - t0
    return result


def baseline_record(baseline: dict | None) -> dict | None:
    """results.json's ``baseline``: what it is and its headline metrics by split (no per-class lists)."""
    from ltzoo.metrics import brief

    if baseline is None:
        return None
    return {k: (brief(v) if k in ("val", "test") else v) for k, v in baseline.items()}


def below_baseline_line(model_metrics: dict, baseline: dict, what: str = "the model") -> str | None:
    """The line a run prints when ``what`` ends below the baseline's HM (on validation where both have it, else
    on test), or None."""
    split = "val" if model_metrics.get("val") and baseline.get("val") else "test"
    model_hm, base_hm = model_metrics.get(split, {}).get("hm"), baseline.get(split, {}).get("hm")
    if model_hm is None or base_hm is None or model_hm >= base_hm:
        return None
    return (
        f"{what} is below the linear baseline on {split} HM ({100 * model_hm:.2f} vs {100 * base_hm:.2f}, "
        f"{baseline['features']}): more training steps (--epochs, --steps), a pretrained start (--pretrained, "
        "--init X --new-head) or another recipe may do better"
    )
