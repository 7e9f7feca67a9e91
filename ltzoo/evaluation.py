"""One evaluation for every caller: the long-tail and probability metrics of logits, their bootstrap
intervals, and the predictions to keep.

    metrics = evaluate_logits(logits, labels, ds.train_counts, ds.shot_thresholds, "test", bootstrap=1000)
    metrics, outputs = evaluate_splits(accelerator, model, ds, loaders, prep)   # a recipe's final evaluation

`evaluate_splits` is what every recipe's final evaluation calls (`ltzoo.recipes.context.RunContext.final_evaluation`):
it predicts every split in fp32, gives the test split bootstrap intervals (`BOOTSTRAP` resamples, seed 0), and
returns the logits and labels too, which the run folder keeps (``predictions.safetensors`` and
``reliability.png`` beside results.json: `ltzoo.runfolder.RunFolder.keep_predictions`). ``ltzoo eval`` and
``ltzoo compare`` use `evaluate_logits` on logits they predict or read from a predictions file.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch

from ltzoo.engine import metrics_from_logits, predict
from ltzoo.metrics import stratified_bootstrap

_logger = logging.getLogger(__name__)

BOOTSTRAP = 1000  # resamples of a recipe's final test evaluation (about a second for 10,000 images)


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


def evaluate_splits(accelerator, model, ds, loaders: dict, prep, bootstrap: int = BOOTSTRAP,
                    seed: int = 0) -> tuple[dict, dict]:
    """A recipe's final evaluation: the metrics per split (the test split's with intervals), and the logits
    and labels per split (gathered from every process, on the CPU) for the run folder to keep.

    Args:
        loaders: split name -> prepared loader (None: skipped).
        bootstrap, seed: the test split's stratified bootstrap (0: no intervals).

    Returns:
        ``(metrics, outputs)``: split -> metrics dict, split -> ``(logits, labels)``.
    """
    outputs = {split: predict(accelerator, model, dl, prep, progress=False, desc=f"eval {split}")
               for split, dl in loaders.items() if dl is not None}
    metrics = {split: evaluate_logits(z, y, ds.train_counts, ds.shot_thresholds, split,
                                      bootstrap=bootstrap if split == "test" and _all_classes(y, ds) else 0, seed=seed)
               for split, (z, y) in outputs.items()}
    return metrics, outputs
