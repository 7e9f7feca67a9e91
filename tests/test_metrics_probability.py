"""Probability metrics: ECE equals torchmetrics', classwise ECE, NLL, Brier and top-5 against references."""

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from ltzoo.metrics.probability import (
    binned_calibration_error,
    expected_calibration_error,
    probability_metrics,
    reliability_bins,
    top_k_accuracy,
    weighted_probability_metrics,
)


def random_logits(n=2000, c=10, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n,), generator=g)
    logits = scale * torch.randn(n, c, generator=g)
    logits[torch.arange(n), labels] += 2.0  # better than chance, not calibrated
    return logits, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_equals_torchmetrics_on_random_logits(seed):
    logits, labels = random_logits(seed=seed)
    ref = float(multiclass_calibration_error(logits.softmax(-1), labels, num_classes=10, n_bins=15, norm="l1"))
    assert expected_calibration_error(logits, labels) == pytest.approx(ref, abs=1e-6)
    own = weighted_probability_metrics(logits, labels)["ece"]  # the weighted code, unweighted
    assert own == pytest.approx(ref, abs=1e-5)
    assert ref > 0.01  # the test would pass trivially on a calibrated model


def test_classwise_ece_is_the_mean_of_torchmetrics_binary_errors():
    logits, labels = random_logits(seed=3)
    p = logits.softmax(-1)
    ref = np.mean([float(binary_calibration_error(p[:, c], (labels == c).long(), n_bins=15)) for c in range(10)])
    assert weighted_probability_metrics(logits, labels)["classwise_ece"] == pytest.approx(ref, abs=1e-5)


def test_nll_brier_top5_against_scipy_numpy_torchmetrics():
    logits, labels = random_logits(seed=4)
    z, y = logits.double().numpy(), labels.numpy()
    m = probability_metrics(logits, labels)
    assert m["nll"] == pytest.approx(-log_softmax(z, axis=1)[np.arange(len(y)), y].mean(), rel=1e-6)
    onehot = np.eye(10)[y]
    assert m["brier"] == pytest.approx(((softmax(z, axis=1) - onehot) ** 2).sum(1).mean(), rel=1e-6)
    top5 = (np.argsort(-z, axis=1)[:, :5] == y[:, None]).any(1).mean()
    assert m["top5"] == pytest.approx(top5, abs=1e-6)
    assert weighted_probability_metrics(logits, labels)["top5"] == pytest.approx(top5, abs=1e-9)
    assert top_k_accuracy(logits[:, :5], labels.clamp(max=4)) is None  # 5 classes: top-5 says nothing


def test_weighted_metrics_equal_a_replicated_test_set():
    logits, labels = random_logits(n=300, c=6, seed=5)
    reps = torch.randint(1, 4, (300,), generator=torch.Generator().manual_seed(0))
    big_logits, big_labels = logits.repeat_interleave(reps, 0), labels.repeat_interleave(reps)
    weighted = weighted_probability_metrics(logits, labels, reps.double())
    plain = weighted_probability_metrics(big_logits, big_labels)
    for k in plain:
        assert weighted[k] == pytest.approx(plain[k], abs=1e-9), k
    assert weighted["ece"] == pytest.approx(expected_calibration_error(big_logits, big_labels), abs=1e-5)


def test_binned_error_of_a_perfectly_calibrated_bin_is_zero():
    conf = torch.full((100,), 0.7)
    hit = torch.cat([torch.ones(70), torch.zeros(30)])
    assert binned_calibration_error(conf, hit) == pytest.approx(0.0, abs=1e-6)
    assert binned_calibration_error(conf, torch.ones(100)) == pytest.approx(0.3)


def test_reliability_bins_and_diagram(tmp_path):
    from ltzoo.metrics import plot_reliability

    logits, labels = random_logits(seed=6)
    bins = reliability_bins(logits, labels)
    assert sum(bins["count"]) == len(labels) and len(bins["count"]) == 15
    total = sum(n * abs(a - c) for n, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"])) / len(labels)
    assert total == pytest.approx(expected_calibration_error(logits, labels), abs=1e-5)
    path = plot_reliability(bins, tmp_path / "rel.png", ece=0.1)
    assert path.stat().st_size > 1000
