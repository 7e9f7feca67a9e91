"""CSA: context-shift augmentation for re-sampling (Shi et al., NeurIPS 2023, arXiv 2310.18236), any timm backbone.

    accelerate launch -m ltzoo.recipes.csa -c fmnist_ctx_lt/csa
    accelerate launch -m ltzoo.recipes.csa --dataset fmnist_lt --model resnet20_cifar --loss la --epochs 15
    (from a checkout, `accelerate launch recipes/csa.py ...` is the same recipe)

One shared backbone, two linear heads (`ltzoo.methods.context_shift.CSAModel`). Branch 1 trains on instance-sampled
batches with CE or logit-adjusted CE (--loss); branch 2 with CE on class-balanced batches whose
backgrounds are context-shifted with (image, Grad-CAM mask) pairs of well-classified instance images
(--threshold), kept in a FIFO bank (--bank-size), from epoch --shift-after on. Both loaders draw the
whole training set per epoch with drop_last, so they yield the same number of batches.

Writes the run folder of every recipe (ltzoo.runfolder.model_io): the exported model is plain timm, its classifier
the two heads folded into one (their logits averaged, as CSA evaluates), so `ltzoo.recipes.btm --init`
and `ltzoo.recipes.gml --init` take it. The best epoch is chosen on the balanced validation split (by
HM); the test split is evaluated once, on the exported model. Restarted with the same --output, a run
continues from its last checkpoint, the context bank included (``bank.safetensors`` in the checkpoint).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from safetensors.torch import load_file, save_file
from torch import nn

from ltzoo.config.argtypes import nonneg_int, positive_float, positive_int, unit_interval
from ltzoo.data import create_sampler
from ltzoo.data.loader import make_loader
from ltzoo.errors import run_main
from ltzoo.methods.context_shift import ContextBank, CSAModel, gradcam_masks, shift_batch
from ltzoo.methods.losses import create_loss
from ltzoo.recipes.flags import CLASSIC_SCHEDULE, RecipeParser, add_tau, add_training_flags, recipe_parser
from ltzoo.recipes.recipe import TrainingRecipe
from ltzoo.training.loop import EpochMeans, augmentation_generator, progress_bar, train_step, watched_epoch
from ltzoo.training.numerics import LossWatch

logger = get_logger(__name__)

BANK_FILE = "bank.safetensors"  # the context bank, inside each checkpoint folder


def _check_csa(args, given) -> str | None:
    if args.tau != 1.0 and args.loss != "la":
        return f"--tau is the strength of --loss la, not of --loss {args.loss}: drop --tau, or use --loss la"
    if args.shift_after >= args.epochs:
        return (
            f"--shift-after {args.shift_after} leaves no epoch of context shift in --epochs {args.epochs}: "
            f"give --shift-after below {args.epochs}, or more --epochs"
        )
    if args.compile:
        return (
            "--compile is not supported by csa (Grad-CAM reads the backbone's feature maps of the plain "
            "model): drop --compile"
        )
    if args.bank_size < args.batch_size:
        return (
            f"--bank-size {args.bank_size} is smaller than --batch-size {args.batch_size}: the bank must hold "
            "a batch's worth of contexts before any batch is shifted; give --bank-size >= --batch-size"
        )
    return None


def build_parser() -> RecipeParser:
    """The CSA recipe's flags, and the combinations it refuses."""
    p = recipe_parser(__doc__, __file__)
    add_training_flags(p)
    g = p.add_argument_group("CSA")
    g.add_argument(
        "--loss",
        default="ce",
        choices=("ce", "la"),
        help="branch 1's loss on instance-sampled batches (branch 2's is CE): ce, or la (logit-adjusted)",
    )
    add_tau(g)
    g.add_argument(
        "--shift-after",
        "--warmup-epochs-csa",
        dest="shift_after",
        type=nonneg_int,
        default=3,
        help="epochs of branch 1 alone before context shift starts (and with it branch 2, unless "
        "--branch2-before-shift); the paper's CIFAR runs wait 10 of 200",
    )
    g.add_argument(
        "--bank-size",
        type=positive_int,
        default=128,
        help="(image, background mask) pairs in the FIFO context bank (>= --batch-size)",
    )
    g.add_argument(
        "--threshold",
        type=unit_interval,
        default=0.8,
        help="true-class probability under branch 1 an instance image needs to enter the bank",
    )
    g.add_argument(
        "--branch2-before-shift",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="train branch 2 on unshifted balanced batches until shifting starts (the authors do not)",
    )
    g.add_argument(
        "--max-grad-norm", type=positive_float, default=None, help="clip gradients to this norm; unset: no clip"
    )
    # CSA keeps its own schedule (the context-shift paper's, not the data-derived defaults of ltzoo.recipes.defaults)
    p.set_defaults(dataset="fmnist_ctx_lt", model="resnet20_cifar", **{**CLASSIC_SCHEDULE, "epochs": 15})
    p.add_check(_check_csa)
    return p


