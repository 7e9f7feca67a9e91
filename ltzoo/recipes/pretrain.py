"""Stage 1: train any timm backbone on long-tailed data with the classic losses and samplers.

    accelerate launch -m ltzoo.recipes.pretrain -c fmnist_lt/ce
    accelerate launch -m ltzoo.recipes.pretrain --dataset fmnist_lt --model resnet32_cifar --loss bsce --epochs 30
    (from a checkout, `accelerate launch recipes/pretrain.py ...` is the same recipe)

Writes a run folder (see ltzoo.runs): timm's config.json + model.safetensors, results.json, the
per-class recall plot, log.jsonl and run_config.yaml. The best epoch is chosen on the balanced
validation split (by HM); the test split is evaluated once, on the chosen model. Restarted with the
same --output, a run continues from its last complete checkpoint.
"""
from __future__ import annotations

import argparse
import functools
import time

import torch
from accelerate.logging import get_logger
from accelerate.utils import set_seed

from ltzoo import adapters
from ltzoo.accel import apply_channels_last, compile_model, describe
from ltzoo.data import create_sampler
from ltzoo.data.loader import make_loader
from ltzoo.engine import evaluate, train_one_epoch
from ltzoo.losses import create_loss, list_losses
from ltzoo.metrics import brief, summary_table
from ltzoo.recipes.common import (add_data_group, add_model_args, add_optimizer_args, add_output_args,
                                  add_schedule_args, add_system_args, batch_preprocess, default_output, eval_loaders,
                                  load_data, needs_init, recipe_parser, RecipeParser, setup_logging, train_batch_size,
                                  training_accelerator)
from ltzoo.recipes.optim import create_optimizer, create_scheduler
from ltzoo.argtypes import nonneg_float, nonneg_int, unit_interval
from ltzoo.errors import run_main
from ltzoo.recipes.runfolder import BestEpoch, discard_unfinished_folders, finish_run, RunFolder
from ltzoo.runs import create_model, image_transform, write_run_config

logger = get_logger(__name__)


@functools.lru_cache(maxsize=None)
def soft_target_losses() -> tuple[str, ...]:
    """The losses that take soft (N, C) targets, as mixup / cutmix make: asked of each loss itself."""
    names = []
    logits, soft = torch.zeros(2, 2), torch.full((2, 2), 0.5)
    for name in list_losses():
        try:
            create_loss(name, [2, 1])(logits, soft)
            names.append(name)
        except (ValueError, TypeError, RuntimeError):  # a loss's answer to a target it cannot take
            pass
    return tuple(names)


def _check_losses(args, given) -> str | None:
    mixing = bool(args.mixup or args.cutmix)
    if mixing and args.loss not in soft_target_losses():
        *others, last = soft_target_losses()
        return (f"--mixup/--cutmix make soft targets, which --loss {args.loss} cannot take: use --loss "
                f"{', '.join(others)} or {last}, or drop --mixup/--cutmix")
    if args.label_smoothing and args.loss != "ce" and not mixing:
        return (f"--label-smoothing smooths the targets of --loss ce (or, with --mixup/--cutmix, the mixed targets), "
                f"not those of --loss {args.loss}: drop --label-smoothing, or use --loss ce")
    if args.tau != 1.0 and args.loss != "la":
        return f"--tau is the strength of --loss la, not of --loss {args.loss}: drop --tau, or use --loss la"
    if args.drw_epoch is not None and args.loss != "ldam_drw":
        return "--drw-epoch is the re-weighting epoch of --loss ldam_drw: drop it, or use --loss ldam_drw"
    return None


def _check_start(args, given) -> str | None:
    if args.init and "pretrained" in given and args.pretrained:
        return "--pretrained starts from timm's weights and --init from a trained model: give one of them"
    return None


