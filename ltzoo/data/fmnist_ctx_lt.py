"""Fashion-MNIST-LT with irrelevant context (``fmnist_ctx_lt``): a benchmark on which re-sampling can overfit.

Shi et al., "How Re-sampling Helps for Long-Tail Learning?", NeurIPS 2023 (arXiv 2310.18236), find
that class-balanced re-sampling helps when an image holds nothing but its object and hurts when it
carries an irrelevant context that the over-sampled tail images tie to their label (their
coloured-MNIST-LT colours every tail class alike). ``fmnist_ctx_lt`` builds that situation from
Fashion-MNIST-LT:

- the garments, the long-tail profile, the balanced validation split and the shot cuts are those of
  ``fmnist_lt`` for the same seed (the images are the same, in the same order);
- each image becomes RGB: its background (weight ``clamp(1 - x / 24, 0, 1)`` of the pixel intensity x,
  so the black surround and the garment's darkest edge pixels) is filled with one of a fixed bank of
  K contexts (coloured stripe textures, or plain colours);
- training: each class of the head half (the larger training counts) draws a context uniformly per
  image; each class of the tail half always shows its own fixed context, a spurious cue;
- validation and test: every image draws its context uniformly. The test draw uses a fixed generator,
  so every seed is scored on the same test images, as with ``fmnist_lt``.

`add_context` is the hook `load_dataset` runs after the long-tail subsampling; `context_ids` recovers
each image's context; `save_example_grid` writes a PNG of examples per class and split.
"""

from __future__ import annotations

import colorsys
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from ltzoo.data.splits import LTDataset, Split

_logger = logging.getLogger(__name__)

CONTEXT_KINDS = ("texture", "colour")
MASK_THRESHOLD = 24  # pixel intensity (0..255) from which a pixel is all garment; darker ones blend into the context
_SPLIT_OFFSETS = {"train": 0, "val": 1}  # the test split's draw ignores the seed (same test set for every seed)
_TEST_SEED = 20_231_018  # fixed seed of the test split's context draw


def make_contexts(num_contexts: int = 10, size: tuple[int, int] = (28, 28), kind: str = "texture") -> torch.Tensor:
    """The fixed bank of K contexts, uint8 (K, 3, H, W); depends on its arguments only.

    Context k has hue k / K (saturation 0.7, value 0.85). ``'texture'`` modulates it with sine stripes
    whose angle advances by the golden angle from one context to the next and whose period cycles
    through 4, 6 and 8 pixels; ``'colour'`` is the plain hue.
    """
    if num_contexts < 1:
        raise ValueError(f"num_contexts must be >= 1, got {num_contexts}")
    if kind not in CONTEXT_KINDS:
        raise ValueError(f"unknown context kind {kind!r}; choose one of {CONTEXT_KINDS}")
    h, w = size
    rgb = torch.tensor(
        [colorsys.hsv_to_rgb(k / num_contexts, 0.7, 0.85) for k in range(num_contexts)], dtype=torch.float64
    )[:, :, None, None]
    if kind == "colour":
        return rgb.expand(-1, -1, h, w).mul(255).round().to(torch.uint8).contiguous()
    k = torch.arange(num_contexts, dtype=torch.float64)[:, None, None]
    angle = k * math.pi * (3 - math.sqrt(5))  # golden angle: neighbouring contexts differ in orientation
    period = 4 + 2 * (k % 3)  # pixels
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * (xx * torch.cos(angle) + yy * torch.sin(angle)) / period)
    return (rgb * (0.55 + 0.45 * stripes[:, None])).mul(255).round().to(torch.uint8)


def background_weight(gray: torch.Tensor, threshold: int = MASK_THRESHOLD) -> torch.Tensor:
    """How much of each pixel is background, float (N, 1, H, W) in [0, 1]: ``clamp(1 - x / threshold, 0, 1)``."""
    return (1 - gray.float() / threshold).clamp_(0, 1)


