"""The ltzoo command: inspect datasets, evaluate models, and publish the zoo.

    ltzoo data fmnist_lt --imbalance 100
    ltzoo data places_lt --train-list Places_LT_train.txt --json
    ltzoo eval RUN_DIR_OR_HUB_ID --dataset fmnist_lt --split test
    ltzoo card RUN_DIR
    ltzoo push RUN_DIR ORG/NAME [--private] [--revision R] [--dry-run]
    ltzoo zoo

Every command that reports numbers takes ``--json`` (one JSON object on stdout).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

_logger = logging.getLogger(__name__)
COMMANDS: dict[str, tuple[Callable, Callable]] = {}


def command(name: str, add_args: Callable[[argparse.ArgumentParser], None]):
    """Register ``func`` as the sub-command ``name`` whose flags ``add_args`` declares."""
    def wrap(func):
        COMMANDS[name] = (func, add_args)
        return func
    return wrap


def _emit(obj: dict, as_json: bool, text: str) -> None:
    sys.stdout.write((json.dumps(obj, indent=None if as_json else 2, default=str) if as_json else text) + "\n")


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="where the dataset's files are")
    p.add_argument("--imbalance", type=float, default=None,
                   help="imbalance ratio rho (largest / smallest class); unset: 100 for fmnist_lt and cifar*_lt, "
                        "the data as it is for the others")
    p.add_argument("--profile", default="exp", choices=("exp", "step"), help="long-tail profile")
    p.add_argument("--val-per-class", type=int, default=None,
                   help="balanced validation images per class to draw when the dataset has no val split; unset: "
                        "100 for fmnist_lt and cifar10_lt, 20 for the others, 0 (none) for the list datasets")
    p.add_argument("--seed", type=int, default=0, help="seed of the long-tail subsampling and the validation draw")
    p.add_argument("--train-list", default=None, help="`path label` list of the training images (list datasets)")
    p.add_argument("--val-list", default=None)
    p.add_argument("--test-list", default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _load(args, require_test: bool = True):
    from ltzoo.data import load_dataset
    from ltzoo.recipe import dataset_kwargs  # the same data flags as the recipes

    return load_dataset(args.dataset, **dataset_kwargs(args), require_test=require_test)


def _add_data(p):
    p.add_argument("dataset", help="dataset name, e.g. fmnist_lt, cifar100_lt, places_lt, imagefolder, hf:NAME")
    _data_flags(p)


@command("data", _add_data)
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
        *([f"context: {s['context']['rule']}"] if "context" in s else []),
    ])
    _emit(s, args.json, text)
    return 0


def _add_eval(p):
    p.add_argument("model", help="a run folder, a hub id (org/name or hf-hub:org/name) or a timm model name")
    p.add_argument("--dataset", required=True, help="dataset name, e.g. fmnist_lt (see `ltzoo data --help`)")
    p.add_argument("--split", default="test", choices=("val", "test"), help="the split to evaluate on")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch")
    p.add_argument("--workers", type=int, default=4, help="loader workers for file-backed datasets")
    p.add_argument("--output", default=None, help="folder for the metrics JSON and the per-class recall plot")
    _data_flags(p)


@command("eval", _add_eval)
def cmd_eval(args) -> int:
    """The long-tail metrics of any timm model, hub id or run folder on a dataset split."""
    from accelerate import Accelerator

    from ltzoo.data.loader import BatchPreprocess, make_loader
    from ltzoo.engine import evaluate
    from ltzoo.metrics import plot_per_class_recall
    from ltzoo.recipe import summary_table
    from ltzoo.runs import check_classes, image_transform, load_model, write_json

    ds = _load(args)
    split = ds.val if args.split == "val" else ds.test
    if split is None:
        raise SystemExit(f"{ds.name} has no {args.split} split")
    model = load_model(args.model)
    check_classes(model, ds, args.model)
    accelerator = Accelerator()
    loader = make_loader(split, args.batch_size, transform=image_transform(ds, model), num_workers=args.workers)
    prep = BatchPreprocess(*_model_norm(model, ds)).to(accelerator.device)
    model, loader = accelerator.prepare(model, loader)
    metrics = evaluate(accelerator, model, loader, prep, ds.train_counts, ds.shot_thresholds, args.split)
    result = {"model": args.model, "dataset": ds.name, "split": args.split, "split_source": split.source,
              "metrics": metrics}
    if args.output and accelerator.is_main_process:
        out = Path(args.output)
        write_json(out / "eval.json", result)
        plot_per_class_recall(metrics, ds.train_counts, out / "per_class_recall.png",
                              title=f"{args.model} on {ds.name} {args.split}", class_names=ds.class_names)
    if accelerator.is_main_process:
        _emit(result, args.json, summary_table({args.model: {args.split: metrics}}, splits=(args.split,))
              + f"\n{args.split} split: {split.source}")
    return 0


def _model_norm(model, ds) -> tuple[tuple, tuple]:
    """The normalisation a model was trained with (its pretrained_cfg), falling back to the dataset's."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean, std = cfg.get("mean", ds.mean), cfg.get("std", ds.std)
    if len(mean) != ds.in_chans:
        return ds.mean, ds.std
    return tuple(mean), tuple(std)


def build_parser() -> argparse.ArgumentParser:
    """The ltzoo argument parser with every registered sub-command."""
    from ltzoo import __version__

    _register_hub_commands()
    p = argparse.ArgumentParser(prog="ltzoo", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"ltzoo {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (func, add_args) in COMMANDS.items():
        sp = sub.add_parser(name, help=(func.__doc__ or "").split("\n")[0],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        add_args(sp)
        sp.set_defaults(func=func)
    return p


def _register_hub_commands() -> None:
    try:
        import ltzoo.hub.cli  # noqa: F401  (registers card, push, zoo)
    except ImportError as exc:
        if "ltzoo.hub" not in str(exc):
            raise


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ltzoo`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        sys.stderr.write(f"ltzoo {args.command}: error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
