"""BTM's members: fine-tuning the stage-1 model on one class-balanced subset, the settings a member file
records (so a resumed run skips only the members made the same way), and BN re-estimation of the merge.

Each member trains on its own process with no collective operation; its training depends on
(seed, member index) only, so N processes produce the files one process would.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate.optimizer import AcceleratedOptimizer
from accelerate.utils import set_seed
from safetensors import safe_open
from safetensors.torch import save_file

from ltzoo.data import create_sampler
from ltzoo.data.loader import make_loader
from ltzoo.files import atomic_path
from ltzoo.methods import adapters
from ltzoo.methods.losses import create_loss
from ltzoo.methods.merge import reestimate_bn
from ltzoo.runfolder.model_io import image_transform
from ltzoo.training.loop import augmentation_generator, progress_bar, train_step, watched_epoch
from ltzoo.training.optim import create_optimizer, create_scheduler


def trainable(model, which: str) -> None:
    """Let ``which`` parameters train ('all', 'backbone' or 'classifier'); freeze the others."""
    head = set(map(id, model.get_classifier().parameters()))
    for p in model.parameters():
        p.requires_grad = which == "all" or ((id(p) in head) == (which == "classifier"))


def fine_tune_member(
    accelerator, base, ds, subset, prep, args, m: int, path: Path, settings: dict[str, str] | None = None
) -> None:
    """Fine-tune a copy of the stage-1 model on one balanced subset; save it atomically.

    The member trains on this process alone, with no collective operation (processes train different
    numbers of members, and a resumed run skips some): its training depends on (seed, m) only, not on
    which process, or how many, run it. ``settings`` (see `member_settings`) are stored in the file. A loss or
    weights that turn non-finite stop the run on `ltzoo.training.numerics.NonFiniteTraining` (checked on this process
    alone) before the member is saved.
    """
    start = time.perf_counter()
    seed = args.seed * 1000 + m
    set_seed(seed)
    model = copy.deepcopy(base).to(accelerator.device)
    trainable(model, args.train_params)
    spec = adapters.spec_from_args(args)
    model = adapters.wrap(model, spec)  # --peft: an adapter (and the classifier) train, the rest is frozen
    split = ds.train.subset(subset)
    batch_size = min(args.member_batch_size, len(split))  # a subset smaller than a batch still trains
    loader = make_loader(
        split,
        batch_size,
        create_sampler("instance", split.labels, ds.num_classes, seed=seed),
        image_transform(ds, model, train=True),
        args.workers,
        drop_last=True,
    )
    optimizer = member_optimizer(
        accelerator, create_optimizer(model, args.optimizer, args.member_lr, args.weight_decay, args.layer_decay)
    )
    scheduler = create_scheduler(optimizer.optimizer, args.member_epochs * len(loader), len(loader))
    # --member-loss la (LT-Soups'): logit adjustment by the subset's own class counts
    member_loss = getattr(args, "member_loss", "ce")
    counts = torch.bincount(split.labels, minlength=ds.num_classes).clamp(min=1).tolist()
    loss_fn = create_loss(member_loss, counts).to(accelerator.device)
    net = _Frozen(model, args.member_bn)
    with one_step_per_batch(accelerator):
        for epoch in range(args.member_epochs):
            loader.sampler.set_epoch(epoch)
            gen = augmentation_generator(seed, epoch)
            net.train()
            with watched_epoch(
                accelerator, model, epoch, collective=False, lr_flag="--member-lr", of=f"member {m}"
            ) as watch:
                for x, y in loader:
                    x, y = x.to(accelerator.device, non_blocking=True), y.to(accelerator.device, non_blocking=True)
                    x = prep(x, train=True, generator=gen)
                    train_step(
                        accelerator, net, optimizer, lambda x=x, y=y: loss_fn(net(x).float(), y), scheduler, watch=watch
                    )
    meta = {**(settings or {}), "train_seconds": f"{time.perf_counter() - start:.3f}"}
    with atomic_path(path) as tmp:
        state = adapters.trainable_state(model, spec) if spec.enabled else model.state_dict()  # --peft: kilobytes
        save_file({k: v.contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=meta)


def member_optimizer(accelerator, optimizer: torch.optim.Optimizer) -> AcceleratedOptimizer:
    """``optimizer`` as accelerate steps it (fp16 loss scaling, accumulation) without registering it with
    ``accelerator`` (no state of a member is checkpointed), the loss scaler reset: every member starts from
    the scale a fresh run starts from, whichever members its process trained before."""
    if accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(torch.amp.GradScaler(accelerator.device.type).state_dict())
    return AcceleratedOptimizer(optimizer, device_placement=False, scaler=accelerator.scaler)


@contextlib.contextmanager
def one_step_per_batch(accelerator) -> Iterator[None]:
    """Every `ltzoo.training.loop.train_step` inside steps the optimiser: a member trains alone on its process,
    on its own (unprepared) loader, and ``--grad-accum`` is stage 1's."""
    steps, accelerator.gradient_accumulation_steps = accelerator.gradient_accumulation_steps, 1
    try:
        yield
    finally:
        accelerator.gradient_accumulation_steps = steps


