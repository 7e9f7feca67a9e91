"""Bad inputs of every kind end in one clear line (the problem and the fix) and a non-zero exit, and leave
the inputs byte-identical; a bug keeps its traceback (issue 12's error contract)."""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from fixtures import make_imagefolder, make_split_lists
from hubserver import disable_retry_sleep, patch_huggingface_hub, set_hf_offline
from launching import ROOT, recipe_env

from ltzoo.config import argtypes
from ltzoo.errors import UserError, launch, run_main, user_error  # noqa: F401  (launch: see the slow tests)


# ------------------------------------------------------------------------------------------ helpers
def digest(path: Path) -> dict[str, str]:
    """Every file and folder under ``path`` with a hash of its bytes (folders: '<dir>')."""
    path = Path(path)
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
    }


def run(capsys, func, prog: str = "ltzoo test") -> tuple[int, str]:
    """Run ``func`` under `run_main` (as the CLI does); returns (exit code, stderr)."""
    capsys.readouterr()
    code = run_main(func, prog, exit=False)
    return code, capsys.readouterr().err


def assert_one_line(err: str, prog: str, *parts: str) -> str:
    """``err`` is exactly one line ``prog: error: ...`` holding each of ``parts`` (problem, fix)."""
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith(f"{prog}: error: "), err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def expect_user_error(capsys, func, *parts: str, inputs: Path | None = None) -> str:
    """``func`` under run_main: exit code 2, one line with ``parts``, ``inputs`` unchanged."""
    before = digest(inputs) if inputs is not None else None
    code, err = run(capsys, func)
    assert code == 2, err
    line = assert_one_line(err, "ltzoo test", *parts)
    if inputs is not None:
        assert digest(inputs) == before
    return line


@pytest.fixture
def folder(tmp_path) -> Path:
    """A tiny 3-class image folder (train/val/test)."""
    return make_imagefolder(tmp_path / "data", {"train": [6, 4, 3], "val": [2, 2, 2], "test": [2, 2, 2]})


@pytest.fixture
def run_dir(tmp_path, folder) -> Path:
    """A finished run folder (config.json + model.safetensors) of a tiny model on ``folder``."""
    from ltzoo.data import load_dataset
    from ltzoo.runfolder.model_io import create_model, save_model

    ds = load_dataset("imagefolder", data_dir=str(folder))
    torch.manual_seed(0)
    save_model(create_model(ds, "resnet20_cifar"), tmp_path / "run", ds)
    return tmp_path / "run"


# ----------------------------------------------------------------------------------- the contract
def test_user_error_is_one_line_with_problem_and_fix(capsys):
    exc = UserError("the thing is\nbroken", "fix\n   it")
    assert str(exc) == "the thing is broken; fix it" and isinstance(exc, ValueError)
    assert_one_line(run(capsys, lambda: (_ for _ in ()).throw(exc))[1], "ltzoo test", "broken; fix it")


def test_run_main_keeps_the_traceback_of_a_bug(capsys):
    def main():
        raise KeyError("a bug in ltzoo")

    with pytest.raises(KeyError, match="a bug in ltzoo"):
        run_main(main, "ltzoo test", exit=False)
    assert capsys.readouterr().err == ""


def test_traceback_of_user_errors_on_request(monkeypatch):
    monkeypatch.setenv("LTZOO_TRACEBACK", "1")
    with pytest.raises(UserError, match="bad; fix"):
        run_main(lambda: (_ for _ in ()).throw(UserError("bad", "fix")), "x", exit=False)


def test_run_main_exit_codes(capsys):
    assert run_main(lambda: 3, "x", exit=False) == 3
    assert run_main(lambda: {"results": 1}, "x", exit=False) == 0  # a recipe returns its results
    assert run_main(lambda argv: len(argv), "x", argv=["a", "b"], exit=False) == 2

    def interrupted():
        raise KeyboardInterrupt

    assert run_main(interrupted, "x", exit=False) == 130 and capsys.readouterr().err == "x: interrupted\n"
    with pytest.raises(SystemExit) as info:
        run_main(lambda: (_ for _ in ()).throw(ValueError("bad value")), "/path/to/recipe.py")
    assert info.value.code == 2 and capsys.readouterr().err == "recipe.py: error: bad value\n"


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "entry.py"
    path.write_text(
        "import sys\nfrom ltzoo.errors import run_main\n\ndef main():\n" + body + "\n\nrun_main(main, __file__)\n"
    )
    return path


def test_script_user_error_exit_code_and_one_line(tmp_path):
    body = "    raise OSError(28, 'No space left on device', 'out/results.json')"
    proc = subprocess.run(
        [sys.executable, str(_script(tmp_path, body))],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "entry.py: error: out/results.json: no space left on the device; free some "
        "space or write the run folder elsewhere (--output)"
    ], proc.stderr


@pytest.mark.parametrize(
    "exc, line",
    [
        (
            OSError(errno.EROFS, "Read-only file system", "/ro/run"),
            "/ro/run: read-only file system; write the run folder to a writable place (--output)",
        ),
        (
            OSError(errno.EDQUOT, "Disk quota exceeded", "/home/u/run/model.safetensors"),
            "/home/u/run/model.safetensors: disk quota exceeded; free some space or write the run folder elsewhere",
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "/nonexistent/config.yaml"),
            "/nonexistent/config.yaml: no such file or directory; check the path",
        ),
        (FileNotFoundError("data dir /x does not exist (dataset 'places_lt')"), "data dir /x does not exist"),
    ],
)
def test_disk_and_path_errors(capsys, exc, line):
    def main():
        raise exc

    expect_user_error(capsys, main, line)


def test_script_bug_keeps_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(_script(tmp_path, "    {}['missing']"))],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("Traceback") and proc.stderr.rstrip().endswith("KeyError: 'missing'")


# ------------------------------------------------------------------------ third-party exceptions
def _raises(func):
    try:
        func()
    except Exception as exc:  # the exception a library raises for this input
        return exc
    raise AssertionError("no exception")


