"""Long-tailed class-count profiles and the seeded subsampling that applies them.

The exponential profile is the standard construction of CIFAR-LT (Cui et al., 2019, "Class-Balanced
Loss Based on Effective Number of Samples"; Cao et al., 2019, LDAM): with C classes, the largest
class keeping n_max images and imbalance ratio rho = n_max / n_min,

    n_c = int(n_max * rho ** (-c / (C - 1)))        for c = 0 .. C-1.

The step profile (Buda et al., 2018) keeps n_max images in the head classes and n_max / rho in the rest. The head
is the first half of the classes (``step``), or a share eta of them (``step:ETA``, 0 < eta < 1: the head-tail ratio
of LT-Soups, Aminbeidokhti et al. 2025; eta 0.1 is tail-heavy, 0.9 head-heavy), rounded, at least one class on
each side.

Which class gets which count is the class order (`resolve_class_order`): by default the dataset's own
(class 0 the most images), else reversed, a seeded random permutation, a named order of
`NAMED_CLASS_ORDERS`, or an explicit list. The order only moves counts between classes; labels and
class names stay the dataset's own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PROFILES = ("exp", "step")

# Named class orders, from the class that keeps the most images to the one that keeps the fewest. A name
# applies to every dataset whose classes are exactly the listed ones (fmnist_lt and fmnist_ctx_lt share
# Fashion-MNIST's ten). Each was derived on validation data by the benchmark script its comment names.
NAMED_CLASS_ORDERS: dict[str, tuple[tuple[str, ...], ...]] = {
    # Fashion-MNIST's hard tail (benchmarks/hard_tail_order.py, results in benchmarks/results/
    # hard_tail_order.md): classes by a balanced ResNet-20's recall on fmnist_lt's validation splits
    # (seeds 0-2; 97.6% for Trouser down to 55.7% for Shirt), best first, so the classes a balanced
    # model recalls worst get the fewest images.
    "hard_tail": (
        ("Trouser", "Bag", "Ankle boot", "Sandal", "Sneaker", "Dress", "T-shirt/top", "Coat", "Pullover", "Shirt"),
    ),
}


def parse_profile(profile: str) -> tuple[str, float | None]:
    """A profile's kind and, for ``step:ETA``, its head share eta (``step`` alone: None, half the classes).

    Raises:
        ValueError: an unknown profile, or an eta outside (0, 1).
    """
    kind, _, eta = str(profile).partition(":")
    if kind not in PROFILES or (eta and kind != "step"):
        raise ValueError(f"unknown long-tail profile {profile!r}; choose exp, step or step:ETA (0 < ETA < 1)")
    if not eta:
        return kind, None
    try:
        share = float(eta)
    except ValueError:
        share = -1.0
    if not 0 < share < 1:
        raise ValueError(f"profile {profile!r}: the head share ETA of step:ETA is a number between 0 and 1, exclusive")
    return kind, share


def head_classes(num_classes: int, eta: float | None) -> int:
    """The step profile's number of head classes: half (eta None), or round(eta * C), at least 1 and at most C - 1."""
    if eta is None:
        return num_classes // 2
    return min(num_classes - 1, max(1, round(eta * num_classes)))


def longtail_counts(n_max: int, num_classes: int, imbalance: float, profile: str = "exp") -> list[int]:
    """Per-class image counts of a long-tailed profile.

    Args:
        n_max: images kept in the largest (first) class.
        num_classes: number of classes C.
        imbalance: ratio rho = largest / smallest class (>= 1).
        profile: 'exp' (exponential decay), 'step' (half the classes at n_max, half at n_max/rho) or 'step:ETA'
            (a share ETA of the classes at n_max).

    Returns:
        A list of C counts, non-increasing.
    """
    if num_classes < 1 or n_max < 1:
        raise ValueError(
            f"need at least one class and one image in the largest class, got {num_classes} classes, n_max={n_max}"
        )
    if imbalance < 1:
        raise ValueError(f"imbalance ratio must be >= 1 (largest / smallest class), got {imbalance}")
    kind, eta = parse_profile(profile)
    if kind == "exp":
        if num_classes == 1:
            return [n_max]
        return [int(n_max * imbalance ** (-c / (num_classes - 1))) for c in range(num_classes)]
    n_head = head_classes(num_classes, eta) if num_classes > 1 else 1
    return [n_max] * n_head + [int(n_max / imbalance)] * (num_classes - n_head)


def data_regime(counts: Sequence[int]) -> tuple[float, float]:
    """The imbalance ratio rho and the head-tail ratio eta of a training set's class counts: rho = the largest count
    over the smallest, eta = the share of classes at or above the geometric middle of the two (sqrt(n_max * n_min)).
    A step profile's eta is its head share; an exponential profile's is about one half.

    Raises:
        ValueError: no classes, or a class without images.
    """
    counts = [int(c) for c in counts]
    if not counts or min(counts) < 1:
        raise ValueError(f"class counts need at least one class and one image in each, got {counts[:20]}")
    hi, lo = max(counts), min(counts)
    middle = (hi * lo) ** 0.5
    return hi / lo, sum(c >= middle for c in counts) / len(counts)


