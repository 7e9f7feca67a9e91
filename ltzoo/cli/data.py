"""``ltzoo data`` (a dataset's class counts and splits) and ``ltzoo eval`` (the long-tail metrics of a model).

Both take the data flags the recipes take (`ltzoo.data.args`), so a command names a dataset the way a
recipe's run did.
"""
from __future__ import annotations

from pathlib import Path

from ltzoo.argtypes import nonneg_int, positive_int
from ltzoo.cli.output import emit
from ltzoo.data import load_dataset
from ltzoo.data.args import add_data_args, dataset_kwargs
from ltzoo.errors import UserError


def _load(args, require_test: bool = True):
    return load_dataset(args.dataset, **dataset_kwargs(args), require_test=require_test)


def _add_data(p):
    p.add_argument("dataset", help="dataset name, e.g. fmnist_lt, cifar100_lt, places_lt, imagefolder, hf:NAME")
    add_data_args(p, seed=True, check_files=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_data(args) -> int:
    """Print a dataset's class counts and its many/medium/few split."""
    ds = _load(args, require_test=False)
    s = ds.summary()
    counts = s["class_counts"]
    text = "\n".join([
        f"{s['dataset']}: {s['num_classes']} classes, {s['train_images']} train / {s['val_images']} val / "
        f"{s['test_images']} test images, imbalance {s['imbalance_ratio']:.1f}",
        f"class counts: {counts if len(counts) <= 20 else str(counts[:10])[:-1] + ', ..., ' + str(counts[-3:])[1:]}",
        "many / medium / few: " + " / ".join(str(v) for v in s["many_medium_few"].values())
        + f"  ({', '.join(f'{k} {v}' for k, v in s['shot_thresholds'].items())})",
        f"validation split: {s['val_source'] or 'none'}",
        *([f"shot cuts: {s['shot_rule']}"] if s.get("shot_rule") else []),
        *([f"class order: {s['class_order']} ({', '.join(s['class_order_classes'])})"]
          if s.get("class_order") not in (None, "own") else []),
        *([f"context: {s['context']['rule']}"] if "context" in s else []),
    ])
    emit(s, args.json, text)
    return 0


def _add_eval(p):
    p.add_argument("model", help="a run folder, a hub id (org/name or hf-hub:org/name) or a timm model name")
    p.add_argument("--dataset", required=True, help="dataset name, e.g. fmnist_lt (see `ltzoo data --help`)")
    p.add_argument("--split", default="test", choices=("val", "test"), help="the split to evaluate on")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per batch")
    p.add_argument("--workers", type=nonneg_int, default=4, help="loader workers for file-backed datasets")
    p.add_argument("--output", default=None, help="folder for the metrics JSON and the per-class recall plot")
    add_data_args(p, seed=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_eval(args) -> int:
    """The long-tail metrics of any timm model, hub id or run folder on a dataset split."""
    from ltzoo.accel import apply_channels_last, make_accelerator, without_autocast_wrapper
    from ltzoo.data.loader import BatchPreprocess, make_loader
    from ltzoo.engine import evaluate
    from ltzoo.metrics import plot_per_class_recall, summary_table
    from ltzoo.files import write_json
    from ltzoo.models.pretrained import mark_input_from_weights
    from ltzoo.runs import batch_preprocess, check_classes, image_transform, load_model

    ds = _load(args)
    split = ds.val if args.split == "val" else ds.test
    if split is None:
        raise UserError(f"{ds.name} has no {args.split} split", "evaluate on --split test, or give the dataset a "
                        "validation split (--val-list, a val/ folder, or --val-per-class N)")
    model = load_model(args.model)  # a run folder's weights are checked first (ltzoo.runs.check_weights)
    check_classes(model, ds, args.model)
    accelerator = make_accelerator()  # evaluation runs in fp32 whatever its mixed precision (ltzoo.accel)
    loader = make_loader(split, args.batch_size, transform=image_transform(ds, model), num_workers=args.workers)
    # the recipes' layout: channels_last for convolutional models (the same numbers as their own evaluation)
    prep = (batch_preprocess(ds, model, channels_last=apply_channels_last(model)) if mark_input_from_weights(model) else
            BatchPreprocess(*_model_norm(model, ds), channels_last=apply_channels_last(model))).to(accelerator.device)
    model, loader = accelerator.prepare(model, loader)
    without_autocast_wrapper(accelerator, model)
    metrics = evaluate(accelerator, model, loader, prep, ds.train_counts, ds.shot_thresholds, args.split)
    result = {"model": args.model, "dataset": ds.name, "split": args.split, "split_source": split.source,
              "metrics": metrics}
    if args.output and accelerator.is_main_process:
        out = Path(args.output)
        write_json(out / "eval.json", result)
        plot_per_class_recall(metrics, ds.train_counts, out / "per_class_recall.png",
                              title=f"{args.model} on {ds.name} {args.split}", class_names=ds.class_names)
    if accelerator.is_main_process:
        emit(result, args.json, summary_table({args.model: {args.split: metrics}}, splits=(args.split,))
              + f"\n{args.split} split: {split.source}")
    return 0


def _model_norm(model, ds) -> tuple[tuple, tuple]:
    """The normalisation a model was trained with (its pretrained_cfg), falling back to the dataset's."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean, std = cfg.get("mean", ds.mean), cfg.get("std", ds.std)
    if len(mean) != ds.in_chans:
        return ds.mean, ds.std
    return tuple(mean), tuple(std)


COMMANDS = {"data": (cmd_data, _add_data), "eval": (cmd_eval, _add_eval)}
