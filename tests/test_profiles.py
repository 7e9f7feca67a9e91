"""Long-tail profiles (`ltzoo.data.profiles`) and the containers of `ltzoo.data.splits`."""

from __future__ import annotations

import pytest
import torch

from ltzoo.data import LTDataset, Split, longtail_counts, shot_groups, subsample_longtail
from ltzoo.data.formats import FMNIST_CLASSES
from ltzoo.data.profiles import NAMED_CLASS_ORDERS, class_indices, counts_in_class_order, resolve_class_order

FMNIST_LT_COUNTS = [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]


# ------------------------------------------------------------------------------------ longtail_counts
def test_exp_profile_matches_the_literature():
    assert longtail_counts(6000, 10, 100) == FMNIST_LT_COUNTS
    assert longtail_counts(6000, 10, 100, "exp") == FMNIST_LT_COUNTS


@pytest.mark.parametrize(
    "n_max, num_classes, rho",
    [
        (500, 100, 100),
        (5000, 10, 10),
        (5000, 10, 50),
        (1280, 1000, 256),
    ],
)
def test_exp_profile_shape(n_max, num_classes, rho):
    counts = longtail_counts(n_max, num_classes, rho)
    assert len(counts) == num_classes
    assert counts[0] == n_max
    assert counts[-1] == int(n_max / rho)
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    for c, n in enumerate(counts):
        assert n == int(n_max * rho ** (-c / (num_classes - 1)))


def test_exp_profile_edge_cases():
    assert longtail_counts(100, 5, 1) == [100] * 5  # rho = 1: balanced
    assert longtail_counts(100, 1, 50) == [100]  # one class
    assert longtail_counts(100, 2, 10) == [100, 10]


@pytest.mark.parametrize(
    "num_classes, expected",
    [
        (10, [1000] * 5 + [10] * 5),
        (5, [1000] * 2 + [10] * 3),
        (2, [1000, 10]),
    ],
)
def test_step_profile(num_classes, expected):
    assert longtail_counts(1000, num_classes, 100, "step") == expected


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_max=100, num_classes=10, imbalance=0.5), "imbalance ratio must be >= 1"),
        (dict(n_max=100, num_classes=10, imbalance=10, profile="linear"), "unknown long-tail profile 'linear'"),
        (dict(n_max=100, num_classes=0, imbalance=10), "at least one class"),
        (dict(n_max=0, num_classes=10, imbalance=10), "n_max=0"),
        (dict(n_max=-5, num_classes=10, imbalance=10, profile="step"), "n_max=-5"),
    ],
)
def test_longtail_counts_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        longtail_counts(**kwargs)


# -------------------------------------------------------------------------------- subsample_longtail
def _balanced_labels(num_classes: int, per_class: int, seed: int = 0) -> torch.Tensor:
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def test_class_indices():
    labels = torch.tensor([2, 0, 2, 1, 0, 2])
    idx = class_indices(labels, 4)
    assert [i.tolist() for i in idx] == [[1, 4], [3], [0, 2, 5], []]


def test_subsample_longtail_counts_exact_and_partition():
    labels = _balanced_labels(10, 200)
    counts = longtail_counts(200, 10, 20)
    kept, left = subsample_longtail(labels, counts, seed=3)
    assert torch.bincount(labels[kept], minlength=10).tolist() == counts
    assert torch.bincount(labels[left], minlength=10).tolist() == [200 - n for n in counts]
    assert set(kept.tolist()).isdisjoint(left.tolist())
    assert sorted(kept.tolist() + left.tolist()) == list(range(len(labels)))
    assert torch.equal(kept, kept.sort().values) and torch.equal(left, left.sort().values)