def checkpoint_bank(accelerator: Accelerator, bank: ContextBank) -> None:
    """Save and restore ``bank`` with every ``save_state`` / ``load_state``, as safetensors in the checkpoint.

    (``register_for_checkpointing`` would pickle it.) Every process holds the same bank, so the main
    process writes it and every process reads it back, onto its device.
    """

    def save(models, weights, output_dir):
        if accelerator.is_main_process:
            save_file(bank.state_dict(), str(Path(output_dir) / BANK_FILE))

    def load(models, input_dir):
        bank.load_state_dict(load_file(str(Path(input_dir) / BANK_FILE)))
        if len(bank):
            bank.images, bank.masks = bank.images.to(accelerator.device), bank.masks.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


# ------------------------------------------------------------------------------------------ the loop
def _gather_admitted(
    accelerator: Accelerator, x: torch.Tensor, masks: torch.Tensor, probs: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every process's images above the threshold, in process order (one process: just its own)."""
    keep = probs >= threshold
    x, masks, probs = x[keep], masks[keep], probs[keep]
    if accelerator.num_processes == 1:
        return x, masks, probs
    x, masks = accelerator.pad_across_processes(x), accelerator.pad_across_processes(masks)
    probs = accelerator.pad_across_processes(probs, pad_index=-1)  # padding rows never pass the threshold
    return accelerator.gather(x), accelerator.gather(masks), accelerator.gather(probs)


def csa_step(
    accelerator: Accelerator,
    model: nn.Module,
    batch1: tuple[torch.Tensor, torch.Tensor],
    batch2: tuple[torch.Tensor, torch.Tensor],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    bank: ContextBank,
    generator: torch.Generator,
    shift: bool,
    threshold: float = 0.8,
    branch2_before_shift: bool = False,
    scheduler=None,
    max_grad_norm: float | None = None,
    *,
    watch: LossWatch | None,
) -> dict:
    """One CSA step on an instance batch and a balanced batch (both preprocessed, on the device).

    Grad-CAM of branch 1 admits the well-classified instance images to ``bank``; when ``shift`` is on
    and the bank holds a batch's worth, the balanced batch is context-shifted; then
    loss = ``loss_fn``(branch 1 on batch 1) + CE(branch 2 on batch 2), and one optimiser step under
    `ltzoo.training.loop.train_step` (accumulation, autocast, scaling, clipping).

    Args:
        model: a `CSAModel`, as `accelerator.prepare` returned it.
        loss_fn: branch 1's loss (e.g. ``create_loss('ce' | 'la', counts)``).
        generator: draws the bank pairs and lam.
        shift: whether the warm-up is over.
        threshold: true-class probability an instance image needs to enter the bank.
        branch2_before_shift: train branch 2 on unshifted batches while shifting is off (the authors don't).
        watch: the epoch's loss watch (`ltzoo.training.loop.watched_epoch`), handed the summed loss.

    Returns:
        Detached ``loss``, ``loss1``, ``loss2`` (0-d tensors), ``admitted`` (images this process's
        batch put in the bank) and ``shifted`` (bool).
    """
    (x1, y1), (x2, y2) = batch1, batch2
    csa = accelerator.unwrap_model(model)
    with accelerator.autocast():
        masks, logits = gradcam_masks(csa.net, csa.head1, x1, y1)
    probs = logits.float().softmax(-1).gather(1, y1[:, None]).squeeze(1)
    admitted = int((probs >= threshold).sum())
    bank.add(*_gather_admitted(accelerator, x1, masks, probs, threshold), threshold=threshold)
    shifted = shift and bank.ready(len(x2))
    if shifted:
        x2, y2, _ = shift_batch(x2, y2, bank, generator)
    weight2 = 1.0 if shifted or branch2_before_shift else 0.0  # 0: branch 2 gets zero gradients

    def compute_loss():
        z1, z2 = model(x1, x2)
        loss1, loss2 = loss_fn(z1.float(), y1), F.cross_entropy(z2.float(), y2)
        return loss1 + weight2 * loss2, loss1, loss2

    loss, loss1, loss2 = train_step(accelerator, model, optimizer, compute_loss, scheduler, max_grad_norm, watch=watch)
    return {
        "loss": loss.detach(),
        "loss1": loss1.detach(),
        "loss2": loss2.detach(),
        "admitted": admitted,
        "shifted": shifted,
    }


def train_csa_epoch(
    accelerator: Accelerator,
    model: nn.Module,
    instance_loader: Iterable,
    balanced_loader: Iterable,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    prep,
    bank: ContextBank,
    scheduler=None,
    epoch: int = 0,
    seed: int = 0,
    warmup_epochs: int = 5,
    threshold: float = 0.8,
    branch2_before_shift: bool = False,
    max_grad_norm: float | None = None,
    progress: bool = True,
) -> dict:
    """One CSA epoch over paired (instance, balanced) batches; the instance loader sets its length.

    Augmentation (``prep``), bank draws and lam come from a generator seeded by (seed, epoch, process),
    so with the bank's state restored a resumed run repeats an interrupted one exactly. A loss or weights
    that turn non-finite end it on `ltzoo.training.numerics.NonFiniteTraining` (`ltzoo.training.loop.watched_epoch`).

    Args:
        prep: a `ltzoo.data.loader.BatchPreprocess` (uint8 batches to augmented, normalised floats).
        warmup_epochs: epochs before context shift starts (10 of 200 in the paper's CIFAR configs).
        Others as in `csa_step`.

    Returns:
        Mean ``loss``, ``loss1``, ``loss2`` over all processes' images, ``images``, ``seconds``,
        ``admitted`` (instance images that entered the bank, all processes), ``shifted_steps`` and
        ``bank`` (pairs held at the end).
    """
    model.train()
    if hasattr(loss_fn, "set_epoch"):
        loss_fn.set_epoch(epoch)
    gen = augmentation_generator(seed, epoch, accelerator.process_index)
    means, admitted, shifted = EpochMeans(accelerator, "loss", "loss1", "loss2"), 0, 0
    start = time.perf_counter()
    bar = progress_bar(accelerator, instance_loader, f"epoch {epoch}", progress)
    with watched_epoch(accelerator, model, epoch) as watch:
        for step, ((x1, y1), (x2, y2)) in enumerate(zip(bar, balanced_loader)):
            dev = accelerator.device
            x1, y1 = prep(x1.to(dev, non_blocking=True), train=True, generator=gen), y1.to(dev, non_blocking=True)
            x2, y2 = prep(x2.to(dev, non_blocking=True), train=True, generator=gen), y2.to(dev, non_blocking=True)
            out = csa_step(
                accelerator,
                model,
                (x1, y1),
                (x2, y2),
                loss_fn,
                optimizer,
                bank,
                gen,
                shift=epoch >= warmup_epochs,
                threshold=threshold,
                branch2_before_shift=branch2_before_shift,
                scheduler=scheduler,
                max_grad_norm=max_grad_norm,
                watch=watch,
            )
            means.add(len(y1), out["loss"], out["loss1"], out["loss2"])
            admitted, shifted = admitted + out["admitted"], shifted + int(out["shifted"])
            if not bar.disable and step % 10 == 0:
                bar.set_postfix(loss=f"{means.running('loss'):.4f}", bank=len(bank), refresh=False)
    losses, seen, (admitted, shifted) = means.result(admitted, shifted)
    return {
        **losses,
        "images": seen,
        "seconds": time.perf_counter() - start,
        "admitted": int(admitted),
        # every process shifts on the same steps: the sum over processes counts each step num_processes times
        "shifted_steps": int(shifted) // accelerator.num_processes,
        "bank": len(bank),
    }


# ---------------------------------------------------------------------------------------- the recipe
class CSA(TrainingRecipe):
    """CSA: one backbone, two heads, context-shifted balanced batches; exported as one plain timm model."""

    name = "csa"
    build_parser = staticmethod(build_parser)

    def run_name(self) -> str:
        return f"csa-{self.args.loss}"

    def training_model(self, net):
        return CSAModel(net)  # branch 1: the timm model's classifier; branch 2: a copy of it

    def train_loaders(self, ds, transform) -> list:
        # both draw len(train) images an epoch (drop_last): as many instance batches as balanced ones
        args = self.args
        return [
            make_loader(
                ds.train,
                self.batch_size,
                create_sampler(name, ds.train.labels, ds.num_classes, seed=args.seed + i),
                transform,
                args.workers,
                drop_last=True,
            )
            for i, name in enumerate(("instance", "balanced"))
        ]

    def build_loss(self, ds) -> None:
        args = self.args
        loss_fn = create_loss(args.loss, ds.train_counts, **({"tau": args.tau} if args.loss == "la" else {}))
        self.loss_fn = loss_fn.to(self.accelerator.device)

    def after_prepare(self) -> None:
        self.bank = ContextBank(self.args.bank_size)
        checkpoint_bank(self.accelerator, self.bank)

    def train_epoch(self, epoch: int) -> dict:
        args = self.args
        self.state.setdefault("shifted_steps", 0)
        stats = train_csa_epoch(
            self.accelerator,
            self.model,
            *self.train_dls,
            self.loss_fn,
            self.optimizer,
            self.prep,
            self.bank,
            self.scheduler,
            epoch=epoch,
            seed=args.seed,
            warmup_epochs=args.shift_after,
            threshold=args.threshold,
            branch2_before_shift=args.branch2_before_shift,
            max_grad_norm=args.max_grad_norm,
            progress=not args.no_progress,
        )
        self.state["shifted_steps"] += stats["shifted_steps"]
        return stats

    def epoch_line(self, stats: dict) -> str:
        return (
            f"loss {stats['loss']:.4f} (branch 1 {stats['loss1']:.4f}, branch 2 {stats['loss2']:.4f}), "
            f"bank {stats['bank']}, shifted steps {stats['shifted_steps']}"
        )

    def exported_model(self):
        if self.state.get("shifted_steps", 0) == 0:
            logger.warning(
                f"no batch was context-shifted: the bank never held {self.batch_size} images branch 1 "
                f"gives p >= {self.args.threshold}; lower --threshold or --shift-after, or train longer",
                main_process_only=True,
            )
        return self.accelerator.unwrap_model(self.model).export().eval()  # plain timm, the two heads folded into one

    def result_fields(self) -> dict:
        return {
            "recipe": "csa",
            "method": "csa" if self.args.loss == "ce" else f"csa+{self.args.loss}",
            "shifted_steps": self.state.get("shifted_steps", 0),
        }

    def title(self) -> str:
        return f"{self.arch} CSA"


main = CSA.main


if __name__ == "__main__":
    run_main(main, __file__)
