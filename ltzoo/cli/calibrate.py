"""``ltzoo calibrate``: a calibrated copy of any model (a run folder, a hub id or a timm model).

    ltzoo calibrate runs/btm-fmnist_lt-resnet20_cifar-s0 --dataset fmnist_lt          # -> ...-s0-calibrated/
    ltzoo calibrate ltzoo/resnet20-ce-fmnistlt --dataset fmnist_lt --output my-calibrated
    ltzoo calibrate zoo/resnet20-ce-fmnistlt --dataset fmnist_lt --in-place

A temperature is fitted on the dataset's validation split (`ltzoo.methods.calibration`, as every recipe does at
the end of a run) and folded into the classifier; the copy is plain timm, predicts exactly what the model did
(checked image for image on both splits) and reports the ECE and NLL before and after, with a reliability diagram
of each. A run folder's copy keeps its files, with results.json and predictions.safetensors updated; a model that
ltzoo already calibrated is calibrated again from its classifier as trained.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ltzoo.cli.output import emit
from ltzoo.config.argtypes import nonneg_int, positive_int
from ltzoo.data.args import add_data_args
from ltzoo.errors import UserError
from ltzoo.files import atomic_path, read_json, write_json
from ltzoo.runfolder.layout import (
    CARD,
    CHECKPOINTS,
    MODEL_CONFIG,
    PREDICTIONS,
    RELIABILITY,
    RESULTS,
    UNCALIBRATED_HEAD,
    WEIGHTS,
)

CALIBRATION = "calibration.json"
RELIABILITY_BEFORE = "reliability_uncalibrated.png"


def _add_calibrate(p):
    from ltzoo.methods.calibration import MIN_IMAGES

    p.add_argument("model", help="a run folder, a hub id (org/name or hf-hub:org/name) or a timm model name")
    p.add_argument("--dataset", required=True, help="the dataset whose validation split the temperature is fitted on")
    add_data_args(p, seed=True)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--output", default=None, help="the calibrated copy's folder; unset: MODEL-calibrated")
    where.add_argument("--in-place", action="store_true", help="calibrate a run folder itself (its files updated)")
    p.add_argument(
        "--calibration-min-images",
        type=nonneg_int,
        default=MIN_IMAGES,
        help="fit no temperature on a validation split with fewer images than this",
    )
    p.add_argument("--batch-size", type=positive_int, default=256, help="evaluation batch size")
    p.add_argument("--workers", type=nonneg_int, default=4, help="data loader workers")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _output(args, source: Path | None) -> Path:
    if args.in_place:
        if source is None:
            raise UserError(
                f"--in-place calibrates a run folder, and {args.model} is not one",
                "pass --output DIR for a calibrated copy",
            )
        return source
    if args.output:
        return Path(args.output)
    name = (source.name if source else args.model.replace("hf-hub:", "").replace("/", "-")) + "-calibrated"
    return (source.parent if source else Path(".")) / name


def _prepare(args, ds, source: Path | None, out: Path) -> None:
    """``out`` holds the model as trained (a run folder's files copied, or the model exported), uncalibrated."""
    from ltzoo.methods.calibration import restore_classifier
    from ltzoo.models.pretrained import mark_input_from_weights
    from ltzoo.runfolder.model_io import check_classes, load_model, save_model, trained_classifier

    if source is not None and out != source:
        shutil.copytree(source, out, ignore=shutil.ignore_patterns(CHECKPOINTS, CARD, ".*"), dirs_exist_ok=True)
    trained = trained_classifier(str(out) if source is not None else args.model)
    if source is None or trained is not None:
        model = load_model(str(out) if source is not None else args.model)
        mark_input_from_weights(model)  # saved with the input it is fed (a transferred model's own normalisation)
        check_classes(model, ds, args.model)
        if trained is not None:
            restore_classifier(model, trained)
        save_model(model, out, ds)
    (out / UNCALIBRATED_HEAD).unlink(missing_ok=True)


def cmd_calibrate(args) -> int:
    """Fit a temperature on the validation split and write a calibrated copy of a model (same predictions)."""
    from ltzoo.cli.data import _load, use_run_data_flags
    from ltzoo.runfolder.model_io import resolve_model_ref

    taken = use_run_data_flags(args, args.model, strict=True)  # the run's own splits, never other ones
    ds = _load(args)
    if ds.val is None or len(ds.val) == 0:
        raise UserError(
            f"{ds.name} has no validation split to fit a temperature on",
            "give the data a val/ folder or list, or --val-per-class N",
        )
    ref = resolve_model_ref(args.model)
    source = Path(ref[len("local-dir:") :]) if ref.startswith("local-dir:") else None
    out = _output(args, source)
    if out != source and out.exists() and any(out.iterdir()):  # never write into another run or model
        raise UserError(f"{out} exists and is not empty", "pass another --output, or remove it")
    made = not out.exists()
    kept = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} if not made else {}
    try:
        return _calibrate_into(args, ds, source, out, taken)
    except BaseException:  # a failure at any step leaves the folder as it was (or no copy at all)
        if made:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for p in out.iterdir():
                if p.is_file() and p.name not in kept:
                    p.unlink()
            for name, data in kept.items():
                with atomic_path(out / name) as tmp:
                    tmp.write_bytes(data)
        raise