def class_indices(labels: torch.Tensor, num_classes: int) -> list[torch.Tensor]:
    """The indices of each class's samples, in dataset order."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    return list(torch.split(order, counts))


def subsample_longtail(
    labels: torch.Tensor, counts: Sequence[int], seed: int = 0, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose, per class, a seeded random subset of the given size.

    Each class's images are shuffled by one `torch.Generator` (the same permutation whatever the counts
    are) and the first ``counts[c]`` are kept, so a class given more images keeps a superset.

    Args:
        labels: int64 labels of the full (balanced) training set.
        counts: how many images to keep of each class.
        seed: seed of the `torch.Generator` that picks the images.
        exclude: indices never kept (nor returned as left out), e.g. a validation split already drawn;
            the permutation skips them.

    Returns:
        ``(kept, left_out)``: sorted index tensors into ``labels``.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(counts)):
        raise ValueError(
            f"labels lie in [{int(labels.min())}, {int(labels.max())}] but counts cover {len(counts)} classes"
        )
    gen = torch.Generator().manual_seed(seed)
    barred = torch.zeros(len(labels), dtype=torch.bool)
    if exclude is not None:
        barred[torch.as_tensor(exclude, dtype=torch.long)] = True
    kept, left = [], []
    for c, idx in enumerate(class_indices(labels, len(counts))):
        if counts[c] < 0:
            raise ValueError(f"class {c}: a negative count ({counts[c]}) cannot be kept")
        perm = idx[torch.randperm(len(idx), generator=gen)]
        perm = perm[~barred[perm]]
        if counts[c] > len(perm):
            raise ValueError(
                f"class {c} has {len(perm)} images{' outside the excluded ones' if exclude is not None else ''} "
                f"but the profile asks for {counts[c]}; lower the largest-class count or use a smaller imbalance ratio"
            )
        kept.append(perm[: counts[c]])
        left.append(perm[counts[c] :])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(left)).values


def resolve_class_order(order: str | Sequence[str | int] | None, class_names: Sequence[str]) -> tuple[list[int], str]:
    """The classes from the one that keeps the most images to the one that keeps the fewest.

    Args:
        order: None or 'own' (the dataset's order: class 0 first), 'reverse', 'random:<seed>' (a
            permutation drawn by a seeded `torch.Generator`), a name of `NAMED_CLASS_ORDERS`, or an
            explicit list of every class once, by name or by index; a string with commas is such a list
            ('Bag,Trouser,...'). Entries are read as class names when all of them are names, else as
            indices.
        class_names: the dataset's class names, in label order.

    Returns:
        ``(ranked, label)``: class indices, most images first, and a short name of the order for
        results ('own', 'reverse', 'random:3', 'hard_tail' or 'explicit').
    """
    n = len(class_names)
    if order is None or order == "own":
        return list(range(n)), "own"
    if isinstance(order, str) and "," not in order:
        if order == "reverse":
            return list(range(n))[::-1], "reverse"
        if order.startswith("random:"):
            seed = order[len("random:") :]
            if not seed.lstrip("-").isdigit():
                raise ValueError(f"class order {order!r}: 'random:<seed>' needs an integer seed, e.g. random:0")
            return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist(), order
        if order in NAMED_CLASS_ORDERS:
            for names in NAMED_CLASS_ORDERS[order]:
                if sorted(names) == sorted(class_names):
                    return [list(class_names).index(c) for c in names], order
            known = " / ".join(", ".join(names[:3]) + ", ..." for names in NAMED_CLASS_ORDERS[order])
            raise ValueError(
                f"the named class order {order!r} is defined for the classes {known}, not for this "
                f"dataset's ({', '.join(class_names[:3])}, ...); give an explicit order instead"
            )
        raise ValueError(
            f"unknown class order {order!r}; choose 'own', 'reverse', 'random:<seed>', one of "
            f"{sorted(NAMED_CLASS_ORDERS)} or a comma-separated list of all {n} classes, most images first"
        )
    entries = [e.strip() for e in order.split(",")] if isinstance(order, str) else list(order)
    return _explicit_order(entries, class_names), "explicit"


def _explicit_order(entries: list, class_names: Sequence[str]) -> list[int]:
    names = list(class_names)
    if all(isinstance(e, str) and e in names for e in entries):
        ranked = [names.index(e) for e in entries]
    elif all(isinstance(e, int) or (isinstance(e, str) and e.isdigit()) for e in entries):
        ranked = [int(e) for e in entries]
    else:
        unknown = [e for e in entries if not (isinstance(e, str) and e in names)]
        raise ValueError(
            f"class order: {unknown[:5]} are not class names (classes: {names[:20]}"
            f"{' ...' if len(names) > 20 else ''}); give names or indices 0..{len(names) - 1}"
        )
    missing = [names[c] for c in range(len(names)) if c not in ranked]
    dup = sorted({names[c] if 0 <= c < len(names) else c for c in ranked if ranked.count(c) > 1}, key=str)
    outside = [c for c in ranked if not 0 <= c < len(names)]
    if missing or dup or outside:
        problems = [
            f"{what} {items}"
            for what, items in (("missing", missing), ("duplicated", dup), ("out of range", outside))
            if items
        ]
        raise ValueError(
            f"class order must list each of the {len(names)} classes once, most images first: {'; '.join(problems)}"
        )
    return ranked


def counts_in_class_order(ranked_counts: Sequence[int], ranked: Sequence[int]) -> list[int]:
    """Per-class counts (in label order) when the class ``ranked[r]`` gets ``ranked_counts[r]`` images."""
    if sorted(ranked) != list(range(len(ranked_counts))):
        raise ValueError(f"{list(ranked)} is not a permutation of the {len(ranked_counts)} classes")
    counts = [0] * len(ranked_counts)
    for r, c in enumerate(ranked):
        counts[c] = ranked_counts[r]
    return counts
