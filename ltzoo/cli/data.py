"""``ltzoo data`` (a dataset's class counts and splits) and ``ltzoo eval`` (the long-tail metrics of a model).

Both take the data flags the recipes take (`ltzoo.data.args`), so a command names a dataset the way a
recipe's run did.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ltzoo.cli.output import emit
from ltzoo.config.argtypes import file_of, nonneg_int, positive_int
from ltzoo.data import load_dataset
from ltzoo.data.args import add_data_args, dataset_kwargs
from ltzoo.data.datasets import validation_lines
from ltzoo.errors import UserError
from ltzoo.runfolder.layout import PER_CLASS_PLOT, PREDICTIONS, RELIABILITY

_logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch


def _load(args, require_test: bool = True):
    return load_dataset(args.dataset, **dataset_kwargs(args), require_test=require_test)


#: the data flags a run's run_config.yaml records that decide its splits (their dest names)
RUN_DATA_FLAGS = (
    "data_dir",
    "imbalance",
    "profile",
    "n_max",
    "val_per_class",
    "split_protocol",
    "class_order",
    "shot_cuts",
    "seed",
    "train_list",
    "val_list",
    "test_list",
)


def use_run_data_flags(args, ref: str | None, strict: bool) -> list[str]:
    """A run folder's own data: every data flag left at its default takes the value the run recorded (run_config.yaml),
    when ``args.dataset`` is the run's dataset, so its validation and test splits are the run's (another --seed
    would put the run's training images into validation). Returns the flags taken, as ``--flag value``.

    With ``strict`` (calibration, which fits on validation), a flag given with another value than the run's is
    refused: its validation split would not be the run's.
    """
    import yaml

    folder = Path(str(ref or "")).expanduser()
    config_path = folder / "run_config.yaml"
    if not ref or not config_path.is_file():
        return []
    config = yaml.safe_load(config_path.read_text()) or {}
    if config.get("dataset") != args.dataset:
        return []
    defaults = argparse.ArgumentParser()
    add_data_args(defaults, seed=True)
    taken, differ = [], []
    for key in RUN_DATA_FLAGS:
        if key not in config or not hasattr(args, key):
            continue
        value, recorded = getattr(args, key), config[key]
        if key == "data_dir" and recorded is not None and not Path(str(recorded)).exists():
            continue  # recorded on another machine: the dataset's own default or the given folder
        if value == defaults.get_default(key):
            if recorded != value:
                setattr(args, key, recorded)
                taken.append(f"--{key.replace('_', '-')} {recorded}")
        elif value != recorded:
            differ.append(f"--{key.replace('_', '-')} {value} (the run: {recorded})")
    if differ and strict:
        raise UserError(
            f"{ref} was trained on other splits than these flags give ({'; '.join(differ)}): a temperature fitted on "
            "this validation split could be fitted on the run's training images",
            "drop those flags: the run's own are taken from its run_config.yaml",
        )
    return taken


def _add_data(p):
    p.add_argument("dataset", help="dataset name, e.g. fmnist_lt, cifar100_lt, places_lt, imagefolder, hf:NAME")
    add_data_args(p, seed=True, check_files=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_data(args) -> int:
    """Print a dataset's class counts and its many/medium/few split."""
    ds = _load(args, require_test=False)
    s = ds.summary()
    counts = s["class_counts"]
    text = "\n".join(
        [
            f"{s['dataset']}: {s['num_classes']} classes, {s['train_images']} train / {s['val_images']} val / "
            f"{s['test_images']} test images, imbalance {s['imbalance_ratio']:.1f}",
            "class counts: "
            f"{counts if len(counts) <= 20 else str(counts[:10])[:-1] + ', ..., ' + str(counts[-3:])[1:]}",
            "many / medium / few: "
            + " / ".join(str(v) for v in s["many_medium_few"].values())
            + f"  ({', '.join(f'{k} {v}' for k, v in s['shot_thresholds'].items())})",
            f"validation split: {s['val_source'] or 'none'}",
            *validation_lines(s),  # the rule that sized it, as the recipes print it
            *(
                [f"skipped bad files: {', '.join(f'{k} {v}' for k, v in s['skipped_files'].items())}"]
                if s.get("skipped_files")
                else []
            ),
            *([f"shot cuts: {s['shot_rule']}"] if s.get("shot_rule") else []),
            *(
                [f"class order: {s['class_order']} ({', '.join(s['class_order_classes'])})"]
                if s.get("class_order") not in (None, "own")
                else []
            ),
            *([f"context: {s['context']['rule']}"] if "context" in s else []),
        ]
    )
    emit(s, args.json, text)
    return 0


def _add_eval(p):
    p.add_argument(
        "model",
        nargs="?",
        default=None,
        help="a run folder, a hub id (org/name or hf-hub:org/name) or a timm model name (not with --predictions)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="dataset name, e.g. fmnist_lt (see `ltzoo data --help`); "
        "optional with --predictions, which then are checked against it",
    )
    add_split_args(p)
    p.add_argument(
        "--output",
        default=None,
        help="folder for eval.json and the plots (per-class recall, reliability, shifted priors)",
    )
    add_evaluation_args(p)
    p.add_argument(
        "--save-predictions",
        nargs="?",
        const=PREDICTIONS_DEFAULT,
        default=None,
        metavar="FILE",
        help="keep the logits and labels (safetensors; default: predictions.safetensors in --output)",
    )
    p.add_argument(
        "--predictions",
        type=file_of(
            "pass a predictions file (a run folder's predictions.safetensors, or one --save-predictions wrote)"
        ),
        default=None,
        metavar="FILE",
        help="recompute every metric from a predictions file instead of running a model",
    )
    add_data_args(p, seed=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_split_args(p) -> None:
    """The split a model is run on, and how (``ltzoo eval`` and ``ltzoo compare``)."""
    p.add_argument("--split", default="test", choices=("val", "test"), help="the split to evaluate on")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per batch")
    p.add_argument("--workers", type=nonneg_int, default=4, help="loader workers for file-backed datasets")


def add_bootstrap_args(p) -> None:
    """The bootstrap's size and seed (``ltzoo eval``: stratified; ``ltzoo compare``: paired)."""
    p.add_argument(
        "--bootstrap",
        type=nonneg_int,
        default=1000,
        metavar="N",
        help="resamples of the bootstrap giving the 95%% intervals (0: none; ltzoo compare needs 1 or more)",
    )
    p.add_argument("--bootstrap-seed", type=nonneg_int, default=0, metavar="S", help="seed of the bootstrap")


def add_evaluation_args(p) -> None:
    """The flags of what ``ltzoo eval`` computes beyond the metrics: intervals, shifted test priors."""
    add_bootstrap_args(p)
    p.add_argument(
        "--shifted-priors",
        action="store_true",
        help="the metrics under SADE's test-agnostic priors (forward 50..2, uniform, backward 2..50), as "
        "predicted and after prior correction (true prior, EM estimate)",
    )
    p.add_argument(
        "--test-prior",
        type=prior_shares,
        default=None,
        metavar="P1,P2,...|FILE",
        help="evaluate on the test set reweighted to this class prior, as predicted and after prior "
        "correction (the prior given, and estimated by EM)",
    )
    p.add_argument(
        "--model-prior",
        choices=("train", "uniform"),
        default="train",
        help="the prior the model's probabilities carry: the training frequencies (plain CE; to the power 1/T for a "
        "run ltzoo calibrated with temperature T) or uniform (a balanced loss or a post-hoc-adjusted head)",
    )


PREDICTIONS_DEFAULT = "<output>/predictions.safetensors"


def prior_shares(value: str) -> list[float]:
    """--test-prior: comma-separated shares, or a file of them (JSON list, or one per line / comma-separated)."""
    import json

    text = Path(value).read_text() if Path(value).is_file() else value
    try:
        shares = (
            json.loads(text)
            if text.strip().startswith("[")
            else [float(v) for v in text.replace("\n", ",").split(",") if v.strip()]
        )
        return [float(v) for v in shares]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither comma-separated numbers nor a file of them; give "
            "one share per class, e.g. 0.5,0.3,0.2"
        ) from None


def cmd_eval(args) -> int:
    """The metrics of any timm model, hub id, run folder or predictions file on a dataset split.

    The long-tail metrics with bootstrap intervals, calibration, NLL, top-5 and, if asked, shifted test priors."""
    from accelerate import PartialState

    from ltzoo.files import write_json
    from ltzoo.metrics import interval_table, plot_per_class_recall, plot_reliability, reliability_bins, summary_table
    from ltzoo.training.evaluation import evaluate_logits

    check_eval_args(args)
    ref, ds_name, split_source, logits, labels, counts, cuts, names, meta = eval_inputs(args)
    source_prior = model_prior(args.model_prior, counts, recorded_temperature(args))
    prior = check_prior(args.test_prior, len(counts)) if args.test_prior is not None else None  # before any write
    if not PartialState().is_main_process:  # every process predicted its share; the main one reports
        return 0
    metrics = evaluate_logits(logits, labels, counts, cuts, args.split, args.bootstrap, args.bootstrap_seed)
    result = {"model": ref, "dataset": ds_name, "split": args.split, "split_source": split_source, "metrics": metrics}
    extra_text = prior_analysis(result, logits, labels, counts, source_prior, prior, args.shifted_priors)
    out = Path(args.output) if args.output else None
    if args.save_predictions:
        from ltzoo.runfolder.predictions import save_predictions

        target = out / PREDICTIONS if args.save_predictions == PREDICTIONS_DEFAULT else Path(args.save_predictions)
        result["predictions"] = str(save_predictions(target, {args.split: logits}, {args.split: labels}, meta))
    if out:
        write_json(out / "eval.json", result)
        title = f"{ref} on {ds_name} {args.split}"
        plot_per_class_recall(metrics, counts, out / PER_CLASS_PLOT, title=title, class_names=names)
        plot_reliability(reliability_bins(logits, labels), out / RELIABILITY, title=title, ece=metrics["ece"])
        if "shifted_priors" in result:
            from ltzoo.metrics import plot_prior_sweep

            plot_prior_sweep(result["shifted_priors"]["rows"], out / "shifted_priors.png", title=title)
    emit(
        result,
        args.json,
        summary_table({ref: {args.split: metrics}}, splits=(args.split,))
        + f"\n{args.split} split: {split_source}\n\n"
        + interval_table(metrics)
        + extra_text,
    )
    return 0


def check_eval_args(args) -> None:
    """Flag combinations, before anything is loaded or written."""
    if args.predictions and args.model:
        raise UserError("give a model or --predictions, not both", "drop one of them")
    if not args.predictions and not (args.model and args.dataset):
        raise UserError(
            "ltzoo eval needs a model and --dataset (or --predictions FILE)",
            "e.g. ltzoo eval RUN_DIR --dataset fmnist_lt",
        )
    if args.predictions and args.save_predictions:
        raise UserError("--save-predictions with --predictions would copy the file", "drop --save-predictions")
    if args.save_predictions == PREDICTIONS_DEFAULT and not args.output:
        raise UserError(
            "--save-predictions without a file name writes into --output, which is not given",
            "pass --output DIR or --save-predictions FILE",
        )


def model_prior(kind: str, counts, temperature: float = 1.0) -> torch.Tensor:
    """The prior a model's probabilities carry: uniform, or the training frequencies; a model calibrated with
    temperature T carries them to the power 1/T (its logits, log-prior included, are divided by T)."""
    import torch

    c = torch.as_tensor(list(counts), dtype=torch.double)
    if kind != "train":
        return torch.full_like(c, 1.0 / len(c))
    tempered = (c / c.sum()) ** (1.0 / temperature)
    return tempered / tempered.sum()


def recorded_temperature(args) -> float:
    """The temperature ltzoo folded into the evaluated model (its run folder's results.json; for --predictions, the
    run folder the file lies in), 1.0 for any other model."""
    import json

    folder = Path(args.predictions).parent if args.predictions else Path(str(args.model or "")).expanduser()
    for name in ("results.json", "calibration.json"):  # a run folder's, or an `ltzoo calibrate` copy's
        try:
            cal = json.loads((folder / name).read_text()).get("calibration") or {}
        except (OSError, ValueError):
            continue
        return float(cal["temperature"]) if cal.get("fitted") else 1.0
    return 1.0


def check_prior(shares, num_classes: int):
    from ltzoo.metrics import check_prior as check

    try:
        return check(shares, num_classes, "--test-prior")
    except ValueError as exc:
        raise UserError(str(exc)) from None


def eval_inputs(args):
    """(model ref, dataset, split source, logits, labels, train counts, shot cuts, class names, predictions meta)."""
    if args.predictions:
        from ltzoo.runfolder.predictions import check_predictions_match, load_predictions

        pred = load_predictions(args.predictions)
        if args.dataset:
            check_predictions_match(pred, _load(args), args.split)
        logits, labels = pred.split(args.split)
        meta = pred.meta
        return (
            meta["model"],
            meta["dataset"],
            meta["splits"][args.split]["source"],
            logits,
            labels,
            pred.train_counts,
            pred.shot_thresholds,
            pred.class_names,
            meta,
        )
    taken = use_run_data_flags(args, args.model, strict=False)
    if taken:
        _logger.warning(f"{args.model}: the run's data flags: {' '.join(taken)} (from its run_config.yaml)")
    ds = _load(args)
    split = ds.val if args.split == "val" else ds.test
    if split is None:
        raise UserError(
            f"{ds.name} has no {args.split} split",
            "evaluate on --split test, or give the dataset a "
            "validation split (--val-list, a val/ folder, or --val-per-class N)",
        )
    logits, labels = predict_split(args.model, ds, split, args.batch_size, args.workers)
    from ltzoo.runfolder.predictions import dataset_meta

    meta = dataset_meta(ds, args.model, {args.split: split})
    return (
        args.model,
        ds.name,
        split.source,
        logits,
        labels,
        ds.train_counts,
        ds.shot_thresholds,
        ds.class_names,
        meta,
    )


def predict_split(ref: str, ds, split, batch_size: int = 256, workers: int = 4):
    """Logits and labels of model ``ref`` (run folder, hub id, timm name) on one split of ``ds``, in fp32."""
    from ltzoo.data.decode import FileImageTransform
    from ltzoo.data.loader import BatchPreprocess, make_loader
    from ltzoo.models.pretrained import mark_input_from_weights
    from ltzoo.runfolder.model_io import batch_preprocess, check_classes, image_transform, load_model
    from ltzoo.training.accelerator import apply_channels_last, make_accelerator, without_autocast_wrapper
    from ltzoo.training.evaluation import predict

    model = load_model(ref)  # a run folder's weights are checked first (ltzoo.runfolder.model_io.check_weights)
    check_classes(model, ds, ref)
    accelerator = (
        make_accelerator()
    )  # evaluation runs in fp32 whatever its mixed precision (ltzoo.training.accelerator)
    transform = image_transform(ds, model)
    loader = make_loader(split, batch_size, transform=transform, num_workers=workers)
    # the recipes' layout: channels_last for convolutional models (the same numbers as their own evaluation)
    if mark_input_from_weights(model):
        prep = batch_preprocess(ds, model, channels_last=apply_channels_last(model))
    elif isinstance(transform, FileImageTransform):  # uint8 from the files: normalised as the transform says
        prep = BatchPreprocess(transform.mean, transform.std, crop_padding=0, channels_last=apply_channels_last(model))
    else:
        prep = BatchPreprocess(*_model_norm(model, ds), channels_last=apply_channels_last(model))
    prep = prep.to(accelerator.device)
    model, loader = accelerator.prepare(model, loader)
    without_autocast_wrapper(accelerator, model)
    return predict(accelerator, model, loader, prep, progress=False)


def prior_analysis(result: dict, logits, labels, counts, source, prior, sweep: bool) -> str:
    """Add the test-prior reweighting / correction (``--test-prior``) and the sweep to ``result``; their text."""
    from ltzoo.metrics.priors import PRIOR_INVARIANT, REWEIGHTED, prior_sweep, shifted_priors, sweep_table

    text = ""
    note = (
        f"reweighting changes {', '.join(REWEIGHTED)}; it cannot change {', '.join(PRIOR_INVARIANT)} (per-class "
        "quantities), which move only when a prior correction changes the predictions"
    )
    if prior is not None:
        row = prior_sweep(logits, labels, counts, source, {"given": prior})[0]
        result["test_prior"] = {"source_prior": source.tolist(), "note": note, **row}
        text += "\n\nTest set reweighted to --test-prior:\n" + sweep_table([row])
    if sweep:
        rows = prior_sweep(logits, labels, counts, source, shifted_priors(counts))
        result["shifted_priors"] = {
            "protocol": "SADE test-agnostic (Zhang et al., NeurIPS 2022), exponential profile "
            "in the training order (forward) or reversed (backward)",
            "source_prior": source.tolist(),
            "note": note,
            "rows": rows,
        }
        text += "\n\nShifted test priors (exact reweighting of the test split):\n" + sweep_table(rows) + f"\n{note}."
    return text


def _model_norm(model, ds) -> tuple[tuple, tuple]:
    """The normalisation a model was trained with (its pretrained_cfg), falling back to the dataset's."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean, std = cfg.get("mean", ds.mean), cfg.get("std", ds.std)
    if len(mean) != ds.in_chans:
        return ds.mean, ds.std
    return tuple(mean), tuple(std)


COMMANDS = {"data": (cmd_data, _add_data), "eval": (cmd_eval, _add_eval)}
