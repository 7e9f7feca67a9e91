"""End-to-end tests of the stage-1 recipe (ltzoo.recipes.pretrain) on a tiny generated image folder.

- one run under a real ``accelerate launch`` and the run-folder contract: the files are there, timm loads
  the folder, and timm's own preprocessing (``resolve_data_config`` + ``create_transform``) applied to the
  PIL test images gives logits whose metrics equal results.json's;
- every loss, smoke-run in-process through the recipe's ``main(argv)`` (launching accelerate per loss is slow);
- resume: a run killed mid-training and restarted finishes with exactly the metrics (and weights) of an
  uninterrupted run with the same seed, with one log record per epoch;
- a two-process CPU run (gloo): every test sample is counted once although the split does not fill the
  last batch of both processes;
- ``-c config.yaml`` defaults, a clear error for ``--init`` of another class count, a fresh start (and
  ``--no-resume``) dropping an old log and checkpoints, and a file-backed image folder (timm's transforms).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from fixtures import make_imagefolder  # tests/ is on sys.path (conftest.py)
from launching import launch_cmd, recipe_env  # noqa: E402  (tests/ is on sys.path)

import ltzoo  # noqa: F401  (registers resnet20_cifar with timm)
from ltzoo.methods.losses import list_losses
from ltzoo.metrics import longtail_metrics

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "pretrain.py"

TRAIN, VAL, TEST = [40, 15, 6], [3, 3, 3], [9, 8, 6]  # 23 test images: not a multiple of 2 processes x 16
BATCH = 8  # training batch per process; evaluation batches are twice that
# adamw without warm-up learns the toy classes in 2 epochs in fp32 and 3 in bf16 (an AMX CPU's default: 2 epochs
# gave test accuracy 0.48 there); SGD at 0.1 with warm-up does not, in so few steps
COMMON = [
    "--dataset",
    "imagefolder",
    "--model",
    "resnet20_cifar",
    "--batch-size",
    str(BATCH),
    "--optimizer",
    "adamw",
    "--lr",
    "0.01",
    "--warmup-epochs",
    "0",
    "--workers",
    "0",
    "--no-progress",
    "--threads",
    "1",
]
RUN_FILES = ("config.json", "model.safetensors", "results.json", "run_config.yaml", "per_class_recall.png", "log.jsonl")
LAUNCH_TIMEOUT = 240


# --------------------------------------------------------------------------------------------- data
def _make_imagefolder(root: Path, counts_per_split: dict[str, list[int]], size=(8, 8), channels=1, seed=0) -> Path:
    """A fixed random pattern per class plus noise (tests/fixtures.py), grayscale by default."""
    return make_imagefolder(root, counts_per_split, size=size, channels=channels, seed=seed)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """3 classes, 8x8 grayscale, train 40/15/6, a val/ folder of 3 per class, 23 test images."""
    return _make_imagefolder(tmp_path_factory.mktemp("lt3"), {"train": TRAIN, "val": VAL, "test": TEST})


@pytest.fixture(scope="module")
def data4(tmp_path_factory) -> Path:
    """Another dataset with 4 classes (for --init of a model of another class count)."""
    return _make_imagefolder(tmp_path_factory.mktemp("lt4"), {"train": [12, 8, 6, 4], "test": [2, 2, 2, 2]}, seed=1)


# ----------------------------------------------------------------------------------------- running
def launch(args: list[str], hf_home: Path, processes: int = 1) -> subprocess.CompletedProcess:
    """Run the recipe under ``accelerate launch``; fail the test with its output if it fails."""
    proc = subprocess.run(
        launch_cmd(RECIPE, args, processes),
        cwd=ROOT,
        env=recipe_env(hf_home),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
    )
    assert proc.returncode == 0, f"recipe failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def recipe():
    """The stage-1 recipe's module (its ``main(argv)`` and ``build_parser``)."""
    from ltzoo.recipes import pretrain

    return pretrain


