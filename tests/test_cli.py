"""The ``ltzoo data`` command, in-process through `ltzoo.cli.main`, plus one run of the console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import make_cifar_python, make_fmnist_idx, make_imagefolder, make_split_lists

from ltzoo.cli import main
from ltzoo.data import longtail_counts

SPLITS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "splits"
PLACES_TRAIN = SPLITS_DIR / "Places_LT_train.txt"
needs_splits = pytest.mark.skipif(
    not PLACES_TRAIN.is_file(),
    reason=f"the published split lists are not at {SPLITS_DIR} (CI puts shared/ beside the clone)",
)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _run_json(capsys, *argv: str) -> dict:
    rc, out, err = _run(capsys, *argv, "--json")
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, "--json prints one JSON object on one line"
    return json.loads(lines[0])


@needs_splits
def test_data_places_lt_json(capsys):
    s = _run_json(capsys, "data", "places_lt", "--train-list", str(PLACES_TRAIN))
    assert s["dataset"] == "places_lt" and s["num_classes"] == 365
    assert s["many_medium_few"] == {"many": 131, "medium": 163, "few": 71}
    assert s["train_images"] == 62_500 and len(s["class_counts"]) == 365
    assert s["imbalance_ratio"] == pytest.approx(4980 / 5)
    assert s["test_images"] == 0 and s["val_images"] == 0 and s["val_source"] is None
    assert s["shot_thresholds"] == {"many": ">100", "medium": "20..100", "few": "<20"}


@needs_splits
def test_data_places_lt_text(capsys):
    rc, out, _ = _run(capsys, "data", "places_lt", "--train-list", str(PLACES_TRAIN))
    assert rc == 0
    assert "places_lt: 365 classes, 62500 train / 0 val / 0 test images, imbalance 996.0" in out
    assert "many / medium / few: 131 / 163 / 71" in out
    assert "class counts: [219, 20, 115" in out and ", ..., " in out
    assert "validation split: none" in out


def test_data_fmnist_lt_from_idx_files(tmp_path, capsys):
    make_fmnist_idx(tmp_path, 30)
    s = _run_json(
        capsys,
        "data",
        "fmnist_lt",
        "--data-dir",
        str(tmp_path),
        "--imbalance",
        "10",
        "--val-per-class",
        "5",
        "--seed",
        "3",
    )
    assert s["class_counts"] == longtail_counts(25, 10, 10)
    assert s["val_images"] == 50 and "balanced, 5/class" in s["val_source"]
    assert s["test_images"] == 50 and s["input_size"] == [1, 28, 28]
    assert s["profile"] == "exp" and s["imbalance"] == 10.0 and s["seed"] == 3 and s["n_max"] == 25
    assert s["shot_thresholds"] == {"many": ">10", "medium": "5..10", "few": "<5"}  # chosen for 25..2 images
    step = _run_json(
        capsys,
        "data",
        "fmnist_lt",
        "--data-dir",
        str(tmp_path),
        "--imbalance",
        "5",
        "--profile",
        "step",
        "--val-per-class",
        "0",
    )
    assert step["class_counts"] == [30] * 5 + [6] * 5 and step["val_source"] is None
    rc, out, _ = _run(
        capsys, "data", "fmnist_lt", "--data-dir", str(tmp_path), "--imbalance", "10", "--val-per-class", "5"
    )
    assert rc == 0 and f"class counts: {longtail_counts(25, 10, 10)}" in out
    assert "many / medium / few: 4 / 3 / 3" in out


def test_data_imagefolder_and_lists(tmp_path, capsys, monkeypatch):
    make_imagefolder(tmp_path / "folder", {"train": [9, 6, 4], "val": [2, 2, 2], "test": [1, 1, 1]}, channels=1)
    s = _run_json(capsys, "data", "imagefolder", "--data-dir", str(tmp_path / "folder"))
    assert s["class_counts"] == [9, 6, 4] and s["val_source"] == "folder val/" and s["input_size"] == [1, 8, 8]
    lists = make_split_lists(tmp_path / "inat", {"train": [5, 3], "test": [1, 1]}, dataset="inat2018")
    s = _run_json(capsys, "data", "inat2018", "--data-dir", str(tmp_path / "inat"), "--val-per-class", "1")
    assert s["class_counts"] == [4, 2] and s["val_images"] == 2 and s["test_images"] == 2
    lists["test"].rename(tmp_path / "inat_test.txt")  # no test list: the dataset loads without a test split
    monkeypatch.chdir(tmp_path / "inat")  # without --data-dir, the list's paths are relative to the working dir
    s = _run_json(capsys, "data", "inat2018", "--train-list", str(lists["train"]))
    assert s["class_counts"] == [5, 3] and s["test_images"] == 0


@pytest.mark.parametrize(
    "setup, argv, match",
    [
        (None, ["data", "mnist_lt"], "unknown dataset 'mnist_lt'"),
        (
            None,
            ["data", "cifar10_lt", "--data-dir", "{tmp}/nowhere"],
            r"data dir .*nowhere does not exist .*; pass --data-dir the folder that holds cifar-10-batches-py/",
        ),
        (
            None,
            ["data", "imagefolder", "--data-dir", "{tmp}/nowhere"],
            r"data dir .*nowhere does not exist \(dataset 'imagefolder'\); pass --data-dir the folder that holds "
            r"train/ and test/ \(one subfolder per class; docs/data.md\)",
        ),
        (None, ["data", "cifar10_lt"], "needs --data-dir"),
        ("fmnist_truncated", ["data", "fmnist_lt", "--data-dir", "{tmp}"], "t10k-labels-idx1-ubyte.gz is truncated"),
        ("evil_cifar", ["data", "cifar10_lt", "--data-dir", "{tmp}"], r"refusing to unpickle (posix|nt)\.system"),
        (
            "bad_list",
            ["data", "places_lt", "--train-list", "{tmp}/train.txt", "--test-list", "{tmp}/bad.txt"],
            r"the test split \(split list bad.txt\) has labels in \[0, 7\] but the dataset has 2 classes",
        ),
        (
            "small_folder",
            ["data", "imagefolder", "--data-dir", "{tmp}", "--val-per-class", "3"],
            "classes have 3 or fewer training images",
        ),
    ],
)
def test_data_errors_exit_2_with_a_message(tmp_path, capsys, setup, argv, match):
    import re

    if setup == "fmnist_truncated":
        make_fmnist_idx(tmp_path, 5)
        import gzip

        path = tmp_path / "t10k-labels-idx1-ubyte.gz"
        path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-3]))
    elif setup == "evil_cifar":
        import os
        import pickle

        base = make_cifar_python(tmp_path, False, 1, 1)

        class Evil:
            def __reduce__(self):
                return os.system, (f"touch {tmp_path}/pwned",)

        (base / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    elif setup == "bad_list":
        make_split_lists(tmp_path, {"train": [2, 2]})
        (tmp_path / "bad.txt").write_text("train/class_00/00000.png 0\ntrain/class_01/00000.png 7\n")
    elif setup == "small_folder":
        make_imagefolder(tmp_path, {"train": [5, 3], "test": [1, 1]}, channels=1)
    rc, out, err = _run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert rc == 2 and out == ""
    assert err.startswith("ltzoo data: error: ") and re.search(match, err), err
    assert not (tmp_path / "pwned").exists()


def test_data_bad_flags_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "fmnist_lt", "--profile", "linear"])
    assert exc.value.code == 2
    assert "unknown long-tail profile 'linear'; choose exp, step or step:ETA" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data"])


def test_console_script_data_json(tmp_path):
    make_imagefolder(tmp_path, {"train": [4, 2], "test": [1, 1]}, channels=3)
    exe = shutil.which("ltzoo")
    cmd = [exe] if exe else [sys.executable, "-m", "ltzoo.cli"]
    proc = subprocess.run(
        [*cmd, "data", "imagefolder", "--data-dir", str(tmp_path), "--val-per-class", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["dataset"] == "imagefolder" and s["class_counts"] == [3, 1] and s["val_images"] == 2


def test_python_m_ltzoo_lists_every_command():
    """`python -m ltzoo` (and `-m ltzoo.cli`) in a fresh interpreter: every registered command is in --help."""
    from ltzoo.cli import GROUPS

    commands = [name for group in GROUPS for name in group.COMMANDS]
    assert commands == ["data", "eval", "compare", "calibrate", "configs", "card", "push", "zoo", "launch"]
    for module in ("ltzoo", "ltzoo.cli"):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        listed = proc.stdout.split("COMMAND")[-1]
        assert all(f"    {c} " in listed for c in commands), proc.stdout


def test_readme_lists_the_commands_of_ltzoo_help():
    """README's "`ltzoo --help` lists the commands (...)" names exactly the CLI's commands, in its order."""
    import re

    from ltzoo.cli import build_parser

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    found = re.search(r"`ltzoo --help` lists the commands \(([^)]*)\)", readme)
    assert found, "README.md no longer says which commands `ltzoo --help` lists"
    listed = re.findall(r"`([^`]+)`", found.group(1))
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert listed == list(sub.choices), f"README.md lists {listed}, `ltzoo --help` {list(sub.choices)}"


def test_data_skip_bad_files_and_the_validation_rule(tmp_path, capsys):
    """`ltzoo data` takes the --skip-bad-files its bad-file error names (as `ltzoo eval` and the recipes do) and
    prints the validation rule line the recipes print: on a small folder, fewer than 20 images per class."""
    from ltzoo.data.datasets import default_val_per_class

    make_imagefolder(tmp_path, {"train": [9, 6, 5], "test": [2, 2, 2]}, channels=1)
    (tmp_path / "train" / "class_00" / "bad.png").write_bytes(b"not a png")
    rc, out, err = _run(capsys, "data", "imagefolder", "--data-dir", str(tmp_path))
    assert rc == 2 and "bad.png" in err and "--skip-bad-files" in err, err
    rc, out, err = _run(capsys, "data", "imagefolder", "--data-dir", str(tmp_path), "--skip-bad-files")
    assert rc == 0, err
    assert "class counts: [8, 5, 4]" in out and "skipped bad files: train 1" in out
    per, rule = default_val_per_class([9, 6, 5], 20)
    assert per == 1 and f"validation: {rule}\n" in out  # the line a recipe prints (ltzoo.recipes.run_context)
    assert "validation split: balanced, 1/class, held out of the training set" in out
    s = _run_json(capsys, "data", "imagefolder", "--data-dir", str(tmp_path), "--skip-bad-files")
    assert s["skipped_files"] == {"train": 1} and s["val_rule"] == rule and s["val_images"] == 3
    for command in ("data", "eval", "compare"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0 and "--skip-bad-files" in capsys.readouterr().out, command


def test_configs_lists_and_prints_the_packaged_configs(capsys):
    rc, out, _ = _run(capsys, "configs")
    assert rc == 0 and "fmnist_lt/btm        btm" in out and "fmnist_lt/ce         pretrain" in out
    rc, out, _ = _run(capsys, "configs", "fmnist_lt/gml")
    assert rc == 0 and "head_epochs: 30" in out
    rc, out, err = _run(capsys, "configs", "fmnist_lt/nope")
    assert rc == 2 and "ltzoo configs: error: no config file fmnist_lt/nope" in err


def test_data_n_max_gives_a_size_matched_balanced_subset(tmp_path, capsys):
    """--imbalance 1 --n-max N: N training images per class (relative accuracy's balanced reference)."""
    make_fmnist_idx(tmp_path, n_per_class=30, n_test_per_class=2)
    s = _run_json(
        capsys,
        "data",
        "fmnist_lt",
        "--data-dir",
        str(tmp_path),
        "--imbalance",
        "1",
        "--n-max",
        "12",
        "--val-per-class",
        "5",
    )
    assert s["class_counts"] == [12] * 10 and s["val_images"] == 50