def test_classify_third_party_errors(tmp_path):
    import timm
    import yaml
    from PIL import Image
    from safetensors import safe_open

    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
    img = tmp_path / "img.png"
    img.write_text("not an image")
    cases = {
        "safetensors": (lambda: safe_open(str(bad), "pt"), ["not a readable safetensors file", "re-export"]),
        "pil": (lambda: Image.open(img), [str(img), "replace the file", "--skip-bad-files"]),
        "timm": (
            lambda: timm.create_model("resnet_nonexistent"),
            ["unknown model 'resnet_nonexistent'", "timm.list_models"],
        ),
        "yaml": (lambda: yaml.safe_load("epochs: [1,\nlr: 0.1"), ["line 2", "not valid YAML", "fix the syntax"]),
        "enoent": (lambda: open(tmp_path / "missing.txt"), [str(tmp_path / "missing.txt"), "check the path"]),
        "eacces": (
            lambda: (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied", "/root/x")),
            ["/root/x: permission denied", "fix the permissions"],
        ),
    }
    for name, (func, parts) in cases.items():
        err = user_error(_raises(func))
        assert isinstance(err, UserError), name
        assert "\n" not in str(err) and all(p in str(err) for p in parts), (name, str(err))
    assert user_error(KeyError("x")) is None and user_error(RuntimeError("CUDA error")) is None
    assert user_error(OSError(errno.EIO, "I/O error")) is None  # not something a user can fix by a flag


def test_classify_hub_errors(monkeypatch):
    from huggingface_hub.errors import OfflineModeIsEnabled

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = str(user_error(OfflineModeIsEnabled("offline"), hub_id="org/model"))
    assert "hub model org/model" in msg and "HF_HUB_OFFLINE=1" in msg and "unset HF_HUB_OFFLINE" in msg
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    transport = []  # the transport errors of the HTTP client huggingface_hub uses here (requests is not a dependency)
    for module, name in (("httpx", "ConnectError"), ("httpx2", "ConnectError"), ("requests", "ConnectionError")):
        try:
            transport.append(getattr(__import__(module), name)("refused"))
        except ImportError:
            pass
    for exc in (*transport, ConnectionRefusedError(111, "Connection refused")):
        msg = str(user_error(exc, hub_id="org/model"))
        assert "cannot reach the Hugging Face Hub" in msg and "org/model" in msg and "check the network" in msg
    assert user_error(BrokenPipeError(32, "Broken pipe")) is None


# --------------------------------------------------------------------------------------- data
def test_undecodable_image_in_folder_is_found_before_training(capsys, folder):
    from ltzoo.data import load_dataset

    bad = folder / "train" / "class_01" / "00002.png"
    bad.write_bytes(b"this is not a png")
    line = expect_user_error(
        capsys,
        lambda: load_dataset("imagefolder", data_dir=str(folder)),
        "imagefolder: 1 of 13 train images",
        str(bad),
        "cannot identify image file",
        "--skip-bad-files",
        inputs=folder,
    )
    assert "replace those files or remove them" in line


def test_missing_files_in_split_list_lists_the_first_five_and_the_total(capsys, tmp_path):
    from ltzoo.data import load_dataset

    root = tmp_path / "lists"
    lists = make_split_lists(root, {"train": [5, 4], "test": [2, 2]}, dataset="places_lt")
    gone = sorted((root / "train").rglob("*.png"))[:7]
    for p in gone:
        p.unlink()
    line = expect_user_error(
        capsys,
        lambda: load_dataset("places_lt", data_dir=str(root)),
        "places_lt: 7 of 9 train images (split list Places_LT_train.txt) are missing",
        "(missing)",
        "and 2 more",
        "--skip-bad-files",
        inputs=root,
    )
    assert sum(str(p) in line for p in gone) == 5
    assert lists["train"].is_file()


def test_skip_bad_files_drops_them_and_reports_how_many(folder, caplog):
    from ltzoo.data import load_dataset

    (folder / "train" / "class_00" / "00001.png").write_bytes(b"")
    (folder / "test" / "class_02" / "00000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    before = digest(folder)
    with caplog.at_level(logging.WARNING, logger="ltzoo.data.check"):
        ds = load_dataset("imagefolder", data_dir=str(folder), skip_bad=True)
    assert ds.train_counts == [5, 4, 3] and ds.test.counts(3) == [2, 2, 1]
    assert ds.summary()["skipped_files"] == {"train": 1, "test": 1}
    assert "skipping them" in caplog.text and "00001.png" in caplog.text
    assert digest(folder) == before


def test_skip_bad_cannot_skip_every_image(capsys, tmp_path):
    from ltzoo.data import load_dataset

    root = tmp_path / "lists"
    make_split_lists(root, {"train": [2, 2], "test": [1, 1]}, dataset="places_lt")
    for p in (root / "test").rglob("*.png"):
        p.write_bytes(b"junk")
    expect_user_error(
        capsys,
        lambda: load_dataset("places_lt", data_dir=str(root), skip_bad=True),
        "2 of 2 test images",
        "no image is left to use",
        inputs=root,
    )


def test_empty_class_folder_is_refused(capsys, folder):
    from ltzoo.data import load_dataset

    (folder / "train" / "class_03").mkdir()
    expect_user_error(
        capsys,
        lambda: load_dataset("imagefolder", data_dir=str(folder)),
        "imagefolder: 1 of 4 classes have no training images",
        "'class_03'",
        "add images of those classes",
        inputs=folder,
    )


def test_class_missing_from_test_split_is_refused(capsys, tmp_path):
    from ltzoo.data import load_dataset

    root = make_imagefolder(tmp_path / "d", {"train": [4, 4, 4], "test": [2, 0, 2]})
    expect_user_error(
        capsys,
        lambda: load_dataset("imagefolder", data_dir=str(root), val_per_class=1),
        "the test split (folder test/) has no images of 1 of 3 classes: 'class_01'",
        "add test images of those classes",
        inputs=root,
    )


def test_in_memory_split_gets_the_class_check():
    from ltzoo.data.check import check_classes, check_files
    from ltzoo.data.splits import Split

    train = Split("train", torch.tensor([0, 0, 2]), images=torch.zeros(3, 1, 4, 4, dtype=torch.uint8))
    assert check_files(train) == (train, 0)  # nothing to open
    with pytest.raises(UserError, match=r"1 of 3 classes have no training images: 'b'"):
        check_classes("toy", ["a", "b", "c"], train)


def test_bad_file_check_runs_in_parallel_in_order_with_a_progress_bar(tmp_path, capsys):
    from ltzoo.data.check import find_bad_files

    root = make_imagefolder(tmp_path / "d", {"train": [30]})
    files = sorted(str(p) for p in root.rglob("*.png"))
    Path(files[7]).write_bytes(b"junk")
    files.insert(3, str(tmp_path / "absent.png"))
    bad = find_bad_files(files, workers=4, progress=True)
    assert [(i, Path(p).name) for i, p, _ in bad] == [(3, "absent.png"), (8, "00007.png")]
    assert bad[0][2] == "missing" and "cannot identify" in bad[1][2]
    assert "checking images" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ weights
@pytest.mark.parametrize(
    "damage, problem",
    [
        ("truncate", "is not a readable safetensors file"),
        ("garbage", "is not a readable safetensors file"),
        ("empty", "is not a readable safetensors file"),
        ("remove", "has no model.safetensors"),
    ],
)
def test_bad_weights_are_named_when_read(capsys, run_dir, damage, problem):
    from ltzoo.runfolder.model_io import check_weights, load_model

    weights = run_dir / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) - 1000])
    elif damage == "garbage":
        weights.write_bytes(os.urandom(64))
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        weights.unlink()
    named = str(run_dir if damage == "remove" else weights)
    fix = "finish the run" if damage == "remove" else "re-export it"
    expect_user_error(capsys, lambda: check_weights(run_dir), named, problem, fix, inputs=run_dir)
    expect_user_error(capsys, lambda: load_model(str(run_dir)), named, problem, fix, inputs=run_dir)