def build_parser() -> RecipeParser:
    """The stage-1 recipe's flags, and the combinations it refuses."""
    p = recipe_parser(__doc__, __file__)
    add_data_group(p)
    g = p.add_argument_group("model and training")
    add_model_args(g)
    add_schedule_args(g)
    add_optimizer_args(g)
    add_system_args(g)
    g = p.add_argument_group("fine-tuning (pretrained weights, adapters)")
    adapters.add_finetune_args(g)
    g = p.add_argument_group("run folder")
    add_output_args(g, resume="continue from the run folder's last checkpoint if it has one", checkpoints=True)
    g = p.add_argument_group("stage 1")
    g.add_argument("--loss", default="ce", choices=list_losses(), help="the training loss (ltzoo.losses)")
    g.add_argument("--sampler", default="instance", choices=("instance", "balanced", "sqrt", "progressive"),
                   help="how training images are drawn (ltzoo.data.samplers)")
    g.add_argument("--label-smoothing", type=unit_interval, default=0.0,
                   help="for --loss ce; with --mixup/--cutmix, applied once, by timm's Mixup, to any loss")
    g.add_argument("--tau", type=nonneg_float, default=1.0, help="logit adjustment strength (--loss la)")
    g.add_argument("--drw-epoch", type=nonneg_int, default=None,
                   help="LDAM-DRW re-weighting start epoch (--loss ldam_drw); unset: 80%% of --epochs")
    g.add_argument("--mixup", type=nonneg_float, default=0.0, help="timm mixup alpha (0: off; losses that take soft targets)")
    g.add_argument("--cutmix", type=nonneg_float, default=0.0, help="timm cutmix alpha (0: off; losses that take soft targets)")
    g.add_argument("--crop-padding", type=nonneg_int, default=None, help="random-translation pixels; unset: image size / 8")
    g.add_argument("--select", default="hm", choices=("hm", "gm", "acc", "mean_class_acc"),
                   help="validation metric that picks the best epoch")
    p.add_check(needs_init("--new-head"))
    p.add_check(_check_start)
    p.add_check(_check_losses)
    p.add_check(adapters.check_adapter_args)
    return p


def loss_kwargs(args: argparse.Namespace) -> dict:
    """The loss's hyper-parameters from the flags (label smoothing: the loss's only without mixup)."""
    smoothing = 0.0 if (args.mixup or args.cutmix) else args.label_smoothing  # timm's Mixup smooths instead
    return {"ce": {"smoothing": smoothing}, "la": {"tau": args.tau},
            # s = 30 is the paper's scale for a cosine classifier; timm's heads are plain linear layers,
            # whose logits already carry their scale: s = 1 keeps training stable
            "ldam": {"s": 1.0},
            "ldam_drw": {"s": 1.0, "drw_epoch": args.drw_epoch if args.drw_epoch is not None else int(0.8 * args.epochs)},
            }.get(args.loss, {})


def main(argv=None) -> dict:
    """Parse ``argv`` (default: the command line) and run stage 1; returns results.json's content."""
    args = build_parser().parse_args(argv)
    with discard_unfinished_folders():  # bad input found after the run folder was made: no half-made folder
        return run(args)


