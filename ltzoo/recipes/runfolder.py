"""The run folder of a recipe: checkpoints to resume from (written atomically), the JSONL log, and the
files a finished run leaves (the chosen model, results.json, the per-class recall plot).

Checkpoints are accelerate's ``save_state`` folders, ``checkpoints/epoch_N``, each written to a temporary
folder and renamed into place once complete, with ``train_state.json`` as its completion marker; resume
takes the newest complete one. (accelerate's ``ProjectConfiguration(automatic_checkpoint_naming=True,
total_limit=...)`` is not used: it deletes the old checkpoints before writing the new one into its final
folder, and resumes from the highest-numbered folder whether complete or not, so a run killed while
saving would lose its only checkpoint, or resume from a half-written one.)

Resuming survives what a crash leaves: a torn last line of the log is dropped, stale temporaries are
removed (`ltzoo.runs.read_jsonl`, `ltzoo.runs.remove_stale_temporaries`). A run folder this run made is
removed again if the run ends on a user error before it holds anything to resume from or keep
(`create_run_folder`, `discard_unfinished_folders`); a folder that existed before is never removed.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import resource
import shutil
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_model

from ltzoo.evaluation import evaluate_splits
from ltzoo.errors import user_error
from ltzoo.metrics import plot_per_class_recall
from ltzoo.runs import (RESULTS, WEIGHTS, atomic_path, read_jsonl, remove_stale_temporaries, save_model, save_weights,
                        write_json)

_logger = logging.getLogger(__name__)

#: Run folders this process created, each with the topmost folder its creation made (see `create_run_folder`).
_CREATED: list[tuple[Path, Path]] = []
#: What makes a run folder worth keeping: a checkpoint to resume from, a trained member, a finished model.
_KEEP = ("checkpoints/epoch_*/train_state.json", "members/*.safetensors", WEIGHTS, RESULTS)


def create_run_folder(path: str | Path, accelerator) -> Path:
    """Make the run folder ``path`` (main process; the others wait), remembering it if this run made it.

    A folder this run made is removed by `discard_unfinished_folders` if the run then fails on bad input.
    """
    path = Path(path)
    if accelerator.is_main_process:
        top = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
        path.mkdir(parents=True, exist_ok=True)
        if top is not None:
            _CREATED.append((path, top))
    accelerator.wait_for_everyone()
    return path


def holds_work(path: Path) -> bool:
    """True if the run folder ``path`` holds something to resume from or keep (see `_KEEP`)."""
    return any(next(path.rglob(pattern), None) is not None for pattern in _KEEP)


@contextlib.contextmanager
def discard_unfinished_folders() -> Iterator[None]:
    """Around a recipe's run: on a user error (`ltzoo.errors.user_error`), remove the run folders this
    process made (`create_run_folder`) that hold no work yet, and the empty parents it made for them."""
    del _CREATED[:]
    try:
        yield
    except Exception as exc:
        if user_error(exc) is not None:
            for path, top in reversed(_CREATED):
                _discard(path, top)
        raise
    finally:
        del _CREATED[:]


def _discard(path: Path, top: Path) -> None:
    if not path.is_dir() or holds_work(path):
        return
    shutil.rmtree(path, ignore_errors=True)
    _logger.debug("removed %s: the run made it and failed before writing anything to keep", path)
    for parent in path.parents:  # the folders made for it, if nothing else went into them since
        if top not in (parent, *parent.parents):
            break
        with contextlib.suppress(OSError):
            parent.rmdir()


class RunFolder:
    """Checkpoints (accelerate's save_state), the JSONL log and the resume logic of one run folder."""

    def __init__(self, path: str | Path, accelerator):
        self.path = Path(path)
        self.accelerator = accelerator
        self.ckpt_dir = self.path / "checkpoints"
        self.log_path = self.path / "log.jsonl"
        create_run_folder(self.path, accelerator)

    def last_checkpoint(self) -> Path | None:
        """The newest complete checkpoint folder (``epoch_N`` with its state file), if any."""
        done = [p for p in self.ckpt_dir.glob("epoch_*") if (p / "train_state.json").is_file()]
        return max(done, key=lambda p: int(p.name.split("_")[1]), default=None)

    def save(self, epoch: int, state: dict, keep: int = 1) -> None:
        """Checkpoint after ``epoch``: written to a temporary folder, then renamed into place."""
        acc = self.accelerator
        final, tmp = self.ckpt_dir / f"epoch_{epoch}", self.ckpt_dir / f".tmp_epoch_{epoch}"
        if acc.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)  # before any process writes its share (its RNG state) into it
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / "train_state.json").write_text(json.dumps({**state, "epoch": epoch}, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            older = sorted(self.ckpt_dir.glob("epoch_*"), key=lambda p: int(p.name.split("_")[1]))[:-keep]
            for p in older:
                shutil.rmtree(p, ignore_errors=True)
        acc.wait_for_everyone()

    def reset(self) -> None:
        """Start afresh (``--no-resume``): drop the folder's checkpoints, log and stale temporaries."""
        if self.accelerator.is_main_process:
            remove_stale_temporaries(self.path)
            shutil.rmtree(self.ckpt_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)
        self.accelerator.wait_for_everyone()

    def resume(self) -> dict | None:
        """Load the last checkpoint into the prepared objects; returns its train state (None: fresh start).

        The log keeps only the records of the epochs the checkpoint holds (none on a fresh start). What an
        interrupted write left (stale temporaries, a torn last log line) is removed first; a log corrupt
        elsewhere is refused, naming the file and the fix.
        """
        if self.accelerator.is_main_process:
            remove_stale_temporaries(self.path)
        self.accelerator.wait_for_everyone()
        ckpt = self.last_checkpoint()
        if ckpt is None:
            self._truncate_log(-1)
            return None
        self.accelerator.load_state(str(ckpt))
        state = json.loads((ckpt / "train_state.json").read_text())
        self.accelerator.print(f"resumed from {ckpt} (epoch {state['epoch']} done)")
        self._truncate_log(state["epoch"])
        return state

    def _truncate_log(self, last_epoch: int) -> None:
        if not (self.accelerator.is_main_process and self.log_path.is_file()):
            return
        keep = [r for r in read_jsonl(self.log_path) if r.get("epoch", -1) <= last_epoch]
        write_jsonl(self.log_path, keep)

    def log(self, record: dict) -> None:
        """Append one record to log.jsonl (main process)."""
        if self.accelerator.is_main_process:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")


def selection_score(metrics: dict, key: str = "hm") -> tuple:
    """The model-selection key on the validation split: the chosen metric, ties broken by mean class accuracy."""
    return (metrics[key], metrics["mean_class_acc"], metrics["acc"])


class BestEpoch:
    """The epoch a stage-1 recipe keeps, chosen on the validation split by ``select`` (a metric name).

    ``update`` scores an epoch's validation metrics and, when they beat the best so far, writes the model's
    weights to the run folder's ``best.safetensors`` (atomically, main process); ``restore`` loads them back
    into the model at the end of training; ``fields`` says in results.json which epoch was kept and why.
    ``state`` is what ``best`` held at the last checkpoint (``RunFolder.resume``), so a resumed run keeps it.
    """

    FILE = "best.safetensors"

    def __init__(self, out: Path, accelerator, select: str, state: dict | None = None):
        self.path, self.accelerator, self.select, self.best = Path(out) / self.FILE, accelerator, select, state

    def update(self, epoch: int, val: dict, model) -> bool:
        """Score ``val`` (the epoch's validation metrics); keep ``model``'s weights if they are the best yet."""
        score = list(selection_score(val, self.select))
        if self.best is not None and score <= self.best["score"]:
            return False
        self.best = {"score": score, "epoch": epoch}
        if self.accelerator.is_main_process:
            with atomic_path(self.path) as tmp:
                save_weights(self.accelerator.unwrap_model(model), tmp)
        return True

    def restore(self, model) -> None:
        """Load the kept epoch's weights into ``model`` (every process; nothing was kept without validation)."""
        self.accelerator.wait_for_everyone()
        if self.best is not None:
            load_model(self.accelerator.unwrap_model(model), str(self.path), device="cpu")  # onto the model's device

    def fields(self, epochs: int) -> dict:
        """results.json's record of the choice."""
        if self.best is None:
            return {"selected_epoch": epochs - 1, "selection": "last epoch (no validation split)"}
        return {"selected_epoch": self.best["epoch"], "selection": f"best validation {self.select}"}


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Write a JSONL log atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))


