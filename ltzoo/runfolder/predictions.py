"""Kept predictions: the logits and labels of an evaluation, per split, in one safetensors file.

``predictions.safetensors`` (beside a run's results.json, or where ``ltzoo eval --save-predictions`` says)
holds ``<split>.logits`` (float32, images x classes) and ``<split>.labels`` (int64), and in its metadata
(JSON under the key ``ltzoo``) the dataset, the model, the class names, the training class counts and
shot cuts, and per split where its images came from and a fingerprint of them (a SHA-256 of the labels and
the images, or their file names). Every metric of `ltzoo.training.evaluation` can be recomputed from it without the
model (``ltzoo eval --predictions FILE``), and two files can be compared image by image (``ltzoo compare``)
when their fingerprints say they hold the same test set.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ltzoo.data.splits import LTDataset, Split
from ltzoo.errors import UserError
from ltzoo.files import atomic_path
from ltzoo.runfolder.layout import PREDICTIONS, RELIABILITY  # noqa: F401  (the predictions' file names)

_logger = logging.getLogger(__name__)

FORMAT = "ltzoo-predictions/1"


@dataclass
class Predictions:
    """Logits and labels per split, and what they are predictions of (``meta``)."""

    logits: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in self.logits:
            raise UserError(
                f"{self.meta.get('path', 'the predictions file')} holds no {name} split (it has "
                f"{', '.join(sorted(self.logits)) or 'none'})",
                f"pass --split {next(iter(self.logits), 'test')}",
            )
        return self.logits[name], self.labels[name]

    @property
    def train_counts(self) -> list[int]:
        return list(self.meta["train_counts"])

    @property
    def shot_thresholds(self) -> tuple[int, int]:
        return tuple(self.meta["shot_thresholds"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])


def split_fingerprint(split: Split) -> str:
    """A SHA-256 of a split's labels and images (pixels in memory, else file names or the HF dataset's size)."""
    h = hashlib.sha256(split.labels.to(torch.int64).numpy().tobytes())
    if split.images is not None:
        h.update(split.images.contiguous().numpy().tobytes())
    elif split.files is not None:
        h.update("\n".join(map(str, split.files)).encode())
    return h.hexdigest()[:16]


def dataset_meta(ds: LTDataset, model: str, splits: dict[str, Split]) -> dict:
    """The metadata of predictions of ``model`` on ``splits`` of ``ds``."""
    return {
        "format": FORMAT,
        "dataset": ds.name,
        "model": model,
        "class_names": list(ds.class_names),
        "num_classes": ds.num_classes,
        "train_counts": ds.train_counts,
        "shot_thresholds": list(ds.shot_thresholds),
        "splits": {
            name: {"source": s.source, "images": len(s), "fingerprint": split_fingerprint(s)}
            for name, s in splits.items()
        },
    }


def save_predictions(
    path: str | Path, logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], meta: dict
) -> Path:
    """Write the predictions file atomically; returns its path."""
    tensors = {}
    for split, z in logits.items():
        tensors[f"{split}.logits"] = z.detach().float().contiguous().cpu()
        tensors[f"{split}.labels"] = labels[split].detach().long().contiguous().cpu()
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"ltzoo": json.dumps(meta)})
    _logger.info("wrote %s", path)
    return path


def load_predictions(path: str | Path) -> Predictions:
    """Read a predictions file (safetensors: no code runs on load), with one-line errors for a wrong file."""
    path = Path(path)
    if path.is_dir():
        path = path / PREDICTIONS
    if not path.is_file():
        raise UserError(
            f"{path} not found",
            "pass a predictions file written by ltzoo eval --save-predictions or a "
            "run folder holding predictions.safetensors",
        )
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("ltzoo", "{}"))
        if meta.get("format") != FORMAT:
            raise UserError(
                f"{path} is a safetensors file but not ltzoo predictions (no '{FORMAT}' metadata)",
                "pass a file written by ltzoo eval --save-predictions",
            )
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    splits = sorted({k.rsplit(".", 1)[0] for k in tensors})
    logits = {s: tensors[f"{s}.logits"] for s in splits}
    labels = {s: tensors[f"{s}.labels"] for s in splits}
    for s in splits:
        if logits[s].ndim != 2 or logits[s].shape[0] != labels[s].numel() or logits[s].shape[1] != meta["num_classes"]:
            raise UserError(
                f"{path}: the {s} logits are {tuple(logits[s].shape)} for {labels[s].numel()} labels and "
                f"{meta['num_classes']} classes",
                "the file is corrupt; write it again",
            )
    return Predictions(logits, labels, {**meta, "path": str(path)})


def check_predictions_match(pred: Predictions, ds: LTDataset, split: str) -> None:
    """A one-line error unless ``pred``'s classes and ``split``'s images are those of ``ds``."""
    where = pred.meta.get("path", "the predictions")
    if pred.class_names != list(ds.class_names):
        diff = next(
            (i for i, (a, b) in enumerate(zip(pred.class_names, ds.class_names)) if a != b),
            min(len(pred.class_names), ds.num_classes),
        )
        theirs = pred.class_names[diff] if diff < len(pred.class_names) else "none"
        ours = ds.class_names[diff] if diff < ds.num_classes else "none"
        raise UserError(
            f"{where} has {len(pred.class_names)} classes and {ds.name} {ds.num_classes}, and they differ "
            f"at class {diff} ({theirs!r} there, {ours!r} here)",
            "pass the dataset (and its flags) the predictions were made on",
        )
    mine = {"val": ds.val, "test": ds.test}.get(split)
    saved = pred.meta["splits"].get(split, {})
    if mine is not None and saved.get("fingerprint") != split_fingerprint(mine):
        raise UserError(
            f"{where}: its {split} split ({saved.get('images')} images, {saved.get('source')!r}) is not "
            f"{ds.name}'s ({len(mine)} images, {mine.source!r})",
            "pass the dataset flags (--imbalance, --seed, lists) the predictions were made with",
        )


def check_same_test_set(a: Predictions, b: Predictions, split: str) -> None:
    """One line unless two predictions files hold the same images of ``split`` in the same order."""
    fa, fb = (p.meta["splits"].get(split, {}).get("fingerprint") for p in (a, b))
    if fa is None or fa != fb or a.class_names != b.class_names:
        raise UserError(
            f"{a.meta.get('path')} and {b.meta.get('path')} hold predictions on different {split} sets "
            f"({a.meta['dataset']}: {a.meta['splits'].get(split, {}).get('images')} images, "
            f"{b.meta['dataset']}: {b.meta['splits'].get(split, {}).get('images')} images, fingerprints "
            f"{fa} and {fb})",
            "compare predictions made on the same dataset split",
        )
