"""Shifted test priors: reweighting equals an explicitly resampled test set; EM recovers a known prior."""

import pytest
import torch

from ltzoo.metrics.priors import (
    adjust_logits,
    check_prior,
    em_prior,
    longtail_prior,
    prior_sweep,
    prior_weights,
    shifted_metrics,
    shifted_priors,
)
from ltzoo.metrics.probability import weighted_probability_metrics


def synthetic(n_per_class=200, c=5, seed=0, source=None):
    """Gaussian class-conditional scores whose logits are exact log-likelihoods + log source prior."""
    g = torch.Generator().manual_seed(seed)
    means = 2.5 * torch.eye(c)
    labels = torch.arange(c).repeat_interleave(n_per_class)
    x = means[labels] + torch.randn(len(labels), c, generator=g)
    loglik = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)
    source = torch.full((c,), 1.0 / c) if source is None else source
    return loglik + source.log(), labels


def test_reweighted_metrics_equal_an_explicitly_resampled_test_set():
    logits, labels = synthetic(n_per_class=40)
    multiplicity = torch.tensor([5, 4, 3, 2, 1])  # the test set with class c repeated m_c times
    prior = multiplicity / multiplicity.sum()
    big = torch.cat([torch.nonzero(labels == c).flatten().repeat(int(m)) for c, m in enumerate(multiplicity)])
    resampled = weighted_probability_metrics(logits[big], labels[big])
    reweighted = shifted_metrics(logits, labels, prior)
    for k in resampled:
        assert reweighted[k] == pytest.approx(resampled[k], abs=1e-9), k
    from ltzoo.metrics.probability import expected_calibration_error

    assert reweighted["ece"] == pytest.approx(expected_calibration_error(logits[big], labels[big]), abs=1e-5)


def test_reweighting_leaves_per_class_recall_unchanged():
    logits, labels = synthetic()
    w = prior_weights(labels, longtail_prior([5, 4, 3, 2, 1], 10))
    for c in range(5):
        assert float(w[labels == c].sum()) == pytest.approx(float(longtail_prior([5, 4, 3, 2, 1], 10)[c]))


def test_em_recovers_a_known_prior():
    true = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03], dtype=torch.double)
    logits, labels = synthetic(n_per_class=2000, seed=1)  # posteriors under the uniform source prior
    estimate, iterations = em_prior(logits, torch.full((5,), 0.2), prior_weights(labels, true))
    assert float((estimate - true).abs().max()) < 0.01 and iterations < 1000
    # and the correction by the estimate is at least as accurate as the uncorrected model under that prior
    w = prior_weights(labels, true)
    plain = weighted_probability_metrics(logits, labels, w)["acc"]
    fixed = weighted_probability_metrics(adjust_logits(logits, torch.full((5,), 0.2), estimate), labels, w)["acc"]
    assert fixed > plain


def test_shifted_priors_follow_the_training_order():
    priors = shifted_priors([10, 1000, 100])
    assert list(priors) == [f"forward-{r}" for r in (50, 25, 10, 5, 2)] + ["uniform"] + [
        f"backward-{r}" for r in (2, 5, 10, 25, 50)
    ]
    f = priors["forward-50"]
    assert float(f[1] / f[0]) == pytest.approx(50) and int(f.argmax()) == 1
    assert int(priors["backward-50"].argmax()) == 0
    assert torch.allclose(priors["uniform"], torch.full((3,), 1 / 3, dtype=torch.double))


@pytest.mark.parametrize(
    "prior,match",
    [
        ([0.5, 0.4], "has 2 values but the model has 3 classes"),
        ([0.5, 0.4, 0.3], "sums to 1.2, not 1"),
        ([1.2, -0.1, -0.1], "negative"),
    ],
)
def test_bad_prior_is_one_clear_line(prior, match):
    with pytest.raises(ValueError, match=match) as err:
        check_prior(prior, 3)
    assert "\n" not in str(err.value) and ";" in str(err.value)


def test_prior_sweep_given_prior_helps_under_forward_shift():
    counts = [1000, 300, 100, 30, 10]
    source = torch.tensor(counts, dtype=torch.double) / sum(counts)
    logits, labels = synthetic(n_per_class=300, seed=2, source=source)  # a model that learnt the training prior
    rows = {r["prior"]: r for r in prior_sweep(logits, labels, counts, source)}
    assert len(rows) == 11
    back = rows["backward-50"]
    assert back["given"]["acc"] > back["plain"]["acc"] + 0.05 and back["em"]["acc"] > back["plain"]["acc"] + 0.05
    uniform = rows["uniform"]  # plain accuracy under the uniform prior is the balanced test set's
    assert uniform["plain"]["acc"] == pytest.approx(float((logits.argmax(-1) == labels).double().mean()))
    assert uniform["plain"]["hm"] == rows["forward-50"]["plain"]["hm"]  # prior-invariant
