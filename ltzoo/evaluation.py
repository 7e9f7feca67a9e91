"""One evaluation for every caller: the long-tail and probability metrics of logits, their bootstrap
intervals, and the kept predictions.

    metrics = evaluate_logits(logits, labels, ds.train_counts, ds.shot_thresholds, "test", bootstrap=1000)
    metrics = evaluate_splits(accelerator, model, ds, loaders, prep, run_dir)   # a recipe's final evaluation

`evaluate_splits` is what a recipe's final evaluation calls (`ltzoo.recipes.runfolder.finish_run`): it
evaluates every split, gives the test split bootstrap intervals (`BOOTSTRAP` resamples, seed 0), and writes
``predictions.safetensors`` and ``reliability.png`` beside results.json. ``ltzoo eval`` and ``ltzoo compare``
use `evaluate_logits` on logits they predict or read from a predictions file.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from ltzoo.engine import metrics_from_logits, predict
from ltzoo.metrics import plot_reliability, reliability_bins, stratified_bootstrap
from ltzoo.predictions import PREDICTIONS, dataset_meta, save_predictions

_logger = logging.getLogger(__name__)

BOOTSTRAP = 1000  # resamples of a recipe's final test evaluation (about a second for 10,000 images)
RELIABILITY = "reliability.png"


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor, train_counts: Sequence[int],
                    shot_thresholds: Sequence[int], split: str, bootstrap: int = 0, seed: int = 0) -> dict:
    """Every metric of one split's logits; with ``bootstrap`` resamples, their intervals under ``"bootstrap"``."""
    metrics = metrics_from_logits(logits, labels, list(train_counts), tuple(shot_thresholds), split)
    if bootstrap:
        many, few = shot_thresholds
        metrics["bootstrap"] = stratified_bootstrap(labels, logits.argmax(-1), len(train_counts), train_counts, many,
                                                    few, resamples=bootstrap, seed=seed)
    return metrics


def _all_classes(labels: torch.Tensor, ds) -> bool:
    """Whether every class has a test image (else a trained run keeps its metrics, without intervals)."""
    missing = int((torch.bincount(labels, minlength=ds.num_classes) == 0).sum())
    if missing:
        _logger.warning("%d classes have no test image: no bootstrap intervals (they need every class)", missing)
    return not missing


def evaluate_splits(accelerator, model, ds, loaders: dict, prep, run_dir: str | Path | None = None,
                    model_ref: str | None = None, bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict:
    """A recipe's final evaluation: metrics per split (test intervals too), and, in ``run_dir``, the kept
    predictions (`ltzoo.predictions`) and the test split's reliability diagram.

    Args:
        loaders: split name -> prepared loader (None: skipped).
        model_ref: what the predictions are of (default: the run folder).
    """
    outputs = {split: predict(accelerator, model, dl, prep, progress=False, desc=f"eval {split}")
               for split, dl in loaders.items() if dl is not None}
    metrics = {split: evaluate_logits(z, y, ds.train_counts, ds.shot_thresholds, split,
                                      bootstrap=bootstrap if split == "test" and _all_classes(y, ds) else 0, seed=seed)
               for split, (z, y) in outputs.items()}
    if run_dir is not None and accelerator.is_main_process:
        run_dir = Path(run_dir)
        splits = {s: {"val": ds.val, "test": ds.test}[s] for s in outputs}
        save_predictions(run_dir / PREDICTIONS, {s: z for s, (z, _) in outputs.items()},
                         {s: y for s, (_, y) in outputs.items()},
                         dataset_meta(ds, model_ref or str(run_dir), splits))
        split = "test" if "test" in outputs else next(iter(outputs))
        plot_reliability(reliability_bins(*outputs[split]), run_dir / RELIABILITY, ece=metrics[split]["ece"],
                         title=f"{run_dir.name}: reliability on the {split} split")
    return metrics
