"""CIFAR-10/100-LT as the literature builds it: Cao et al.'s construction, the same counts and the same images.

Cao, Wei, Gaidon, Arechiga and Ma, 2019, "Learning Imbalanced Datasets with Label-Distribution-Aware
Margin Loss" (LDAM-DRW, NeurIPS 2019), built CIFAR-LT in ``imbalance_cifar.py`` of kaidic/LDAM-DRW;
MiSLAS (Zhong et al., CVPR 2021), RIDE and many later CIFAR-LT repositories carry copies of that file. With
C classes of n images each (``img_max = n``), imbalance factor ``1 / rho`` and classes taken in label
order, class c keeps

    int(img_max * (1 / rho) ** (c / (C - 1.0)))          (profile 'exp'; 'step': img_max, then int(img_max / rho))

images: NumPy's global generator is seeded once (``rand_number``, 0 in every published run), then for
each class in turn the indices of its images, in dataset order, are shuffled in place by that generator
and the first ``n_c`` are kept. A legacy ``np.random.RandomState(seed)`` draws exactly what
``np.random.seed(seed)`` then ``np.random.shuffle`` draw, without touching the global generator; that
is why this module, unlike ltzoo's other subset draws (a ``torch.Generator``), uses one: any other
generator picks other images. `benchmarks/check_cifar_lt.py` checks the picks against a straight
reimplementation of the reference on a generated CIFAR folder.

The construction keeps every image of the head class (class 0 keeps all ``img_max``), so no
validation split can be balanced over all classes without taking images from the training or the test
set. `validation_from_leftovers` draws one from the images the construction left out: the same number of
images from every class that has any left (bounded by the smallest such leftover), none of the classes
that keep all theirs; those classes are absent from validation (their recall is not measured there,
`ltzoo.metrics.longtail_metrics` reports them as ``absent_classes``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ltzoo.data.profiles import class_indices, head_classes, parse_profile

_logger = logging.getLogger(__name__)

#: the reference's ``rand_number``: the seed of every published CIFAR-LT split built by this construction
REFERENCE_SEED = 0


def cao2019_counts(img_max: int, num_classes: int, imbalance: float, profile: str = "exp") -> list[int]:
    """Images kept per class, computed as the reference computes them (its float expression, truncated).

    Args:
        img_max: images per class of the balanced training set (5000 for CIFAR-10, 500 for CIFAR-100).
        num_classes: C.
        imbalance: rho = largest / smallest class; the reference's ``imb_factor`` is ``1 / rho``.
        profile: 'exp' or 'step'.

    Returns:
        C counts, class 0 first.
    """
    kind, eta = parse_profile(profile)
    if imbalance < 1 or num_classes < 2:
        raise ValueError(
            f"cao2019 needs an imbalance ratio >= 1 and at least 2 classes, got rho={imbalance}, {num_classes} classes"
        )
    imb_factor = 1.0 / imbalance
    if kind == "step":
        head = head_classes(num_classes, eta)
        return [int(img_max)] * head + [int(img_max * imb_factor)] * (num_classes - head)
    return [int(img_max * (imb_factor ** (c / (num_classes - 1.0)))) for c in range(num_classes)]


def cao2019_select(
    labels: torch.Tensor | np.ndarray, counts: Sequence[int], seed: int = REFERENCE_SEED
) -> list[np.ndarray]:
    """The indices each class keeps, in the reference's order: class by class, each class's shuffled prefix.

    Args:
        labels: labels of the balanced training set, in the order of its files (CIFAR's batches).
        counts: images to keep per class (`cao2019_counts`).
        seed: the reference's ``rand_number``.

    Returns:
        One int64 array per class: ``concatenate`` of them indexes the long-tailed training set exactly
        as the reference's ``data[selec_idx]`` stacks it.
    """
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    if len(present) != len(counts) or not np.array_equal(present, np.arange(len(counts))):
        raise ValueError(
            f"cao2019 needs every one of the {len(counts)} classes in the training labels, found "
            f"{len(present)} distinct labels"
        )
    rng = np.random.RandomState(seed)  # the legacy generator: np.random.seed(seed) + np.random.shuffle
    picked = []
    for c, n in enumerate(counts):
        idx = np.where(labels == c)[0]
        rng.shuffle(idx)
        if n > len(idx):
            raise ValueError(f"class {c} has {len(idx)} training images but cao2019 keeps {n}")
        picked.append(idx[:n])
    return picked


def validation_from_leftovers(
    labels: torch.Tensor, kept: torch.Tensor, num_classes: int, per_class: int, seed: int = REFERENCE_SEED
) -> tuple[torch.Tensor, list[int], int]:
    """A validation split from the training images the construction did not keep.

    Every class with images left over gives the same number, ``min(per_class, smallest leftover)``, drawn
    by a seeded ``torch.Generator``; a class that kept all its images gives none.

    Args:
        labels: labels of the full (balanced) training set.
        kept: indices the long-tailed training set keeps.
        num_classes: C.
        per_class: the images per class asked for (``--val-per-class``).
        seed: seed of the draw.

    Returns:
        ``(indices, absent, k)``: sorted indices into ``labels``, the classes without validation images,
        and the images per class drawn (0 and no indices when no class has any left).
    """
    left = torch.ones(len(labels), dtype=torch.bool)
    left[torch.as_tensor(kept, dtype=torch.long)] = False
    gen = torch.Generator().manual_seed(seed)
    by_class = [i[left[i]] for i in class_indices(torch.as_tensor(labels), num_classes)]
    absent = [c for c, i in enumerate(by_class) if len(i) == 0]
    sizes = [len(i) for i in by_class if len(i)]
    k = min([per_class, *sizes]) if sizes else 0
    if 0 < k < per_class:
        _logger.warning(
            "cao2019: the smallest leftover is %d images, so validation takes %d per class, not %d", k, k, per_class
        )
    picks = [i[torch.randperm(len(i), generator=gen)[:k]] for i in by_class if len(i)]
    index = torch.sort(torch.cat(picks)).values if k else torch.zeros(0, dtype=torch.long)
    return index, absent, k