def _calibrate_into(args, ds, source: Path | None, out: Path, taken: list[str]) -> int:
    """Calibrate the model into ``out`` (see `cmd_calibrate`)."""
    from ltzoo.cli.data import predict_split
    from ltzoo.methods.calibration import calibrate, changed_predictions, fold_temperature, uncalibrated_metrics
    from ltzoo.metrics import plot_reliability, reliability_bins, summary_table
    from ltzoo.models.pretrained import mark_input_from_weights
    from ltzoo.runfolder.model_io import load_model, save_model
    from ltzoo.runfolder.predictions import dataset_meta, save_predictions
    from ltzoo.training.evaluation import BOOTSTRAP, evaluate_logits

    _prepare(args, ds, source, out)
    splits = {"val": ds.val, "test": ds.test}
    raw = {s: predict_split(str(out), ds, sp, args.batch_size, args.workers) for s, sp in splits.items()}
    cal = calibrate(*raw["val"], min_images=args.calibration_min_images)
    record = cal.to_dict()
    outputs = raw
    if cal.fitted:
        model = load_model(str(out))
        mark_input_from_weights(model)  # saved with the input it is fed, as it was
        trained = fold_temperature(model, cal.temperature)
        save_model(model, out, ds)
        from safetensors.torch import save_file

        with atomic_path(out / UNCALIBRATED_HEAD) as tmp:
            save_file({k: v.contiguous() for k, v in trained.items()}, str(tmp))
        outputs = {s: predict_split(str(out), ds, sp, args.batch_size, args.workers) for s, sp in splits.items()}
        changed = changed_predictions(raw, outputs)
        record["predictions_unchanged"] = not any(changed.values())
        if not record["predictions_unchanged"]:  # never leave a model that predicts otherwise (the caller restores)
            raise UserError(
                f"the calibrated copy of {args.model} predicted {changed} images differently (a near-tie or a "
                f"changed input configuration); {out} is left as it was",
                "report it as a bug, with the model and the command",
            )

    def scored(logits: dict) -> dict:
        return {
            s: evaluate_logits(z, y, ds.train_counts, ds.shot_thresholds, s, bootstrap=BOOTSTRAP if s == "test" else 0)
            for s, (z, y) in logits.items()
        }

    before = scored(raw)
    metrics = scored(outputs) if cal.fitted else before  # not calibrated: the model's own numbers, scored once
    for s in metrics if cal.fitted else ():
        metrics[s]["uncalibrated"] = uncalibrated_metrics(before[s])
    title = f"{out.name}: reliability on the test split"
    plot_reliability(
        reliability_bins(*raw["test"]),
        out / RELIABILITY_BEFORE,
        title=title + " (uncalibrated)",
        ece=before["test"]["ece"],
    )
    plot_reliability(reliability_bins(*outputs["test"]), out / RELIABILITY, title=title, ece=metrics["test"]["ece"])
    summary = {"model": args.model, "output": str(out), "dataset": ds.name, "calibration": record, "metrics": metrics}
    write_json(out / CALIBRATION, summary)
    if (out / RESULTS).is_file():  # a run folder: its results are the calibrated model's now
        results = read_json(out / RESULTS)
        for s in metrics:
            if s in results.get("metrics", {}):
                results["metrics"][s] = {**results["metrics"][s], **metrics[s]}
        results["calibration"] = record
        write_json(out / RESULTS, results)
    if (out / PREDICTIONS).is_file() or source is not None:
        meta = dataset_meta(ds, str(out), splits)
        save_predictions(
            out / PREDICTIONS, {s: z for s, (z, _) in outputs.items()}, {s: y for s, (_, y) in outputs.items()}, meta
        )
    text = [
        *([f"the run's data flags (its run_config.yaml): {' '.join(taken)}"] if taken else []),
        f"calibration: {cal.rule}",
        *(["predictions unchanged, image for image"] if record.get("predictions_unchanged") else []),
        summary_table({str(out): metrics}, calibration=True),
        f"wrote {out / MODEL_CONFIG}, {out / WEIGHTS}, {out / CALIBRATION}, {out / RELIABILITY} and "
        f"{out / RELIABILITY_BEFORE}",
    ]
    emit(summary, args.json, "\n".join(text))
    return 0


COMMANDS = {"calibrate": (cmd_calibrate, _add_calibrate)}
