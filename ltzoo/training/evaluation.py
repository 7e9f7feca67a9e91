"""One evaluation for every caller: the long-tail and probability metrics of logits, their bootstrap
intervals, and the predictions to keep.

    metrics = evaluate_logits(logits, labels, ds.train_counts, ds.shot_thresholds, "test", bootstrap=1000)
    metrics, outputs = evaluate_splits(accelerator, model, ds, loaders, prep)   # a recipe's final evaluation

`evaluate_splits` is what every recipe's final evaluation calls
(`ltzoo.recipes.run_context.RunContext.final_evaluation`):
it predicts every split in fp32, gives the test split bootstrap intervals (`BOOTSTRAP` resamples, seed 0), and
returns the logits and labels too, which the run folder keeps (``predictions.safetensors`` and
``reliability.png`` beside results.json: `ltzoo.runfolder.folder.RunFolder.keep_predictions`). ``ltzoo eval`` and
``ltzoo compare`` use `evaluate_logits` on logits they predict or read from a predictions file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence

import torch
from accelerate import Accelerator
from torch import nn

from ltzoo.data.loader import BatchPreprocess
from ltzoo.metrics import longtail_metrics, probability_metrics, stratified_bootstrap
from ltzoo.metrics.bootstrap import ece_interval
from ltzoo.training.accelerator import full_precision, unwrap
from ltzoo.training.loop import progress_bar

_logger = logging.getLogger(__name__)

BOOTSTRAP = 1000  # resamples of a recipe's final test evaluation (about a second for 10,000 images)


@torch.no_grad()
def predict(
    accelerator: Accelerator,
    model: nn.Module,
    loader: Iterable,
    prep: BatchPreprocess,
    head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    features: bool = False,
    progress: bool = True,
    desc: str = "eval",
    run_precision: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (or pre-logit features) and labels of every sample, gathered from all processes, on the CPU.

    Always in fp32, on the plain module under any DDP or compile wrapper, in eval mode: the numbers do
    not depend on the training precision, and equal those of the exported model (given batches in the
    same memory format, which ``prep`` decides).

    Args:
        head: maps the model's output to the logits to return (e.g. an ensemble of heads).
        features: return pooled pre-logit features (``forward_head(pre_logits=True)``) instead of logits.
        run_precision: compute under the run's autocast (bf16 where it trains in bf16) instead of fp32, the
            outputs returned as fp32: for features cached to train a head on (BTM's), not for metrics.
    """
    outs, labels = [], []
    with _run_precision(accelerator, model) if run_precision else full_precision(model, accelerator.device) as net:
        net.eval()
        for x, y in progress_bar(accelerator, loader, desc, progress):
            x, y = prep(x.to(accelerator.device, non_blocking=True)), y.to(accelerator.device)
            out = net.forward_head(net.forward_features(x), pre_logits=True) if features else net(x)
            if head is not None:
                out = head(out)
            out, y = accelerator.gather_for_metrics((out.float().contiguous(), y))
            outs.append(out.cpu())
            labels.append(y.cpu())
    return torch.cat(outs), torch.cat(labels)


@contextlib.contextmanager
def _run_precision(accelerator: Accelerator, model: nn.Module):
    with accelerator.autocast():
        yield unwrap(model)


def evaluate(
    accelerator: Accelerator,
    model: nn.Module,
    loader: Iterable,
    prep: BatchPreprocess,
    train_counts: list[int],
    shot_thresholds: tuple[int, int] = (100, 20),
    split: str = "",
    progress: bool = True,
) -> dict:
    """Long-tail metrics of ``model`` on one split; the result names the split it came from."""
    logits, labels = predict(accelerator, model, loader, prep, progress=progress, desc=f"eval {split}")
    return metrics_from_logits(logits, labels, train_counts, shot_thresholds, split)


def metrics_from_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    train_counts: list[int],
    shot_thresholds: tuple[int, int] = (100, 20),
    split: str = "",
) -> dict:
    """`longtail_metrics` of argmax predictions and the `probability_metrics` of the logits (ECE, NLL, Brier,
    top-5), tagged with the split name."""
    many, few = shot_thresholds
    out = longtail_metrics(labels, logits.argmax(-1), train_counts, num_classes=len(train_counts), many=many, few=few)
    out.update(probability_metrics(logits, labels))
    out["split"] = split
    return out


def evaluate_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    train_counts: Sequence[int],
    shot_thresholds: Sequence[int],
    split: str,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict:
    """Every metric of one split's logits; with ``bootstrap`` resamples, their intervals under ``"bootstrap"``."""
    metrics = metrics_from_logits(logits, labels, list(train_counts), tuple(shot_thresholds), split)
    if bootstrap:
        many, few = shot_thresholds
        metrics["bootstrap"] = stratified_bootstrap(
            labels, logits.argmax(-1), len(train_counts), train_counts, many, few, resamples=bootstrap, seed=seed
        )
        metrics["bootstrap"]["intervals"]["ece"] = ece_interval(
            logits, labels, len(train_counts), resamples=bootstrap, seed=seed, n_bins=metrics["ece_bins"]
        )
    return metrics


def _all_classes(labels: torch.Tensor, ds) -> bool:
    """Whether every class has a test image (else a trained run keeps its metrics, without intervals)."""
    missing = int((torch.bincount(labels, minlength=ds.num_classes) == 0).sum())
    if missing:
        _logger.warning("%d classes have no test image: no bootstrap intervals (they need every class)", missing)
    return not missing


def evaluate_splits(
    accelerator, model, ds, loaders: dict, prep, bootstrap: int = BOOTSTRAP, seed: int = 0, progress: bool = False
) -> tuple[dict, dict]:
    """A recipe's final evaluation: the metrics per split (the test split's with intervals), and the logits
    and labels per split (gathered from every process, on the CPU) for the run folder to keep.

    Args:
        loaders: split name -> prepared loader (None: skipped).
        bootstrap, seed: the test split's stratified bootstrap (0: no intervals).
        progress: a bar over each split's batches (``eval <split>``, local main process).

    Returns:
        ``(metrics, outputs)``: split -> metrics dict, split -> ``(logits, labels)``.
    """
    outputs = {
        split: predict(accelerator, model, dl, prep, progress=progress, desc=f"eval {split}")
        for split, dl in loaders.items()
        if dl is not None
    }
    metrics = {
        split: evaluate_logits(
            z,
            y,
            ds.train_counts,
            ds.shot_thresholds,
            split,
            bootstrap=bootstrap if split == "test" and _all_classes(y, ds) else 0,
            seed=seed,
        )
        for split, (z, y) in outputs.items()
    }
    return metrics, outputs