# ------------------------------------------------------------------------------------------ checks
def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines() if ln.strip()]


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def check_run_folder(run_dir: Path, epochs: int) -> dict:
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), f"{name} missing from the run folder"
    cfg = yaml.safe_load((run_dir / "run_config.yaml").read_text())
    assert "git_commit" in cfg and cfg["recipe"] == "pretrain"
    log = read_log(run_dir)
    assert [r["epoch"] for r in log] == list(range(epochs)), "one log record per epoch"
    assert all(math.isfinite(r["loss"]) for r in log)
    res = results(run_dir)
    test = res["metrics"]["test"]
    assert test["num_samples"] == sum(TEST)
    assert res["metrics"]["val"]["num_samples"] == sum(VAL)
    assert res["train_counts"] == TRAIN and res["class_names"] == ["class_00", "class_01", "class_02"]
    assert 0.0 <= test["acc"] <= 1.0 and len(test["per_class_recall"]) == len(TRAIN)
    return res


def timm_predictions(run_dir: Path, data_root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module]:
    """The run folder's model through timm only: create_model + resolve_data_config + create_transform on PIL images."""
    import timm
    from PIL import Image

    model = timm.create_model(f"local-dir:{run_dir}", pretrained=True).eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**cfg)
    in_chans = cfg["input_size"][0]
    labels, preds = [], []
    with torch.no_grad():
        for c, name in enumerate(model.pretrained_cfg["label_names"]):
            for f in sorted((data_root / "test" / name).iterdir()):
                with Image.open(f) as img:
                    x = transform(img.convert("L" if in_chans == 1 else "RGB"))
                preds.append(int(model(x[None]).argmax(-1)))
                labels.append(c)
    return torch.tensor(labels), torch.tensor(preds), model


def check_timm_contract(run_dir: Path, data_root: Path, res: dict, input_size=(1, 8, 8)) -> None:
    labels, preds, model = timm_predictions(run_dir, data_root)
    assert model.num_classes == len(TRAIN)
    assert tuple(model.pretrained_cfg["input_size"]) == input_size and model.conv1.in_channels == input_size[0]
    assert list(model.pretrained_cfg["label_names"]) == res["class_names"]
    test = res["metrics"]["test"]
    mine = longtail_metrics(labels, preds, res["train_counts"], num_classes=len(TRAIN))
    assert mine["num_samples"] == test["num_samples"]
    assert mine["per_class_recall"] == pytest.approx(test["per_class_recall"], abs=1e-12)
    for key in ("acc", "mean_class_acc", "hm", "min_recall"):
        assert mine[key] == pytest.approx(test[key], abs=1e-12), key


# ------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def default_run(data, hf_home, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ce"
    proc = launch([*COMMON, "--data-dir", str(data), "--epochs", "3", "--output", str(out)], hf_home)
    assert "| resnet20_cifar ce | test |" in proc.stdout
    return out


@pytest.mark.slow
def test_launch_and_run_folder_contract(default_run, data):
    res = check_run_folder(default_run, epochs=3)
    assert res["num_processes"] == 1 and res["method"] == "ce" and res["selected_epoch"] in (0, 1, 2)
    assert read_log(default_run)[-1]["lr"] == pytest.approx(0.0, abs=1e-12), "the cosine schedule ends at 0"
    assert res["metrics"]["test"]["acc"] > 0.5, "the model learned nothing from the toy classes"
    check_timm_contract(default_run, data, res)


@pytest.mark.slow
@pytest.mark.parametrize("loss", list_losses())
def test_every_loss(loss, recipe, data, tmp_path, inproc):
    out = tmp_path / loss
    # one epoch (ldam_drw then re-weights from epoch int(0.8 * 1) = 0)
    res = recipe.main([*COMMON, "--data-dir", str(data), "--epochs", "1", "--loss", loss, "--output", str(out)])
    assert res["method"] == loss
    assert results(out)["method"] == loss
    check_run_folder(out, epochs=1)
    for split in ("val", "test"):
        m = res["metrics"][split]
        assert all(math.isfinite(m[k]) for k in ("acc", "mean_class_acc", "hm", "gm"))


