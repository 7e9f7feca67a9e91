"""The containers every dataset loader returns: a `Split` of images and labels, and an `LTDataset`.

A split holds its images in one of three ways:
- ``images``: a uint8 tensor (N, C, H, W) in memory, the fast path for small datasets
  (Fashion-MNIST, CIFAR): augmentation then runs on batches of tensors, no per-image PIL work;
- ``files``: image file paths, decoded with PIL and timm's transforms (ImageNet-LT, Places-LT, ...);
- ``hf``: a Hugging Face `datasets.Dataset` with an image column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch


@dataclass
class Split:
    """One split (train, val or test) of a dataset."""

    name: str
    labels: torch.Tensor
    images: torch.Tensor | None = None
    files: Sequence[str] | None = None
    hf: Any = None
    hf_image_key: str = "image"
    source: str = ""

    def __post_init__(self) -> None:
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        sources = [x for x in (self.images, self.files, self.hf) if x is not None]
        if len(sources) != 1 or len(sources[0]) != len(self.labels):
            raise ValueError(f"split {self.name!r}: exactly one image source with {len(self.labels)} items needed")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        """True when the images are a uint8 tensor in memory (the fast path)."""
        return self.images is not None

    def subset(self, index: torch.Tensor, name: str | None = None, source: str | None = None) -> Split:
        """The split restricted to ``index`` (a tensor of positions)."""
        index = torch.as_tensor(index, dtype=torch.long)
        pos = index.tolist()
        return replace(
            self,
            name=name or self.name,
            labels=self.labels[index],
            images=None if self.images is None else self.images[index],
            files=None if self.files is None else [self.files[i] for i in pos],
            hf=None if self.hf is None else self.hf.select(pos),
            source=source if source is not None else self.source,
        )

    def counts(self, num_classes: int) -> list[int]:
        """Images per class."""
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class LTDataset:
    """A long-tailed benchmark: train / val / test splits and what a model needs to know about them."""

    name: str
    class_names: list[str]
    train: Split
    val: Split | None
    test: Split
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_chans(self) -> int:
        return self.input_size[0]

    @property
    def train_counts(self) -> list[int]:
        return self.train.counts(self.num_classes)

    def check_labels(self) -> None:
        """Raise a clear error if any split has a label outside [0, num_classes)."""
        for split in (self.train, self.val, self.test):
            check_split_labels(self.name, split, self.num_classes)

    @property
    def shot_thresholds(self) -> tuple[int, int]:
        """(many, few): many-shot classes have more than ``many`` training images, few-shot fewer than ``few``."""
        t = self.info.get("shot_thresholds", {})
        return t.get("many", 100), t.get("few", 20)

    def summary(self) -> dict:
        """Class counts and the many/medium/few split of the training set, as a JSON-able dict."""
        counts = self.train_counts
        many, few = self.shot_thresholds
        groups = shot_groups(counts, many, few)
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "input_size": list(self.input_size),
            "train_images": len(self.train),
            "val_images": 0 if self.val is None else len(self.val),
            "test_images": len(self.test),
            "imbalance_ratio": max(counts) / max(min(counts), 1),
            "class_counts": counts,
            "many_medium_few": {k: len(v) for k, v in groups.items()},
            "val_source": None if self.val is None else self.val.source,
            **self.info,
            "shot_thresholds": {"many": f">{many}", "medium": f"{few}..{many}", "few": f"<{few}"},
        }


def check_split_labels(dataset: str, split: Split | None, num_classes: int) -> None:
    """Raise a clear error if ``split`` has a label outside [0, num_classes) (None or empty: nothing to check)."""
    if split is None or len(split) == 0:
        return
    lo, hi = int(split.labels.min()), int(split.labels.max())
    if lo < 0 or hi >= num_classes:
        where = f" ({split.source})" if split.source else ""
        raise ValueError(
            f"{dataset}: the {split.name} split{where} has labels in [{lo}, {hi}] but the dataset has "
            f"{num_classes} classes (labels must be 0..{num_classes - 1}); check the split lists or the class list"
        )


def shot_groups(train_counts: Sequence[int], many: int = 100, few: int = 20) -> dict[str, list[int]]:
    """Class ids by shot group: many (> many images), medium (few..many), few (< few)."""
    groups: dict[str, list[int]] = {"many": [], "medium": [], "few": []}
    for c, n in enumerate(train_counts):
        groups["many" if n > many else "few" if n < few else "medium"].append(c)
    return groups
