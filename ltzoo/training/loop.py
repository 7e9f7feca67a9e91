"""The training loop every recipe shares: the one training step, a watched epoch, stage 1's epoch.

All of them run under an `accelerate.Accelerator`: batches come from prepared loaders, gradients go
through ``accelerator.accumulate`` / ``accelerator.backward`` under ``accelerator.autocast`` (bf16 or
fp16 when the accelerator's mixed precision says so), and evaluation gathers predictions with
``gather_for_metrics`` so every sample counts once however many processes ran.

`train_step` is the one optimiser step of every loop that trains weights (stage 1 here, CSA's two
branches, BTM's members); each hands it its epoch's `ltzoo.training.numerics.LossWatch` (`watched_epoch`), so a loss
or weights that turn NaN or infinite stop any of them on one line. Prediction, evaluation and feature extraction
always run in fp32 on the plain (uncompiled) model
(`ltzoo.training.accelerator.full_precision`), whatever precision trained it: a run's metrics, its card and
``ltzoo eval`` of the exported model agree exactly.

What a long run shows: `progress_bar` over a pass of batches (local main process, off with a recipe's
``--no-progress``), and `phase` around every step that is not an epoch (a merge, a feature pass, a head's fit,
the final evaluation): one line when it starts, one with its duration when it ends, and its seconds for the
recipe's results.json.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from ltzoo.data.loader import BatchPreprocess
from ltzoo.training.numerics import LossWatch

_logger = logging.getLogger(__name__)


def progress_bar(accelerator: Accelerator, loader: Iterable, desc: str, show: bool = True):
    """A tqdm bar over ``loader`` on the local main process (none with ``show`` False)."""
    return tqdm(
        loader, desc=desc, leave=False, dynamic_ncols=True, disable=not (show and accelerator.is_local_main_process)
    )


def duration(seconds: float) -> str:
    """``seconds`` for a log line: ``4.2 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class Phase:
    """The wall time of a `phase`, in ``seconds`` once it has ended."""

    seconds: float = 0.0


@contextlib.contextmanager
def phase(
    accelerator: Accelerator, what: str, log: logging.Logger | logging.LoggerAdapter | None = None, show: bool = True
) -> Iterator[Phase]:
    """A named phase of a run: one line when it starts and one with its duration when it ends (INFO, on the main
    process, through ``log``: the caller's logger; default this module's), so that no step of a long run is
    silent. Yields a `Phase` whose ``seconds`` the end sets (a phase that raises logs no end line); ``show``
    False times it without a line (a phase with nothing to do).

        with phase(accelerator, "merging 8 members") as t:
            ...
        seconds["merge"] = t.seconds
    """
    log = log if log is not None else _logger
    main = show and accelerator.is_main_process
    if main:
        log.info(f"{what} ...")
    timer, start = Phase(), time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start
    if main:
        log.info(f"{what}: done in {duration(timer.seconds)}")


class EpochMeans:
    """Image-weighted means of an epoch's losses over every process's images.

    The sums stay on the device (no host sync per step; float64 where the device has it, MPS has not), the
    image count on the host; both are summed over processes once, by ``result``.
    """

    def __init__(self, accelerator: Accelerator, *names: str):
        self.accelerator, self.names, self.images = accelerator, names, 0
        dtype = torch.float32 if accelerator.device.type == "mps" else torch.float64
        self.sums = torch.zeros(len(names), dtype=dtype, device=accelerator.device)

    def add(self, n: int, *values: torch.Tensor) -> None:
        """A batch of ``n`` images whose mean losses are ``values`` (0-d tensors, in ``names``' order)."""
        self.sums += torch.stack([v.detach().to(self.sums.dtype) for v in values]) * n
        self.images += n

    def running(self, name: str) -> float:
        """This process's mean of ``name`` so far (syncs with the device: for progress bars, now and then)."""
        return float(self.sums[self.names.index(name)]) / max(self.images, 1)

    def result(self, *counts: float) -> tuple[dict[str, float], int, list[float]]:
        """The means, the number of images and ``counts`` (host numbers), each summed over all processes."""
        host = torch.tensor([float(self.images), *map(float, counts)], dtype=self.sums.dtype, device=self.sums.device)
        sums = torch.cat([self.sums, host])
        if self.accelerator.num_processes > 1:
            sums = self.accelerator.reduce(sums, "sum")
        sums = sums.cpu().tolist()
        k = len(self.names)
        images = int(sums[k])
        return {n: sums[i] / max(images, 1) for i, n in enumerate(self.names)}, images, sums[k + 1 :]


