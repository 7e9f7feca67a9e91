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
``draft`` is a no-op), the output is timm's, pixel for pixel.

A training crop needs no row below its box: a baseline JPEG is decoded top to bottom, and its decoding stops at the
last row the crop (with its resampling filter's reach) uses (`decode`'s ``rows``). The rows above are the full
decode's, bit for bit (libjpeg's output of a scanline does not depend on the ones after it); a RandomResizedCrop box
ends on average well above the bottom, so this saves a share of the decoding itself. Progressive JPEGs and other
formats are decoded whole. The image leaves the worker as a uint8 (C, H, W)
tensor: a quarter of the bytes of a float one, and normalised on the device by `ltzoo.data.loader.BatchPreprocess`
with the transform's mean and std.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
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


def decode(img: Image.Image, factor: int = 1, rows: int | None = None) -> Image.Image:
    """An opened (not yet loaded) image decoded to RGB, a JPEG at up to 1/``factor`` of its size (``draft``: a
    no-op for other formats and for a factor of 1).

    ``rows``: only the first ``rows`` rows (of the decoded scale) are needed: a baseline JPEG stops decoding after
    them (`stops_early`); the rows below are left blank. Other files are decoded whole."""
    _scale(img, factor)  # draft (a no-op for a factor of 1 and for other formats)
    rows = None if rows is None else int(rows)
    if rows is not None and 0 < rows < img.size[1] and stops_early(img):
        tile = img.tile[0]
        name, (x0, y0, x1, _), offset, args = tile[:4]
        extents = (x0, y0, x1, y0 + rows)
        img.tile = [tile._replace(extents=extents) if hasattr(tile, "_replace") else (name, extents, offset, args)]
        try:
            img.load()
        except OSError as e:  # libjpeg ends a decode stopped early with "too few scanlines": PIL's "broken data
            if "broken data stream" not in str(e):  # stream", raised once the rows asked for are decoded
                raise
            last = img.crop((0, rows - 1, img.size[0], rows)).getextrema()
            if (max(hi for _, hi in last) if isinstance(last[0], tuple) else last[1]) == 0:
                # the last row asked for is blank: the error may have come before it (a corrupt header or scan):
                # decode the file whole, which raises that error as before (or gives back a truly black row)
                if not getattr(img, "filename", None):
                    raise
                with Image.open(img.filename) as whole:
                    whole.draft("RGB", img.size)  # the same scale (a no-op at full size)
                    whole.load()
                    img = whole.copy()
    else:
        img.load()
    return img if img.mode == "RGB" else img.convert("RGB")


def stops_early(img: Image.Image) -> bool:
    """Whether `decode` can stop an opened, not yet loaded image's decoding after its first rows: a baseline JPEG
    of one tile (a progressive JPEG's scans cover the whole image; another format has its own decoder)."""
    return (
        img.format == "JPEG"
        and img.mode in ("RGB", "L")
        and len(img.tile) == 1
        and img.tile[0][0] == "jpeg"
        and not img.info.get("progressive")
        and not img.info.get("progression")
    )


#: PIL's resampling filters' support in source pixels at scale 1 (Resampling.c)
_SUPPORT = {Image.NEAREST: 0.5, Image.BILINEAR: 1.0, Image.HAMMING: 1.0, Image.BICUBIC: 2.0, Image.LANCZOS: 3.0}