def test_good_weights_pass_and_load(run_dir):
    from ltzoo.runfolder.model_io import check_weights, load_model

    assert check_weights(run_dir) == run_dir / "model.safetensors"
    assert load_model(str(run_dir)).num_classes == 3


def test_init_from_corrupt_weights_is_refused_before_training(capsys, run_dir, folder):
    from ltzoo.data import load_dataset
    from ltzoo.runfolder.model_io import create_model

    ds = load_dataset("imagefolder", data_dir=str(folder))
    (run_dir / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    expect_user_error(
        capsys,
        lambda: create_model(ds, "resnet20_cifar", init=str(run_dir)),
        str(run_dir / "model.safetensors"),
        "truncated or corrupt",
        inputs=run_dir,
    )


@pytest.mark.parametrize(
    "ref, parts",
    [
        ("runs/does/not/exist", ["no run folder or weights file at runs/does/not/exist", "pass a run folder"]),
        ("./nothere", ["no run folder or weights file at ./nothere", "or a hub id org/name"]),
        ("/no/such/run", ["no run folder or weights file at /no/such/run"]),
        ("~/no-such-run-here", ["no run folder or weights file at ~/no-such-run-here"]),
        ("resnet_nonexistent", ["unknown model 'resnet_nonexistent'", "timm.list_models"]),
    ],
)
def test_bad_model_references(capsys, ref, parts):
    from ltzoo.runfolder.model_io import load_model

    expect_user_error(capsys, lambda: load_model(ref), *parts)


@pytest.mark.parametrize("ref", ["runs/does-not-exist", "runs/x.y"])
def test_missing_run_folder_under_an_existing_folder_is_not_asked_of_the_hub(capsys, tmp_path, monkeypatch, ref):
    """``runs/x`` has the form of a hub id (org/name): where ``runs/`` is a folder of runs here, it is a missing run
    folder, refused at once, with no Hub request (the Hub here is a closed port; offline, it would say "not in the
    cache"). A folder without runs (like a checkout's ``ltzoo/`` package) leaves ``org/name`` a hub id."""
    from ltzoo.runfolder.model_io import load_model, resolve_model_ref

    patch_huggingface_hub(monkeypatch, "http://127.0.0.1:9", tmp_path / "hf_home", None)
    set_hf_offline(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "done").mkdir(parents=True)
    (tmp_path / "runs" / "done" / "run_config.yaml").write_text("seed: 0\n")
    line = expect_user_error(
        capsys,
        lambda: load_model(ref),
        f"no run folder or weights file at {ref}; ",
        "pass a run folder (it holds config.json and model.safetensors) or a hub id org/name",
    )
    assert "hub" not in line.split(";")[0].lower()
    (tmp_path / "runs" / "done" / "run_config.yaml").unlink()  # runs/ without a run: runs/x is a hub id by its form
    assert resolve_model_ref(ref) == f"hf-hub:{ref}"
    (tmp_path / "ltzoo" / "cli").mkdir(parents=True)  # a checkout's package folder: ltzoo/NAME is the zoo's hub id
    (tmp_path / "ltzoo" / "__init__.py").write_text("")
    assert resolve_model_ref("ltzoo/resnet20-ce-fmnistlt") == "hf-hub:ltzoo/resnet20-ce-fmnistlt"


def test_missing_org_name_says_there_is_no_run_folder_either(capsys, tmp_path, monkeypatch):
    """An ``org/name`` whose ``org`` is no folder here goes to the Hub; when the Hub cannot give it, the line says
    too that there is no run folder of that name (the user may have meant one), with the Hub's reason and fix."""
    from ltzoo.runfolder.model_io import load_model

    patch_huggingface_hub(monkeypatch, "http://127.0.0.1:9", tmp_path / "hf_home", None)
    set_hf_offline(monkeypatch)
    monkeypatch.chdir(tmp_path)
    expect_user_error(
        capsys,
        lambda: load_model("runs/does-not-exist"),
        "no run folder or weights file at runs/does-not-exist, and hub model runs/does-not-exist is not in the "
        "local cache",
        "download it once online",
    )


def test_eval_and_init_of_a_missing_run_folder_name_it(tmp_path):
    """The newcomer's commands: ``ltzoo eval runs/does-not-exist`` and a recipe's ``--init runs/does-not-exist``
    (with a run in ``runs/``) end on the one line naming the missing run folder, not the Hub."""
    (tmp_path / "runs" / "earlier").mkdir(parents=True)
    (tmp_path / "runs" / "earlier" / "config.json").write_text("{}")
    env = {**recipe_env(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    for cmd, prog in (
        (["-m", "ltzoo", "eval", "runs/does-not-exist", "--dataset", "fmnist_lt"], "ltzoo eval"),
        (["-m", "ltzoo.recipes.gml", "--dataset", "fmnist_lt", "--init", "runs/does-not-exist"], "gml.py"),
    ):
        proc = subprocess.run(
            [sys.executable, *cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 2, proc.stderr
        last = proc.stderr.splitlines()[-1] + "\n"  # the recipe logs the data it loaded first
        assert_one_line(last, prog, "no run folder or weights file at runs/does-not-exist; pass a run folder")
        assert "Traceback" not in proc.stderr
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["earlier"], "no run folder is left"


def test_model_ref_that_is_a_file_or_a_folder_without_config(capsys, run_dir):
    from ltzoo.runfolder.model_io import load_model

    expect_user_error(capsys, lambda: load_model(str(run_dir / "model.safetensors")), "is a file, not a run folder")
    (run_dir / "config.json").unlink()
    expect_user_error(capsys, lambda: load_model(str(run_dir)), "has no config.json", inputs=run_dir)


def test_unknown_model_for_training_is_refused(capsys, folder):
    from ltzoo.data import load_dataset
    from ltzoo.runfolder.model_io import create_model

    ds = load_dataset("imagefolder", data_dir=str(folder))
    expect_user_error(capsys, lambda: create_model(ds, "resnet33_cifar"), "unknown model 'resnet33_cifar'")


def test_hub_id_not_cached_while_offline_names_the_id_and_offline_mode(capsys, tmp_path, monkeypatch):
    from ltzoo.runfolder.model_io import load_model

    patch_huggingface_hub(monkeypatch, "http://127.0.0.1:9", tmp_path / "hf_home", None)
    set_hf_offline(monkeypatch)
    line = expect_user_error(
        capsys,
        lambda: load_model("someorg/some-model"),
        "hub model someorg/some-model is not in the local cache",
        "HF_HUB_OFFLINE=1",
        "download it once online",
    )
    assert "offline" in line


def test_hub_id_unreachable_hub_names_the_id(capsys, tmp_path, monkeypatch):
    from ltzoo.runfolder.model_io import load_model

    patch_huggingface_hub(monkeypatch, "http://127.0.0.1:9", tmp_path / "hf_home", None)
    disable_retry_sleep(monkeypatch)
    expect_user_error(
        capsys,
        lambda: load_model("someorg/some-model"),
        "someorg/some-model",
        "the Hub cannot be reached",
        "check the network connection",
    )


def test_hub_id_that_does_not_exist(capsys, local_hub):
    from ltzoo.runfolder.model_io import load_model

    expect_user_error(
        capsys,
        lambda: load_model("someorg/no-such-model"),
        "hub model someorg/no-such-model does not exist on the Hub or is private",
        "check the id",
    )


# ------------------------------------------------------------------------------------- resume
def _log(path: Path, epochs: int, torn: str = "") -> None:
    path.write_text("".join(json.dumps({"epoch": e, "loss": 1.0 / (e + 1)}) + "\n" for e in range(epochs)) + torn)


def test_torn_last_log_line_is_dropped_with_a_warning(tmp_path, caplog):
    from ltzoo.runfolder.folder import read_jsonl

    log = tmp_path / "log.jsonl"
    _log(log, 3, torn='{"epoch": 3, "lo')
    with caplog.at_level(logging.WARNING, logger="ltzoo.runfolder.folder"):
        records = read_jsonl(log)
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert str(log) in caplog.text and "torn last line" in caplog.text
    assert log.read_text().count("\n") == 3 and log.read_text().endswith("}\n")
    assert read_jsonl(log) == records and read_jsonl(tmp_path / "absent.jsonl") == []


def test_torn_log_without_repair_and_a_corrupt_middle_line_are_refused(capsys, tmp_path):
    from ltzoo.runfolder.folder import read_jsonl

    log = tmp_path / "log.jsonl"
    _log(log, 2, torn='{"epoch": 2')
    expect_user_error(
        capsys, lambda: read_jsonl(log, repair=False), f"{log}, line 3: not a JSON record", "--no-resume", inputs=log
    )
    log.write_text('{"epoch": 0}\n{"ep\n{"epoch": 2}\n')
    expect_user_error(
        capsys, lambda: read_jsonl(log), f"{log}, line 2: not a JSON record", "delete that line", inputs=log
    )


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path, caplog):
    from ltzoo.files import write_json
    from ltzoo.runfolder.folder import remove_stale_temporaries

    run_dir = tmp_path / "run"
    write_json(run_dir / "results.json", {"a": 1})
    (run_dir / ".gitignore").write_text("*\n")
    (run_dir / "checkpoints" / "epoch_2").mkdir(parents=True)
    (run_dir / "checkpoints" / "epoch_2" / "train_state.json").write_text("{}")
    stale = [
        Path(tempfile.mkstemp(prefix=".results.json.", dir=run_dir)[1]),
        Path(tempfile.mkstemp(prefix=".model.safetensors.", dir=run_dir / "checkpoints")[1]),
        run_dir / "checkpoints" / ".tmp_epoch_3",
        run_dir / ".export-abc123",
    ]
    for d in stale[2:]:
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"half")
    keep = {
        k: v for k, v in digest(run_dir).items() if not any(k.startswith(str(s.relative_to(run_dir))) for s in stale)
    }
    with caplog.at_level(logging.WARNING, logger="ltzoo.runfolder.folder"):
        removed = remove_stale_temporaries(run_dir)
    assert sorted(removed) == sorted(stale) and digest(run_dir) == keep
    assert all(str(p) in caplog.text for p in stale)
    assert remove_stale_temporaries(run_dir) == [] and remove_stale_temporaries(tmp_path / "none") == []


# --------------------------------------------------------------------------------- flag values
@pytest.mark.parametrize(
    "func, value, ok, wanted",
    [
        (argtypes.positive_int, "0", None, "an integer >= 1, got '0'; pass a whole number of 1 or more, e.g. 1"),
        (argtypes.positive_int, "2.5", None, "an integer >= 1, got '2.5'"),
        (argtypes.positive_int, 3.0, 3, None),
        (argtypes.positive_int, True, None, "an integer >= 1, got True"),
        (argtypes.nonneg_int, "-1", None, "an integer >= 0, got '-1'; pass a whole number of 0 or more"),
        (argtypes.nonneg_int, "0", 0, None),
        (argtypes.unit_interval, "1.5", None, "a ratio in [0, 1], got '1.5'; pass a number from 0 to 1"),
        (argtypes.unit_interval, "0", 0.0, None),
        (argtypes.positive_fraction, "0", None, "a ratio in (0, 1], got '0'"),
        (argtypes.positive_fraction, "nan", None, "a ratio in (0, 1], got 'nan'; pass a number above 0 and at most 1"),
        (argtypes.positive_float, "-0.1", None, "a number > 0, got '-0.1'; pass a number above 0"),
        (argtypes.nonneg_float, "inf", None, "a number >= 0, got 'inf'; pass a number of 0 or more"),
        (
            argtypes.imbalance_ratio,
            "0.5",
            None,
            "an imbalance ratio >= 1 (largest class / smallest class), got '0.5'; pass",
        ),
        (argtypes.imbalance_ratio, "100", 100.0, None),
    ],
)
def test_value_types(func, value, ok, wanted):
    if wanted is None:
        assert func(value) == ok
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=None) as info:
            func(value)
        assert wanted in str(info.value)


def test_path_types(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("x")
    assert argtypes.existing_file(str(f)) == str(f) and argtypes.existing_dir(str(tmp_path)) == str(tmp_path)
    for func, value, msg in (
        (argtypes.existing_file, tmp_path / "b.txt", "does not exist; check the path"),
        (argtypes.existing_file, tmp_path, "is a folder, expected a file; pass the file inside it"),
        (argtypes.existing_dir, tmp_path / "nope", "folder .* does not exist; check the path"),
        (argtypes.existing_dir, f, "is a file, expected a folder; pass the folder that holds it"),
        (argtypes.file_of("pass the list"), tmp_path / "b.txt", "file .*b.txt does not exist; pass the list$"),
        (argtypes.folder_of("pass the root"), f, "is a file, expected a folder; pass the root$"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            func(str(value))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recipe.py")
    p.add_argument("--subsets", type=argtypes.positive_int, default=4)
    p.add_argument("--val-list", type=argtypes.existing_file, default=None)
    return p


def test_flag_values_checked_when_parsed(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--subsets", "0"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.splitlines()[-1] == (
        "recipe.py: error: argument --subsets: expected an integer >= 1, got '0'; pass a whole number of 1 or more, "
        "e.g. 1"
    )
    with pytest.raises(SystemExit):
        _parser().parse_args(["--val-list", str(tmp_path / "v.txt")])
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(
            f"argument --val-list: file {tmp_path / 'v.txt'} does not exist; check the path (a relative one "
            "starts from the current folder)"
        )
    )


def test_config_values_checked_like_flags(capsys):
    p = _parser()
    assert argtypes.check_config_values(p, {"subsets": 2, "val_list": None}) == {"subsets": 2, "val_list": None}
    with pytest.raises(SystemExit) as info:
        argtypes.check_config_values(p, {"subsets": 0}, source="cfg.yaml")
    assert info.value.code == 2
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == "recipe.py: error: cfg.yaml: subsets: expected an integer >= 1, got 0; pass a whole number of 1 or more, "
        "e.g. 1"
    )


# -------------------------------------------------------------------------- under accelerate launch
_LAUNCHED = """
import os, sys
from ltzoo.errors import UserError, run_main

def main():
    if sys.argv[1] == "dist":
        from accelerate import Accelerator
        Accelerator()  # joins the process group (gloo)
        if os.environ.get("RANK") == "1" and sys.argv[2] == "crash":
            raise KeyError("a bug on rank 1")
    raise UserError("the data is bad", "fix the data")

run_main(main, __file__)
"""


def _launch(tmp_path: Path, flags: list[str], args: list[str], wrapper: bool = True) -> subprocess.CompletedProcess:
    from launching import free_port

    script = tmp_path / "recipe.py"
    script.write_text(_LAUNCHED)
    base = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if "--multi_gpu" in flags:
        base += ["--main_process_port", str(free_port())]
    head = (
        [sys.executable, "-c", "import sys; from ltzoo.errors import launch; sys.exit(launch(sys.argv[1:]))"]
        if wrapper
        else [sys.executable, "-m", "accelerate.commands.launch"]
    )
    return subprocess.run(
        head + base + flags + [str(script), *args],
        capture_output=True,
        text=True,
        env=recipe_env(tmp_path / "hf"),
        timeout=300,
    )


@pytest.mark.slow
def test_launch_one_process_user_error_is_one_line(tmp_path):
    proc = _launch(tmp_path, ["--num_processes", "1", "--cpu"], ["one"])
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["recipe.py: error: the data is bad; fix the data"], proc.stderr
    # plain `accelerate launch -q`: the same line, exit code 1 (the launcher's)
    proc = _launch(tmp_path, ["-q", "--num_processes", "1", "--cpu"], ["one"], wrapper=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["recipe.py: error: the data is bad; fix the data"], proc.stderr


@pytest.mark.slow
def test_launch_two_processes_user_error_is_one_line(tmp_path):
    proc = _launch(tmp_path, ["--multi_gpu", "--num_processes", "2"], ["dist", "user"])
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["recipe.py: error: the data is bad; fix the data"], proc.stderr


@pytest.mark.slow
def test_launch_two_processes_crash_keeps_the_tracebacks(tmp_path):
    proc = _launch(tmp_path, ["--multi_gpu", "--num_processes", "2"], ["dist", "crash"])
    assert proc.returncode == 1
    assert "KeyError: 'a bug on rank 1'" in proc.stderr and "ChildFailedError" in proc.stderr


# ================================================================================================
# The contract, wired: every recipe and CLI command, called as `main(argv)` under run_main, the way
# its entry point runs it. Each case: exit code 2, ONE line naming the problem and the fix, inputs and
# any existing run folder byte-identical, and no run folder left behind by a run that failed.
# ================================================================================================
TINY = ["--workers", "0", "--no-progress", "--threads", "1"]


def run_entry(capsys, main, argv: list[str], prog: str) -> tuple[int, str]:
    """``main(argv)`` as its entry point runs it (run_main); a usage error's SystemExit gives its code."""
    capsys.readouterr()
    try:
        code = run_main(main, prog, argv=[str(a) for a in argv], exit=False)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def expect_refused(
    capsys, main, argv, prog: str, *parts: str, inputs: tuple[Path, ...] = (), absent: Path | None = None
) -> str:
    """``main(argv)`` ends on a user error: exit 2, one line with ``parts``; ``inputs`` unchanged, ``absent`` absent."""
    before = [digest(p) for p in inputs]
    code, err = run_entry(capsys, main, argv, prog)
    assert code == 2, err
    line = assert_one_line(err, prog, *parts)
    assert [digest(p) for p in inputs] == before
    if absent is not None:
        assert not absent.exists(), sorted(absent.rglob("*"))
    return line


def _recipe(name: str):
    from ltzoo.recipes import btm, gml, pretrain

    return {"pretrain": pretrain, "btm": btm, "gml": gml}[name]


# --------------------------------------------------------------------------- bad flag values (parse)
@pytest.mark.parametrize(
    "recipe, argv, parts",
    [
        (  # issue 12's case, with the fix
            "btm",
            ["--subsets", "0"],
            ["argument --subsets: expected an integer >= 1, got '0'; pass a whole number of 1 or more, e.g. 1"],
        ),
        ("btm", ["--shots", "-3"], ["argument --shots: expected an integer >= 1"]),
        ("btm", ["--member-epochs", "0"], ["argument --member-epochs: expected an integer >= 1"]),
        ("btm", ["--member-lr", "0"], ["argument --member-lr: expected a number > 0"]),
        ("btm", ["--head-epochs", "1.5"], ["argument --head-epochs: expected an integer >= 1, got '1.5'"]),
        ("pretrain", ["--epochs", "0"], ["argument --epochs: expected an integer >= 1"]),
        ("pretrain", ["--batch-size", "zero"], ["argument --batch-size: expected an integer >= 1, got 'zero'"]),
        ("pretrain", ["--lr", "-0.1"], ["argument --lr: expected a number > 0, got '-0.1'; pass a number above 0"]),
        ("pretrain", ["--grad-accum", "0"], ["argument --grad-accum"]),
        ("pretrain", ["--save-every", "0"], ["argument --save-every"]),
        ("pretrain", ["--warmup-epochs", "-1"], ["argument --warmup-epochs: expected a number >= 0"]),
        ("pretrain", ["--workers", "-1"], ["argument --workers: expected an integer >= 0"]),
        ("pretrain", ["--seed", "-1"], ["argument --seed"]),
        ("pretrain", ["--threads", "0"], ["argument --threads"]),
        ("pretrain", ["--label-smoothing", "1.5"], ["argument --label-smoothing: expected a ratio in [0, 1]"]),
        ("pretrain", ["--mixup", "-1"], ["argument --mixup: expected a number >= 0"]),
        ("pretrain", ["--imbalance", "0.5"], ["argument --imbalance: expected an imbalance ratio >= 1"]),
        (
            "pretrain",
            ["--train-list", "/nonexistent/train.txt"],
            [
                "argument --train-list: file /nonexistent/train.txt does not exist; pass the `path label` list of the "
                "training images, a text file (the published lists: docs/data.md)"
            ],
        ),
        ("pretrain", ["-c", "fmnist_lt/nope"], ["argument -c/--config: no config file fmnist_lt/nope", "packaged: "]),
        ("pretrain", ["--bogus-flag", "1"], ["unrecognized arguments: --bogus-flag", "pretrain.py --help"]),
        ("gml", ["--init", "x/y", "--head-lr", "0"], ["argument --head-lr: expected a number > 0"]),
    ],
)
def test_bad_flag_value_is_one_line_at_parse_time(capsys, tmp_path, recipe, argv, parts):
    expect_refused(
        capsys,
        _recipe(recipe).main,
        argv + ["--output", tmp_path / "run"],
        f"{recipe}.py",
        *parts,
        absent=tmp_path / "run",
    )


@pytest.mark.parametrize(
    "yaml_text, parts",
    [
        ("subsets: 0\n", ["subsets: expected an integer >= 1, got 0"]),
        ("member_lr: -1\n", ["member_lr: expected a number > 0, got -1"]),
        ("seed: 1.5\n", ["seed: expected an integer >= 0, got 1.5"]),
        ("epochs: [1,\nlr: 0.1\n", ["line 3, column 1: not valid YAML", "fix the syntax"]),
        ("epoch: 3\n", ["unknown keys ['epoch'] (did you mean epoch -> epochs?)"]),
    ],
)
def test_bad_yaml_config_value_is_one_line(capsys, tmp_path, yaml_text, parts):
    from ltzoo.recipes import btm

    cfg = tmp_path / "btm.yaml"
    cfg.write_text(yaml_text)
    expect_refused(
        capsys,
        btm.main,
        ["-c", cfg, "--output", tmp_path / "run"],
        "btm.py",
        str(cfg),
        *parts,
        inputs=(cfg,),
        absent=tmp_path / "run",
    )


def test_yaml_values_are_converted_like_the_command_line(tmp_path):
    from ltzoo.recipes import btm

    cfg = tmp_path / "btm.yaml"
    cfg.write_text("member_lr: 1e-3\nsubsets: 2\n")  # YAML 1.1 reads 1e-3 as a string: the flag's type converts it
    args = btm.build_parser().parse_args(["-c", str(cfg)])
    assert args.member_lr == 0.001 and args.subsets == 2


# ------------------------------------------------------------------------------ data, model, init
@pytest.mark.parametrize("recipe", ["pretrain", "btm"])
def test_unknown_dataset(capsys, tmp_path, recipe):
    expect_refused(
        capsys,
        _recipe(recipe).main,
        ["--dataset", "no_such_set", "--output", tmp_path / "run", *TINY],
        f"{recipe}.py",
        "no_such_set",
        absent=tmp_path / "run",
    )


@pytest.mark.parametrize("recipe", ["pretrain", "btm"])
def test_unknown_model_leaves_no_run_folder(capsys, folder, tmp_path, recipe):
    expect_refused(
        capsys,
        _recipe(recipe).main,
        [
            "--dataset",
            "imagefolder",
            "--data-dir",
            folder,
            "--model",
            "resnet33_cifar",
            "--output",
            tmp_path / "run",
            *TINY,
        ],
        f"{recipe}.py",
        "unknown model 'resnet33_cifar'",
        "timm.list_models",
        inputs=(folder,),
        absent=tmp_path / "run",
    )


@pytest.mark.parametrize("recipe", ["pretrain", "btm"])
def test_undecodable_image_is_found_before_training(capsys, folder, tmp_path, recipe):
    bad = folder / "test" / "class_02" / "00001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    expect_refused(
        capsys,
        _recipe(recipe).main,
        ["--dataset", "imagefolder", "--data-dir", folder, "--output", tmp_path / "run", *TINY],
        f"{recipe}.py",
        "1 of 6 test images",
        str(bad),
        "--skip-bad-files",
        inputs=(folder,),
        absent=tmp_path / "run",
    )


def test_missing_image_in_a_split_list_is_found_before_training(capsys, tmp_path):
    from ltzoo.recipes import pretrain

    root = tmp_path / "lists"
    make_split_lists(root, {"train": [5, 4], "val": [2, 2], "test": [2, 2]}, dataset="places_lt")
    gone = sorted((root / "val").rglob("*.png"))[0]
    gone.unlink()
    expect_refused(
        capsys,
        pretrain.main,
        [
            "--dataset",
            "places_lt",
            "--data-dir",
            root,
            "--model",
            "resnet20_cifar",
            "--output",
            tmp_path / "run",
            *TINY,
        ],
        "pretrain.py",
        "1 of 4 val images",
        str(gone),
        "(missing)",
        inputs=(root,),
        absent=tmp_path / "run",
    )


def test_empty_class_folder_stops_the_recipe(capsys, folder, tmp_path):
    from ltzoo.recipes import btm

    (folder / "train" / "class_03").mkdir()
    expect_refused(
        capsys,
        btm.main,
        ["--dataset", "imagefolder", "--data-dir", folder, "--output", tmp_path / "run", *TINY],
        "btm.py",
        "1 of 4 classes have no training images",
        "'class_03'",
        inputs=(folder,),
        absent=tmp_path / "run",
    )


def _corrupt(run_dir: Path) -> Path:
    weights = run_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-500])
    return weights


@pytest.mark.parametrize("recipe", ["pretrain", "btm", "gml"])
def test_init_from_corrupt_weights_leaves_no_run_folder(capsys, folder, run_dir, tmp_path, recipe):
    weights = _corrupt(run_dir)
    expect_refused(
        capsys,
        _recipe(recipe).main,
        ["--dataset", "imagefolder", "--data-dir", folder, "--init", run_dir, "--output", tmp_path / "out", *TINY],
        f"{recipe}.py",
        str(weights),
        "truncated or corrupt",
        "re-export it",
        inputs=(folder, run_dir),
        absent=tmp_path / "out",
    )


def test_init_from_a_hub_id_not_cached_while_offline(capsys, folder, tmp_path, monkeypatch):
    from ltzoo.recipes import pretrain

    patch_huggingface_hub(monkeypatch, "http://127.0.0.1:9", tmp_path / "hf_home", None)
    set_hf_offline(monkeypatch)
    expect_refused(
        capsys,
        pretrain.main,
        [
            "--dataset",
            "imagefolder",
            "--data-dir",
            folder,
            "--init",
            "someorg/some-model",
            "--output",
            tmp_path / "out",
            *TINY,
        ],
        "pretrain.py",
        "hub model someorg/some-model is not in the local cache",
        "HF_HUB_OFFLINE=1",
        "download it once online",
        inputs=(folder,),
        absent=tmp_path / "out",
    )


# ------------------------------------------------------------------------- weights read by the CLI
def cli(capsys, *argv) -> tuple[int, str]:
    from ltzoo.cli import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
@pytest.mark.parametrize("command", ["card", "push", "eval"])
def test_cli_checks_the_weights_it_reads(capsys, folder, run_dir, tmp_path, command, damage):
    from ltzoo.files import write_json
    from ltzoo.runfolder.model_io import RESULTS

    write_json(run_dir / RESULTS, {"recipe": "pretrain", "method": "ce", "metrics": {}})
    if damage == "corrupt":
        named, parts = str(_corrupt(run_dir)), ["is not a readable safetensors file", "truncated or corrupt"]
    else:
        (run_dir / "model.safetensors").unlink()
        named, parts = str(run_dir), ["has no model.safetensors", "finish the run"]
    argv = {
        "card": ["card", run_dir, "--name", "x", "--cards-dir", tmp_path / "cards"],
        "push": ["push", run_dir, "org/model", "--dry-run"],
        "eval": ["eval", run_dir, "--dataset", "imagefolder", "--data-dir", folder, "--workers", "0"],
    }[command]
    before = digest(run_dir), digest(folder)
    code, err = cli(capsys, *argv)
    assert code == 2
    assert_one_line(err, f"ltzoo {command}", named, *parts)
    assert (digest(run_dir), digest(folder)) == before and not (tmp_path / "cards").exists()


def test_cli_usage_error_is_one_line(capsys):
    from ltzoo.cli import main

    for argv, part in (
        (["data", "fmnist_lt", "--profile", "linear"], "unknown long-tail profile 'linear'"),
        (["eval", "x", "--dataset", "fmnist_lt", "--batch-size", "0"], "argument --batch-size"),
        (["push"], "the following arguments are required: run_dir, repo_id"),
    ):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert_one_line(capsys.readouterr().err, f"ltzoo {argv[0]}", part)


def test_launch_without_a_recipe_is_one_line(capsys, tmp_path):
    code, err = cli(capsys, "launch")
    assert code == 2 and "ltzoo launch: error: no recipe to launch; ltzoo launch [ACCELERATE FLAGS] RECIPE" in err
    code, err = cli(capsys, "launch", "--num_processes", "1", tmp_path / "nothere.py")
    assert code == 2
    assert_one_line(err, "ltzoo launch", f"no recipe file {tmp_path / 'nothere.py'}", "a recipe's name")
    code, err = cli(capsys, "launch", "--bogus", "btm")
    assert code == 2
    assert_one_line(err, "ltzoo launch", "accelerate launch: unrecognized arguments: --bogus")


def test_launch_takes_a_recipe_by_name(monkeypatch, tmp_path):
    import accelerate.commands.config as accelerate_config

    from ltzoo.cli.launch import recipe_argv

    config = tmp_path / "default_config.yaml"
    config.write_text("{}")
    monkeypatch.setattr(accelerate_config, "default_config_file", str(config))  # a config file: no defaults added

    assert recipe_argv(["--num_processes", "2", "btm", "--epochs", "3", "btm"]) == [
        "--num_processes",
        "2",
        "-m",
        "ltzoo.recipes.btm",
        "--epochs",
        "3",
        "btm",
    ]
    assert recipe_argv(["-m", "ltzoo.recipes.gml", "--init", "x"]) == ["-m", "ltzoo.recipes.gml", "--init", "x"]
    assert recipe_argv([str(ROOT / "recipes" / "btm.py")]) == [str(ROOT / "recipes" / "btm.py")]


def test_launch_passes_accelerates_defaults_without_a_config_file(monkeypatch, tmp_path):
    """No accelerate config file: ltzoo launch passes accelerate's defaults itself, so accelerate's six-line
    "defaults used" warning does not open the run; what the user gave stays."""
    import accelerate.commands.config as accelerate_config
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    from ltzoo.cli.launch import recipe_argv

    monkeypatch.setattr(accelerate_config, "default_config_file", str(tmp_path / "none.yaml"))
    argv = recipe_argv(["--num_processes", "2", "btm", "--epochs", "3"])
    assert argv[-4:] == ["-m", "ltzoo.recipes.btm", "--epochs", "3"] and argv.count("--num_processes") == 1
    assert argv[argv.index("--num_processes") + 1] == "2" and "--mixed_precision" in argv
    args = launch_command_parser().parse_args(recipe_argv(["btm"]))
    warned = []
    monkeypatch.setattr("accelerate.commands.launch.logger.warning", lambda m, *a, **k: warned.append(m))
    _validate_launch_command(args)
    assert not [m for m in warned if "defaults used" in m], warned


def test_launch_keeps_accelerates_choices_where_it_would_make_them(monkeypatch, tmp_path):
    """Defaults are passed as accelerate would choose them: a process per GPU (several: --multi_gpu), and none
    at all with --config_file, whose values an explicit flag would override."""
    import accelerate.commands.config as accelerate_config

    from ltzoo.cli import launch as cli_launch

    monkeypatch.setattr(accelerate_config, "default_config_file", str(tmp_path / "none.yaml"))
    assert cli_launch.recipe_argv(["--config_file", "mine.yaml", "btm"]) == [
        "--config_file",
        "mine.yaml",
        "-m",
        "ltzoo.recipes.btm",
    ]
    monkeypatch.setattr(cli_launch, "torch_device_count", lambda: 4)
    argv = cli_launch.recipe_argv(["btm"])
    assert argv[argv.index("--num_processes") + 1] == "4" and "--multi_gpu" in argv
    argv = cli_launch.recipe_argv(["--cpu", "btm"])
    assert argv[argv.index("--num_processes") + 1] == "1" and "--multi_gpu" not in argv


# ---------------------------------------------------------------------------- disk and run folder
def test_read_only_output_is_one_line_and_leaves_nothing(capsys, folder, tmp_path, monkeypatch):
    from ltzoo.recipes import pretrain

    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: the file system says no instead, as a read-only mount does
        real_mkdir = os.mkdir

        def mkdir(path, *args, **kwargs):
            if str(path).startswith(str(locked)):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", mkdir)
        parts = [f"{locked / 'run'}: read-only file system", "write the run folder to a writable place (--output)"]
    else:
        locked.chmod(0o555)
        parts = [f"{locked / 'run'}: permission denied", "fix the permissions"]
    try:
        expect_refused(
            capsys,
            pretrain.main,
            [
                "--dataset",
                "imagefolder",
                "--data-dir",
                folder,
                "--model",
                "resnet20_cifar",
                "--output",
                locked / "run",
                *TINY,
            ],
            "pretrain.py",
            *parts,
            inputs=(folder,),
            absent=locked / "run",
        )
    finally:
        locked.chmod(0o755)


def test_full_disk_before_anything_is_kept_removes_the_new_run_folder(capsys, folder, tmp_path, monkeypatch):
    from ltzoo.recipes import btm
    from ltzoo.runfolder import folder as runfolder

    def full(path, config):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(path) / "run_config.yaml"))

    monkeypatch.setattr(runfolder, "write_run_config", full)
    out = tmp_path / "runs" / "deep" / "run"  # every folder above it made by this run, and removed again
    expect_refused(
        capsys,
        btm.main,
        [
            "--dataset",
            "imagefolder",
            "--data-dir",
            folder,
            "--model",
            "resnet20_cifar",
            "--epochs",
            "1",
            "--output",
            out,
            *TINY,
        ],
        "btm.py",
        "no space left on the device",
        "free some space",
        inputs=(folder,),
        absent=tmp_path / "runs",
    )


