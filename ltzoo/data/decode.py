"""Image files decoded for a batch pipeline: at the smallest JPEG scale a crop allows, handed out as uint8.

A JPEG can be decoded at 1/2, 1/4 or 1/8 of its size for a fraction of the work (libjpeg's DCT scaling, PIL's
``Image.draft``). `FileImageTransform` wraps timm's training or evaluation transform of an image file and decodes
at the largest such reduction that keeps the output's resolution:

- evaluation (``Resize(S)`` of the shorter side, then ``CenterCrop``): the shorter side stays >= S;
- training (``RandomResizedCropAndInterpolation`` + flip + colour jitter): the crop box is drawn first on the
  file's full-size geometry, with timm's own ``get_params`` and the same random draws, and the file is decoded at
  the largest reduction that keeps that box at least the output size; so every crop box, flip and jitter is drawn
  exactly as timm draws it, and only the resampling of a box that is at least twice the output differs (DCT
  scaling, then the same interpolation over fewer pixels).

Where no reduction fits (the usual case for ImageNet-sized images at 224 px) or the file is not a JPEG (PNG, ...:
``draft`` is a no-op), the output is timm's, pixel for pixel. The image leaves the worker as a uint8 (C, H, W)
tensor: a quarter of the bytes of a float one, and normalised on the device by `ltzoo.data.loader.BatchPreprocess`
with the transform's mean and std.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from timm.data.transforms import MaybeToTensor, RandomResizedCropAndInterpolation, str_to_pil_interp
from torchvision import transforms as T
from torchvision.transforms.functional import InterpolationMode, pil_to_tensor

#: JPEG DCT scaling factors libjpeg offers, largest first
DRAFT_FACTORS = (8, 4, 2, 1)


def draft_factor(region: Sequence[int], out: Sequence[int]) -> int:
    """The largest JPEG reduction (8, 4, 2 or 1) that leaves a ``region`` of (height, width) full-size pixels at
    least ``out`` (height, width) pixels: decoding at it loses none of the output's resolution."""
    return next((k for k in DRAFT_FACTORS if region[0] / k >= out[0] and region[1] / k >= out[1]), 1)


def decode(img: Image.Image, factor: int = 1) -> Image.Image:
    """An opened (not yet loaded) image decoded to RGB, a JPEG at up to 1/``factor`` of its size (``draft``: a
    no-op for other formats and for a factor of 1)."""
    if factor > 1:
        w, h = img.size
        img.draft("RGB", (max(1, w // factor), max(1, h // factor)))
    img.load()
    return img if img.mode == "RGB" else img.convert("RGB")


def _pil_interp(mode) -> int:
    if isinstance(mode, InterpolationMode):
        mode = mode.value
    return str_to_pil_interp(mode) if isinstance(mode, str) else mode


class FileImageTransform:
    """timm's transform of an image file, decoded at the smallest JPEG scale its output allows, to uint8.

    Args:
        transform: timm's ``create_transform(...)`` (a ``Compose`` ending in ``MaybeToTensor``/``ToTensor`` and
            ``Normalize``); its mean and std are for `BatchPreprocess` on the device.
        draft: decode JPEGs at a reduced scale where the output keeps its resolution (False: full size always).
    """

    def __init__(self, transform: T.Compose, draft: bool = True):
        ops = list(transform.transforms)
        if len(ops) < 3 or not isinstance(ops[-1], T.Normalize) or not isinstance(ops[-2], (MaybeToTensor, T.ToTensor)):
            raise ValueError(f"expected timm's transform ending in ToTensor and Normalize, got {transform}")
        self.mean, self.std = tuple(ops[-1].mean.tolist()), tuple(ops[-1].std.tolist())
        self.ops, self.draft = ops[:-2], draft
        self.crop = ops[0] if isinstance(ops[0], RandomResizedCropAndInterpolation) else None
        self.resize = ops[0] if self.crop is None and isinstance(ops[0], T.Resize) else None

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if self.crop is not None:
            img, rest = self.random_resized_crop(img), self.ops[1:]
        else:
            img, rest = decode(img, self.eval_factor(img.size) if self.draft else 1), self.ops
        for op in rest:
            img = op(img)
        return pil_to_tensor(img)

    def eval_factor(self, size: tuple[int, int]) -> int:
        """The reduction that keeps the shorter side at least the evaluation resize's target (1 without one)."""
        target = None if self.resize is None else self.resize.size
        if isinstance(target, (list, tuple)):  # torchvision's Resize([S]) is Resize(S); (H, W) is a squash
            target = target[0] if len(target) == 1 else None
        if target is None:
            return 1
        return draft_factor((min(size), min(size)), (target, target))

    def random_resized_crop(self, img: Image.Image) -> Image.Image:
        """timm's ``RandomResizedCropAndInterpolation`` of an opened file: the box drawn on its full-size geometry,
        the file decoded at the largest reduction that keeps the box at least the output size."""
        crop = self.crop
        i, j, h, w = crop.get_params(img, crop.scale, crop.ratio)  # img.size only: nothing decoded yet
        interp = crop.interpolation
        interp = random.choice(interp) if isinstance(interp, (tuple, list)) else interp
        out_h, out_w = crop.size
        full_w, full_h = img.size
        img = decode(img, draft_factor((h, w), (out_h, out_w)) if self.draft else 1)
        if img.size == (full_w, full_h):  # full size: timm's crop then resize, pixel for pixel
            return img.crop((j, i, j + w, i + h)).resize((out_w, out_h), _pil_interp(interp))
        sx, sy = img.size[0] / full_w, img.size[1] / full_h
        box = (j * sx, i * sy, (j + w) * sx, (i + h) * sy)
        return img.resize((out_w, out_h), _pil_interp(interp), box=box)


def file_transform(transform: Callable | None, draft: bool = True) -> Callable | None:
    """`FileImageTransform` over timm's ``transform`` where it has timm's shape; else ``transform`` unchanged."""
    try:
        return FileImageTransform(transform, draft) if isinstance(transform, T.Compose) else transform
    except ValueError:
        return transform
