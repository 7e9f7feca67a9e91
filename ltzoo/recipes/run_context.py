"""The run context: what a recipe's process sets up once and every recipe step uses.

- the `accelerate.Accelerator` (built by `ltzoo.training.accelerator.make_accelerator`, the one constructor in ltzoo):
  precision decided once (``--mixed-precision auto``: bf16 where the device computes it natively, the
  CPU's AMX/AVX512-BF16 detection included), this process's share of the CPU cores, the seed;
- the dataset of the data flags, loaded once (BTM's own stage 1 shares it), and its loaders and batch
  preprocessing;
- the one final evaluation (`RunContext.final_evaluation`) of every recipe.

Built once per process by the recipe that starts it (`ltzoo.recipes.recipe.Recipe.run`); a recipe that
composes another (BTM's stage 1) hands it its context. The run's opening line says what was decided:

    ltzoo: cpu, precision no (auto: this CPU has no native bf16), 2 threads, 1 process
"""

from __future__ import annotations

import argparse
import logging
import os

import torch
from accelerate.utils import is_tensorboard_available, set_seed
from torch import nn

from ltzoo.training.accelerator import make_accelerator, without_autocast_wrapper

_logger = logging.getLogger(__name__)

#: accelerate's tracker for the per-epoch curves: TensorBoard where it is installed (no warning where it is not)
TRACKER = "tensorboard" if is_tensorboard_available() else None