def _scale(img: Image.Image, factor: int) -> tuple[float, float]:
    """The (x, y) scale an opened JPEG will be decoded at after ``draft`` for ``factor`` (1, 1 for a factor of 1 or
    another format), without decoding it: ``draft`` only sets the size."""
    if factor <= 1:
        return 1.0, 1.0
    full_w, full_h = img.size
    img.draft("RGB", (max(1, full_w // factor), max(1, full_h // factor)))
    return img.size[0] / full_w, img.size[1] / full_h


def _interp_name(mode) -> str:
    """An interpolation (torchvision's mode, timm's name or PIL's constant) by name."""
    if isinstance(mode, InterpolationMode):
        return mode.value
    if isinstance(mode, str):
        return mode
    return {Image.NEAREST: "nearest", Image.BILINEAR: "bilinear", Image.BICUBIC: "bicubic"}.get(mode, "bicubic")


def _hwc(img: Image.Image) -> np.ndarray:
    """An RGB image's pixels as a contiguous uint8 (h, w, C) array: PIL's bytes, not copied again, not transposed
    (read-only; `DeviceCrops.of` copies it once, into the batch's buffer; the device permutes)."""
    return np.asarray(img)


def _code(mode) -> int:
    """An interpolation's code in a crop's parameters (`_INTERPS`; bicubic for another)."""
    name = _interp_name(mode)
    return _INTERPS.index(name) if name in _INTERPS else _INTERPS.index("bicubic")


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

    def __init__(self, transform: T.Compose, draft: bool = True, on_device: bool = False):
        ops = list(transform.transforms)
        if len(ops) < 3 or not isinstance(ops[-1], T.Normalize) or not isinstance(ops[-2], (MaybeToTensor, T.ToTensor)):
            raise ValueError(f"expected timm's transform ending in ToTensor and Normalize, got {transform}")
        self.mean, self.std = tuple(ops[-1].mean.tolist()), tuple(ops[-1].std.tolist())
        self.ops, self.draft = ops[:-2], draft
        self.crop = ops[0] if isinstance(ops[0], RandomResizedCropAndInterpolation) else None
        self.resize = ops[0] if self.crop is None and isinstance(ops[0], T.Resize) else None
        if on_device and not self.supports_device:
            raise ValueError(f"the device path does not cover this transform: {transform}")
        self.on_device = on_device

    @property
    def supports_device(self) -> bool:
        """Whether the device path reproduces this transform: timm's training transform of RandomResizedCrop,
        an optional horizontal flip and an optional ColorJitter without hue; or its evaluation transform of
        Resize(S) and CenterCrop."""
        rest = self.ops[1:]
        if self.crop is not None:
            kinds = [type(op) for op in rest]
            allowed = [T.RandomHorizontalFlip, T.ColorJitter]
            if any(k not in allowed for k in kinds) or kinds != sorted(kinds, key=allowed.index):
                return False
            jitter = next((op for op in rest if isinstance(op, T.ColorJitter)), None)
            return jitter is None or jitter.hue is None
        return (
            self.resize is not None
            and len(rest) == 1
            and isinstance(rest[0], T.CenterCrop)
            and isinstance(self.resize.size, (int, list, tuple))
            and (isinstance(self.resize.size, int) or len(self.resize.size) == 1)
        )

    def __call__(self, img: Image.Image):
        if self.on_device:
            return self.device_item(img)
        if self.crop is not None:
            img, rest = self.random_resized_crop(img), self.ops[1:]
        else:
            img, rest = decode(img, self.eval_factor(img.size) if self.draft else 1), self.ops
        for op in rest:
            img = op(img)
        return pil_to_tensor(img)

    def device_item(self, img: Image.Image) -> tuple[np.ndarray, torch.Tensor]:
        """The device path's item: the decoded crop (uint8, h x w x C, at the file's decoded scale) and its
        parameters (`DeviceCrops`), every random draw made here as timm's transform makes it, in its order (the
        box and interpolation with Python's random, the flip and the jitter with torch's)."""
        if self.crop is not None:
            crop = self.crop
            i, j, h, w = crop.get_params(img, crop.scale, crop.ratio)
            interp = crop.interpolation
            interp = random.choice(interp) if isinstance(interp, (tuple, list)) else interp
            out_h, out_w = crop.size
        else:  # Resize(S) of the shorter side, then CenterCrop(out): the whole image, both done on the device
            shorter = self.resize.size if isinstance(self.resize.size, int) else self.resize.size[0]
            out_h, out_w = self.ops[1].size
            img = decode(img, self.eval_factor(img.size) if self.draft else 1)
            params = [out_h, out_w, _code(self.resize.interpolation), 0.0, 1.0, 1.0, 1.0, 0, 1, 2, 3, shorter]
            return _hwc(img), torch.tensor(params, dtype=torch.float32)
        full_w, full_h = img.size
        factor = draft_factor((h, w), (out_h, out_w)) if self.draft else 1
        sx, sy = _scale(img, factor)
        box = (round(j * sx), round(i * sy), round((j + w) * sx), round((i + h) * sy))
        img = decode(img, rows=box[3])  # draft already set by _scale
        crop_t = _hwc(img.crop(box))
        flip, factors, order = 0.0, [1.0, 1.0, 1.0], [0, 1, 2, 3]
        for op in self.ops[1:] if self.crop is not None else ():
            if isinstance(op, T.RandomHorizontalFlip):
                flip = float(torch.rand(1) < op.p)
            elif isinstance(op, T.ColorJitter):
                fn_idx, b, c, sat, _ = T.ColorJitter.get_params(op.brightness, op.contrast, op.saturation, op.hue)
                order = fn_idx.tolist()
                factors = [1.0 if v is None else float(v) for v in (b, c, sat)]
        params = torch.tensor([out_h, out_w, _code(interp), flip, *factors, *order, 0], dtype=torch.float32)
        return crop_t, params

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
        factor = draft_factor((h, w), (out_h, out_w)) if self.draft else 1
        sx, sy = _scale(img, factor)
        if (sx, sy) == (1, 1):  # full size: timm's crop then resize, pixel for pixel
            img = decode(img, rows=i + h)
            return img.crop((j, i, j + w, i + h)).resize((out_w, out_h), _pil_interp(interp))
        box = (j * sx, i * sy, (j + w) * sx, (i + h) * sy)
        # PIL's resize of a box reads beyond it by the filter's reach: its support times the downscaling factor
        reach = _SUPPORT.get(_pil_interp(interp), 3.0) * max(1.0, (box[3] - box[1]) / out_h)
        img = decode(img, rows=math.ceil(box[3] + reach) + 1)  # draft already set by _scale
        return img.resize((out_w, out_h), _pil_interp(interp), box=box)


# ------------------------------------------------------------------------------------- the device path
#: interpolation names by code, for a crop's parameters
_INTERPS = ("bilinear", "bicubic", "nearest")
#: one crop's parameters: output height and width, interpolation code, flip, brightness, contrast, saturation
#: factors (1: none), the jitter's order (4 indices, torchvision's ColorJitter ``fn_idx``), and the shorter side an
#: evaluation image is resized to before its centre crop (0: a training crop, resized to the output)
_PARAMS = 12


class DeviceCrops:
    """A batch of decoded crops of different sizes, and what remains to be done to each on the device: resize to
    the output size, flip, colour jitter (`materialize`). What the loader workers hand out on the device path
    (`FileImageTransform` with ``on_device``): they decode and crop, the device does the rest of timm's transform.

    The crops travel as one flat uint8 buffer (one copy to the device); their parameters stay on the CPU (read
    without a device sync). Accelerate moves it like a tensor (it has ``to``); ``len`` is its number of images.
    """

    def __init__(self, flat: torch.Tensor, shapes: torch.Tensor, params: torch.Tensor):
        self.flat, self.shapes, self.params = flat, shapes, params

    @classmethod
    def of(cls, crops: Sequence[np.ndarray | torch.Tensor], params: torch.Tensor | np.ndarray) -> DeviceCrops:
        """From (h, w, C) uint8 crops (arrays as `FileImageTransform.device_item` makes them, or tensors) and their
        (N, `_PARAMS`) parameters; the crops are copied once, into one flat buffer."""
        arrays = [c.numpy() if isinstance(c, torch.Tensor) else c for c in crops]
        shapes = torch.tensor([a.shape for a in arrays], dtype=torch.long)
        numel = sum(a.size for a in arrays)
        if torch.utils.data.get_worker_info() is not None:  # in a loader worker: straight into shared memory, as
            flat = torch.empty(0, dtype=torch.uint8)  # torch's default_collate does (no second copy to send it)
            flat = flat.new(flat.untyped_storage()._new_shared(numel, device="cpu")).resize_(numel)
        else:
            flat = torch.empty(numel, dtype=torch.uint8)
        np.concatenate([a.reshape(-1) for a in arrays], out=flat.numpy())
        return cls(flat, shapes, torch.as_tensor(params))

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def device(self) -> torch.device:
        return self.flat.device

    def to(self, device, non_blocking: bool = False) -> DeviceCrops:
        return DeviceCrops(self.flat.to(device, non_blocking=non_blocking), self.shapes, self.params)

    def pin_memory(self) -> DeviceCrops:
        return DeviceCrops(self.flat.pin_memory(), self.shapes, self.params)

    def crops(self) -> list[torch.Tensor]:
        """The (C, h, w) crops, views of the flat buffer (which holds them as the workers decoded them, (h, w, C))."""
        sizes = self.shapes.prod(1).tolist()
        return [c.view(*shape).permute(2, 0, 1) for c, shape in zip(self.flat.split(sizes), self.shapes.tolist())]

    def materialize(self) -> torch.Tensor:
        """The uint8 batch (N, C, H, W) timm's transform would have made: each crop resized as PIL resizes (two
        antialiased passes, width then height, rounded to uint8 after each), or for evaluation resized by its shorter
        side and centre-cropped; then flipped and colour-jittered in its own order (torchvision's ColorJitter)."""
        p = self.params
        out = []
        for crop, row in zip(self.crops(), p.tolist()):
            h, w, interp, shorter = int(row[0]), int(row[1]), _INTERPS[int(row[2])], int(row[11])
            x = crop[None].float()
            if shorter:  # torchvision's Resize(shorter) then CenterCrop((h, w)), timm's evaluation transform
                ih, iw = x.shape[-2:]
                size = (shorter, int(shorter * iw / ih)) if ih <= iw else (int(shorter * ih / iw), shorter)
                x = _resize(x, size, interp)
                top, left = int(round((size[0] - h) / 2.0)), int(round((size[1] - w) / 2.0))
                x = x[..., top : top + h, left : left + w]
            else:
                x = _resize(x, (h, w), interp)
            out.append(x[0])
        x = torch.stack(out)
        dev = x.device
        flip = (p[:, 3] > 0.5).to(dev)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        factors, order = p[:, 4:7], p[:, 7:11].long()
        if bool((factors != 1).any()):
            x = _jitter(x / 255, factors.to(dev), order.to(dev)).mul_(255).round_()
        return x.to(torch.uint8)


def _resize(x: torch.Tensor, size: tuple[int, int], interp: str) -> torch.Tensor:
    """A float (1, C, h, w) image resized to ``size`` as PIL resizes a uint8 one: antialiased, width then height,
    rounded and clipped to [0, 255] after each pass."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if interp == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    extra = {"antialias": True, "align_corners": False}
    x = F.interpolate(x, size=(x.shape[-2], size[1]), mode=interp, **extra).round_().clamp_(0, 255)
    return F.interpolate(x, size=size, mode=interp, **extra).round_().clamp_(0, 255)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """torchvision's rgb_to_grayscale (ITU-R 601-2 luma), one channel kept."""
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def _jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """torchvision's ColorJitter (brightness 0, contrast 1, saturation 2; hue 3 is not drawn) on a [0, 1] batch,
    each image with its own factors and order."""
    for k in range(order.shape[1]):
        for op in range(3):
            sel = (order[:, k] == op)[:, None, None, None]
            if not bool(sel.any()):
                continue
            f = factors[:, op][:, None, None, None]
            if op == 0:
                y = x * f
            elif op == 1:
                y = f * x + (1 - f) * _gray(x).mean(dim=(1, 2, 3), keepdim=True)
            else:
                y = f * x + (1 - f) * _gray(x)
            x = torch.where(sel, y.clamp_(0, 1), x)
    return x


def collate_crops(batch: list) -> tuple[DeviceCrops, torch.Tensor]:
    """The loader's collate on the device path (in the worker): (crop, params) items and labels into one
    `DeviceCrops` batch, its crops in one flat buffer."""
    params = torch.stack([item[0][1] for item in batch])
    return DeviceCrops.of([item[0][0] for item in batch], params), torch.as_tensor([item[1] for item in batch])


def file_transform(transform: Callable | None, draft: bool = True, on_device: bool = False) -> Callable | None:
    """`FileImageTransform` over timm's ``transform`` where it has timm's shape; else ``transform`` unchanged.
    ``on_device``: the device path where the transform allows it (`FileImageTransform.supports_device`)."""
    try:
        if not isinstance(transform, T.Compose):
            return transform
        tf = FileImageTransform(transform, draft)
        return FileImageTransform(transform, draft, on_device=True) if on_device and tf.supports_device else tf
    except ValueError:
        return transform