def peak_memory_mb() -> float:
    """Peak memory of this process: GPU memory allocated where there is a GPU, else peak RSS."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hardware() -> str:
    """What the run ran on, for results files."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def finish_run(accelerator, model, ds, run_dir: Path, loaders: dict, prep, results: dict, title: str) -> dict:
    """Evaluate the chosen model on each split, then write the model, results.json and the recall plot.

    Args:
        loaders: split name -> prepared loader (validation first; the test split is evaluated once, here).
        results: what the recipe adds to results.json (recipe, method, selected epoch, times, config...).
        title: a short name of the model for the plot.
    """
    metrics = evaluate_splits(accelerator, model, ds, loaders, prep, run_dir)  # + predictions.safetensors, intervals
    results = {**results, "dataset": ds.summary(), "train_counts": ds.train_counts, "class_names": ds.class_names,
               "metrics": metrics, "hardware": hardware(), "peak_memory_mb": peak_memory_mb(),
               "num_processes": accelerator.num_processes}
    if accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), run_dir, ds)
        write_json(run_dir / RESULTS, results)
        split = "test" if "test" in metrics else next(iter(metrics))
        plot_per_class_recall(metrics[split], ds.train_counts, run_dir / "per_class_recall.png",
                              title=f"{title}: per-class recall on the {split} split", class_names=ds.class_names)
    accelerator.wait_for_everyone()
    return results
