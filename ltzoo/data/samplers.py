"""Samplers for long-tailed training and the balanced subset draw of BTM.

Class-aware sampling draws a class c with probability p_c proportional to n_c ** q, then an image of
that class uniformly: q = 1 is instance-balanced sampling in expectation, q = 1/2 square-root
sampling (Mahajan et al., 2018), q = 0 class-balanced sampling (Shen et al., 2016). Progressive
sampling (Kang et al., 2020, "Decoupling Representation and Classifier") interpolates
p_c(t) = (1 - t/T) * n_c / N + (t/T) / C over the T training epochs.

Every sampler takes an explicit seed and draws through torch's own samplers (`RandomSampler`,
`WeightedRandomSampler`) with a `torch.Generator` seeded by (seed, epoch), so all processes of a
distributed run produce the same order and accelerate shards it between them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import RandomSampler, Sampler, WeightedRandomSampler

from ltzoo.data.profiles import class_indices

SAMPLERS = ("instance", "balanced", "sqrt", "progressive")


class _EpochSampler(Sampler[int]):
    """Base: a seeded sampler whose order depends only on (seed, epoch).

    Each epoch's draw is one of torch's samplers (`epoch_sampler`) driven by a `torch.Generator`
    seeded with (seed, epoch), so every process of a distributed run draws the same order and
    accelerate's sharding hands each process its part of it.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, seed: int = 0, num_samples: int | None = None):
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.num_classes = num_classes
        self.seed = seed
        self.epoch = 0
        self.num_samples = num_samples or len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order `__iter__` yields (called by the training loop)."""
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_sampler()) if len(self.labels) else iter(())

    def indices(self) -> torch.Tensor:
        """This epoch's draw as an int64 tensor of image indices."""
        return torch.tensor(list(self), dtype=torch.long)

    def epoch_sampler(self) -> Sampler[int]:
        """The torch sampler that draws this epoch, with a freshly seeded generator."""
        raise NotImplementedError


class InstanceSampler(_EpochSampler):
    """Every image once per epoch, in a seeded random order (plain shuffling).

    More samples than images chain several permutations (`RandomSampler` without replacement).
    """

    def epoch_sampler(self) -> RandomSampler:
        return RandomSampler(range(len(self.labels)), num_samples=self.num_samples, generator=self._generator())


class ClassAwareSampler(_EpochSampler):
    """Draw a class with probability proportional to n_c ** q, then one of its images uniformly.

    The two-step draw is one `WeightedRandomSampler` draw (with replacement) over the images, image i
    of class c weighing p_c / n_c.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, q: float = 0.0, **kwargs):
        super().__init__(labels, num_classes, **kwargs)
        self.q = q
        self.counts = torch.bincount(self.labels, minlength=num_classes).double()

    def class_probs(self) -> torch.Tensor:
        """The class distribution of this epoch's draw (classes without images get zero)."""
        present = self.counts > 0
        w = torch.where(present, self.counts.clamp(min=1) ** self.q, torch.zeros_like(self.counts))
        return w / w.sum()

    def image_weights(self) -> torch.Tensor:
        """Per-image draw probabilities p_c / n_c of this epoch (they sum to 1)."""
        return (self.class_probs() / self.counts.clamp(min=1))[self.labels]

    def epoch_sampler(self) -> WeightedRandomSampler:
        return WeightedRandomSampler(
            self.image_weights(), self.num_samples, replacement=True, generator=self._generator()
        )


class ProgressiveSampler(ClassAwareSampler):
    """Class-aware sampling moving linearly from instance-balanced to class-balanced over training."""

    def __init__(self, labels: torch.Tensor, num_classes: int, total_epochs: int, **kwargs):
        super().__init__(labels, num_classes, q=1.0, **kwargs)
        self.total_epochs = max(total_epochs, 1)

    def class_probs(self) -> torch.Tensor:
        t = min(self.epoch / max(self.total_epochs - 1, 1), 1.0)
        instance = self.counts / self.counts.sum()
        balanced = (self.counts > 0).double() / (self.counts > 0).sum()
        return (1 - t) * instance + t * balanced


