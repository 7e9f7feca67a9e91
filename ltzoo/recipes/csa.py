"""CSA: context-shift augmentation for re-sampling (Shi et al., NeurIPS 2023, arXiv 2310.18236), any timm backbone.

    accelerate launch -m ltzoo.recipes.csa -c fmnist_ctx_lt/csa
    accelerate launch -m ltzoo.recipes.csa --dataset fmnist_lt --model resnet20_cifar --loss la --epochs 15
    (from a checkout, `accelerate launch recipes/csa.py ...` is the same recipe)

One shared backbone, two linear heads (`ltzoo.csa.CSAModel`). Branch 1 trains on instance-sampled
batches with CE or logit-adjusted CE (--loss); branch 2 with CE on class-balanced batches whose
backgrounds are context-shifted with (image, Grad-CAM mask) pairs of well-classified instance images
(--threshold), kept in a FIFO bank (--bank-size), from epoch --shift-after on. Both loaders draw the
whole training set per epoch with drop_last, so they yield the same number of batches.

Writes the run folder of every recipe (ltzoo.runs): the exported model is plain timm, its classifier
the two heads folded into one (their logits averaged, as CSA evaluates), so `ltzoo.recipes.btm --init`
and `ltzoo.recipes.gml --init` take it. The best epoch is chosen on the balanced validation split (by
HM); the test split is evaluated once, on the exported model. Restarted with the same --output, a run
continues from its last checkpoint, the context bank included (``bank.safetensors`` in the checkpoint).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file

from ltzoo.accel import apply_channels_last, describe
from ltzoo.argtypes import nonneg_int, positive_float, positive_int, unit_interval
from ltzoo.csa import ContextBank, CSAModel, train_csa_epoch
from ltzoo.data import create_sampler
from ltzoo.data.loader import make_loader
from ltzoo.engine import evaluate
from ltzoo.losses import create_loss
from ltzoo.metrics import brief, summary_table
from ltzoo.recipes.common import (add_data_group, add_model_args, add_optimizer_args, add_output_args,
                                  add_schedule_args, add_system_args, batch_preprocess, default_output, eval_loaders,
                                  load_data, needs_init, recipe_parser, RecipeParser, setup_logging, train_batch_size,
                                  training_accelerator)
from ltzoo.recipes.optim import create_optimizer, create_scheduler
from ltzoo.recipes.pretrain import _check_start
from ltzoo.recipes.runfolder import BestEpoch, discard_unfinished_folders, finish_run, RunFolder
from ltzoo.errors import run_main
from ltzoo.runs import create_model, image_transform, write_run_config

logger = get_logger(__name__)

BANK_FILE = "bank.safetensors"  # the context bank, inside each checkpoint folder


def _check_csa(args, given) -> str | None:
    if args.tau != 1.0 and args.loss != "la":
        return f"--tau is the strength of --loss la, not of --loss {args.loss}: drop --tau, or use --loss la"
    if args.shift_after >= args.epochs:
        return (f"--shift-after {args.shift_after} leaves no epoch of context shift in --epochs {args.epochs}: "
                f"give --shift-after below {args.epochs}, or more --epochs")
    if args.compile:
        return ("--compile is not supported by csa (Grad-CAM reads the backbone's feature maps of the plain "
                "model): drop --compile")
    if args.bank_size < args.batch_size:
        return (f"--bank-size {args.bank_size} is smaller than --batch-size {args.batch_size}: the bank must hold "
                "a batch's worth of contexts before any batch is shifted; give --bank-size >= --batch-size")
    return None


def build_parser() -> RecipeParser:
    """The CSA recipe's flags, and the combinations it refuses."""
    p = recipe_parser(__doc__, __file__)
    add_data_group(p)
    g = p.add_argument_group("model and training")
    add_model_args(g)
    add_schedule_args(g)
    add_optimizer_args(g)
    add_system_args(g)
    g = p.add_argument_group("run folder")
    add_output_args(g, resume="continue from the run folder's last checkpoint if it has one", checkpoints=True)
    g = p.add_argument_group("CSA")
    g.add_argument("--loss", default="ce", choices=("ce", "la"),
                   help="branch 1's loss on instance-sampled batches (branch 2's is CE): ce, or la (logit-adjusted)")
    g.add_argument("--tau", type=float, default=1.0, help="logit adjustment strength (--loss la)")
    g.add_argument("--shift-after", "--warmup-epochs-csa", dest="shift_after", type=nonneg_int, default=3,
                   help="epochs of branch 1 alone before context shift starts (and with it branch 2, unless "
                        "--branch2-before-shift); the paper's CIFAR runs wait 10 of 200")
    g.add_argument("--bank-size", type=positive_int, default=128,
                   help="(image, background mask) pairs in the FIFO context bank (>= --batch-size)")
    g.add_argument("--threshold", type=unit_interval, default=0.8,
                   help="true-class probability under branch 1 an instance image needs to enter the bank")
    g.add_argument("--branch2-before-shift", action=argparse.BooleanOptionalAction, default=False,
                   help="train branch 2 on unshifted balanced batches until shifting starts (the authors do not)")
    g.add_argument("--max-grad-norm", type=positive_float, default=None, help="clip gradients to this norm; unset: no clip")
    g.add_argument("--crop-padding", type=int, default=None, help="random-translation pixels; unset: image size / 8")
    g.add_argument("--select", default="hm", choices=("hm", "gm", "acc", "mean_class_acc"),
                   help="validation metric that picks the best epoch")
    p.set_defaults(dataset="fmnist_ctx_lt", model="resnet20_cifar", epochs=15)
    p.add_check(needs_init("--new-head"))
    p.add_check(_check_start)
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


