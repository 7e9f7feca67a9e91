"""Long-tailed class-count profiles and the seeded subsampling that applies them.

The exponential profile is the standard construction of CIFAR-LT (Cui et al., 2019, "Class-Balanced
Loss Based on Effective Number of Samples"; Cao et al., 2019, LDAM): with C classes, the largest
class keeping n_max images and imbalance ratio rho = n_max / n_min,

    n_c = int(n_max * rho ** (-c / (C - 1)))        for c = 0 .. C-1.

The step profile (Buda et al., 2018) keeps n_max images in the first half of the classes and
n_max / rho in the rest.
"""
from __future__ import annotations

from typing import Sequence

import torch

PROFILES = ("exp", "step")


def longtail_counts(n_max: int, num_classes: int, imbalance: float, profile: str = "exp") -> list[int]:
    """Per-class image counts of a long-tailed profile.

    Args:
        n_max: images kept in the largest (first) class.
        num_classes: number of classes C.
        imbalance: ratio rho = largest / smallest class (>= 1).
        profile: 'exp' (exponential decay) or 'step' (half the classes at n_max, half at n_max/rho).

    Returns:
        A list of C counts, non-increasing.
    """
    if num_classes < 1 or n_max < 1:
        raise ValueError(
            f"need at least one class and one image in the largest class, got {num_classes} classes, n_max={n_max}"
        )
    if imbalance < 1:
        raise ValueError(f"imbalance ratio must be >= 1 (largest / smallest class), got {imbalance}")
    if profile == "exp":
        if num_classes == 1:
            return [n_max]
        return [int(n_max * imbalance ** (-c / (num_classes - 1))) for c in range(num_classes)]
    if profile == "step":
        n_head = num_classes // 2
        return [n_max] * n_head + [int(n_max / imbalance)] * (num_classes - n_head)
    raise ValueError(f"unknown long-tail profile {profile!r}; choose one of {PROFILES}")


def class_indices(labels: torch.Tensor, num_classes: int) -> list[torch.Tensor]:
    """The indices of each class's samples, in dataset order."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    return list(torch.split(order, counts))


def subsample_longtail(
    labels: torch.Tensor, counts: Sequence[int], seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose, per class, a seeded random subset of the given size.

    Args:
        labels: int64 labels of the full (balanced) training set.
        counts: how many images to keep of each class.
        seed: seed of the `torch.Generator` that picks the images.

    Returns:
        ``(kept, left_out)``: sorted index tensors into ``labels``.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(counts)):
        raise ValueError(
            f"labels lie in [{int(labels.min())}, {int(labels.max())}] but counts cover {len(counts)} classes"
        )
    gen = torch.Generator().manual_seed(seed)
    kept, left = [], []
    for c, idx in enumerate(class_indices(labels, len(counts))):
        if counts[c] < 0:
            raise ValueError(f"class {c}: a negative count ({counts[c]}) cannot be kept")
        if counts[c] > len(idx):
            raise ValueError(
                f"class {c} has {len(idx)} images but the profile asks for {counts[c]}; "
                "lower the largest-class count or use a smaller imbalance ratio"
            )
        perm = idx[torch.randperm(len(idx), generator=gen)]
        kept.append(perm[: counts[c]])
        left.append(perm[counts[c]:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(left)).values