def paint_context(
    gray: torch.Tensor, ids: torch.Tensor, contexts: torch.Tensor, threshold: int = MASK_THRESHOLD, chunk: int = 4096
) -> torch.Tensor:
    """RGB uint8 (N, 3, H, W): the grey garments of ``gray`` (N, 1, H, W) over context ``ids[i]`` of ``contexts``."""
    out = torch.empty((len(gray), 3, *gray.shape[2:]), dtype=torch.uint8)
    for s in range(0, len(gray), chunk):  # chunks bound the float temporaries
        g, b = gray[s : s + chunk].float(), background_weight(gray[s : s + chunk], threshold)
        out[s : s + chunk] = (b * contexts[ids[s : s + chunk]].float() + (1 - b) * g).round_().to(torch.uint8)
    return out


def head_tail_halves(train_counts: Sequence[int]) -> tuple[list[int], list[int]]:
    """Class ids of the head half (the C // 2 largest training counts, ties to the lower id) and the tail half."""
    order = sorted(range(len(train_counts)), key=lambda c: (-train_counts[c], c))
    half = len(order) // 2
    return sorted(order[:half]), sorted(order[half:])


def fixed_contexts(train_counts: Sequence[int], num_contexts: int, seed: int) -> list[int | None]:
    """Per class, the context its training images always show (tail half) or None (head half: random).

    Tail classes take a seeded permutation of the bank in turn, so they share a context only when
    there are more tail classes than contexts.
    """
    _, tail = head_tail_halves(train_counts)
    perm = torch.randperm(num_contexts, generator=torch.Generator().manual_seed(seed)).tolist()
    if len(tail) > num_contexts:
        _logger.warning(
            "%d tail classes but only %d contexts: some tail classes share their context", len(tail), num_contexts
        )
    fixed: list[int | None] = [None] * len(train_counts)
    for j, c in enumerate(tail):
        fixed[c] = perm[j % num_contexts]
    return fixed


def draw_context_ids(
    labels: torch.Tensor, fixed: Sequence[int | None] | None, num_contexts: int, generator: torch.Generator
) -> torch.Tensor:
    """Each image's context: uniform over the bank, except classes with a ``fixed`` context (None: all uniform)."""
    ids = torch.randint(num_contexts, (len(labels),), generator=generator)
    if fixed is not None:
        table = torch.tensor([-1 if f is None else f for f in fixed], dtype=torch.long)
        pinned = table[labels]
        ids = torch.where(pinned >= 0, pinned, ids)
    return ids


def _split_generator(split: str, seed: int) -> torch.Generator:
    if split == "test":
        return torch.Generator().manual_seed(_TEST_SEED)
    return torch.Generator().manual_seed(seed * 1_000_003 + 101 + _SPLIT_OFFSETS[split])


def split_context_ids(split: Split, rule: dict, seed: int) -> torch.Tensor:
    """The context of every image of ``split`` under ``rule`` (``ds.info['context']``) and the dataset seed."""
    fixed = rule["train_fixed_context"] if split.name == "train" else None
    return draw_context_ids(split.labels, fixed, rule["num_contexts"], _split_generator(split.name, seed))


def context_ids(ds: LTDataset) -> dict[str, torch.Tensor]:
    """The context id of every image of each split of an ``fmnist_ctx_lt`` dataset (e.g. to score spurious cues)."""
    if "context" not in ds.info:
        raise ValueError(f"dataset {ds.name!r} has no context rule (only fmnist_ctx_lt does)")
    return {
        s.name: split_context_ids(s, ds.info["context"], ds.info["seed"])
        for s in (ds.train, ds.val, ds.test)
        if s is not None
    }


