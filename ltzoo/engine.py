"""The loops every recipe shares: one training epoch, prediction, evaluation and feature extraction.

All of them run under an `accelerate.Accelerator`: batches come from prepared loaders, gradients go
through ``accelerator.accumulate`` / ``accelerator.backward`` under ``accelerator.autocast`` (bf16 or
fp16 when the accelerator's mixed precision says so), and evaluation gathers predictions with
``gather_for_metrics`` so every sample counts once however many processes ran.

Prediction, evaluation and feature extraction always run in fp32 on the plain (uncompiled) model
(`ltzoo.accel.full_precision`), whatever precision trained it: a run's metrics, its card and
``ltzoo eval`` of the exported model agree exactly.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from ltzoo.accel import full_precision
from ltzoo.data.loader import BatchPreprocess
from ltzoo.metrics import longtail_metrics
from ltzoo.numerics import LossWatch

_logger = logging.getLogger(__name__)


def _bar(accelerator: Accelerator, loader: Iterable, desc: str, show: bool = True):
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                disable=not (show and accelerator.is_local_main_process))


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
        return {n: sums[i] / max(images, 1) for i, n in enumerate(self.names)}, images, sums[k + 1:]


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
    """Train for one pass over ``loader``; returns the mean loss, images seen and wall time.

    Augmentation draws from a generator seeded by (seed, epoch), so a resumed run repeats an
    interrupted one exactly. A loss that turns NaN or infinite (within 100 steps), or weights that are at
    the end, end the epoch on `ltzoo.numerics.NonFiniteTraining`: no checkpoint or export of NaN weights follows.
    """
    model.train()
    if hasattr(loss_fn, "set_epoch"):
        loss_fn.set_epoch(epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + accelerator.process_index)
    means, start = EpochMeans(accelerator, "loss"), time.perf_counter()
    watch = LossWatch(epoch, accelerator.mixed_precision, accelerator.device, accelerator)
    bar = _bar(accelerator, loader, f"epoch {epoch}", progress)
    for step, (x, y) in enumerate(bar):
        x, y = x.to(accelerator.device, non_blocking=True), y.to(accelerator.device, non_blocking=True)
        with accelerator.accumulate(model):
            x = prep(x, train=True, generator=gen)
            target = y
            if mixup is not None:
                x, target = mixup(x, y)
            with accelerator.autocast():
                loss = loss_fn(model(x), target)
            accelerator.backward(loss)
            if max_grad_norm and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        means.add(len(y), loss)
        watch.add(step, loss)
        if not bar.disable and step % 10 == 0:
            bar.set_postfix(loss=f"{means.running('loss'):.4f}", refresh=False)
    watch.check(model)
    out, seen, _ = means.result()
    return {**out, "images": seen, "seconds": time.perf_counter() - start}


@torch.no_grad()
def predict(
    accelerator: Accelerator,
    model: nn.Module,
    loader: Iterable,
    prep: BatchPreprocess,
    head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    features: bool = False,
    progress: bool = True,
    desc: str = "eval",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (or pre-logit features) and labels of every sample, gathered from all processes, on the CPU.

    Always in fp32, on the plain module under any DDP or compile wrapper, in eval mode: the numbers do
    not depend on the training precision, and equal those of the exported model (given batches in the
    same memory format, which ``prep`` decides).

    Args:
        head: maps the model's output to the logits to return (e.g. an ensemble of heads).
        features: return pooled pre-logit features (``forward_head(pre_logits=True)``) instead of logits.
    """
    outs, labels = [], []
    with full_precision(model, accelerator.device) as net:
        net.eval()
        for x, y in _bar(accelerator, loader, desc, progress):
            x, y = prep(x.to(accelerator.device, non_blocking=True)), y.to(accelerator.device)
            out = net.forward_head(net.forward_features(x), pre_logits=True) if features else net(x)
            if head is not None:
                out = head(out)
            out, y = accelerator.gather_for_metrics((out.float().contiguous(), y))
            outs.append(out.cpu())
            labels.append(y.cpu())
    return torch.cat(outs), torch.cat(labels)


def evaluate(
    accelerator: Accelerator,
    model: nn.Module,
    loader: Iterable,
    prep: BatchPreprocess,
    train_counts: list[int],
    shot_thresholds: tuple[int, int] = (100, 20),
    split: str = "",
    progress: bool = True,
) -> dict:
    """Long-tail metrics of ``model`` on one split; the result names the split it came from."""
    logits, labels = predict(accelerator, model, loader, prep, progress=progress, desc=f"eval {split}")
    return metrics_from_logits(logits, labels, train_counts, shot_thresholds, split)


def metrics_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, train_counts: list[int],
    shot_thresholds: tuple[int, int] = (100, 20), split: str = "",
) -> dict:
    """`longtail_metrics` of argmax predictions, tagged with the split name."""
    many, few = shot_thresholds
    out = longtail_metrics(labels, logits.argmax(-1), train_counts, num_classes=len(train_counts), many=many, few=few)
    out["split"] = split
    return out
