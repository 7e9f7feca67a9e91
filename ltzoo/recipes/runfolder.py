"""The run folder of a recipe: checkpoints to resume from (written atomically), the JSONL log, and the
files a finished run leaves (the chosen model, results.json, the per-class recall plot).

Checkpoints are accelerate's ``save_state`` folders, ``checkpoints/epoch_N``, each written to a temporary
folder and renamed into place once complete, with ``train_state.json`` as its completion marker; resume
takes the newest complete one. (accelerate's ``ProjectConfiguration(automatic_checkpoint_naming=True,
total_limit=...)`` is not used: it deletes the old checkpoints before writing the new one into its final
folder, and resumes from the highest-numbered folder whether complete or not, so a run killed while
saving would lose its only checkpoint, or resume from a half-written one.)
"""
from __future__ import annotations

import json
import os
import platform
import resource
import shutil
from pathlib import Path

import torch

from ltzoo.engine import evaluate
from ltzoo.metrics import plot_per_class_recall
from ltzoo.runs import RESULTS, save_model, write_json


class RunFolder:
    """Checkpoints (accelerate's save_state), the JSONL log and the resume logic of one run folder."""

    def __init__(self, path: str | Path, accelerator):
        self.path = Path(path)
        self.accelerator = accelerator
        self.ckpt_dir = self.path / "checkpoints"
        self.log_path = self.path / "log.jsonl"
        if accelerator.is_main_process:
            self.path.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()

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
        """Start afresh (``--no-resume``): drop the folder's checkpoints and log."""
        if self.accelerator.is_main_process:
            shutil.rmtree(self.ckpt_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)
        self.accelerator.wait_for_everyone()

    def resume(self) -> dict | None:
        """Load the last checkpoint into the prepared objects; returns its train state (None: fresh start).

        The log keeps only the records of the epochs the checkpoint holds (none on a fresh start).
        """
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
        keep = [ln for ln in self.log_path.read_text().splitlines() if ln and json.loads(ln).get("epoch", -1) <= last_epoch]
        self.log_path.write_text("".join(ln + "\n" for ln in keep))

    def log(self, record: dict) -> None:
        """Append one record to log.jsonl (main process)."""
        if self.accelerator.is_main_process:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")


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
    metrics = {split: evaluate(accelerator, model, dl, prep, ds.train_counts, ds.shot_thresholds, split,
                               progress=False) for split, dl in loaders.items() if dl is not None}
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