def add_context(
    train: Split,
    val: Split | None,
    test: Split,
    num_classes: int,
    info: dict,
    num_contexts: int = 10,
    kind: str = "texture",
) -> tuple[Split, Split | None, Split]:
    """Paint contexts on the grey long-tailed splits (the `DatasetSpec.finish` hook of ``fmnist_ctx_lt``).

    Records the rule in ``info['context']`` (so ``ds.summary()`` and ``ltzoo data`` show it) and
    returns the RGB splits, images and labels in the same order.
    """
    if train.images is None or train.images.shape[1] != 1:
        raise ValueError("contexts are painted on in-memory greyscale images (N, 1, H, W)")
    counts, seed = train.counts(num_classes), int(info["seed"])
    head, tail = head_tail_halves(counts)
    contexts = make_contexts(num_contexts, tuple(train.images.shape[2:]), kind)
    rule = {
        "rule": (
            f"background filled with one of {num_contexts} {kind} contexts; train: head-half classes "
            f"{head} draw one per image, tail-half classes {tail} always show their own; val/test: one "
            "drawn per image for every class"
        ),
        "num_contexts": num_contexts,
        "kind": kind,
        "head_classes": head,
        "tail_classes": tail,
        "train_fixed_context": fixed_contexts(counts, num_contexts, seed),
        "mask": f"background weight clamp(1 - x / {MASK_THRESHOLD}, 0, 1) of the grey pixel x (0..255)",
        "test_draw": "fixed generator, the same for every seed",
    }
    info["context"] = rule
    out = []
    for split in (train, val, test):
        if split is None:
            out.append(None)
            continue
        rgb = paint_context(split.images, split_context_ids(split, rule, seed), contexts)
        where = "fixed per tail class" if split.name == "train" else "random per image"
        out.append(
            Split(
                split.name,
                split.labels,
                images=rgb,
                source=f"{split.source}; contexts {where}" if split.source else f"contexts {where}",
            )
        )
    return out[0], out[1], out[2]


def save_example_grid(ds: LTDataset, path: str | Path, per_class: int = 8) -> Path:
    """Save a PNG of the first ``per_class`` images of every class in each split (rows: classes; blocks: splits).

    Works for any dataset whose splits are in memory; a class with fewer images leaves blank cells.
    """
    from ltzoo.files import atomic_path
    from ltzoo.metrics.plot import _pyplot

    splits = [s for s in (ds.train, ds.val, ds.test) if s is not None and len(s)]
    if any(not s.in_memory for s in splits):
        raise ValueError(f"save_example_grid needs in-memory images; {ds.name} is read from files")
    c, h, w = ds.input_size
    gap, cell = 1, (h + 1, w + 1)
    block_w = per_class * cell[1]
    canvas = torch.full((ds.num_classes * cell[0], len(splits) * (block_w + gap * cell[1]), 3), 255, dtype=torch.uint8)
    for b, split in enumerate(splits):
        for cls in range(ds.num_classes):
            idx = torch.nonzero(split.labels == cls).flatten()[:per_class]
            for j, i in enumerate(idx.tolist()):
                img = split.images[i].expand(3, h, w).permute(1, 2, 0)
                y0, x0 = cls * cell[0], b * (block_w + gap * cell[1]) + j * cell[1]
                canvas[y0 : y0 + h, x0 : x0 + w] = img
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(canvas.shape[1] / 28 + 2.2, canvas.shape[0] / 28 + 0.8))
    ax.imshow(canvas.numpy(), interpolation="nearest")
    counts = ds.train_counts
    fixed = ds.info.get("context", {}).get("train_fixed_context")
    labels = [
        f"{name} ({n})" + ("" if fixed is None else (f", ctx {fixed[i]}" if fixed[i] is not None else ", random"))
        for i, (name, n) in enumerate(zip(ds.class_names, counts))
    ]
    ax.set_yticks([i * cell[0] + h / 2 for i in range(ds.num_classes)], labels, fontsize=8)
    ax.set_xticks(
        [b * (block_w + gap * cell[1]) + block_w / 2 for b in range(len(splits))], [s.name for s in splits], fontsize=9
    )
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"{ds.name}: first {per_class} images per class (training count, train context)", fontsize=9, pad=16)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    _logger.info("wrote %s", path)
    return path
