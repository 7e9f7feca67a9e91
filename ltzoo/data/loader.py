"""Batch pipelines: torch datasets over splits, data loaders, and augmentation on batches of tensors.

Small datasets (a split with ``images`` in memory) take the fast path: the loader hands out whole
uint8 batches by tensor indexing (``__getitems__``, no per-image Python), and `BatchPreprocess` turns
them into normalised float batches on the device, with random-crop and flip augmentation applied to
the batch tensor. Large datasets are decoded with PIL and timm's transforms in loader workers
(`ltzoo.data.decode.FileImageTransform`: JPEGs at the smallest scale the crop allows); their batches arrive as
augmented uint8 and `BatchPreprocess` normalises them on the device (float batches, from a plain timm transform,
keep their values). Either way
`BatchPreprocess` hands the model its batches in the model's memory format (channels_last or not,
`ltzoo.training.accelerator.resolve_channels_last`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ltzoo.data.decode import DeviceCrops, FileImageTransform, collate_crops
from ltzoo.data.splits import Split

_logger = logging.getLogger(__name__)


class TensorImageDataset(Dataset):
    """Images held as one uint8 tensor (N, C, H, W); fetches whole batches by indexing."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx], self.labels[idx]


def _batch_as_is(batch: Any) -> Any:
    """collate_fn of the tensor path: `__getitems__` already returns the batch."""
    return batch


class DecodedImageDataset(Dataset):
    """Images decoded from files or a `datasets.Dataset` column, through a (timm) transform."""

    def __init__(self, split: Split, transform: Callable):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def _image(self, i: int):
        """Image ``i`` decoded to RGB and transformed; a `FileImageTransform` gets the opened file, to decode it
        at the scale its crop allows."""
        from PIL import Image, UnidentifiedImageError

        if self.split.hf is not None:
            return self.transform(self.split.hf[i][self.split.hf_image_key].convert("RGB"))
        path = self.split.files[i]
        try:
            with Image.open(path) as img:
                return self.transform(img if isinstance(self.transform, FileImageTransform) else img.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise RuntimeError(
                f"cannot read image {path} ({exc}); remove it from the split list or replace the file"
            ) from exc

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._image(i), int(self.split.labels[i])


def cores_per_process() -> int:
    """The cores this process may use (its affinity), shared among the processes of this machine
    (``LOCAL_WORLD_SIZE``, which ``accelerate launch`` sets)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def make_loader(
    split: Split,
    batch_size: int,
    sampler: Sampler | None = None,
    transform: Callable | None = None,
    num_workers: int = 4,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over a split: the tensor fast path when its images are in memory.

    Args:
        split: the split to load.
        batch_size: images per batch (per process once accelerate has prepared the loader).
        sampler: the order to visit images in (None: dataset order, for evaluation).
        transform: a PIL-to-tensor transform for file-backed splits (timm's `create_transform`).
        num_workers: loader workers for file-backed splits (the tensor path needs none), at most
            `cores_per_process()`: a worker beyond the cores only takes turns with the others.
        drop_last: drop a last incomplete batch (training).
    """
    if split.in_memory:
        return DataLoader(
            TensorImageDataset(split.images, split.labels),
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=_batch_as_is,
            drop_last=drop_last,
        )
    if transform is None:
        raise ValueError(f"split {split.name!r} is read from files and needs a transform")
    cores = cores_per_process()
    if num_workers > cores:
        _logger.info("%d loader workers asked, %d cores per process: %d workers", num_workers, cores, cores)
        num_workers = cores
    on_device = getattr(transform, "on_device", False)  # workers decode and crop, the device does the rest
    return DataLoader(
        DecodedImageDataset(split, transform),
        collate_fn=collate_crops if on_device else None,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


class BatchPreprocess(nn.Module):
    """uint8 batches to normalised floats on the device, with random crop and flip when training.

    Float batches (already transformed by timm's pipeline) keep their values.

    Args:
        mean, std: per-channel normalisation, in [0, 1] pixel units.
        crop_padding: pixels of zero padding around the image before a random crop back to its size
            (translation by up to this many pixels); 0 disables it.
        flip: random horizontal flips.
        channels_last: return 4-d batches in channels_last memory format (for a model converted with
            `ltzoo.training.accelerator.to_channels_last`); the values are the same either way.
        size: ``(height, width)`` the uint8 batches are resized to after augmentation (a pretrained
            model's input size); None keeps their size.
        channels: the model's input channels: a one-channel uint8 batch is repeated to them (grayscale
            to RGB, as PIL's ``convert('RGB')`` does); None keeps the batch's.
        interpolation: of the resize, timm's name ('bilinear', 'bicubic', 'nearest'); antialiased and
            rounded back to uint8, as PIL resizes a uint8 image (timm's transform of the same images matches
            within 2 grey levels, on a few pixels: tests/test_pretrained.py).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 4,
        flip: bool = True,
        channels_last: bool = False,
        size: tuple[int, int] | None = None,
        channels: int | None = None,
        interpolation: str = "bilinear",
    ):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.crop_padding, self.flip, self.channels_last = crop_padding, flip, channels_last
        self.size, self.channels, self.interpolation = (tuple(size) if size else None), channels, interpolation

    def forward(self, x: torch.Tensor, train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        if isinstance(x, DeviceCrops):  # the device path: resized, flipped and jittered here (uint8 out)
            x = x.materialize()
        cl = self.channels_last and x.ndim == 4
        if x.dtype == torch.uint8:  # augmented and laid out as uint8 (a quarter of the bytes), then normalised
            if train:
                x = self.augment(x, generator)
            x = self.adapt(x)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            x = (x.float().div_(255) - self.mean) / self.std  # elementwise: keeps the layout
        elif cl:
            x = x.contiguous(memory_format=torch.channels_last)  # no copy when it already is
        return x

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """A uint8 batch at the model's size and channels (`size`, `channels`), still uint8."""
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            mode = {"bicubic": "bicubic", "nearest": "nearest"}.get(self.interpolation, "bilinear")
            extra = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
            x = x.float()
            if mode == "bicubic":  # PIL's two passes, rounded to uint8 between them (clips bicubic's overshoot)
                x = F.interpolate(x, size=(x.shape[-2], self.size[1]), mode=mode, **extra).round_().clamp_(0, 255)
            x = F.interpolate(x, size=self.size, mode=mode, **extra).round_().clamp_(0, 255).to(torch.uint8)
        if self.channels and x.shape[1] == 1 and self.channels != 1:
            x = x.expand(-1, self.channels, -1, -1)
        return x

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random translation (pad with zeros and crop) and horizontal flip, drawn per image on the batch tensor
        (uint8 or float: the same draws and the same pixels)."""
        n, _, h, w = x.shape
        p = self.crop_padding
        if p > 0:
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            padded = F.pad(x, (p, p, p, p))
            rows = (torch.arange(h, device=x.device)[None] + dy[:, None])[:, None, :, None]
            cols = (torch.arange(w, device=x.device)[None] + dx[:, None])[:, None, None, :]
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[batch, chans, rows, cols]
        if self.flip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x
