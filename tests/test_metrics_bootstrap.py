"""Stratified and paired bootstrap: coverage against a known truth, fixed class counts, paired differences."""

import pytest
import torch

from ltzoo.metrics.bootstrap import paired_bootstrap, resampled_class_sums, stratified_bootstrap, summary_from_recall


def test_interval_coverage_near_95_percent_with_known_truth():
    """Classes with known recall; 300 simulated test sets (one column each, resampled in one call): the 95%
    intervals of accuracy and HM cover the truth about 95% of the time (the coverage's binomial sd: 1.3 points).
    stratified_bootstrap is this computation for one column (checked at the end)."""
    true_recall = torch.tensor([0.95, 0.9, 0.8, 0.7, 0.6], dtype=torch.double)
    n, runs = 80, 300
    labels = torch.arange(5).repeat_interleave(n)
    support = torch.full((5,), float(n), dtype=torch.double)
    truth = {"acc": float(true_recall.mean()), "hm": float(5 / (1 / true_recall).sum())}
    g = torch.Generator().manual_seed(0)
    correct = (torch.rand(5 * n, runs, generator=g, dtype=torch.double) < true_recall[labels][:, None]).double()
    hits = resampled_class_sums(labels, correct, 5, resamples=400, seed=1)  # (400, runs, 5)
    samples = summary_from_recall(hits / support, support)
    for k in ("acc", "hm"):
        lo, hi = torch.quantile(samples[k], torch.tensor([0.025, 0.975], dtype=torch.double), dim=0)
        coverage = float(((lo <= truth[k]) & (truth[k] <= hi)).double().mean())
        assert 0.91 <= coverage <= 0.985, (k, coverage)
    preds = torch.where(correct[:, 0] > 0, labels, (labels + 1) % 5)
    one = stratified_bootstrap(labels, preds, 5, resamples=400, seed=1)["intervals"]["acc"]
    ref = torch.quantile(samples["acc"][:, 0], torch.tensor([0.025, 0.975], dtype=torch.double))
    assert one == pytest.approx(ref.tolist(), abs=1e-12)


def test_resamples_keep_class_counts_and_are_seeded():
    labels = torch.tensor([2, 0, 1, 1, 2, 2, 0, 1, 2, 2])
    ones = torch.ones(10, 1)
    sums = resampled_class_sums(labels, ones, 3, resamples=50, seed=1)
    assert torch.equal(sums[:, 0], torch.tensor([2.0, 3.0, 5.0], dtype=torch.double).expand(50, 3))
    values = torch.arange(10.0)[:, None]
    a = resampled_class_sums(labels, values, 3, resamples=20, seed=7)
    assert torch.equal(a, resampled_class_sums(labels, values, 3, resamples=20, seed=7))
    assert not torch.equal(a, resampled_class_sums(labels, values, 3, resamples=20, seed=8))
    # class 0 holds images 1 and 6: each resample sums two draws among {1, 6}
    assert set(a[:, 0, 0].tolist()) <= {2.0, 7.0, 12.0}


def test_summary_from_recall_matches_longtail_metrics():
    from ltzoo.metrics import longtail_metrics

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (600,), generator=g)
    preds = torch.where(torch.rand(600, generator=g) < 0.7, labels, torch.randint(0, 6, (600,), generator=g))
    counts = [500, 300, 100, 50, 20, 5]
    ref = longtail_metrics(labels, preds, counts, many=200, few=30)
    support = torch.bincount(labels, minlength=6).double()
    recall = torch.bincount(labels[labels == preds], minlength=6).double() / support
    from ltzoo.metrics.bootstrap import shot_groups

    got = summary_from_recall(recall, support, shot_groups(counts, 200, 30))
    for k, v in got.items():
        assert float(v) == pytest.approx(ref[k], abs=1e-12), k


def test_min_recall_resolution_is_reported():
    labels = torch.arange(4).repeat_interleave(20)
    res = stratified_bootstrap(labels, labels, 4, resamples=100)
    assert res["resolution"]["min_recall"] == pytest.approx(0.05)
    assert any("steps of 5.00 points" in n for n in res["notes"])
    assert any("zero width" in n for n in res["notes"])  # every image right: the interval cannot move


def test_empty_class_is_one_clear_error():
    with pytest.raises(ValueError, match="no image of 1 class .*class 2"):
        stratified_bootstrap(torch.tensor([0, 1, 3]), torch.tensor([0, 1, 3]), 4)


def test_paired_bootstrap_identical_models_zero_difference_p_one():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (500,), generator=g)
    correct = (torch.rand(500, generator=g) < 0.8).double()
    res = paired_bootstrap(labels, {"correct": correct}, {"correct": correct.clone()}, 5, resamples=200)
    for k in ("acc", "hm", "gm", "min_recall"):
        assert res[k]["difference"] == 0.0 and res[k]["interval"] == [0.0, 0.0] and res[k]["p_value"] == 1.0


def test_paired_bootstrap_separates_a_real_difference():
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(5).repeat_interleave(400)
    a = (torch.rand(2000, generator=g) < 0.70).double()
    b = torch.maximum(a, (torch.rand(2000, generator=g) < 0.2).double())  # b fixes about 6 points of a's errors
    res = paired_bootstrap(labels, {"correct": a}, {"correct": b}, 5, resamples=500)
    assert res["acc"]["difference"] > 0.04 and res["acc"]["interval"][0] > 0 and res["acc"]["p_value"] < 0.01