def main(argv=None) -> dict:
    """Parse ``argv`` (default: the command line) and run CSA; returns results.json's content."""
    args = build_parser().parse_args(argv)
    with discard_unfinished_folders():  # bad input found after the run folder was made: no half-made folder
        return run(args)


def run(args: argparse.Namespace) -> dict:
    """Run CSA with parsed arguments (``build_parser().parse_args``); returns results.json's content."""
    setup_logging()
    out = default_output(f"csa-{args.loss}", args)
    accelerator, precision = training_accelerator(args, out)
    folder = RunFolder(out, accelerator)
    start = time.perf_counter()

    ds = load_data(args, accelerator)
    net = create_model(ds, args.model, init=args.init, new_head=args.new_head, pretrained=args.pretrained)
    arch = net.pretrained_cfg.get("architecture") or args.model  # --init's, whatever --model says
    channels_last = apply_channels_last(net, args.channels_last)
    model = CSAModel(net)  # branch 1: the timm model's classifier; branch 2: a copy of it
    transform = image_transform(ds, net, train=True)
    batch_size = train_batch_size(args, ds, accelerator)
    # both draw len(train) images an epoch (drop_last): as many instance batches as balanced ones
    instance_dl, balanced_dl = (
        make_loader(ds.train, batch_size, create_sampler(name, ds.train.labels, ds.num_classes, seed=args.seed + i),
                    transform, args.workers, drop_last=True)
        for i, name in enumerate(("instance", "balanced")))
    val_dl, test_dl = eval_loaders(args, ds, net)
    prep = batch_preprocess(args, ds, channels_last, accelerator.device)
    loss_fn = create_loss(args.loss, ds.train_counts, **({"tau": args.tau} if args.loss == "la" else {}))
    loss_fn = loss_fn.to(accelerator.device)
    optimizer = create_optimizer(model, args.optimizer, args.lr, args.weight_decay)
    # optimiser steps per epoch as the prepared scheduler counts them (see ltzoo.recipes.pretrain)
    per_process = len(instance_dl) // accelerator.num_processes
    steps_per_epoch = -(-per_process // args.grad_accum) * accelerator.num_processes
    scheduler = create_scheduler(optimizer, args.epochs * steps_per_epoch, int(args.warmup_epochs * steps_per_epoch))
    model, optimizer, instance_dl, balanced_dl, val_dl, test_dl, scheduler = accelerator.prepare(
        model, optimizer, instance_dl, balanced_dl, val_dl, test_dl, scheduler)
    bank = ContextBank(args.bank_size)
    checkpoint_bank(accelerator, bank)

    if not args.resume:
        folder.reset()
    state = folder.resume()  # before anything is written: a run folder it refuses stays as it was
    config = write_run_config(out, {**vars(args), "recipe": "csa", "output": str(out)}) \
        if accelerator.is_main_process else vars(args)
    accelerator.init_trackers("csa", config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))})
    first = 0 if state is None else state["epoch"] + 1
    best = BestEpoch(out, accelerator, args.select, state["best"] if state else None)
    train_seconds = state["train_seconds"] if state else 0.0
    shifted_steps = state["shifted_steps"] if state else 0
    for epoch in range(first, args.epochs):
        set_seed(args.seed + epoch)
        instance_dl.set_epoch(epoch)
        balanced_dl.set_epoch(epoch)
        stats = train_csa_epoch(accelerator, model, instance_dl, balanced_dl, loss_fn, optimizer, prep, bank,
                                scheduler, epoch=epoch, seed=args.seed, warmup_epochs=args.shift_after,
                                threshold=args.threshold, branch2_before_shift=args.branch2_before_shift,
                                max_grad_norm=args.max_grad_norm, progress=not args.no_progress)
        train_seconds += stats["seconds"]
        shifted_steps += stats["shifted_steps"]
        record = {"epoch": epoch, "lr": scheduler.get_last_lr()[0], **stats}
        if val_dl is not None:
            val = evaluate(accelerator, model, val_dl, prep, ds.train_counts, ds.shot_thresholds, "val",
                           progress=not args.no_progress)
            record["val"] = brief(val)
            best.update(epoch, val, model)
        folder.log(record)
        accelerator.log({"train/loss": stats["loss"], "train/loss1": stats["loss1"], "train/loss2": stats["loss2"],
                         "train/bank": stats["bank"], **{f"val/{k}": v for k, v in record.get("val", {}).items()
                                                         if v is not None}}, step=epoch)
        logger.info(f"epoch {epoch}: loss {stats['loss']:.4f} (branch 1 {stats['loss1']:.4f}, branch 2 "
                    f"{stats['loss2']:.4f}), bank {stats['bank']}, shifted steps {stats['shifted_steps']}"
                    + (f", val acc {record['val']['acc']:.4f} hm {record['val']['hm']:.4f}" if "val" in record else ""),
                    main_process_only=True)
        if (epoch + 1) % args.save_every == 0 or epoch + 1 == args.epochs:
            folder.save(epoch, {"best": best.best, "train_seconds": train_seconds, "shifted_steps": shifted_steps})
    if shifted_steps == 0:
        logger.warning(f"no batch was context-shifted: the bank never held {batch_size} images branch 1 gives "
                       f"p >= {args.threshold}; lower --threshold or --shift-after, or train longer", main_process_only=True)

    best.restore(model)  # the epoch chosen on the validation split
    exported = accelerator.unwrap_model(model).export().eval()  # plain timm, the two heads folded into one
    results = finish_run(accelerator, exported, ds, out, {"val": val_dl, "test": test_dl}, prep, {
        "recipe": "csa", "method": "csa" if args.loss == "ce" else f"csa+{args.loss}",
        "model": arch, "parents": [args.init] if args.init else [],
        **best.fields(args.epochs),
        "shifted_steps": shifted_steps, "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - start, "config": config,
        "speed": describe(precision, channels_last, False),
    }, title=f"{arch} CSA")
    accelerator.print(summary_table({f"{arch} {results['method']}": results["metrics"]}))
    accelerator.print(f"run folder: {out}")
    accelerator.end_training()
    return results


if __name__ == "__main__":
    run_main(main, __file__)