def create_sampler(
    name: str, labels: torch.Tensor, num_classes: int, seed: int = 0, total_epochs: int = 1
) -> _EpochSampler:
    """Build a training sampler by name: 'instance', 'balanced', 'sqrt' or 'progressive'."""
    kw = dict(seed=seed)
    if name == "instance":
        return InstanceSampler(labels, num_classes, **kw)
    if name == "balanced":
        return ClassAwareSampler(labels, num_classes, q=0.0, **kw)
    if name == "sqrt":
        return ClassAwareSampler(labels, num_classes, q=0.5, **kw)
    if name == "progressive":
        return ProgressiveSampler(labels, num_classes, total_epochs=total_epochs, **kw)
    raise ValueError(f"unknown sampler {name!r}; choose one of {SAMPLERS}")


def balanced_subsets(
    labels: torch.Tensor,
    num_classes: int,
    shots: int,
    num_subsets: int,
    seed: int = 0,
    disjoint: bool = False,
    allow_fewer: bool = False,
) -> list[torch.Tensor]:
    """Draw M class-balanced subsets of K images per class (BTM's undersampled training sets).

    Args:
        labels: int64 labels of the (long-tailed) training set.
        num_classes: number of classes C.
        shots: K, images per class in each subset.
        num_subsets: M, how many subsets to draw.
        seed: seed of the `torch.Generator`; the same seed gives the same subsets in every process.
        disjoint: if True, no image appears in two subsets (needs M * K images in every class).
        allow_fewer: if True, a class with too few images contributes all it has (re-used across
            subsets when disjoint); otherwise that is an error.

    Returns:
        M sorted index tensors into ``labels``.
    """
    need = shots * num_subsets if disjoint else shots
    by_class = class_indices(torch.as_tensor(labels, dtype=torch.long), num_classes)
    short = [(c, len(i)) for c, i in enumerate(by_class) if len(i) < need]
    if short and not allow_fewer:
        listed = ", ".join(f"class {c}: {n}" for c, n in short[:10])
        raise ValueError(
            f"{len(short)} classes have fewer than the {need} images a "
            f"{'disjoint ' if disjoint else ''}draw of {num_subsets} x {shots} shots needs ({listed}); "
            f"lower --shots{', drop --disjoint' if disjoint else ''}, or pass allow_fewer / --allow-fewer to take "
            "all the images those classes have"
        )
    gen = torch.Generator().manual_seed(seed)
    subsets: list[list[torch.Tensor]] = [[] for _ in range(num_subsets)]
    for idx in by_class:
        if disjoint and len(idx) >= need:
            perm = idx[torch.randperm(len(idx), generator=gen)]
            chunks = [perm[m * shots : (m + 1) * shots] for m in range(num_subsets)]
        else:  # independent draws (or a short class re-used across disjoint subsets)
            chunks = [idx[torch.randperm(len(idx), generator=gen)][:shots] for _ in range(num_subsets)]
        for m, chunk in enumerate(chunks):
            subsets[m].append(chunk)
    return [torch.sort(torch.cat(s)).values for s in subsets]


def imbalanced_subsets(
    labels: torch.Tensor, num_classes: int, shots: int, ratios: Sequence[float], seed: int = 0
) -> list[torch.Tensor]:
    """LT-Soups' subsets: one per imbalance ratio r in ``ratios``, each class keeping a seeded random draw of
    min(n_c, round(r * ``shots``)) of its images: r = 1 is a balanced subset of ``shots`` per class (BTM's), a large r
    the training set itself (its head classes capped at r * shots).

    Returns:
        one sorted index tensor into ``labels`` per ratio.
    """
    by_class = class_indices(torch.as_tensor(labels, dtype=torch.long), num_classes)
    gen = torch.Generator().manual_seed(seed)
    subsets = []
    for r in ratios:
        cap = max(1, round(r * shots))
        subsets.append(
            torch.sort(torch.cat([idx[torch.randperm(len(idx), generator=gen)][:cap] for idx in by_class])).values
        )
    return subsets


def per_class_counts(labels: torch.Tensor | Sequence[int], num_classes: int) -> list[int]:
    """Images per class."""
    return torch.bincount(torch.as_tensor(labels, dtype=torch.long), minlength=num_classes).tolist()