def run(args: argparse.Namespace, end_training: bool = True) -> dict:
    """Run stage 1 with parsed arguments (``build_parser().parse_args``); returns results.json's content.

    ``end_training=False`` leaves accelerate's process group up for a calling recipe (BTM's own stage 1).
    """
    setup_logging()
    out = default_output(f"pretrain-{args.loss}", args)
    accelerator, precision = training_accelerator(args, out)
    folder = RunFolder(out, accelerator)
    start = time.perf_counter()

    ds = load_data(args, accelerator)
    model = create_model(ds, args.model, init=args.init, new_head=args.new_head, pretrained=args.pretrained,
                         pretrained_file=args.pretrained_file)
    arch = model.pretrained_cfg.get("architecture") or args.model  # --init's, whatever --model says
    spec = adapters.spec_from_args(args)
    model = adapters.wrap(model, spec)
    accelerator.print(adapters.describe(args, model))
    channels_last = apply_channels_last(model, args.channels_last)
    transform = image_transform(ds, model, train=True)
    sampler = create_sampler(args.sampler, ds.train.labels, ds.num_classes, seed=args.seed, total_epochs=args.epochs)
    train_dl = make_loader(ds.train, train_batch_size(args, ds, accelerator), sampler, transform, args.workers,
                           drop_last=True)
    val_dl, test_dl = eval_loaders(args, ds, model)
    prep = batch_preprocess(args, ds, channels_last, accelerator.device, model)
    loss_fn = create_loss(args.loss, ds.train_counts, **loss_kwargs(args)).to(accelerator.device)
    mixup = None
    if args.mixup or args.cutmix:
        from timm.data import Mixup
        mixup = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, label_smoothing=args.label_smoothing,
                      num_classes=ds.num_classes)
    optimizer = create_optimizer(model, args.optimizer, args.lr, args.weight_decay, args.layer_decay)
    # optimiser steps per epoch as the prepared scheduler counts them: each process gets len // num_processes
    # batches (drop_last), and accelerate steps the scheduler num_processes times per optimiser step
    per_process = len(train_dl) // accelerator.num_processes
    steps_per_epoch = -(-per_process // args.grad_accum) * accelerator.num_processes
    scheduler = create_scheduler(optimizer, args.epochs * steps_per_epoch, int(args.warmup_epochs * steps_per_epoch))
    model, optimizer, train_dl, val_dl, test_dl, scheduler = accelerator.prepare(
        compile_model(model) if args.compile else model, optimizer, train_dl, val_dl, test_dl, scheduler)

    if not args.resume:
        folder.reset()
    state = folder.resume()  # before anything is written: a run folder it refuses stays as it was
    config = write_run_config(out, {**vars(args), "recipe": "pretrain", "output": str(out)}) \
        if accelerator.is_main_process else vars(args)
    accelerator.init_trackers("pretrain", config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))})
    first = 0 if state is None else state["epoch"] + 1
    best = BestEpoch(out, accelerator, args.select, state["best"] if state else None)
    train_seconds = state["train_seconds"] if state else 0.0
    for epoch in range(first, args.epochs):
        set_seed(args.seed + epoch)
        train_dl.set_epoch(epoch)
        stats = train_one_epoch(accelerator, model, train_dl, loss_fn, optimizer, prep, scheduler, epoch=epoch,
                                seed=args.seed, mixup=mixup, progress=not args.no_progress)
        train_seconds += stats["seconds"]
        record = {"epoch": epoch, "lr": scheduler.get_last_lr()[0], **stats}
        if val_dl is not None:
            val = evaluate(accelerator, model, val_dl, prep, ds.train_counts, ds.shot_thresholds, "val",
                           progress=not args.no_progress)
            record["val"] = brief(val)
            best.update(epoch, val, model)
        folder.log(record)
        accelerator.log({"train/loss": stats["loss"], **{f"val/{k}": v for k, v in record.get("val", {}).items()
                                                        if v is not None}}, step=epoch)
        logger.info(f"epoch {epoch}: loss {stats['loss']:.4f}"
                    + (f", val acc {record['val']['acc']:.4f} hm {record['val']['hm']:.4f}" if "val" in record else ""),
                    main_process_only=True)
        if (epoch + 1) % args.save_every == 0 or epoch + 1 == args.epochs:
            folder.save(epoch, {"best": best.best, "train_seconds": train_seconds})

    best.restore(model)  # the epoch chosen on the validation split
    if spec.enabled:  # the adapter alone, then the plain timm model it makes (the export)
        if accelerator.is_main_process:
            adapters.save_adapter(accelerator.unwrap_model(model), spec, out / "adapter")
        model = adapters.merged(accelerator.unwrap_model(model))
    results = finish_run(accelerator, model, ds, out, {"val": val_dl, "test": test_dl}, prep, {
        "recipe": "pretrain", "method": args.loss if args.sampler == "instance" else f"{args.loss}+{args.sampler}",
        "model": arch, "parents": [args.init] if args.init else [],
        **best.fields(args.epochs),
        "train_seconds": train_seconds, "wall_seconds": time.perf_counter() - start, "config": config,
        "speed": describe(precision, channels_last, args.compile),
    }, title=f"{arch} {args.loss}")
    accelerator.print(summary_table({f"{arch} {results['method']}": results["metrics"]}))
    accelerator.print(f"run folder: {out}")
    if end_training:
        accelerator.end_training()
    return results


if __name__ == "__main__":
    run_main(main, __file__)
