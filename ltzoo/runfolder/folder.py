"""The run folder's whole life, in one module: creation and an exclusive lock, checkpoints and resume,
the JSONL log, the epoch chosen on validation, the resolved config, the kept predictions, the export, and the
clean-up after a user error. (The model files themselves are `ltzoo.runfolder.model_io`'; atomic writes `ltzoo.files`'.)

The lock: the main process of a run takes an exclusive ``fcntl.flock`` on the folder itself (no lock file
is left in it; the holder's PID is read from /proc/locks) before it reads or writes anything there, and holds it
until the run ends; the kernel releases
it when the process dies, so no stale lock is ever left to clean up. A second run on a folder in use stops
at once, in one line naming the folder and the holding process. The other processes of a multi-process
run do not lock: the main process speaks for them. On network file systems the lock is only as good as
the file system's own: Linux NFS (v4, or v3 with its lock manager) turns ``flock`` into a byte-range lock
that other clients see; file systems without working locks (some FUSE, SMB or old NFS mounts) may grant
it to every client, and then two runs from two machines are not kept apart. POSIX only (``fcntl``).

Checkpoints are accelerate's ``save_state`` folders, ``checkpoints/epoch_N``, each written to a temporary
folder and renamed into place once complete, with ``train_state.json`` as its completion marker; resume
takes the newest complete one. (accelerate's ``ProjectConfiguration(automatic_checkpoint_naming=True,
total_limit=...)`` is not used: it deletes the old checkpoints before writing the new one into its final
folder, and resumes from the highest-numbered folder whether complete or not, so a run killed while
saving would lose its only checkpoint, or resume from a half-written one.)

Resuming survives what a crash leaves: a torn last line of the log is dropped, stale temporaries are
removed (`read_jsonl`, `remove_stale_temporaries`). A run folder this run made is removed again if the
run ends on a user error before it holds anything to resume from or keep (`discard_unfinished_folders`);
a folder that existed before is never removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from safetensors.torch import load_model, save_file

from ltzoo.errors import UserError, user_error
from ltzoo.files import _jsonable, atomic_path, write_json
from ltzoo.metrics import plot_per_class_recall, plot_reliability, reliability_bins, selection_score
from ltzoo.runfolder.layout import (
    LOG,
    PER_CLASS_PLOT,
    PREDICTIONS,
    RELIABILITY,
    RESULTS,
    RUN_CONFIG,
    TRAIN_STATE,
    UNCALIBRATED_HEAD,
    WEIGHTS,
)
from ltzoo.runfolder.model_io import save_model, save_weights
from ltzoo.runfolder.predictions import dataset_meta, save_predictions
from ltzoo.runfolder.provenance import git_commit

_logger = logging.getLogger(__name__)

#: Run folders this process created, each with the topmost folder its creation made (see `create_run_folder`).
_CREATED: list[tuple[Path, Path]] = []
#: runs this process moved aside (--replace): (where it went, where it was), moved back if the new run fails on input
_MOVED_ASIDE: list[tuple[Path, Path]] = []
#: What makes a run folder worth keeping: a checkpoint to resume from, a trained member, a finished model.
_KEEP = ("checkpoints/epoch_*/train_state.json", "members/*.safetensors", WEIGHTS, RESULTS)


def lock_folder(path: Path) -> int:
    """Take the exclusive lock of the run folder ``path`` (which exists): a ``flock`` on the folder itself,
    so no lock file is left in it. Returns the open folder.

    Raises:
        UserError: another process holds it (named by its PID, as the kernel lists it in /proc/locks).
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(
            f"run folder {path} is in use by process {lock_holder(path)}",
            "wait for that run to end, or give this one another --output",
        ) from None
    return fd


def lock_holder(path: Path) -> str:
    """The PID holding a ``flock`` on ``path``, from the kernel's /proc/locks (Linux); "unknown" elsewhere."""
    try:
        inode, lines = os.stat(path).st_ino, Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 12345 00:2f:67890 0 EOF"; waiters are marked "->"
        parts = line.split()
        if len(parts) >= 6 and "->" not in parts and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(inode):
            return parts[4]
    return "unknown"


def unlock_folder(fd: int | None) -> None:
    """Release a lock `lock_folder` took."""
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def create_run_folder(path: str | Path, accelerator, lock: bool = True) -> tuple[Path, int | None]:
    """Make the run folder ``path`` and lock it (main process; the others wait), remembering it if this
    run made it (`discard_unfinished_folders` removes it if the run then fails on bad input).

    Returns:
        ``(path, lock)``: the open lock file on the main process (None elsewhere, or without ``lock``).

    Raises:
        UserError: on every process, when another run holds the folder.
    """
    path, fd, refused = Path(path), None, None
    if accelerator.is_main_process:
        top = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
        path.mkdir(parents=True, exist_ok=True)
        if top is not None:
            _CREATED.append((path, top))
        try:
            fd = lock_folder(path) if lock else None
        except UserError as exc:
            refused = exc
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        refused = broadcast_object_list([str(refused) if refused else None])[0]
    if refused:
        raise refused if isinstance(refused, UserError) else UserError(refused)
    return path, fd


