"""`ltzoo.runfolder.folder`: one owner per run folder (an exclusive OS-level lock), and what a run leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ltzoo.errors import UserError
from ltzoo.runfolder.folder import RunFolder, lock_folder, unlock_folder

HOLD = """
import sys, time
from pathlib import Path
from ltzoo.runfolder.folder import lock_folder
lock_folder(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of ``tmp_path / 'run'`` (killed at the end: the kernel releases it)."""
    folder = tmp_path / "run"
    folder.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    yield folder, proc
    proc.kill()
    proc.wait()


def _state(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


def test_second_lock_names_the_folder_and_the_holder(holder):
    folder, proc = holder
    before = _state(folder)
    with pytest.raises(UserError, match=rf"run folder {folder} is in use by process {proc.pid};.*--output"):
        lock_folder(folder)
    assert _state(folder) == before, "the refused run touched the folder"


def test_lock_is_released_when_the_holder_dies(holder):
    folder, proc = holder
    proc.kill()
    proc.wait()
    fd = lock_folder(folder)  # no stale lock to clean up
    assert list(folder.iterdir()) == [], "the lock leaves no file in the folder"
    unlock_folder(fd)


def test_recipe_on_a_folder_in_use_stops_at_once(holder, fresh_accelerate, capsys):
    from ltzoo.recipes import pretrain

    folder, proc = holder
    before = _state(folder)
    start = time.perf_counter()
    with pytest.raises(UserError, match=f"in use by process {proc.pid}"):
        pretrain.main(["--dataset", "no_data_needed", "--output", str(folder), "--no-progress", "--threads", "1"])
    assert time.perf_counter() - start < 30 and _state(folder) == before


def test_run_folder_locks_until_closed(tmp_path, fresh_accelerate):
    from accelerate import PartialState

    class Main:  # the accelerator parts a run folder uses, on one process
        is_main_process, num_processes = True, 1

        def wait_for_everyone(self):
            PartialState().wait_for_everyone()

    folder = RunFolder(tmp_path / "a" / "run", Main())
    with pytest.raises(UserError, match="in use by process"):
        lock_folder(folder.path)
    folder.close()
    unlock_folder(lock_folder(folder.path))
