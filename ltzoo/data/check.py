"""Data checked before any training: files that exist and decode, and classes that have images.

- `check_files`: every file of a file-backed split (a split list or an image folder) exists and its
  image header decodes (PIL's ``Image.open`` + ``verify``, which reads the header and, for PNG, checks
  the chunks; no pixels are decoded), in a thread pool, with a progress bar on large sets. Bad files
  raise one `UserError` listing the first few and the total, or are dropped with ``skip_bad``.
- `check_classes`: every class has training images, and no class is missing from the validation or
  test split (its recall, and with it HM, GM and min recall, would be undefined).

In-memory splits (Fashion-MNIST, CIFAR) and Hugging Face splits need only the class check.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from ltzoo.data.splits import Split
from ltzoo.errors import UserError, one_line

_logger = logging.getLogger(__name__)

#: Files listed by name in an error message; the rest are counted.
SHOW = 5
#: Splits of at least this many files get a progress bar.
PROGRESS_MIN = 2000


def _image_problem(path: str) -> str | None:
    """Why the image at ``path`` cannot be used (None if its header decodes)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
    except FileNotFoundError:
        return "missing"
    except Exception as exc:  # PIL raises many types for bad files (OSError, SyntaxError, struct.error, ...)
        return one_line(exc)[:120] or type(exc).__name__
    return None


def find_bad_files(
    files: Sequence[str], workers: int | None = None, progress: bool | None = None, desc: str = "checking images"
) -> list[tuple[int, str, str]]:
    """``(position, path, problem)`` of every file in ``files`` that is missing or does not decode.

    Args:
        workers: threads (default: 4 per core, at most 32; the check waits on the disk more than on the CPU).
        progress: show a tqdm bar (None: on sets of `PROGRESS_MIN` files or more).
    """
    from tqdm.auto import tqdm

    workers = workers or min(32, 4 * (os.cpu_count() or 1))
    show = len(files) >= PROGRESS_MIN if progress is None else progress
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(
            tqdm(
                pool.map(_image_problem, files, chunksize=64),
                total=len(files),
                desc=desc,
                unit="img",
                disable=not show,
                leave=False,
            )
        )
    return [(i, files[i], p) for i, p in enumerate(problems) if p is not None]


def check_files(
    split: Split | None,
    dataset: str = "",
    skip_bad: bool = False,
    workers: int | None = None,
    progress: bool | None = None,
) -> tuple[Split | None, int]:
    """Check the files of a file-backed split; returns the split (without bad files if ``skip_bad``) and
    the number of files skipped.

    Raises:
        UserError: some files are missing or do not decode (and ``skip_bad`` is False), or all of them.
    """
    if split is None or split.files is None or len(split) == 0:
        return split, 0
    bad = find_bad_files(list(split.files), workers, progress, desc=f"checking {split.name} images")
    if not bad:
        return split, 0
    where = f"{dataset}: " if dataset else ""
    src = f" ({split.source})" if split.source else ""
    shown = ", ".join(f"{path} ({problem})" for _, path, problem in bad[:SHOW])
    more = f" and {len(bad) - SHOW} more" if len(bad) > SHOW else ""
    what = f"{where}{len(bad)} of {len(split)} {split.name} images{src} are missing or cannot be decoded: {shown}{more}"
    if not skip_bad:
        raise UserError(what, "replace those files or remove them from the split, or skip them (--skip-bad-files)")
    if len(bad) == len(split):
        raise UserError(what, "no image is left to use: check --data-dir and the split lists")
    keep = torch.ones(len(split), dtype=torch.bool)
    keep[[i for i, _, _ in bad]] = False
    _logger.warning("%s; skipping them", what)
    return split.subset(torch.nonzero(keep).flatten()), len(bad)


def check_classes(
    dataset: str, class_names: Sequence[str], train: Split, val: Split | None = None, test: Split | None = None
) -> None:
    """Raise `UserError` if a class has no training images or is missing from a non-empty val/test split."""
    num_classes = len(class_names)
    for split in (train, val, test):
        if split is None or (len(split) == 0 and split is not train):
            continue
        counts = split.counts(num_classes)
        empty = [c for c, n in enumerate(counts) if n == 0]
        if not empty:
            continue
        names = ", ".join(repr(class_names[c]) for c in empty[:SHOW]) + (
            f" and {len(empty) - SHOW} more" if len(empty) > SHOW else ""
        )
        src = f" ({split.source})" if split.source else ""
        if split is train:
            raise UserError(
                f"{dataset}: {len(empty)} of {num_classes} classes have no training images{src}: {names}",
                "add images of those classes, or remove them (an empty class folder, a label no line uses)",
            )
        raise UserError(
            f"{dataset}: the {split.name} split{src} has no images of {len(empty)} of {num_classes} classes: {names}",
            f"add {split.name} images of those classes (their recall, and with "
            "it HM, GM and min recall, is undefined without them)",
        )