def test_failed_run_never_removes_a_folder_that_existed(capsys, folder, tmp_path):
    from ltzoo.recipes import pretrain

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    bad = folder / "train" / "class_00" / "00000.png"
    bad.write_bytes(b"junk")
    expect_refused(
        capsys,
        pretrain.main,
        ["--dataset", "imagefolder", "--data-dir", folder, "--output", out, *TINY],
        "pretrain.py",
        str(bad),
        inputs=(folder, out),
    )
    assert (out / "notes.txt").read_text() == "mine"


def _pretrain(folder: Path, out: Path, epochs: int, *extra) -> dict:
    from ltzoo.recipes import pretrain

    return pretrain.main(
        [
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(folder),
            "--model",
            "resnet20_cifar",
            "--epochs",
            str(epochs),
            "--batch-size",
            "8",
            "--output",
            str(out),
            *TINY,
            *extra,
        ]
    )


def _interrupted(folder, out: Path, epochs: int) -> None:
    """A run of ``epochs`` epochs stopped after its first: one epoch trained and checkpointed, run_config.yaml
    recording the ``epochs`` it was started with (the same flags resume; other flags would be another run)."""
    _pretrain(folder, out, 1)
    config = out / "run_config.yaml"
    text = re.sub(r"(?m)^(\s*)epochs: 1$", rf"\g<1>epochs: {epochs}", config.read_text())  # resolved and parsed
    assert text.count(f"epochs: {epochs}") == 2
    config.write_text(text)