#: Flags that do not change what a run trains or exports: a run started again with other values of these is the
#: same run (it resumes); any other flag that differs makes it another run.
SAME_RUN_IGNORES = frozenset(
    {
        "output",
        "resume",
        "no_progress",
        "workers",
        "threads",
        "save_every",
        "config",
        "replace",
        "flags",
        "recipe",
        "git_commit",
        "resolved",
        "parsed",
        "help",
    }
)


def config_differences(recorded: dict, flags: dict) -> list[str]:
    """The flags whose value in ``flags`` (this run's, as parsed) differs from the run recorded in a folder's
    run_config.yaml, as ``--flag A (recorded) vs B (this run)``. A flag left unset here that the recorded run
    decided itself (its ``resolved`` rules) is the same; a flag the recorded run's ltzoo did not have is skipped."""
    if isinstance(recorded.get("parsed"), dict):  # the flags as that run parsed them: compared as given
        recorded, decided = recorded["parsed"], {}
    else:
        decided = recorded.get("resolved")
    out = []
    for key, value in flags.items():
        if key in SAME_RUN_IGNORES or key not in recorded:
            continue
        old = recorded[key]
        if value is None and old is not None and (decided is None or key in decided):
            continue  # unset here, decided there by its rule: the same rule decides it again
        if isinstance(value, tuple):
            value = list(value)
        flag = "--" + key.replace("_", "-")
        if value is None and old is not None:  # given there (or the default of an older ltzoo), decided here
            out.append(f"{flag} {old} (recorded) vs unset (this run decides it from the data: pass {flag} {old})")
        elif value != old:
            out.append(f"{flag} {old} (recorded) vs {value} (this run)")
    return out


def aside_path(path: Path) -> Path:
    """Where --replace moves the run in ``path``: ``<name>.replaced-<time>``, with ``-2``, ``-3``, ... when a run was
    already moved there in the same second (a name never taken twice)."""
    stem = path.with_name(f"{path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    candidate, n = stem, 1
    while candidate.exists():
        n += 1
        candidate = stem.with_name(f"{stem.name}-{n}")
    return candidate


def holds_work(path: Path) -> bool:
    """True if the run folder ``path`` holds something to resume from or keep (see `_KEEP`)."""
    return any(next(path.rglob(pattern), None) is not None for pattern in _KEEP)


@contextlib.contextmanager
def discard_unfinished_folders() -> Iterator[None]:
    """Around a recipe's run: on a user error (`ltzoo.errors.user_error`), remove the run folders this
    process made (`create_run_folder`) that hold no work yet, and the empty parents it made for them."""
    del _CREATED[:], _MOVED_ASIDE[:]
    try:
        yield
    except Exception as exc:
        if user_error(exc) is not None:
            for path, top in reversed(_CREATED):
                _discard(path, top)
            for aside, original in reversed(_MOVED_ASIDE):  # the replaced run back where it was, whole
                if aside.is_dir() and not original.exists():
                    os.replace(aside, original)
                    _logger.warning(
                        "moved %s back to %s: the run that replaced it failed on its input", aside, original
                    )
        raise
    finally:
        del _CREATED[:], _MOVED_ASIDE[:]


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
    """One run folder, from creation to export: its lock, checkpoints (accelerate's save_state), the JSONL
    log, resume, the resolved config and the exported model and results.

    Made by the main process (the others wait), locked until `close`; ``lock=False`` for a folder inside one
    this run already holds (BTM's ``merged/``).
    """

    def __init__(self, path: str | Path, accelerator, lock: bool = True):
        self.path, self._lock = create_run_folder(path, accelerator, lock)
        self.accelerator = accelerator
        self.ckpt_dir = self.path / "checkpoints"
        self.log_path = self.path / LOG

    def close(self) -> None:
        """Release the folder's lock (the end of the run; the kernel does it if the process dies first)."""
        unlock_folder(self._lock)
        self._lock = None

    def recorded_config(self) -> dict | None:
        """The run_config.yaml of a run this folder already holds (None: a new folder, or one with nothing to keep)."""
        path = self.path / RUN_CONFIG
        if not path.is_file() or not holds_work(self.path):
            return None
        try:
            return yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            return None  # unreadable: resume decides what it can use, as before

    def move_aside(self, target: Path) -> None:
        """Rename this folder (with its lock) to ``target`` and release it: the run there is kept whole."""
        if self.accelerator.is_main_process:
            os.replace(self.path, target)
            _MOVED_ASIDE.append((target, self.path))
        self.accelerator.wait_for_everyone()
        self.close()

    def write_config(self, config: dict) -> dict:
        """Write the resolved config with the git commit (`write_run_config`, main process); returns it."""
        if self.accelerator.is_main_process:
            return write_run_config(self.path, config)
        return {**config, "git_commit": None}

    def export(self, model, ds, results: dict, title: str) -> None:
        """Write the chosen model (timm's format), results.json and the per-class recall plot (main process).

        Args:
            results: results.json's content, with ``metrics`` by split (the plot shows test's, else the first).
            title: a short name of the model for the plot.
        """
        if self.accelerator.is_main_process:
            save_model(self.accelerator.unwrap_model(model), self.path, ds)
            write_json(self.path / RESULTS, results)
            metrics = results["metrics"]
            split = "test" if "test" in metrics else next(iter(metrics))
            plot_per_class_recall(
                metrics[split],
                ds.train_counts,
                self.path / PER_CLASS_PLOT,
                title=f"{title}: per-class recall on the {split} split",
                class_names=ds.class_names,
            )
        self.accelerator.wait_for_everyone()

    def keep_predictions(self, outputs: dict, metrics: dict, ds) -> None:
        """Keep the final evaluation's logits and labels (``predictions.safetensors``, `ltzoo.runfolder.predictions`)
        and the reliability diagram of its test split (else its first) beside results.json (main process).

        Args:
            outputs: split -> ``(logits, labels)``, gathered from every process.
            metrics: split -> metrics (the diagram's ECE).
        """
        if self.accelerator.is_main_process and outputs:
            splits = {s: {"val": ds.val, "test": ds.test}[s] for s in outputs}
            save_predictions(
                self.path / PREDICTIONS,
                {s: z for s, (z, _) in outputs.items()},
                {s: y for s, (_, y) in outputs.items()},
                dataset_meta(ds, str(self.path), splits),
            )
            split = "test" if "test" in outputs else next(iter(outputs))
            plot_reliability(
                reliability_bins(*outputs[split]),
                self.path / RELIABILITY,
                ece=metrics[split]["ece"],
                title=f"{self.path.name}: reliability on the {split} split",
            )
        self.accelerator.wait_for_everyone()

    def keep_uncalibrated_head(self, tensors: dict) -> None:
        """Keep the classifier as trained (``weight``, ``bias``) beside the calibrated model (main process): a
        stage that trains from this run (``--init``) starts from the trained logits' scale, not the calibrated."""
        if self.accelerator.is_main_process:
            with atomic_path(self.path / UNCALIBRATED_HEAD) as tmp:
                save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))

    def last_checkpoint(self) -> Path | None:
        """The newest complete checkpoint folder (``epoch_N`` with its state file), if any."""
        done = [p for p in self.ckpt_dir.glob("epoch_*") if (p / TRAIN_STATE).is_file()]
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
            (tmp / TRAIN_STATE).write_text(json.dumps({**state, "epoch": epoch}, indent=2))
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
        state = json.loads((ckpt / TRAIN_STATE).read_text())
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


