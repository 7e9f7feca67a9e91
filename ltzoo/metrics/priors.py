"""Metrics under shifted test priors, and post-hoc correction for a known or estimated test prior.

A long-tailed model is deployed where the classes are not balanced, nor as imbalanced as in training. SADE's
test-agnostic protocol (Zhang et al., "Self-Supervised Aggregation of Diverse Experts for Test-Agnostic
Long-Tailed Recognition", NeurIPS 2022) evaluates under forward-long-tailed test priors (the training
order, imbalance 50, 25, 10, 5, 2), the uniform prior, and backward-long-tailed ones (the order reversed,
2 to 50). `TEST_AGNOSTIC_RATIOS` and `shifted_priors` builds them on the exponential profile.

Exactly, without resampling: a test set whose class c holds a share pi_c of the images is the balanced test
set with every image of class c weighted pi_c / n_c (`prior_weights`). Reweighting changes every metric that
averages over images: accuracy, top-5, NLL, Brier, ECE and classwise ECE (`shifted_metrics`). It cannot
change a per-class quantity: each class's recall, hence HM, GM, min recall, mean class accuracy and
many/medium/few, are the same under every prior (they are prior-invariant), unless the predictions change.

Post-hoc prior correction changes them: Bayes' rule moves posteriors from the prior the model learnt
(``source``: the training class frequencies for a model trained with plain cross-entropy, uniform for one
trained with a balancing loss) to a test prior by adding log(pi_test / pi_source) to the logits
(`adjust_logits`; logit adjustment, Menon et al., ICLR 2021). The test prior is either given or estimated
from the unlabelled test logits by EM (`em_prior`; Saerens, Latinne & Decaestecker, "Adjusting the Outputs
of a Classifier to New a Priori Probabilities: A Simple Procedure", Neural Computation 2002).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ltzoo.metrics.bootstrap import check_classes_present
from ltzoo.metrics.probability import weighted_probability_metrics

TEST_AGNOSTIC_RATIOS = (50, 25, 10, 5, 2)  # SADE's forward and backward imbalance ratios (and 1, the uniform prior)
PRIOR_TOLERANCE = 1e-4  # how far from 1 a given prior's sum may be (rounding in a typed list)
#: What reweighting can change, and what it cannot (per-class quantities).
REWEIGHTED = ("acc", "top5", "nll", "brier", "ece", "classwise_ece")
PRIOR_INVARIANT = ("per_class_recall", "mean_class_acc", "hm", "gm", "min_recall", "many", "medium", "few")


def check_prior(prior: Sequence[float] | torch.Tensor, num_classes: int, what: str = "the test prior") -> torch.Tensor:
    """``prior`` as a float64 tensor; a ValueError (one line: problem; fix) if it is not a distribution."""
    p = torch.as_tensor(prior, dtype=torch.double).flatten()
    if p.numel() != num_classes:
        raise ValueError(
            f"{what} has {p.numel()} values but the model has {num_classes} classes; give one share per "
            "class, in the class order of the dataset"
        )
    if bool((p < 0).any()) or not bool(torch.isfinite(p).all()):
        raise ValueError(f"{what} has a negative or non-finite value; give shares >= 0 that sum to 1")
    if abs(float(p.sum()) - 1.0) > PRIOR_TOLERANCE:
        raise ValueError(
            f"{what} sums to {float(p.sum()):.6g}, not 1; give shares that sum to 1 (divide each by their sum)"
        )
    return p / p.sum()


def longtail_prior(train_counts: Sequence[int], ratio: float, backward: bool = False) -> torch.Tensor:
    """The exponential-profile prior of imbalance ``ratio`` in the training order (most images first), or reversed."""
    counts = torch.as_tensor(list(train_counts), dtype=torch.double)
    c = len(counts)
    rank = torch.empty(c, dtype=torch.double)
    rank[torch.argsort(-counts, stable=True)] = torch.arange(c, dtype=torch.double)  # 0: the largest class
    if backward:
        rank = (c - 1) - rank
    p = float(ratio) ** (-rank / max(c - 1, 1))
    return p / p.sum()


def shifted_priors(
    train_counts: Sequence[int], ratios: Sequence[float] = TEST_AGNOSTIC_RATIOS
) -> dict[str, torch.Tensor]:
    """SADE's protocol: ``forward-50`` ... ``forward-2``, ``uniform``, ``backward-2`` ... ``backward-50``."""
    priors = {f"forward-{r:g}": longtail_prior(train_counts, r) for r in ratios}
    priors["uniform"] = longtail_prior(train_counts, 1.0)
    priors.update({f"backward-{r:g}": longtail_prior(train_counts, r, backward=True) for r in sorted(ratios)})
    return priors