def test_resume_survives_a_torn_log_line_and_stale_temporaries(folder, tmp_path, caplog):
    out = tmp_path / "run"
    _interrupted(folder, out, 2)
    log = out / "log.jsonl"
    first = log.read_text()
    log.write_text(first + '{"epoch": 1, "loss": 0.')  # a crash while appending epoch 1's record
    stale = [Path(tempfile.mkstemp(prefix=".results.json.", dir=out)[1]), out / "checkpoints" / ".tmp_epoch_1"]
    stale[1].mkdir()
    (stale[1] / "model.safetensors").write_bytes(b"half")
    with caplog.at_level(logging.WARNING):
        results = _pretrain(folder, out, 2)
    assert results["selected_epoch"] in (0, 1)
    records = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1] and log.read_text().startswith(first)
    assert not any(p.exists() for p in stale)
    assert "torn last line" in caplog.text and all(str(p) in caplog.text for p in stale)


def test_resume_refuses_a_log_corrupt_before_its_last_line(capsys, folder, tmp_path):
    from ltzoo.recipes import pretrain

    out = tmp_path / "run"
    _interrupted(folder, out, 2)
    log = out / "log.jsonl"
    log.write_text('{"epoch": 0, "lo\n' + log.read_text())
    expect_refused(
        capsys,
        pretrain.main,
        [
            "--dataset",
            "imagefolder",
            "--data-dir",
            folder,
            "--model",
            "resnet20_cifar",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--output",
            out,
            *TINY,
        ],
        "pretrain.py",
        f"{log}, line 1: not a JSON record",
        "delete that line",
        "--no-resume",
        inputs=(folder, out),
    )


