"""Training that turns non-finite stops the run with one line, before anything is saved.

Once a step's loss is NaN or infinite the weights are (or soon will be) NaN too, and every later epoch,
checkpoint and export would carry them silently. `LossWatch` records, on the device and without a host
sync per step, the first step of an epoch whose loss is not finite (`ltzoo.training.loop.train_step` hands it every
step's loss, in every loop that trains weights: stage 1, CSA, BTM's members); `LossWatch.check` (every ``every``
steps and at the end of the epoch, on every process at once) raises `NonFiniteTraining`, a `UserError`:
``prog: error: the training loss became non-finite at epoch E, step S (bf16 mixed precision); <the fix>``.
Given the model at the end of the epoch, it also checks the weights: a NaN gradient in the epoch's last
step leaves NaN weights behind a finite loss.

Two causes seen in practice: a learning rate too high for the model, and reduced-precision kernels. One
of the latter (seen with oneDNN's AMX-BF16 and AVX512-BF16 kernels; docs/errors.md): on the CPU, the bf16 weight
gradient of a strided convolution whose input is smaller than its
stride (a 3x3, stride-2 conv on a 1x1 map, as timm's test_resnet makes of 8x8 images) leaves the kernel
taps that see only padding unwritten: they hold whatever the memory held, in about half the calls
something non-zero, sometimes NaN. fp32 computes them (as zeros) correctly.
"""

from __future__ import annotations

import torch

from ltzoo.errors import UserError


class NonFiniteTraining(UserError):
    """The training loss (or, ``step`` None, the weights) became NaN or infinite; names the epoch, the step
    and the precision, and what trained (``of``: e.g. ``"member 3"``) when it is not the run's model."""

    def __init__(self, epoch: int, step: int | None, precision: str, lr_flag: str = "--lr", of: str = ""):
        self.epoch, self.step, self.precision = epoch, step, precision
        if precision in ("bf16", "fp16"):
            where, fix = (
                f"{precision} mixed precision",
                f"lower {lr_flag}, or train in fp32 with --mixed-precision no (reduced-precision kernels "
                "can fail, e.g. bf16 convolutions on the CPU over feature maps smaller than their stride)",
            )
        else:
            where, fix = "fp32", f"lower {lr_flag} (or check the data and the loss's inputs for non-finite values)"
        of = f" of {of}" if of else ""
        what = (
            f"the training loss{of} became non-finite at epoch {epoch}, step {step}"
            if step is not None
            else f"the weights{of} became non-finite in epoch {epoch} (a gradient of its last step was NaN or infinite)"
        )
        super().__init__(f"{what} ({where})", fix)


class LossWatch:
    """The first step of an epoch whose loss is not finite, kept on the device; `check` raises on it.

    `ltzoo.training.loop.train_step` hands it each step's loss (`ltzoo.training.loop.watched_epoch` makes one per epoch
    and checks the weights at its end), so every loop that trains weights is watched.

    Args:
        epoch: the epoch being trained (named in the error).
        precision: the training precision, ``accelerator.mixed_precision`` (named in the error, with its fix).
        device: where the losses are.
        accelerator: with several processes, `check` gathers every process's first bad step, so that all
            of them stop together (each must then call it at the same steps); None: this process alone.
        every: `add` checks every this many steps (one host sync, and one gather with several processes).
        lr_flag: the flag of the learning rate that trains it (named in the fix).
        of: what trains, when not the run's model (``"member 3"``; named in the error).
    """

    def __init__(
        self,
        epoch: int,
        precision: str,
        device: torch.device | str,
        accelerator=None,
        every: int = 100,
        lr_flag: str = "--lr",
        of: str = "",
    ):
        self.epoch, self.precision, self.accelerator, self.every = epoch, precision, accelerator, every
        self.lr_flag, self.of, self.steps = lr_flag, of, 0
        self.first = torch.full((1,), -1, dtype=torch.long, device=device)

    def add(self, loss: torch.Tensor) -> None:
        """Record ``loss`` (a 0-d tensor) of the next step (the steps counted from 0); check every ``every``
        steps."""
        bad = ~torch.isfinite(loss.detach()).all()
        self.first = torch.where(bad & (self.first < 0), self.steps, self.first)
        self.steps += 1
        if self.steps % self.every == 0:
            self.check()

    def check(self, model: torch.nn.Module | None = None) -> None:
        """Raise `NonFiniteTraining` if a loss so far (on any process, when gathering) was not finite, or
        a floating-point parameter of ``model`` (if given: at the end of an epoch) is."""
        first = self.first
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            first = self.accelerator.gather(first)
        bad = first[first >= 0]
        if bad.numel():
            raise NonFiniteTraining(self.epoch, int(bad.min()), self.precision, self.lr_flag, self.of)
        if model is not None and not weights_are_finite(model):  # DDP: the same weights on every process
            raise NonFiniteTraining(self.epoch, None, self.precision, self.lr_flag, self.of)


def weights_are_finite(model: torch.nn.Module) -> bool:
    """True if every floating-point parameter of ``model`` is finite (one host sync)."""
    params = [p.detach() for p in model.parameters() if p.is_floating_point()]
    return bool(torch.stack([torch.isfinite(p).all() for p in params]).all()) if params else True
