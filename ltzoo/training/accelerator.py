"""Speed choices for the hardware at hand: mixed precision, memory format, compilation.

- Mixed precision: ``"auto"`` trains under bf16 autocast (through accelerate) where the device computes
  bf16 natively: a GPU that `torch.cuda.is_bf16_supported` without emulation, a CPU with AMX-BF16 or
  AVX512-BF16 units; fp32 elsewhere (bf16 emulated on other CPUs is slower than fp32).
- channels_last: ``"auto"`` puts convolutional models (and their input batches) in NHWC, the layout
  oneDNN and cuDNN convolve fastest.
- `torch.compile`: on request only. On a small CPU the compile time outweighs the few percent a step
  gains over a short run, and each BTM member is a new module to compile (the measurements:
  benchmarks/results/speed.md, docs/benchmarks/speed.md).

`make_accelerator` is the one place in ltzoo that constructs an `accelerate.Accelerator` (a recipe's run
context, `ltzoo.recipes.run_context`, builds it once per process; ``ltzoo eval`` its own). Evaluation never
uses reduced precision or a compiled graph: `full_precision` runs a prepared model's plain fp32 forward,
so a run's metrics, its card and ``ltzoo eval`` agree exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator

import torch
from torch import nn

from ltzoo.runfolder.provenance import bf16_is_fast

_logger = logging.getLogger(__name__)

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


def _default_device() -> torch.device:
    """accelerate's device for this process, set up as `Accelerator()` will set it up (ACCELERATE_USE_CPU
    included: a `PartialState` made without it would start a multi-process CPU run as separate runs)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")).device


# ------------------------------------------------------------------------------------ the three choices
def resolve_mixed_precision(requested: str | None, device: torch.device | str | None = None) -> str:
    """accelerate's ``mixed_precision`` for a ``--mixed-precision`` value.

    Args:
        requested: ``"auto"`` (or None): ``"bf16"`` where `bf16_is_fast` on ``device``, else ``"no"``;
            ``"no"``, ``"bf16"``, ``"fp16"`` pass through.
        device: where training runs; None: accelerate's device for this process.

    Raises:
        ValueError: an unknown value, or fp16 on a CPU (accelerate has no fp16 autocast there).
    """
    choice = "auto" if requested is None else str(requested).lower()
    if choice not in MIXED_PRECISION:
        raise ValueError(f"--mixed-precision {requested!r}: choose one of {', '.join(MIXED_PRECISION)}")
    device = torch.device(device) if device is not None else _default_device()
    if choice == "auto":
        choice = "bf16" if bf16_is_fast(device) else "no"
        _logger.debug(f"mixed precision: {choice} (auto, {device.type})")  # results.json records it (speed)
    elif choice == "fp16" and device.type == "cpu":
        raise ValueError("--mixed-precision fp16 needs a GPU; on a CPU use bf16 (or auto, or no)")
    return choice


def is_convolutional(model: nn.Module) -> bool:
    """True for a network of 2-d convolutions (more than one: a ViT's patch embedding alone does not count)."""
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