def setup_logging() -> None:
    """INFO-level logging for a recipe's run; accelerate's own INFO lines (a dozen per checkpoint) are not shown."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    logging.getLogger("huggingface_hub").propagate = False  # it has its own handler: its warnings once, not twice


def configure_threads(accelerator, threads: int | None = None) -> int:
    """Give a CPU process its share of the cores (accelerate launch sets OMP_NUM_THREADS=1)."""
    if accelerator.device.type != "cpu":
        return torch.get_num_threads()
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n = threads or max(1, cores // local)
    torch.set_num_threads(n)
    return n


class RunContext:
    """The accelerator, the data and the evaluation of one process's run (see the module docstring)."""

    def __init__(self, accelerator, requested_precision: str, threads: int):
        self.accelerator, self.requested_precision, self.threads = accelerator, requested_precision, threads
        self._datasets: dict = {}
        self.baselines: dict = {}  # the linear baseline by start (`Recipe.linear_baseline`), computed once

    @classmethod
    def create(cls, args: argparse.Namespace, project_dir=None) -> RunContext:
        """The context of a run with parsed recipe flags: ``--mixed-precision`` (absent: fp32), ``--grad-accum``,
        ``--threads`` and ``--seed``; ``project_dir``: where the tracker writes. Prints the opening line."""
        setup_logging()
        requested = getattr(args, "mixed_precision", None)  # None: a recipe that only evaluates (gml)
        accelerator = make_accelerator(
            requested,
            getattr(args, "grad_accum", 1),
            project_dir=str(project_dir) if project_dir else None,
            log_with=TRACKER if project_dir else None,
        )
        ctx = cls(accelerator, requested, configure_threads(accelerator, args.threads))
        set_seed(args.seed)
        accelerator.print(ctx.describe())
        return ctx

    @property
    def precision(self) -> str:
        """accelerate's mixed precision of this run (``no``, ``bf16`` or ``fp16``)."""
        return self.accelerator.mixed_precision

    def describe(self) -> str:
        """The opening line of a run: device, precision (and why), threads, processes."""
        acc = self.accelerator
        why = ""
        if self.requested_precision == "auto":
            why = (
                " (auto: native bf16)"
                if self.precision == "bf16"
                else f" (auto: this {acc.device.type.upper()} has no native bf16)"
            )
        threads = f", {self.threads} thread{'s' * (self.threads > 1)}" if acc.device.type == "cpu" else ""
        n = acc.num_processes
        return (
            f"ltzoo: {acc.device}, precision {self.precision}{why}{threads}, {n} process{'es' * (n > 1)}; "
            "evaluation in fp32"
        )

    # ------------------------------------------------------------------------------------------- data
    def dataset(self, args: argparse.Namespace):
        """The dataset of the data flags, loaded once per context (a one-line summary on the main process)."""
        from ltzoo.data import load_dataset
        from ltzoo.data.args import dataset_kwargs

        kwargs = dataset_kwargs(args)
        key = (args.dataset, repr(sorted(kwargs.items())))
        if key not in self._datasets:
            ds = load_dataset(args.dataset, **kwargs)
            self.accelerator.print(
                f"{ds.name}: {len(ds.train)} train / {0 if ds.val is None else len(ds.val)} val / {len(ds.test)} "
                f"test, class counts {ds.train_counts[:10]}{'...' if ds.num_classes > 10 else ''}"
            )
            for note in ("val_rule", "val_resolution"):  # how the validation split was sized, and how coarse it is
                if ds.info.get(note):
                    self.accelerator.print(f"validation: {ds.info[note]}")
            self._datasets[key] = ds
        return self._datasets[key]

    def train_batch_size(self, batch_size: int, ds) -> int:
        """``batch_size``, lowered (with a warning) when the training set has fewer images per process:
        with drop_last, a larger batch would leave no batch at all."""
        fitted = min(batch_size, len(ds.train) // self.accelerator.num_processes)
        if fitted < batch_size:
            _logger.warning(f"{len(ds.train)} training images: batch size lowered to {fitted} per process")
        return fitted

    def eval_loaders(self, ds, model: nn.Module, batch_size: int, workers: int, splits=("val", "test")) -> dict:
        """Unprepared evaluation loaders of ``splits`` (in that order; a split the dataset lacks is None)."""
        from ltzoo.data.loader import make_loader
        from ltzoo.runfolder.model_io import image_transform

        tf = image_transform(ds, model)
        data = {"train": ds.train, "val": ds.val, "test": ds.test}
        return {
            s: make_loader(data[s], batch_size, transform=tf, num_workers=workers) if data[s] is not None else None
            for s in splits
        }

    def batch_preprocess(self, ds, model: nn.Module, channels_last: bool, crop_padding: int | None = None):
        """`BatchPreprocess` on this run's device, feeding ``model`` its input
        (`ltzoo.runfolder.model_io.batch_preprocess`): the
        dataset's normalisation, or for a model made from pretrained weights their size (uint8 batches resized,
        grayscale repeated to its channels), mean and std; random translation by ``crop_padding`` native pixels
        (None: an eighth of the image size), before any resize; the model's memory layout."""
        from ltzoo.runfolder.model_io import batch_preprocess

        crop = crop_padding if crop_padding is not None else ds.input_size[-1] // 8
        return batch_preprocess(ds, model, crop_padding=crop, channels_last=channels_last).to(self.accelerator.device)

    # ------------------------------------------------------------------------------------ accelerate
    def prepare(self, *objects):
        """``accelerator.prepare``, None passing through; models lose accelerate's autocast wrapper
        (`ltzoo.training.accelerator.without_autocast_wrapper`): training autocasts in
        `ltzoo.training.loop.train_step`."""
        given = [o for o in objects if o is not None]
        prepared = iter(
            self.accelerator.prepare(*given) if len(given) > 1 else [self.accelerator.prepare(*given)] if given else []
        )
        out = [None if o is None else next(prepared) for o in objects]
        for o in out:
            if isinstance(o, nn.Module):
                without_autocast_wrapper(self.accelerator, o)
        return out if len(out) > 1 else out[0]

    # ------------------------------------------------------------------------------------ evaluation
    def final_evaluation(
        self,
        model: nn.Module,
        loaders: dict,
        prep,
        ds,
        folder,
        calibration: str = "none",
        min_images: int = 100,
        progress: bool = False,
        timings: dict | None = None,
    ) -> tuple[dict, dict]:
        """The chosen model, calibrated, evaluated on each split of ``loaders`` (prepared; None skipped), in fp32:
        every recipe's final evaluation (validation first; the test split is evaluated once, here), with the
        probability metrics (ECE, NLL, Brier, top-5) and the test split's bootstrap intervals
        (`ltzoo.training.evaluation.evaluate_splits`).

        With ``calibration`` 'temperature', a temperature is fitted on the validation split's logits and folded
        into ``model``'s classifier in place (`ltzoo.methods.calibration`): the metrics are the calibrated model's,
        each split's ``uncalibrated`` probability metrics beside them, and the predictions are checked to be the
        same, image for image. The run ``folder`` (`ltzoo.runfolder.folder.RunFolder`; None: nothing written) keeps
        the logits and labels (``predictions.safetensors``), the reliability diagram, and the classifier as
        trained (a later stage that trains from this model restores it).

        Each phase says when it starts and how long it took (`ltzoo.training.loop.phase`); ``progress`` shows a bar
        over each split; ``timings`` (a dict), when given, receives the seconds of ``final_evaluation`` (the
        passes over the splits, their metrics and intervals, the predictions kept) and ``calibration`` (the fit and
        the calibrated model's passes).

        Returns:
            ``(metrics, calibration)``: split -> metrics, and what calibration did (results.json's
            ``calibration``).
        """
        from ltzoo.training.evaluation import evaluate_splits
        from ltzoo.training.loop import phase

        splits = ", ".join(s for s, dl in loaders.items() if dl is not None)
        with phase(self.accelerator, f"final evaluation ({splits})", _logger) as first:
            metrics, outputs = evaluate_splits(self.accelerator, model, ds, loaders, prep, progress=progress)
        with phase(self.accelerator, f"calibration ({calibration})", _logger, show=calibration != "none") as second:
            metrics, outputs, record = self._calibrate(
                model, loaders, prep, ds, folder, metrics, outputs, calibration, min_images, progress
            )
        with phase(self.accelerator, "keeping the predictions", _logger, show=folder is not None) as keep:
            if folder is not None:
                folder.keep_predictions(outputs, metrics, ds)
        if timings is not None:
            timings.update(final_evaluation=first.seconds + keep.seconds, calibration=second.seconds)
        return metrics, record

    def _calibrate(self, model, loaders, prep, ds, folder, metrics, outputs, calibration, min_images, progress):
        """`final_evaluation`'s calibration: the temperature fitted on the validation logits and folded into
        ``model``, the splits evaluated again; ``(metrics, outputs, record)``."""
        from ltzoo.methods.calibration import calibrate, changed_predictions, fold_temperature, uncalibrated_metrics
        from ltzoo.training.evaluation import evaluate_splits

        cal = calibrate(*outputs.get("val", (None, None)), method=calibration, min_images=min_images)
        record = cal.to_dict()
        if cal.fitted:
            trained_head = fold_temperature(self.accelerator.unwrap_model(model), cal.temperature)
            before, before_outputs = metrics, outputs
            metrics, outputs = evaluate_splits(self.accelerator, model, ds, loaders, prep, progress=progress)
            changed = changed_predictions(before_outputs, outputs)
            record["predictions_unchanged"] = not any(changed.values())
            if not record["predictions_unchanged"]:  # a near-tie rounded the other way: export the model as trained
                from ltzoo.methods.calibration import restore_classifier

                restore_classifier(self.accelerator.unwrap_model(model), trained_head)
                metrics, outputs = before, before_outputs
                record.update(
                    fitted=False,
                    temperature=1.0,
                    predictions_changed=changed,
                    rule=f"not calibrated: folding T = {cal.temperature:.4g} into the classifier changed the "
                    f"predictions of {changed} images (near-ties); the model is exported as trained",
                )
                _logger.warning(record["rule"])
            for s in metrics if record["fitted"] else ():
                metrics[s]["uncalibrated"] = uncalibrated_metrics(before[s])
            if folder is not None and record["fitted"]:
                folder.keep_uncalibrated_head(trained_head)
        self.accelerator.print(f"calibration: {record['rule']}")
        return metrics, outputs, record

    def end(self) -> None:
        """End the run's trackers and process group."""
        self.accelerator.end_training()