# ------------------------------------------------------------- real recipes under the launchers (slow)
def _launch_recipe(tmp_path: Path, head: list[str], flags: list[str], args: list[str]) -> subprocess.CompletedProcess:
    from launching import free_port

    base = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if "--multi_gpu" in flags:
        base += ["--main_process_port", str(free_port())]
    # pretrain asks accelerate for tensorboard, which ltzoo does not install: accelerate warns, before any error
    env = {**recipe_env(tmp_path / "hf"), "PYTHONWARNINGS": "ignore::UserWarning:accelerate.accelerator"}
    return subprocess.run(
        head + base + flags + [str(a) for a in args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


ACCELERATE_Q = [sys.executable, "-m", "accelerate.commands.launch", "-q"]
LTZOO_LAUNCH = [sys.executable, "-m", "ltzoo", "launch"]


@pytest.mark.slow
def test_accelerate_launch_q_recipe_user_error_is_one_line_and_a_crash_keeps_its_traceback(tmp_path, folder):
    bad = folder / "train" / "class_01" / "00000.png"
    bad.write_bytes(b"junk")
    before = digest(folder)
    proc = _launch_recipe(
        tmp_path,
        ACCELERATE_Q,
        ["--num_processes", "1", "--cpu"],
        ["recipes/btm.py", "--dataset", "imagefolder", "--data-dir", folder, "--output", tmp_path / "run", *TINY],
    )
    assert proc.returncode == 1  # accelerate's own code for a failed process
    assert_one_line(proc.stderr, "btm.py", str(bad), "--skip-bad-files")
    assert digest(folder) == before and not (tmp_path / "run").exists()
    # -q hides only accelerate's traceback: a bug in the recipe process keeps its own
    script = _script(tmp_path, "    {}['missing']")
    proc = _launch_recipe(tmp_path, ACCELERATE_Q, ["--num_processes", "1", "--cpu"], [script])
    assert proc.returncode == 1 and "CalledProcessError" not in proc.stderr
    assert "Traceback" in proc.stderr and proc.stderr.rstrip().endswith("KeyError: 'missing'")


@pytest.mark.slow
def test_ltzoo_launch_recipe_user_errors_are_one_line(tmp_path, folder):
    proc = _launch_recipe(tmp_path, LTZOO_LAUNCH, ["--num_processes", "1", "--cpu"], ["btm", "--subsets", "0"])
    assert proc.returncode == 2
    assert_one_line(proc.stderr, "btm.py", "argument --subsets: expected an integer >= 1, got '0'")
    (folder / "train" / "class_03").mkdir()
    before = digest(folder)
    proc = _launch_recipe(
        tmp_path,
        LTZOO_LAUNCH,
        ["--multi_gpu", "--num_processes", "2"],
        ["recipes/pretrain.py", "--dataset", "imagefolder", "--data-dir", folder, "--output", tmp_path / "run", *TINY],
    )
    assert proc.returncode == 2
    assert_one_line(proc.stderr, "pretrain.py", "1 of 4 classes have no training images", "'class_03'")
    assert digest(folder) == before and not (tmp_path / "run").exists()