def resolve_channels_last(requested: bool | str | None, model: nn.Module) -> bool:
    """Whether to train ``model`` in channels_last: ``"auto"`` (or None) for convolutional models."""
    if requested is None or requested == "auto":
        return is_convolutional(model)
    if isinstance(requested, str):
        raise ValueError(f"channels_last {requested!r}: use 'auto', True or False")
    return bool(requested)


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-d weights in channels_last (in place; returned for chaining)."""
    return model.to(memory_format=torch.channels_last)


def apply_channels_last(model: nn.Module, requested: bool | str | None = None) -> bool:
    """Put ``model`` in channels_last when `resolve_channels_last` says so; returns whether it did."""
    channels_last = resolve_channels_last(requested, model)
    if channels_last:
        to_channels_last(model)
    return channels_last


def compile_model(model: nn.Module, **kwargs) -> nn.Module:
    """`torch.compile` of ``model`` (``kwargs`` go to it). Compilation happens on the first call.

    The compiled module shares the parameters of ``model``; `unwrap` returns ``model`` from it.
    """
    return torch.compile(model, **kwargs)


# --------------------------------------------------------------------------------------- evaluation
def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel and `torch.compile` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def without_autocast_wrapper(accelerator, model: nn.Module) -> nn.Module:
    """``model`` (as ``accelerator.prepare`` returned it) with accelerate's mixed-precision forward wrapper
    removed, through accelerate's public ``unwrap_model(keep_fp32_wrapper=False)``; returns ``model``.

    Under mixed precision ``prepare`` makes the model's ``forward`` enter autocast itself, which no outer
    ``autocast(enabled=False)`` can stop. ltzoo removes that wrapper once, right after ``prepare``: training
    enters ``accelerator.autocast()`` explicitly (`ltzoo.training.loop.train_step`, logits cast to fp32 before the
    loss, as the wrapper did), and evaluation (`full_precision`) then really runs in fp32.
    """
    if accelerator.native_amp:
        accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    return model


@contextlib.contextmanager
def full_precision(model: nn.Module, device: torch.device | str | None = None) -> Iterator[nn.Module]:
    """Run ``model`` in fp32 inside this block: autocast off, no TF32. A model prepared under mixed precision
    loses accelerate's autocast wrapper for good, through accelerate's public
    ``extract_model_from_parallel(keep_fp32_wrapper=False)`` (training autocasts explicitly: see
    `without_autocast_wrapper`). Yields the plain module (see `unwrap`)."""
    from accelerate.utils import extract_model_from_parallel

    net = unwrap(extract_model_from_parallel(model, keep_fp32_wrapper=False))
    device = torch.device(device) if device is not None else next(net.parameters()).device
    # on a GPU, fp32 means fp32: no TF32 matmuls or convolutions (cuDNN allows them by default)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(device.type, enabled=False):
            yield net
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


# ---------------------------------------------------------------------------------- the accelerator
def make_accelerator(
    mixed_precision: str | None = None, grad_accum: int = 1, project_dir: str | None = None, log_with: str | None = None
):
    """The `accelerate.Accelerator` of a run: the one place in ltzoo that constructs one.

    Args:
        mixed_precision: a ``--mixed-precision`` value, resolved once here (`resolve_mixed_precision`:
            ``auto`` is bf16 where the device computes it natively, the CPU's AMX/AVX512-BF16 included);
            None: accelerate's own (its launcher's, or the process's existing state), for what only evaluates.
        grad_accum: gradient accumulation steps of the run's prepared training loop.
        project_dir, log_with: the tracker's folder and name (None: no tracker).
    """
    from accelerate import Accelerator

    precision = None if mixed_precision is None else resolve_mixed_precision(mixed_precision)
    return Accelerator(
        gradient_accumulation_steps=grad_accum, mixed_precision=precision, log_with=log_with, project_dir=project_dir
    )


# ------------------------------------------------------------------------------------------ the flags
def add_speed_arguments(group: argparse._ArgumentGroup) -> None:
    """``--mixed-precision``, ``--channels-last/--no-channels-last`` and ``--compile/--no-compile``."""
    group.add_argument(
        "--mixed-precision",
        default="auto",
        choices=MIXED_PRECISION,
        help="training precision (evaluation is always fp32); auto: bf16 where the CPU (AMX-BF16, "
        "AVX512-BF16) or GPU computes it natively, else no (fp32)",
    )
    group.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels_last memory format for the model and its batches; unset: for convolutional models",
    )
    group.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the training model (pays off only in long runs: benchmarks/results/speed.md)",
    )


def describe(mixed_precision: str, channels_last: bool, compiled: bool) -> dict:
    """The speed settings of a run, for its results.json (evaluation precision included)."""
    return {
        "mixed_precision": mixed_precision,
        "channels_last": bool(channels_last),
        "compile": bool(compiled),
        "eval_precision": "fp32",
    }