def test_subsample_longtail_seeded_and_deterministic():
    labels = _balanced_labels(5, 50)
    counts = longtail_counts(50, 5, 10)
    a = subsample_longtail(labels, counts, seed=7)
    b = subsample_longtail(labels, counts, seed=7)
    c = subsample_longtail(labels, counts, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.bincount(labels[c[0]], minlength=5).tolist() == counts


def test_subsample_longtail_errors():
    labels = _balanced_labels(3, 10)
    with pytest.raises(ValueError, match="class 0 has 10 images but the profile asks for 11"):
        subsample_longtail(labels, [11, 5, 1])
    with pytest.raises(ValueError, match="negative"):
        subsample_longtail(labels, [5, -1, 1])
    with pytest.raises(ValueError, match="counts cover 2 classes"):
        subsample_longtail(labels, [5, 5])


def test_subsample_longtail_exclude_skips_the_excluded_and_keeps_the_permutation():
    labels = torch.arange(60) % 3
    counts = [15, 8, 3]
    kept, left = subsample_longtail(labels, counts, seed=4)
    # excluding images the draw left out changes nothing it kept
    kept2, left2 = subsample_longtail(labels, counts, seed=4, exclude=left[::2])
    assert torch.equal(kept, kept2) and torch.equal(left2, left[1::2])
    # excluding kept images: they are skipped, never kept nor left out, and the counts still hold
    barred = kept[:5]
    kept3, left3 = subsample_longtail(labels, counts, seed=4, exclude=barred)
    assert not set(barred.tolist()) & (set(kept3.tolist()) | set(left3.tolist()))
    assert torch.bincount(labels[kept3], minlength=3).tolist() == counts
    assert len(kept3) + len(left3) == 60 - 5
    # a larger count keeps a superset of a smaller one's images (the same permutation)
    bigger, _ = subsample_longtail(labels, [18, 8, 3], seed=4)
    assert set(kept.tolist()) <= set(bigger.tolist())
    with pytest.raises(ValueError, match="class 0 has 15 images outside the excluded ones but the profile asks for 16"):
        subsample_longtail(labels, [16, 1, 1], seed=0, exclude=torch.tensor([0, 3, 6, 9, 12]))


# ---------------------------------------------------------------------------------------- class order
NAMES = ["ant", "bee", "cat", "dog"]


def test_class_order_own_reverse_and_random():
    assert resolve_class_order(None, NAMES) == ([0, 1, 2, 3], "own")
    assert resolve_class_order("own", NAMES) == ([0, 1, 2, 3], "own")
    assert resolve_class_order("reverse", NAMES) == ([3, 2, 1, 0], "reverse")
    a, label = resolve_class_order("random:7", NAMES)
    assert label == "random:7" and sorted(a) == [0, 1, 2, 3]
    assert resolve_class_order("random:7", NAMES)[0] == a  # seeded
    draws = {tuple(resolve_class_order(f"random:{s}", list(map(str, range(10))))[0]) for s in range(5)}
    assert len(draws) == 5


@pytest.mark.parametrize(
    "order",
    [
        ["dog", "ant", "cat", "bee"],
        [3, 0, 2, 1],
        ("dog", "ant", "cat", "bee"),
        "dog,ant,cat,bee",
        " dog , ant,cat,bee",
        "3,0,2,1",
    ],
)
def test_class_order_explicit_by_name_or_index(order):
    assert resolve_class_order(order, NAMES) == ([3, 0, 2, 1], "explicit")


def test_class_order_names_win_over_indices():
    # folder classes named by digits: entries that are all class names are read as names
    names = ["0", "1", "10", "2"]
    assert resolve_class_order("10,2,1,0", names)[0] == [2, 3, 1, 0]
    assert resolve_class_order([3, 2, 1, 0], names)[0] == [3, 2, 1, 0]


@pytest.mark.parametrize(
    "order, match",
    [
        (["dog", "ant", "cat"], r"each of the 4 classes once, most images first: missing \['bee'\]"),
        (["dog", "ant", "cat", "dog"], r"missing \['bee'\]; duplicated \['dog'\]"),
        ([0, 1, 2, 4], r"missing \['dog'\]; out of range \[4\]"),
        (["dog", "ant", "cat", "bea"], r"\['bea'\] are not class names \(classes: \['ant', 'bee', 'cat', 'dog'\]\)"),
        (
            "sideways",
            r"unknown class order 'sideways'; choose 'own', 'reverse', 'random:<seed>', one of \['hard_tail'\]",
        ),
        ("random:x", r"'random:<seed>' needs an integer seed"),
        (
            "hard_tail",
            r"named class order 'hard_tail' is defined for the classes .*, "
            r"not for this dataset's \(ant, bee, cat, ...\)",
        ),
    ],
)
def test_class_order_errors_name_the_problem(order, match):
    with pytest.raises(ValueError, match=match):
        resolve_class_order(order, NAMES)


def test_named_hard_tail_order_is_a_permutation_of_fashion_mnist():
    for orders in NAMED_CLASS_ORDERS.values():
        for names in orders:
            assert len(set(names)) == len(names)
    ranked, label = resolve_class_order("hard_tail", FMNIST_CLASSES)
    assert label == "hard_tail" and sorted(ranked) == list(range(10))
    assert [FMNIST_CLASSES[c] for c in ranked] == list(NAMED_CLASS_ORDERS["hard_tail"][0])


def test_counts_in_class_order():
    assert counts_in_class_order([9, 5, 2], [0, 1, 2]) == [9, 5, 2]
    assert counts_in_class_order([9, 5, 2], [2, 0, 1]) == [5, 2, 9]
    with pytest.raises(ValueError, match="not a permutation of the 3 classes"):
        counts_in_class_order([9, 5, 2], [0, 0, 1])


# -------------------------------------------------------------------------------------- Split / LTDataset
def test_split_needs_exactly_one_source_of_the_right_length():
    with pytest.raises(ValueError, match="exactly one image source"):
        Split("train", torch.zeros(3), images=torch.zeros(3, 1, 2, 2), files=["a", "b", "c"])
    with pytest.raises(ValueError, match="exactly one image source"):
        Split("train", torch.zeros(3), files=["a", "b"])
    with pytest.raises(ValueError, match="exactly one image source"):
        Split("train", torch.zeros(3))


def test_split_subset_and_counts():
    s = Split("train", [0, 1, 1, 2], files=["a", "b", "c", "d"], source="x")
    assert s.labels.dtype == torch.long and not s.in_memory
    sub = s.subset(torch.tensor([3, 1]), name="val", source="y")
    assert sub.files == ["d", "b"] and sub.labels.tolist() == [2, 1] and (sub.name, sub.source) == ("val", "y")
    assert s.subset(torch.tensor([0])).source == "x"
    assert s.counts(4) == [1, 2, 1, 0]
    m = Split("t", [1, 0], images=torch.arange(8, dtype=torch.uint8).view(2, 1, 2, 2))
    assert m.in_memory and m.subset(torch.tensor([1])).images.flatten().tolist() == [4, 5, 6, 7]


def test_shot_groups_boundaries():
    groups = shot_groups([101, 100, 20, 19, 500, 0], many=100, few=20)
    assert groups == {"many": [0, 4], "medium": [1, 2], "few": [3, 5]}
    assert shot_groups([10, 5, 2], many=8, few=3) == {"many": [0], "medium": [1], "few": [2]}


def test_ltdataset_summary_and_label_check():
    train = Split("train", [0] * 5 + [1] * 3 + [2], files=["f"] * 9)
    test = Split("test", [0, 1, 2], files=["g"] * 3)
    ds = LTDataset(
        "toy",
        ["a", "b", "c"],
        train,
        None,
        test,
        (3, 8, 8),
        (0.5,) * 3,
        (0.2,) * 3,
        info={"shot_thresholds": {"many": 4, "few": 2}},
    )
    s = ds.summary()
    assert s["class_counts"] == [5, 3, 1] and s["num_classes"] == 3 and s["val_images"] == 0
    assert s["many_medium_few"] == {"many": 1, "medium": 1, "few": 1}
    assert s["imbalance_ratio"] == 5.0 and s["val_source"] is None
    assert ds.shot_thresholds == (4, 2)
    ds.check_labels()
    bad = LTDataset("toy", ["a", "b"], train, None, test, (3, 8, 8), (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(ValueError, match=r"toy: the train split has labels in \[0, 2\] but the dataset has 2 classes"):
        bad.check_labels()