# ------------------------------------------------------------------------------ resume and provenance
def read_jsonl(path: str | Path, repair: bool = True) -> list[dict]:
    """The records of a JSONL log (``[]`` if it does not exist), surviving a torn last line.

    A crash while appending can leave the last line cut short. With ``repair`` that line is dropped
    (a warning names the file) and the file rewritten without it, atomically; without ``repair`` it
    raises. A bad line before the last one is corruption, not a torn write: `UserError` naming the
    file, the line and the fix.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    records: list[dict] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if lineno < len(lines) or not repair:
                raise UserError(
                    f"{path}, line {lineno}: not a JSON record ({exc.msg})",
                    "delete that line (or the file; resuming then keeps no log of earlier epochs), "
                    "or start afresh with --no-resume",
                ) from exc
            _logger.warning("%s: dropped a torn last line (%d bytes) left by an interrupted write", path, len(line))
            with atomic_path(path) as tmp:
                tmp.write_text("".join(ln + "\n" for ln in lines[: lineno - 1] if ln.strip()))
    return records


#: ``atomic_path`` temporaries: ``.<name>.<8 random characters>`` (tempfile.mkstemp's suffix).
_ATOMIC_TMP = re.compile(r"\.(?P<name>[^/]+\.[A-Za-z0-9]+)\.[a-z0-9_]{8}")
_STALE_DIRS = (".tmp_epoch_*", ".export-*")


def stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Leftovers of interrupted writes in a run folder: `atomic_path` temporaries, `save_model`'s
    ``.export-*`` folders and `RunFolder.save`'s ``.tmp_epoch_*`` checkpoint folders."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.rglob(".*") if p.is_file() and _ATOMIC_TMP.fullmatch(p.name)]
    found += [p for pattern in _STALE_DIRS for p in run_dir.rglob(pattern) if p.is_dir()]
    return sorted(set(found))


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Remove `stale_temporaries` of ``run_dir``, logging each; returns what it removed.

    Call it on the main process before a resumed run writes anything: another process writing into
    the same folder at the same time would lose its temporaries.
    """
    removed = stale_temporaries(run_dir)
    for p in removed:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
        _logger.warning("removed %s, left by an interrupted write", p)
    return removed


def write_run_config(run_dir: str | Path, config: dict) -> dict:
    """Write the resolved config, with the git commit, as ``run_config.yaml``; returns what was written."""
    config = {**config, "git_commit": git_commit()}
    with atomic_path(Path(run_dir) / RUN_CONFIG) as tmp:
        tmp.write_text(yaml.safe_dump(json.loads(json.dumps(config, default=_jsonable)), sort_keys=False))
    return config