@pytest.mark.slow
def test_config_file_end_to_end(recipe, data, tmp_path, inproc):
    cfg = tmp_path / "ce.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"dataset": "imagefolder", "data-dir": str(data), "epochs": 1, "loss": "focal", "seed": 3, "select": "acc"}
        )
    )
    out = tmp_path / "run"
    argv = [a for a in COMMON if a not in ("--dataset", "imagefolder")]
    res = recipe.main(["-c", str(cfg), *argv, "--loss", "ce", "--output", str(out)])
    written = yaml.safe_load((out / "run_config.yaml").read_text())
    assert (written["epochs"], written["seed"], written["select"], written["loss"]) == (1, 3, "acc", "ce")
    assert res["method"] == "ce" and len(read_log(out)) == 1


def test_config_file_defaults(recipe, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 7\nbatch-size: 4\nloss: focal\nlr: 1e-3\nresume: false\n")
    args = recipe.build_parser().parse_args(["-c", str(cfg), "--loss", "ce"])
    assert (args.epochs, args.batch_size, args.loss, args.lr, args.resume) == (7, 4, "ce", 1e-3, False)
    args = recipe.build_parser().parse_args(["-c", str(cfg), "--epochs", "2", "--resume"])
    assert (args.epochs, args.loss, args.resume) == (2, "focal", True)

    cfg.write_text("epochs: 7\nepoch_count: 3\n")
    with pytest.raises(SystemExit):
        recipe.build_parser().parse_args(["-c", str(cfg)])
    assert "unknown keys ['epoch_count']" in capsys.readouterr().err

    cfg.write_text("optimizer: adam\n")  # not a choice: argparse does not check defaults, the recipe must
    with pytest.raises(SystemExit):
        recipe.build_parser().parse_args(["-c", str(cfg)])
    assert "invalid choice 'adam'" in capsys.readouterr().err


@pytest.mark.slow
def test_init_of_other_class_count(recipe, default_run, data4, tmp_path, inproc):
    # no --model: the architecture is --init's (resnet20_cifar), not the default --model
    common = [a for a in COMMON if a not in ("--model", "resnet20_cifar")]
    argv = [*common, "--data-dir", str(data4), "--val-per-class", "0", "--epochs", "1", "--init", str(default_run)]
    with pytest.raises(ValueError, match="--new-head") as exc:
        recipe.main([*argv, "--output", str(tmp_path / "bad")])
    assert "3 classes" in str(exc.value) and "4" in str(exc.value)
    out = tmp_path / "new_head"
    res = recipe.main([*argv, "--new-head", "--output", str(out)])
    assert res["parents"] == [str(default_run)] and res["dataset"]["num_classes"] == 4
    assert res["model"] == "resnet20_cifar"
    assert res["metrics"]["test"]["num_samples"] == 8


@pytest.mark.slow
def test_fresh_start_and_no_resume(recipe, data, tmp_path, inproc):
    out = tmp_path / "run"
    argv = [*COMMON, "--data-dir", str(data), "--output", str(out)]
    out.mkdir()
    (out / "log.jsonl").write_text('{"epoch": 0, "stale": true}\n')  # a run killed before its first checkpoint
    recipe.main([*argv, "--epochs", "2"])
    assert [r["epoch"] for r in read_log(out)] == [0, 1] and not any("stale" in r for r in read_log(out))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_1"]
    # --no-resume: a new run in the same folder, whose checkpoints the old run's later ones must not outlive
    recipe.main([*argv, "--epochs", "1", "--no-resume"])
    assert [r["epoch"] for r in read_log(out)] == [0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_0"]


@pytest.mark.slow
def test_diverging_run_stops_on_one_line_and_leaves_nothing(recipe, data, tmp_path, inproc, capsys):
    """An absurd --lr: the run ends on one line naming the epoch, the step and the fix, not on a NaN model."""
    from ltzoo.errors import run_main

    out = tmp_path / "run"
    argv = [
        *COMMON,
        "--data-dir",
        str(data),
        "--epochs",
        "2",
        "--lr",
        "1e30",
        "--mixed-precision",
        "no",
        "--output",
        str(out),
    ]
    capsys.readouterr()
    assert run_main(lambda: recipe.main(argv), "pretrain.py", exit=False) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(errors) == 1 and errors[0].startswith(
        "pretrain.py: error: the training loss became non-finite at epoch 0, step "
    ), errors
    assert errors[0].endswith("(fp32); lower --lr (or check the data and the loss's inputs for non-finite values)")
    assert not out.exists(), "the run folder it made, holding no checkpoint, is removed"


@pytest.mark.slow
def test_file_backed_imagefolder(recipe, tmp_path, inproc):
    """Images of mixed sizes stay on disk: PIL + timm's transforms in the loader, for training and evaluation."""
    from PIL import Image

    data = _make_imagefolder(tmp_path / "data", {"train": TRAIN, "val": VAL, "test": TEST}, channels=3, seed=3)
    for split in ("train", "val", "test"):
        f = sorted((data / split / "class_00").iterdir())[0]
        with Image.open(f) as img:
            img.load()
        img.resize((10, 10)).save(f)
    out = tmp_path / "run"
    res = recipe.main([*COMMON, "--data-dir", str(data), "--epochs", "1", "--output", str(out)])
    check_run_folder(out, epochs=1)
    # the model's own input size and crop, described by the exported pretrained_cfg
    check_timm_contract(out, data, res, input_size=(3, 32, 32))


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(tmp_path, hf_home):
    # more images than the other tests, so that killing mid-training cannot miss the window
    data = _make_imagefolder(tmp_path / "data", {"train": [160, 60, 24], "val": VAL, "test": TEST}, seed=2)
    args = [*COMMON, "--data-dir", str(data), "--epochs", "3", "--save-every", "1", "--seed", "5"]
    run_a, run_b = tmp_path / "a", tmp_path / "b"

    # run B: killed (SIGKILL to the launcher's process group) as soon as epoch 0's checkpoint is complete
    proc = subprocess.Popen(
        launch_cmd(RECIPE, [*args, "--output", str(run_b)]),
        cwd=ROOT,
        env=recipe_env(hf_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        while not (run_b / "checkpoints" / "epoch_0" / "train_state.json").is_file():
            assert proc.poll() is None, "run B ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within the time limit"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert not (run_b / "results.json").exists(), "run B finished before it was killed"

    launch([*args, "--output", str(run_a)], hf_home)
    resumed = launch([*args, "--output", str(run_b)], hf_home)  # resume is automatic
    assert "resumed from" in resumed.stdout

    a, b = results(run_a), results(run_b)
    for key in ("acc", "hm", "gm", "mean_class_acc", "per_class_recall", "num_samples"):
        assert b["metrics"]["test"][key] == a["metrics"]["test"][key], key
        assert b["metrics"]["val"][key] == a["metrics"]["val"][key], key
    assert b["selected_epoch"] == a["selected_epoch"]
    log_a, log_b = read_log(run_a), read_log(run_b)
    assert [r["epoch"] for r in log_b] == [0, 1, 2] == [r["epoch"] for r in log_a]
    assert [r["loss"] for r in log_b] == [r["loss"] for r in log_a]

    from safetensors.torch import load_file

    wa, wb = load_file(str(run_a / "model.safetensors")), load_file(str(run_b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"


@pytest.mark.slow
def test_two_processes(data, hf_home, tmp_path):
    out = tmp_path / "ddp"
    launch([*COMMON, "--data-dir", str(data), "--epochs", "2", "--output", str(out)], hf_home, processes=2)
    assert sum(TEST) % (2 * 2 * BATCH) != 0 and sum(VAL) % (2 * 2 * BATCH) != 0  # padded last batches
    res = check_run_folder(out, epochs=2)
    assert res["num_processes"] == 2
    log = read_log(out)
    # each process takes len // 2 of the 7 batches (drop_last); the images count both processes
    assert [r["images"] for r in log] == [2 * (sum(TRAIN) // BATCH // 2) * BATCH] * 2
    assert log[-1]["lr"] == pytest.approx(0.0, abs=1e-12), "the cosine schedule ends at 0"
    # every test sample counted once: the exported model's own predictions reproduce the metrics
    check_timm_contract(out, data, res)
