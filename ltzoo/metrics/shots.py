"""Many / medium / few-shot cut-offs chosen for the data when none are given.

A class is many-shot with more than ``many`` training images, few-shot with fewer than ``few``, and
medium-shot otherwise (``few..many``, both included). The literature's cuts, > 100 / 20-100 / < 20
(Liu et al., 2019, "Large-Scale Long-Tailed Recognition in an Open World", for ImageNet-LT and
Places-LT; used since for iNaturalist 2018 and CIFAR-100-LT), were made for sets whose classes run
from thousands of images down to a handful. Elsewhere they mislead: Fashion-MNIST-LT at rho = 100
(5900 down to 59 images) gets 8 / 2 / 0 classes and an empty few-shot column.

The rule (`choose_shot_cuts`), on the training counts:
1. the literature's 100 / 20 when each of the three groups they give holds at least a tenth of the
   classes (and at least one);
2. otherwise thirds of the log-count range: ``many`` at max^(2/3) min^(1/3) and ``few`` at
   max^(1/3) min^(2/3) (max, min: the largest and smallest non-zero class count), each rounded to
   the nearest number of the 1-2-5 series (..., 100, 200, 500, 1000, ...) in log scale, so a table
   reads "> 1000"; where that rounding would make ``few`` >= ``many`` (a range under about 5x) or
   empty a group the unrounded cuts fill, the unrounded cuts, rounded to integers. Fashion-MNIST-LT
   and CIFAR-10-LT get 1000 / 200 at rho = 100 (4 / 3 / 3 classes), 2000 / 500 at rho = 50
   (3 / 3 / 4) and 2000 / 1000 at rho = 10 (5 / 2 / 3). A step profile honestly gets no medium
   classes, and a balanced set only medium ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LITERATURE_SHOT_CUTS = (100, 20)
MIN_GROUP_SHARE = 0.1  # the literature's cuts stand while each group holds at least this share of the classes


def shot_group_sizes(train_counts: Sequence[int], many: int, few: int) -> tuple[int, int, int]:
    """How many classes are many-shot (> many), medium (few..many) and few-shot (< few)."""
    n_many = sum(n > many for n in train_counts)
    n_few = sum(n < few for n in train_counts)
    return n_many, len(train_counts) - n_many - n_few, n_few


def nearest_125(x: float) -> int:
    """The number of the 1-2-5 series (1, 2, 5, 10, 20, ...) nearest to ``x`` in log scale."""
    k = math.floor(math.log10(x))
    candidates = [m * 10**e for e in (k - 1, k, k + 1) for m in (1, 2, 5) if m * 10**e >= 1]
    return int(min(candidates, key=lambda c: (abs(math.log(c / x)), c)))


def log_third_cuts(train_counts: Sequence[int]) -> tuple[int, int]:
    """(many, few) at the thirds of the log-count range, rounded to the 1-2-5 series where that costs no group."""
    present = [n for n in train_counts if n > 0]
    if not present:
        raise ValueError("no class has training images; shot cut-offs need training counts")
    hi, lo = max(present), min(present)
    many, few = hi ** (2 / 3) * lo ** (1 / 3), hi ** (1 / 3) * lo ** (2 / 3)
    exact, nice = (round(many), round(few)), (nearest_125(many), nearest_125(few))
    filled = [
        a > 0 or b == 0 for a, b in zip(shot_group_sizes(train_counts, *nice), shot_group_sizes(train_counts, *exact))
    ]
    return nice if nice[0] > nice[1] and all(filled) else exact


def choose_shot_cuts(train_counts: Sequence[int]) -> tuple[int, int, str]:
    """The (many, few) cut-offs for these training counts, and the rule that chose them (see the module doc).

    Returns:
        ``(many, few, rule)``: many-shot is > many images, few-shot < few; ``rule`` says in words why.
    """
    counts = list(train_counts)
    lit_many, lit_few = LITERATURE_SHOT_CUTS
    sizes = shot_group_sizes(counts, lit_many, lit_few)
    least = max(1, math.ceil(MIN_GROUP_SHARE * len(counts)))
    if min(sizes) >= least:
        return lit_many, lit_few, f"literature (>{lit_many} / {lit_few}-{lit_many} / <{lit_few})"
    many, few = log_third_cuts(counts)
    why = "/".join(map(str, sizes))
    return (
        many,
        few,
        (
            f"thirds of the log-count range {min(n for n in counts if n > 0)}..{max(counts)} "
            f"(the literature's >{lit_many} / <{lit_few} would give {why} classes)"
        ),
    )


def check_shot_cuts(cuts: Sequence[int]) -> tuple[int, int]:
    """Validate a user's (many, few): integers with many >= few >= 0."""
    try:
        many, few = (int(c) for c in cuts)
    except (TypeError, ValueError):
        raise ValueError(f"shot cuts must be two integers (many, few), e.g. (100, 20); got {cuts!r}") from None
    if not many >= few >= 0 or [many, few] != list(cuts):
        raise ValueError(
            f"shot cuts (many={cuts[0]}, few={cuts[1]}) must be integers with many >= few >= 0: "
            "many-shot is > many training images, few-shot < few"
        )
    return many, few
