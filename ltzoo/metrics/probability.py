"""Metrics of the predicted probabilities, not only of the argmax: calibration, NLL, Brier score, top-5.

- ECE, the expected calibration error (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017):
  top-label confidence in 15 equal-width bins of [0, 1], the bins' |accuracy - confidence| weighted by their
  share of the images. Computed by torchmetrics' ``MulticlassCalibrationError(n_bins=15, norm="l1")``.
- Classwise ECE (Kull et al., "Beyond temperature scaling", NeurIPS 2019): the same binned error of every
  class's probability against "the image is of that class", averaged over classes.
- NLL: the mean negative log-likelihood of the true class (natural log).
- Brier score (Brier, Monthly Weather Review 1950): the mean squared distance between the probability
  vector and the one-hot label, summed over classes (0 best, 2 worst).
- Top-5 accuracy (torchmetrics' ``MulticlassAccuracy(top_k=5, average="micro")``); None with 5 classes or fewer.

Every metric also takes per-image weights (`weighted_probability_metrics`): the same numbers for a test set
whose images are counted with those weights, which is how `ltzoo.metrics.priors` evaluates under a test
prior other than the balanced one. Unweighted, the weighted code gives torchmetrics' numbers exactly
(tests/test_metrics_probability.py).
"""

from __future__ import annotations

import torch

ECE_BINS = 15  # equal-width confidence bins of [0, 1]: Guo et al.'s choice, the literature's default
TOP_K = 5


def _check(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.as_tensor(logits).float()
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if logits.ndim != 2 or logits.shape[0] != labels.numel():
        raise ValueError(
            f"logits must be (images, classes) with one row per label; got {tuple(logits.shape)} "
            f"for {labels.numel()} labels"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}) for {logits.shape[1]} classes of logits")
    return logits, labels


def confidence_bins(confidence: torch.Tensor, n_bins: int = ECE_BINS) -> torch.Tensor:
    """Each confidence's bin, torchmetrics' way: ``bucketize(right=True)`` over ``linspace(0, 1, n_bins + 1)``
    (float32 edges), so a confidence of exactly 1 has a bin of its own (index ``n_bins``)."""
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32).double()
    return torch.bucketize(confidence.float().double(), edges, right=True) - 1


def binned_calibration_error(
    confidence: torch.Tensor, hit: torch.Tensor, weights: torch.Tensor | None = None, n_bins: int = ECE_BINS
) -> float:
    """Sum over equal-width bins of |mean hit - mean confidence| times the bin's share of the weight.

    The bins are torchmetrics': ``bucketize(right=True)`` over ``linspace(0, 1, n_bins + 1)``, so a
    confidence of exactly 1 has a bin of its own.
    """
    confidence, hit = confidence.double(), hit.double()
    w = torch.ones_like(confidence) if weights is None else torch.as_tensor(weights, dtype=torch.double)
    index = confidence_bins(confidence, n_bins)
    mass = torch.zeros(n_bins + 1, dtype=torch.double).index_add_(0, index, w)
    conf = torch.zeros_like(mass).index_add_(0, index, w * confidence)
    acc = torch.zeros_like(mass).index_add_(0, index, w * hit)
    filled = mass > 0
    return float(((acc[filled] - conf[filled]).abs()).sum() / mass.sum())


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE with torchmetrics' ``MulticlassCalibrationError`` (15 equal-width bins, L1)."""
    from torchmetrics.classification import MulticlassCalibrationError

    logits, labels = _check(logits, labels)
    metric = MulticlassCalibrationError(num_classes=logits.shape[1], n_bins=n_bins, norm="l1")
    return float(metric(logits.softmax(-1), labels))


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = TOP_K) -> float | None:
    """Share of images whose class is among the ``k`` highest logits (torchmetrics); None if k >= classes."""
    from torchmetrics.classification import MulticlassAccuracy

    logits, labels = _check(logits, labels)
    if k >= logits.shape[1]:
        return None
    metric = MulticlassAccuracy(num_classes=logits.shape[1], top_k=k, average="micro")
    return float(metric(logits, labels))


def weighted_probability_metrics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    n_bins: int = ECE_BINS,
    k: int = TOP_K,
) -> dict:
    """Accuracy, ECE, classwise ECE, NLL, Brier and top-k of images counted with ``weights`` (None: equally).

    Returns:
        ``acc``, ``ece``, ``classwise_ece``, ``nll``, ``brier``, ``top5`` (None with ``k`` classes or fewer).
    """
    logits, labels = _check(logits, labels)
    n, c = logits.shape
    w = torch.full((n,), 1.0 / n, dtype=torch.double) if weights is None else torch.as_tensor(weights).double()
    w = w / w.sum()
    log_p = logits.double().log_softmax(-1)
    p = log_p.exp()
    onehot = torch.nn.functional.one_hot(labels, c).double()
    conf, pred = p.max(-1)
    hit = (pred == labels).double()
    top = logits.topk(min(k, c), dim=-1).indices
    classwise = [binned_calibration_error(p[:, j], onehot[:, j], w, n_bins) for j in range(c)]
    return {
        "acc": float((w * hit).sum()),
        "ece": binned_calibration_error(conf, hit, w, n_bins),
        "classwise_ece": sum(classwise) / c,
        "nll": float(-(w * log_p.gather(1, labels[:, None]).squeeze(1)).sum()),
        "brier": float((w * ((p - onehot) ** 2).sum(-1)).sum()),
        "top5": None if k >= c else float((w * (top == labels[:, None]).any(-1).double()).sum()),
    }


def probability_metrics(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS) -> dict:
    """ECE and top-5 by torchmetrics, classwise ECE, NLL and Brier by `weighted_probability_metrics`.

    Returns:
        ``ece``, ``classwise_ece``, ``nll``, ``brier``, ``top5`` (fractions; NLL in nats) and ``ece_bins``.
    """
    own = weighted_probability_metrics(logits, labels, n_bins=n_bins)
    return {
        "ece": expected_calibration_error(logits, labels, n_bins),
        "classwise_ece": own["classwise_ece"],
        "nll": own["nll"],
        "brier": own["brier"],
        "top5": top_k_accuracy(logits, labels),
        "ece_bins": n_bins,
    }


def reliability_bins(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS) -> dict:
    """Per confidence bin: its edges, image count, mean confidence and accuracy (for the reliability diagram)."""
    logits, labels = _check(logits, labels)
    conf, pred = logits.softmax(-1).max(-1)
    hit = (pred == labels).double()
    edges = torch.linspace(0, 1, n_bins + 1)
    index = (torch.bucketize(conf, edges, right=True) - 1).clamp(max=n_bins - 1)  # a confidence of 1: the top bin
    count = torch.bincount(index, minlength=n_bins).double()
    mean_conf = torch.zeros(n_bins, dtype=torch.double).index_add_(0, index, conf.double()) / count.clamp(min=1)
    acc = torch.zeros(n_bins, dtype=torch.double).index_add_(0, index, hit) / count.clamp(min=1)
    return {
        "edges": edges.tolist(),
        "count": count.long().tolist(),
        "confidence": mean_conf.tolist(),
        "accuracy": acc.tolist(),
    }
