"""Small helpers shared by the losses: count validation, dtype promotion, target checks."""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

ClassCounts = Union[Sequence[int], Sequence[float], np.ndarray, torch.Tensor]


def as_class_counts(class_counts: ClassCounts | None, loss_name: str) -> torch.Tensor:
    """Validates per-class training counts and returns them as a float64 1-D tensor.

    Every loss that consumes counts takes log(n_c) or a power / exponent of n_c, so all entries
    must be strictly positive.

    Args:
        class_counts: number of training samples of each class, length C.
        loss_name: name of the calling loss, used in error messages.

    Returns:
        A float64 CPU tensor of shape (C,).

    Raises:
        ValueError: if the counts are missing, not 1-D, empty, non-finite or not all > 0.
    """
    if class_counts is None:
        raise ValueError(
            f"loss '{loss_name}' needs the per-class training counts: pass class_counts=[n_0, ..., n_(C-1)]"
        )
    if isinstance(class_counts, torch.Tensor):
        counts = class_counts.detach().to(device="cpu", dtype=torch.float64)
    else:
        counts = torch.as_tensor(np.asarray(class_counts, dtype=np.float64))
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(
            f"loss '{loss_name}': class_counts must be a non-empty 1-D sequence, "
            f"got shape {tuple(counts.shape)}"
        )
    if not torch.isfinite(counts).all():
        raise ValueError(f"loss '{loss_name}': class_counts must be finite, got {counts.tolist()}")
    bad = (counts <= 0).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"loss '{loss_name}' takes log / powers of the class counts, so every count must be > 0; "
            f"classes {bad[:10]}{'...' if len(bad) > 10 else ''} have count <= 0 "
            "(drop empty classes from the label space, or use 'ce' / 'focal')"
        )
    return counts


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """Promotes half / bfloat16 (mixed-precision) logits to float32; float64 is kept as is."""
    return logits if logits.dtype == torch.float64 else logits.float()


def check_logits(logits: torch.Tensor, num_classes: int | None, loss_name: str) -> None:
    """Checks that logits are (N, C) with the C the loss was built for.

    Raises:
        ValueError: on a shape mismatch.
    """
    if logits.ndim != 2:
        raise ValueError(f"loss '{loss_name}' expects logits of shape (N, C), got {tuple(logits.shape)}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"loss '{loss_name}' was built for {num_classes} classes (len(class_counts)) "
            f"but got logits with {logits.shape[1]} columns"
        )


def check_hard_target(target: torch.Tensor, logits: torch.Tensor, loss_name: str) -> None:
    """Checks that target holds (N,) integer class indices matching the logits' batch size.

    Raises:
        ValueError: on soft / one-hot targets or a batch size mismatch.
    """
    if target.is_floating_point() or target.ndim != 1:
        raise ValueError(
            f"loss '{loss_name}' expects integer class indices of shape (N,), got dtype {target.dtype} "
            f"shape {tuple(target.shape)}; soft (mixup / cutmix) targets are supported by "
            "'ce', 'bsce' and 'la'"
        )
    if target.shape[0] != logits.shape[0]:
        raise ValueError(f"loss '{loss_name}': {logits.shape[0]} logits rows but {target.shape[0]} targets")


def check_target(target: torch.Tensor, logits: torch.Tensor, loss_name: str) -> None:
    """Checks a target that may be hard (N,) integer indices or soft (N, C) probabilities.

    Raises:
        ValueError: on a shape mismatch.
    """
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(
                f"loss '{loss_name}': soft targets must have the logits' shape {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}"
            )
        return
    check_hard_target(target, logits, loss_name)