def member_settings(args, subset: torch.Tensor, init_digest: str) -> dict[str, str]:
    """What a member depends on, stored in its file: a resumed run re-trains a member made otherwise."""
    keys = (
        "seed",
        "member_epochs",
        "member_lr",
        "member_batch_size",
        "train_params",
        "member_bn",
        "optimizer",
        "weight_decay",
        "peft",
        "lora_rank",
        "lora_alpha",
        "peft_targets",
        "layer_decay",
        "member_loss",
    )
    return {
        "init_sha1": init_digest,
        "subset_sha1": hashlib.sha1(subset.cpu().numpy().tobytes()).hexdigest(),
        **{k: str(getattr(args, k, None)) for k in keys if k != "member_loss" or getattr(args, k, "ce") != "ce"},
    }


def state_digest(model: torch.nn.Module) -> str:
    """SHA-1 of a model's weights (names and values)."""
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def member_train_seconds(path: Path) -> float:
    """The fine-tuning time recorded in a member's file (0 if it has none)."""
    with safe_open(str(path), "pt") as f:
        return float((f.metadata() or {}).get("train_seconds", 0.0))


def trained_member(path: Path, settings: dict[str, str]) -> bool:
    """True if ``path`` holds a member fine-tuned with ``settings``."""
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        meta.pop("train_seconds", None)
        return meta == settings
    except Exception:  # a corrupt or foreign file: train the member again
        return False


class _Frozen(torch.nn.Module):
    """Wraps a model so that train() keeps BatchNorm layers in eval mode when asked."""

    def __init__(self, model, bn: str):
        super().__init__()
        self.model, self.bn = model, bn

    def train(self, mode: bool = True):
        self.model.train(mode)
        if self.bn == "frozen":
            for mod in self.model.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.eval()
        return self

    def forward(self, x):
        return self.model(x)


def reestimate_on_subsets(
    net, ds, subsets, prep, transform, seed: int, workers: int = 0, accelerator=None, progress: bool = False
) -> None:
    """Re-estimate the merged model's BN statistics on the union of the balanced subsets' images (``progress``: a
    bar on ``accelerator``'s local main process)."""
    union = ds.train.subset(torch.cat(subsets).unique())
    # shuffled (seeded): the training-mode batches must not be one class each, as a class-sorted split gives
    order = torch.utils.data.RandomSampler(range(len(union)), generator=torch.Generator().manual_seed(seed))
    device = next(net.parameters()).device
    loader = make_loader(union, 256, order, transform=transform, num_workers=workers)
    if accelerator is not None:
        loader = progress_bar(accelerator, loader, "BN re-estimation", progress)
    reestimate_bn(net, (prep(x.to(device)) for x, _ in loader))