def prior_weights(labels: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Per-image weights (summing to 1) that turn the test set's class shares into ``prior``: pi_y / n_y."""
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    support = check_classes_present(labels, len(prior)).double()
    return (torch.as_tensor(prior, dtype=torch.double) / support)[labels]


def shifted_metrics(logits: torch.Tensor, labels: torch.Tensor, prior: torch.Tensor) -> dict:
    """Accuracy, top-5, NLL, Brier, ECE, classwise ECE of the test set reweighted to ``prior`` (exact)."""
    return weighted_probability_metrics(logits, labels, prior_weights(labels, prior))


def adjust_logits(logits: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Logits moved from prior ``source`` to prior ``target``: + log(target / source) (Bayes' rule)."""
    tiny = 1e-12
    shift = torch.log(torch.as_tensor(target, dtype=torch.double).clamp(min=tiny)) - torch.log(
        torch.as_tensor(source, dtype=torch.double).clamp(min=tiny)
    )
    return (logits.double() + shift).to(logits.dtype)


def em_prior(
    logits: torch.Tensor,
    source: torch.Tensor,
    weights: torch.Tensor | None = None,
    iterations: int = 1000,
    tol: float = 1e-10,
) -> tuple[torch.Tensor, int]:
    """Saerens et al.'s EM estimate of the test prior from unlabelled logits.

    Alternates: posteriors moved to the current prior (E), the prior set to their (weighted) mean (M),
    starting from ``source``, until the prior moves less than ``tol`` (L1).

    Returns:
        The estimated prior and the number of iterations run.
    """
    source = torch.as_tensor(source, dtype=torch.double)
    p = logits.double().softmax(-1)
    n = p.shape[0]
    w = torch.full((n,), 1.0 / n, dtype=torch.double) if weights is None else torch.as_tensor(weights).double()
    w = w / w.sum()
    prior = source.clone()
    for it in range(1, iterations + 1):  # noqa: B007  (``it`` is returned after the loop)
        q = p * (prior / source.clamp(min=1e-12))
        q = q / q.sum(-1, keepdim=True)
        new = (w[:, None] * q).sum(0)
        moved = float((new - prior).abs().sum())
        prior = new
        if moved < tol:
            break
    return prior, it


def _recall_summary(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    pred = logits.argmax(-1)
    support = torch.bincount(labels, minlength=num_classes).double()
    recall = torch.bincount(labels[pred == labels], minlength=num_classes).double() / support
    hm = 0.0 if bool((recall <= 0).any()) else float(num_classes / (1 / recall).sum())
    return {"hm": hm, "min_recall": float(recall.min())}


def prior_sweep(
    logits: torch.Tensor,
    labels: torch.Tensor,
    train_counts: Sequence[int],
    source: torch.Tensor,
    priors: dict[str, torch.Tensor] | None = None,
) -> list[dict]:
    """The metrics under each test prior: as the model predicts, corrected with the true prior, and corrected
    with the prior EM estimates from the (reweighted) unlabelled test logits.

    Args:
        source: the prior the model's posteriors carry (training frequencies for plain CE, uniform for a
            balanced loss).
        priors: name -> prior (default `shifted_priors`).

    Returns:
        One row per prior: ``prior`` (name), ``shares``, ``plain`` / ``given`` / ``em`` (each: the reweighted
        metrics of `shifted_metrics` plus the prior-free ``hm`` and ``min_recall`` of its predictions),
        ``em_prior`` (the estimate), ``em_error`` (its total variation distance to the true prior).
    """
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    c = logits.shape[1]
    check_classes_present(labels, c)
    source = check_prior(source, c, "the model's source prior")
    rows = []
    for name, prior in (priors or shifted_priors(train_counts)).items():
        weights = prior_weights(labels, prior)
        estimate, _ = em_prior(logits, source, weights)
        row = {
            "prior": name,
            "shares": prior.tolist(),
            "em_prior": estimate.tolist(),
            "em_error": float(0.5 * (estimate - prior).abs().sum()),
        }
        for kind, z in (
            ("plain", logits),
            ("given", adjust_logits(logits, source, prior)),
            ("em", adjust_logits(logits, source, estimate)),
        ):
            row[kind] = {**weighted_probability_metrics(z, labels, weights), **_recall_summary(z, labels, c)}
        rows.append(row)
    return rows


def sweep_table(rows: list[dict]) -> str:
    """The sweep as Markdown: accuracy and NLL as predicted, corrected by the true prior, and by EM's estimate."""
    lines = [
        "| test prior | acc % | NLL | ECE % | acc %, true-prior LA | acc %, EM-prior LA | EM prior error (TV) | "
        "HM %, as predicted | HM %, EM-prior LA |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p, g, e = r["plain"], r["given"], r["em"]
        lines.append(
            f"| {r['prior']} | {100 * p['acc']:.2f} | {p['nll']:.4f} | {100 * p['ece']:.2f} | "
            f"{100 * g['acc']:.2f} | {100 * e['acc']:.2f} | {r['em_error']:.4f} | {100 * p['hm']:.2f} | "
            f"{100 * e['hm']:.2f} |"
        )
    return "\n".join(lines)
