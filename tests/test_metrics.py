"""Long-tail metrics (`ltzoo.metrics.longtail`) and the per-class recall plot (`ltzoo.metrics.plot`)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy.stats import gmean, hmean

from ltzoo.metrics import (
    SUMMARY_KEYS,
    geometric_mean,
    harmonic_mean,
    longtail_metrics,
    per_class_recall,
    plot_per_class_recall,
)
from ltzoo.metrics.longtail import CLAMP_FLOOR

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _predictions(support: list[int], hits: list[int], num_classes: int, seed: int = 0):
    """labels/preds with ``hits[c]`` of the ``support[c]`` samples of class c predicted right, in a shuffled order."""
    labels, preds = [], []
    for c, (n, k) in enumerate(zip(support, hits)):
        labels += [c] * n
        preds += [c] * k + [(c + 1) % num_classes] * (n - k)
    order = np.random.default_rng(seed).permutation(len(labels))
    return torch.tensor(labels)[order], torch.tensor(preds)[order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_scipy_on_random_recalls(seed):
    rng = np.random.default_rng(seed)
    C = 37
    support = rng.integers(5, 60, C).tolist()
    hits = [int(rng.integers(1, n + 1)) for n in support]  # no zero recall
    labels, preds = _predictions(support, hits, C, seed)
    m = longtail_metrics(labels, preds, num_classes=C)
    recall = np.array(hits) / np.array(support)
    assert m["hm"] == pytest.approx(hmean(recall), rel=1e-12)
    assert m["gm"] == pytest.approx(gmean(recall), rel=1e-12)
    assert m["mean_class_acc"] == pytest.approx(recall.mean(), rel=1e-12)
    assert m["min_recall"] == pytest.approx(recall.min(), rel=1e-12)
    assert m["acc"] == pytest.approx(sum(hits) / sum(support), rel=1e-12)
    assert m["hm_clamped"] == pytest.approx(m["hm"]) and m["gm_clamped"] == pytest.approx(m["gm"])
    assert m["per_class_recall"] == pytest.approx(recall.tolist())
    assert m["num_samples"] == sum(support) and m["num_classes"] == C and m["absent_classes"] == []
    assert m["hm"] <= m["gm"] <= m["mean_class_acc"]
    # lists and numpy arrays are accepted too
    assert longtail_metrics(labels.tolist(), preds.numpy(), num_classes=C)["hm"] == m["hm"]


def test_zero_recall_by_hand():
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 0, 1, 0, 0, 0]  # recalls 1, 0.5, 0
    m = longtail_metrics(labels, preds)
    assert m["num_classes"] == 3
    assert m["per_class_recall"] == [1.0, 0.5, 0.0]
    assert m["hm"] == 0.0 and m["gm"] == 0.0 and m["min_recall"] == 0.0
    assert m["acc"] == pytest.approx(0.5) and m["mean_class_acc"] == pytest.approx(0.5)
    clamped = [1.0, 0.5, CLAMP_FLOOR]
    assert CLAMP_FLOOR == 1e-3
    assert m["hm_clamped"] == pytest.approx(hmean(clamped)) == pytest.approx(3 / (1 + 2 + 1000))
    assert m["gm_clamped"] == pytest.approx(gmean(clamped)) == pytest.approx((0.5 * 1e-3) ** (1 / 3))


def test_means_helpers():
    assert harmonic_mean(torch.tensor([1.0, 0.5])) == pytest.approx(2 / 3)
    assert geometric_mean(torch.tensor([0.25, 1.0])) == pytest.approx(0.5)
    assert harmonic_mean(torch.tensor([0.3, 0.0])) == 0.0
    assert geometric_mean(torch.tensor([0.3, 0.0])) == 0.0


def test_per_class_recall_nan_for_absent_classes():
    recall, support = per_class_recall(torch.tensor([0, 0, 2]), torch.tensor([0, 1, 2]), 4)
    assert support.tolist() == [2, 0, 1, 0]
    assert recall[0] == 0.5 and recall[2] == 1.0
    assert math.isnan(recall[1]) and math.isnan(recall[3])


def test_absent_classes_are_excluded_and_reported():
    labels = [0, 0, 1, 3, 3, 3]
    preds = [0, 1, 1, 3, 3, 0]  # recalls: 0.5, 1, -, 2/3, -
    m = longtail_metrics(labels, preds, num_classes=5)
    assert m["absent_classes"] == [2, 4]
    assert m["per_class_recall"][2] is None and m["per_class_recall"][4] is None
    present = [0.5, 1.0, 2 / 3]
    assert m["mean_class_acc"] == pytest.approx(np.mean(present))
    assert m["hm"] == pytest.approx(hmean(present)) and m["gm"] == pytest.approx(gmean(present))
    assert m["min_recall"] == 0.5 and m["acc"] == pytest.approx(4 / 6)
    # the default class count comes from train_counts, then the largest label
    assert longtail_metrics(labels, preds)["absent_classes"] == [2]
    m = longtail_metrics(labels, preds, train_counts=[300, 200, 50, 10, 5])
    assert m["num_classes"] == 5 and m["absent_classes"] == [2, 4]
    assert m["group_sizes"] == {"many": 2, "medium": 1, "few": 2}
    assert m["many"] == pytest.approx(0.75) and m["medium"] is None and m["few"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "many, few, groups",
    [
        (100, 20, {"many": [0, 1], "medium": [2], "few": [3, 4]}),
        (300, 60, {"many": [0], "medium": [1], "few": [2, 3, 4]}),
        (200, 10, {"many": [0], "medium": [1, 2, 3], "few": [4]}),  # boundaries are medium
        (1000, 1, {"many": [], "medium": [0, 1, 2, 3, 4], "few": []}),
    ],
)
def test_many_medium_few_with_custom_thresholds(many, few, groups):
    train_counts = [500, 200, 50, 10, 5]
    support, hits = [10] * 5, [9, 7, 5, 3, 1]
    labels, preds = _predictions(support, hits, 5)
    m = longtail_metrics(labels, preds, train_counts=train_counts, many=many, few=few)
    recall = [h / 10 for h in hits]
    for name, classes in groups.items():
        assert m["group_sizes"][name] == len(classes)
        want = None if not classes else np.mean([recall[c] for c in classes])
        assert m[name] == (None if want is None else pytest.approx(want))
    assert m["shot_thresholds"] == {"many": many, "few": few}
    assert set(SUMMARY_KEYS) <= set(m)


def test_no_groups_without_train_counts():
    m = longtail_metrics([0, 1], [0, 1])
    assert "many" not in m and "group_sizes" not in m
    assert m["hm"] == m["gm"] == m["acc"] == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(labels=[0, 1, 2], preds=[0, 1]), "differ in length: 3 vs 2"),
        (dict(labels=[], preds=[]), "no samples"),
        (dict(labels=[0, 5], preds=[0, 1], num_classes=3), r"labels must lie in \[0, 3\); got \[0, 5\]"),
        (dict(labels=[-1, 1], preds=[0, 1]), r"labels must lie in \[0, 2\); got \[-1, 1\]"),
        (dict(labels=[0, 3], preds=[0, 1], train_counts=[10, 5]), r"labels must lie in \[0, 2\)"),
        (dict(labels=[0, 1], preds=[0, 1], train_counts=[10, 5, 1], num_classes=2), "train_counts has 3 classes"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        longtail_metrics(**kwargs)


def test_speed_many_classes():
    """8,192 classes x 200k samples: vectorised, well under a second (no timing assert)."""
    gen = torch.Generator().manual_seed(0)
    C, N = 8192, 200_000
    labels = torch.randint(0, C, (N,), generator=gen)
    right = torch.rand(N, generator=gen) < 0.7
    preds = torch.where(right, labels, torch.randint(0, C, (N,), generator=gen))
    train_counts = torch.randint(1, 500, (C,), generator=gen).tolist()
    t = time.perf_counter()
    m = longtail_metrics(labels, preds, train_counts=train_counts)
    elapsed = time.perf_counter() - t
    print(f"longtail_metrics on {C} classes x {N} samples: {elapsed:.3f}s")
    assert len(m["per_class_recall"]) == C
    assert m["acc"] == pytest.approx(float((labels == preds).double().mean()))


# ------------------------------------------------------------------------------------------- plots
@pytest.mark.parametrize("num_classes", [10, 1000])
def test_plot_per_class_recall_writes_a_png(tmp_path, num_classes):
    rng = np.random.default_rng(num_classes)
    support = rng.integers(1, 20, num_classes).tolist()
    hits = [int(rng.integers(0, n + 1)) for n in support]
    labels, preds = _predictions(support, hits, num_classes)
    train_counts = sorted(rng.integers(1, 1000, num_classes).tolist(), reverse=True)
    m = longtail_metrics(labels, preds, train_counts=train_counts)
    names = [f"c{c}" for c in range(num_classes)]
    out = plot_per_class_recall(m, train_counts, tmp_path / "sub" / "recall.png", title="test", class_names=names)
    assert out == tmp_path / "sub" / "recall.png"
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    if num_classes <= 30:  # class order and plain tick labels
        plain = plot_per_class_recall(m, None, tmp_path / "plain.png")
        assert plain.read_bytes()[:8] == PNG_MAGIC


def test_plot_with_absent_classes(tmp_path):
    m = longtail_metrics([0, 0, 2], [0, 1, 2], num_classes=4)
    out = plot_per_class_recall(m, [30, 20, 10, 5], tmp_path / "absent.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
