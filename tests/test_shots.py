"""Many / medium / few-shot cut-offs chosen for the data (`ltzoo.metrics.shots`)."""

from __future__ import annotations

import pytest

from ltzoo.data import longtail_counts, shot_groups
from ltzoo.metrics.shots import (
    LITERATURE_SHOT_CUTS,
    check_shot_cuts,
    choose_shot_cuts,
    log_third_cuts,
    nearest_125,
    shot_group_sizes,
)


def _sizes(counts, many, few):
    return tuple(len(v) for v in shot_groups(counts, many, few).values())


def test_group_sizes_agree_with_shot_groups():
    counts = [101, 100, 20, 19, 500, 0, 7]
    assert shot_group_sizes(counts, 100, 20) == _sizes(counts, 100, 20) == (2, 2, 3)


@pytest.mark.parametrize(
    "x, expected",
    [
        (1271, 1000),
        (274, 200),
        (2738, 2000),
        (1, 1),
        (1.4, 1),
        (1.5, 2),
        (3.2, 5),
        (3.1, 2),
        (7, 5),
        (7.2, 10),
        (40_000, 50_000),
        (0.7, 1),
    ],
)
def test_nearest_125(x, expected):
    assert nearest_125(x) == expected


def test_issue_14_folder_gets_non_empty_groups():
    # 10 classes, exp profile, rho = 100, largest 6000: the literature's cuts give 8 / 2 / 0
    counts = longtail_counts(6000, 10, 100)
    assert _sizes(counts, *LITERATURE_SHOT_CUTS) == (8, 2, 0)
    many, few, rule = choose_shot_cuts(counts)
    assert (many, few) == (1000, 200) and _sizes(counts, many, few) == (4, 3, 3)
    assert rule == "thirds of the log-count range 60..6000 (the literature's >100 / <20 would give 8/2/0 classes)"


@pytest.mark.parametrize(
    "rho, cuts, sizes", [(100, (1000, 200), (4, 3, 3)), (10, (2000, 1000), (5, 2, 3)), (50, (2000, 500), (3, 3, 4))]
)
def test_fashion_mnist_lt_keeps_a_sensible_split(rho, cuts, sizes):
    counts = longtail_counts(5900, 10, rho)  # fmnist_lt with its 100/class validation split
    assert choose_shot_cuts(counts)[:2] == cuts and _sizes(counts, *cuts) == sizes


@pytest.mark.parametrize(
    "counts, sizes",
    [
        (longtail_counts(500, 100, 100), (35, 35, 30)),  # CIFAR-100-LT, the literature's own scale
        (longtail_counts(480, 100, 100), (34, 35, 31)),  # ... with ltzoo's 20/class validation hold-out
        (longtail_counts(1280, 1000, 256), None),  # ImageNet-LT-like
    ],
)
def test_literature_cuts_where_they_were_made_for(counts, sizes):
    many, few, rule = choose_shot_cuts(counts)
    assert (many, few) == LITERATURE_SHOT_CUTS and rule.startswith("literature")
    if sizes:
        assert _sizes(counts, many, few) == sizes


@pytest.mark.parametrize("num_classes", [3, 5, 10, 100])
@pytest.mark.parametrize("n_max", [40, 500, 6000])
@pytest.mark.parametrize("rho", [10, 50, 100])
def test_exp_profiles_always_get_three_non_empty_groups(num_classes, n_max, rho):
    counts = longtail_counts(n_max, num_classes, rho)
    many, few, _ = choose_shot_cuts(counts)
    assert many >= few
    if min(counts) > 0:  # (a profile that rounds a class down to 0 images has too few distinct counts)
        assert min(_sizes(counts, many, few)) >= 1


def test_rounding_that_would_empty_a_group_is_not_taken():
    counts = [40, 12, 4, 1]  # thirds at 11.7 and 3.4: 1-2-5 rounding (10, 5) would leave medium empty
    assert _sizes(counts, 10, 5) == (2, 0, 2)
    assert log_third_cuts(counts) == (12, 3) and _sizes(counts, 12, 3) == (1, 2, 1)


def test_step_balanced_and_narrow_ranges():
    step = [5900] * 5 + [59] * 5
    many, few, _ = choose_shot_cuts(step)
    assert _sizes(step, many, few) == (5, 0, 5)  # a step profile has no medium classes
    assert _sizes([300] * 10, *choose_shot_cuts([300] * 10)[:2]) == (0, 10, 0)  # balanced: all medium
    # a range under ~5x: the 1-2-5 rounding would merge the cuts, so the integer thirds stand
    assert log_third_cuts([800, 700, 600, 500, 400]) == (635, 504)
    assert choose_shot_cuts([0, 10, 5])[:2] == log_third_cuts([10, 5])  # empty classes do not count
    with pytest.raises(ValueError, match="no class has training images"):
        log_third_cuts([0, 0])


def test_check_shot_cuts():
    assert check_shot_cuts((1000, 200)) == (1000, 200) and check_shot_cuts([5, 5]) == (5, 5)
    for bad, match in (
        ((20, 100), "many >= few >= 0"),
        ((100, -1), "many >= few"),
        ((100.5, 20), "integers"),
        (("a", 2), "two integers"),
        ((1, 2, 3), "two integers"),
        (None, "two integers"),
    ):
        with pytest.raises(ValueError, match=match):
            check_shot_cuts(bad)