def augmentation_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """The generator of an epoch's augmentation draws, seeded by (seed, epoch, stream): a resumed run repeats
    an interrupted one exactly. ``stream``: the process index (or anything else that must draw apart)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + stream)


def train_step(
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    compute_loss: Callable[[], torch.Tensor | tuple],
    scheduler=None,
    max_grad_norm: float | None = None,
    *,
    watch: LossWatch | None,
):
    """One optimiser step, the one every loop that trains weights takes (stage 1, CSA, BTM's members).

    Under ``accelerator.accumulate(model)`` (gradient accumulation), ``compute_loss()`` runs under
    ``accelerator.autocast()`` (the run's precision); ``accelerator.backward`` scales an fp16 loss; gradients
    are clipped to ``max_grad_norm`` on synchronising steps; then the optimiser and the scheduler step
    (a prepared optimiser skips the steps that only accumulate) and the gradients are dropped.

    Args:
        compute_loss: the forward pass and the loss, as a 0-d tensor or a tuple whose first item it is
            (the rest is handed back: a loop's per-branch losses, say). Models should hand the loss fp32
            logits (``model(x).float()``).
        watch: the epoch's `ltzoo.training.numerics.LossWatch` (from `watched_epoch`), handed the loss: a loss that
            turns non-finite stops the run. Required, so that no loop forgets it; None: unwatched (a
            benchmark's loop, say).

    Returns:
        What ``compute_loss`` returned.
    """
    with accelerator.accumulate(model):
        with accelerator.autocast():
            out = compute_loss()
        accelerator.backward(out[0] if isinstance(out, tuple) else out)
        if max_grad_norm and accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    if watch is not None:
        watch.add(out[0] if isinstance(out, tuple) else out)
    return out


@contextlib.contextmanager
def watched_epoch(
    accelerator: Accelerator, model: nn.Module, epoch: int, collective: bool = True, lr_flag: str = "--lr", of: str = ""
) -> Iterator[LossWatch]:
    """The `ltzoo.training.numerics.LossWatch` of one epoch, to hand every `train_step` of it; when the epoch ends
    it checks the losses left unchecked and ``model``'s weights: a loss or weights that became NaN or
    infinite end the run on `ltzoo.training.numerics.NonFiniteTraining` (epoch, step, precision and the fix), so no
    checkpoint or export of NaN weights follows.

    Args:
        collective: every process trains this epoch in step and they stop together (gathered checks);
            False for a loop on this process alone (BTM's members), which must not gather.
        lr_flag, of: the learning rate's flag and what trains, for the message (`LossWatch`).
    """
    watch = LossWatch(
        epoch,
        accelerator.mixed_precision,
        accelerator.device,
        accelerator if collective else None,
        lr_flag=lr_flag,
        of=of,
    )
    yield watch
    watch.check(model)


def train_one_epoch(
    accelerator: Accelerator,
    model: nn.Module,
    loader: Iterable,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    prep: BatchPreprocess,
    scheduler=None,
    epoch: int = 0,
    seed: int = 0,
    mixup: Callable | None = None,
    max_grad_norm: float | None = None,
    progress: bool = True,
) -> dict:
    """Train for one pass over ``loader`` with `train_step`; returns the mean loss, images seen and wall time.

    Augmentation draws from `augmentation_generator` (seed, epoch, process), so a resumed run repeats an
    interrupted one exactly. A loss or weights that turn non-finite end it on
    `ltzoo.training.numerics.NonFiniteTraining` (`watched_epoch`).
    """
    model.train()
    if hasattr(loss_fn, "set_epoch"):
        loss_fn.set_epoch(epoch)
    gen = augmentation_generator(seed, epoch, accelerator.process_index)
    means, start = EpochMeans(accelerator, "loss"), time.perf_counter()
    bar = progress_bar(accelerator, loader, f"epoch {epoch}", progress)
    with watched_epoch(accelerator, model, epoch) as watch:
        for step, (x, y) in enumerate(bar):
            x, y = x.to(accelerator.device, non_blocking=True), y.to(accelerator.device, non_blocking=True)
            x = prep(x, train=True, generator=gen)
            target = y
            if mixup is not None:
                x, target = mixup(x, y)
            loss = train_step(
                accelerator,
                model,
                optimizer,
                lambda x=x, target=target: loss_fn(model(x).float(), target),
                scheduler,
                max_grad_norm,
                watch=watch,
            )
            means.add(len(y), loss)
            if not bar.disable and step % 10 == 0:
                bar.set_postfix(loss=f"{means.running('loss'):.4f}", refresh=False)
    out, seen, _ = means.result()
    return {**out, "images": seen, "seconds": time.perf_counter() - start}
