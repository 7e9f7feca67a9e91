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


# ------------------------------------------------------------------------------------ one run per folder
def test_config_differences_name_the_flags_that_make_another_run():
    from ltzoo.runfolder.folder import config_differences

    recorded = {"epochs": 15, "loss": "ce", "shots": 20, "workers": 4, "resolved": {"shots": "a rule"}, "lr": 0.1}
    assert config_differences(recorded, {"epochs": 15, "loss": "ce", "shots": None, "workers": 0, "lr": 0.1}) == []
    assert config_differences(recorded, {"epochs": 30, "loss": "bsce", "shots": None, "lr": 0.1}) == [
        "--epochs 15 (recorded) vs 30 (this run)",
        "--loss ce (recorded) vs bsce (this run)",
    ]
    # a flag the recorded run set and this one leaves unset, when the recorded run did not decide it itself
    assert config_differences({"shots": 10, "resolved": {}}, {"shots": None}) == [
        "--shots 10 (recorded) vs unset (this run decides it from the data: pass --shots 10)"
    ]
    assert config_differences({"epochs": 15}, {"epochs": 15, "calibration": "temperature"}) == []  # an older ltzoo


def test_default_folders_name_what_the_run_starts_from():
    import argparse

    from ltzoo.recipes.flags import default_output

    ns = argparse.Namespace(output=None, dataset="fmnist_lt", model="resnet32_cifar", seed=0, init=None)
    assert default_output("btm", ns) == Path("runs/btm-fmnist_lt-resnet32_cifar-s0")
    started = argparse.Namespace(**{**vars(ns), "init": "runs/pretrain-ce-fmnist_lt-resnet20_cifar-s0/"})
    assert default_output("btm", started) == Path("runs/btm-fmnist_lt-s0-on-pretrain-ce-fmnist_lt-resnet20_cifar-s0")
    hub = argparse.Namespace(**{**vars(ns), "init": "hf-hub:ltzoo/resnet20-ce-fmnistlt", "dataset": "hf:org/x"})
    assert default_output("gml", hub) == Path("runs/gml-hf-org-x-s0-on-resnet20-ce-fmnistlt")


@pytest.mark.slow
def test_a_folder_holds_one_run(tmp_path, capsys):
    """Another run's flags in a folder that holds a run: refused in one line naming them, nothing touched; with
    --replace, the old run is moved aside whole; the same flags resume."""
    from accelerate.state import AcceleratorState, GradientState
    from fixtures import make_imagefolder

    from ltzoo.errors import run_main
    from ltzoo.recipes import pretrain

    data = make_imagefolder(tmp_path / "data", {"train": [20, 10, 6], "test": [3, 3, 3]}, size=(8, 8), channels=1)
    out = tmp_path / "run"
    base = ["--dataset", "imagefolder", "--data-dir", str(data), "--model", "resnet20_cifar", "--workers", "0"]
    base += ["--no-progress", "--batch-size", "8", "--output", str(out)]

    def run(*extra):
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        return run_main(pretrain.main, "pretrain.py", [*base, *extra], exit=False)

    assert run("--epochs", "1") == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert run("--epochs", "2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds another run (--epochs 1 (recorded) vs 2 (this run))" in err[0]
    assert "--replace" in err[0] and "--output DIR" in err[0]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing touched
    assert run("--epochs", "1", "--workers", "0") == 0  # the same run: resumes (nothing left to train)
    assert run("--epochs", "2", "--replace") == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and (aside[0] / "model.safetensors").is_file()
    assert "epochs: 1" in (aside[0] / "run_config.yaml").read_text()
    assert "epochs: 2" in (out / "run_config.yaml").read_text()
    # a replacing run that fails on its input puts the run it moved aside back, whole
    assert run("--epochs", "3", "--replace", "--init", str(tmp_path / "no-such-run")) == 2
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]) == 1
    assert "epochs: 2" in (out / "run_config.yaml").read_text() and (out / "model.safetensors").is_file()
    # the same command from a run that starts from weights (its model decided from --init) resumes, twice
    started = [a for a in base[:-2] if a not in ("--model", "resnet20_cifar")]  # --model left at its default
    started += ["--output", str(tmp_path / "started"), "--init", str(out), "--epochs", "1"]
    for _ in range(2):
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        assert run_main(pretrain.main, "pretrain.py", started, exit=False) == 0


def test_runs_moved_aside_in_the_same_second_never_share_a_name(tmp_path):
    from ltzoo.runfolder.folder import aside_path

    run = tmp_path / "run"
    first = aside_path(run)
    first.mkdir()
    second = aside_path(run)
    assert second != first and second.name.startswith(first.name) and not second.exists()
