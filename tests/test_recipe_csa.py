"""The CSA recipe (ltzoo.recipes.csa) on a tiny generated image folder.

Fast: the flags, their defaults and the refusals at parse time; ``--help`` and a bad dataset as a
script; the context bank through accelerate's save_state / load_state (safetensors, no pickle); the
method table's CSA runs parse with their recipes.
End-to-end (``slow``), under ``accelerate launch`` on the CPU:
- the run folder contract: the files, one log record per epoch, shifting from --shift-after on, the
  bank in every checkpoint, the exported model plain timm with the two heads of the chosen epoch
  folded into one, and timm's own preprocessing of the PNG test images giving results.json's metrics;
- a card (``ltzoo card``) that describes CSA and cites it;
- ``btm.py --init`` and ``gml.py --init`` take the CSA run;
- a run killed after its first checkpoint and restarted ends with the metrics, log and weights of an
  uninterrupted run (the bank restored: epoch 1 shifts from its first step);
- a two-process run (gloo): every test image counted once, both processes' instance images in the bank.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from fixtures import make_imagefolder
from launching import launch_cmd, recipe_env
from safetensors.torch import load_file

import ltzoo  # noqa: F401  (registers resnet20_cifar with timm)
from ltzoo.methods.context_shift import ContextBank
from ltzoo.metrics import longtail_metrics
from ltzoo.recipes import csa

ROOT = Path(__file__).resolve().parent.parent
RECIPE, BTM, GML = (ROOT / "recipes" / f"{n}.py" for n in ("csa", "btm", "gml"))
TRAIN, VAL, TEST = [40, 15, 6], [3, 3, 3], [9, 8, 6]  # 23 test images: not a multiple of 2 processes x 16
BATCH = 8
# adamw without warm-up learns the toy classes in a few steps; threshold 0.5 lets the bank fill in epoch 0,
# so epoch 1 (--shift-after 1) shifts every batch
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
    "--shift-after",
    "1",
    "--threshold",
    "0.5",
    "--min-val-per-class",  # the tiny set's validation images choose the epoch (ltzoo's default: fixed rules)
    "1",
]
RUN_FILES = ("config.json", "model.safetensors", "results.json", "run_config.yaml", "per_class_recall.png", "log.jsonl")
METRIC_KEYS = ("acc", "mean_class_acc", "hm", "gm", "min_recall", "per_class_recall", "num_samples")
LAUNCH_TIMEOUT = 240


# ------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """3 classes, 8x8 grayscale, train 40/15/6, a val/ folder of 3 per class, 23 test images."""
    return make_imagefolder(tmp_path_factory.mktemp("lt3"), {"train": TRAIN, "val": VAL, "test": TEST}, channels=1)


def launch(script: Path, args: list[str], hf_home: Path, processes: int = 1) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        launch_cmd(script, args, processes),
        cwd=ROOT,
        env=recipe_env(hf_home),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
    )
    assert proc.returncode == 0, f"recipe failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines() if ln.strip()]


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def check_run_folder(run_dir: Path, epochs: int) -> dict:
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), f"{name} missing from the run folder"
    cfg = yaml.safe_load((run_dir / "run_config.yaml").read_text())
    assert "git_commit" in cfg and cfg["recipe"] == "csa" and cfg["shift_after"] == 1
    log = read_log(run_dir)
    assert [r["epoch"] for r in log] == list(range(epochs)), "one log record per epoch"
    assert all(math.isfinite(r[k]) for r in log for k in ("loss", "loss1", "loss2"))
    assert log[0]["shifted_steps"] == 0 and log[0]["bank"] > 0, "no shift before --shift-after; the bank fills"
    assert all(r["shifted_steps"] == sum(TRAIN) // BATCH for r in log[1:]), "every step shifts after --shift-after"
    res = results(run_dir)
    assert (
        res["recipe"] == "csa"
        and res["method"] == "csa"
        and res["shifted_steps"] == sum(r["shifted_steps"] for r in log)
    )
    assert res["metrics"]["test"]["num_samples"] == sum(TEST) and res["metrics"]["val"]["num_samples"] == sum(VAL)
    assert res["train_counts"] == TRAIN and res["selected_epoch"] in range(epochs)
    return res


def timm_metrics(run_dir: Path, data_root: Path, train_counts: list[int]) -> dict:
    """The run folder's model through timm alone (create_model, resolve_data_config, create_transform on PIL)."""
    import timm
    from PIL import Image

    model = timm.create_model(f"local-dir:{run_dir}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    labels, preds = [], []
    with torch.no_grad():
        for c, name in enumerate(model.pretrained_cfg["label_names"]):
            for f in sorted((data_root / "test" / name).iterdir()):
                with Image.open(f) as img:
                    preds.append(int(model(transform(img.convert("L"))[None]).argmax(-1)))
                labels.append(c)
    assert type(model).__name__ == "ResNetCifar" and not hasattr(model, "head2")  # the timm model, one head
    assert isinstance(model.get_classifier(), torch.nn.Linear) and model.num_classes == len(TRAIN)
    return longtail_metrics(torch.tensor(labels), torch.tensor(preds), train_counts, num_classes=len(TRAIN))


def check_timm_contract(run_dir: Path, data_root: Path, res: dict) -> None:
    mine, test = timm_metrics(run_dir, data_root, res["train_counts"]), res["metrics"]["test"]
    for key in METRIC_KEYS:
        assert mine[key] == pytest.approx(test[key], abs=1e-12), key


# -------------------------------------------------------------------------------------- fast: flags
def parse(*argv: str):
    return csa.build_parser().parse_args(list(argv))


def test_defaults():
    args = parse()
    assert (args.dataset, args.model, args.epochs, args.loss) == ("fmnist_ctx_lt", "resnet20_cifar", 15, "ce")
    assert (args.shift_after, args.bank_size, args.threshold, args.branch2_before_shift) == (3, 128, 0.8, False)
    assert parse("--warmup-epochs-csa", "2").shift_after == 2  # the alias
    assert parse("--loss", "la", "--tau", "1.5").tau == 1.5


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--tau", "2"], ["--tau", "use --loss la"]),
        (["--shift-after", "15"], ["--shift-after 15", "--epochs 15"]),
        (["--epochs", "2", "--shift-after", "2"], ["--shift-after 2", "below 2"]),
        (["--bank-size", "64"], ["--bank-size 64", "--batch-size 128"]),
        (["--bank-size", "0"], ["--bank-size", "an integer >= 1"]),
        (["--threshold", "1.5"], ["--threshold", "[0, 1]"]),
        (["--shift-after", "-1"], ["--shift-after", "an integer >= 0"]),
        (["--max-grad-norm", "0"], ["--max-grad-norm", "a number > 0"]),
        (["--loss", "bsce"], ["--loss", "invalid choice"]),
        (["--sampler", "balanced"], ["unrecognized arguments: --sampler"]),  # the recipe draws both itself
        (["--new-head"], ["--new-head", "give --init"]),
        (["--init", "runs/x", "--pretrained"], ["--pretrained", "--init"]),
    ],
)
def test_refuses_what_it_cannot_honour(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("csa.py: error: ") and all(w in err for w in words), err


def test_packaged_configs():
    for name, dataset in (("fmnist_ctx_lt/csa", "fmnist_ctx_lt"), ("fmnist_lt/csa", "fmnist_lt")):
        args = parse("-c", name)
        assert (args.dataset, args.imbalance, args.model, args.epochs, args.bank_size) == (
            dataset,
            100,
            "resnet20_cifar",
            15,
            128,
        )


def test_script_help_and_bad_input(hf_home):
    env = recipe_env(hf_home)
    proc = subprocess.run(
        [sys.executable, str(RECIPE), "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and all(f in proc.stdout for f in ("--shift-after", "--bank-size", "--threshold"))
    proc = subprocess.run(
        [sys.executable, str(RECIPE), "--dataset", "no_such_dataset", "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "csa.py: error: unknown dataset 'no_such_dataset'" in proc.stderr


def test_bank_travels_with_save_state_as_safetensors(tmp_path):
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    bank = ContextBank(4)
    csa.checkpoint_bank(acc, bank)
    bank.add(torch.rand(5, 1, 2, 2), torch.rand(5, 1, 2, 2), torch.ones(5))
    saved = (bank.images.clone(), bank.masks.clone())
    acc.save_state(str(tmp_path / "ckpt"), safe_serialization=True)
    assert (tmp_path / "ckpt" / csa.BANK_FILE).is_file() and not list((tmp_path / "ckpt").glob("custom_checkpoint*"))
    bank.add(torch.zeros(4, 1, 2, 2), torch.zeros(4, 1, 2, 2), torch.ones(4))  # training goes on, then a resume
    acc.load_state(str(tmp_path / "ckpt"))
    assert len(bank) == 4 and torch.equal(bank.images, saved[0]) and torch.equal(bank.masks, saved[1])


def test_method_table_runs_parse_with_their_recipes(tmp_path):
    """benchmarks/method_table.py gives the CSA runs stage 1's flags; every run's flags parse with its recipe."""
    spec = importlib.util.spec_from_file_location("method_table", ROOT / "benchmarks" / "method_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    assert table.RUNS["csa"][0] == "csa" and table.RUNS["btm_on_csa"][2] == "csa"
    assert {"CSA (context-shift augmentation)", "CSA + BTM + GML"} <= set(table.ROWS)
    for setting, (dataset, *_) in table.SETTINGS.items():
        for name in table.RUNS:
            recipe, argv = table.recipe_args(name, 0, tmp_path, setting)
            module = importlib.import_module(f"ltzoo.recipes.{recipe}")
            args = module.build_parser().parse_args(argv)
            if recipe == "csa":
                assert (args.dataset, args.epochs, args.batch_size, args.model) == (dataset, 15, 128, "resnet20_cifar")


# ----------------------------------------------------------------------------------- slow: launched
@pytest.fixture(scope="module")
def default_run(data, hf_home, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "csa"
    proc = launch(RECIPE, [*COMMON, "--data-dir", str(data), "--epochs", "2", "--output", str(out)], hf_home)
    assert "| resnet20_cifar csa | test |" in proc.stdout
    return out


@pytest.mark.slow
def test_launch_and_run_folder_contract(default_run, data):
    res = check_run_folder(default_run, epochs=2)
    assert res["num_processes"] == 1 and read_log(default_run)[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    ckpt = default_run / "checkpoints" / "epoch_1"
    bank = load_file(str(ckpt / csa.BANK_FILE))
    assert int(bank["capacity"]) == 128 and len(bank["images"]) == read_log(default_run)[-1]["bank"]
    assert bank["images"].shape[1:] == (1, 8, 8) and bank["masks"].shape[1:] == (1, 8, 8)
    # the export: the chosen epoch's backbone with its two heads folded into one (their logits averaged)
    chosen, exported = (
        load_file(str(default_run / "best.safetensors")),
        load_file(str(default_run / "model.safetensors")),
    )
    assert not any(k.startswith("head2") for k in exported)
    assert set(exported) == {k[len("net.") :] for k in chosen if k.startswith("net.")}
    assert all(torch.equal(exported[k], chosen[f"net.{k}"]) for k in exported if not k.startswith("fc."))
    for p in ("weight", "bias"):
        assert torch.allclose(exported[f"fc.{p}"], (chosen[f"net.fc.{p}"] + chosen[f"head2.{p}"]) / 2)
        assert not torch.equal(chosen[f"net.fc.{p}"], chosen[f"head2.{p}"]), "branch 2 trained on its own"
    check_timm_contract(default_run, data, res)


@pytest.mark.slow
def test_card(default_run):
    from ltzoo.hub.card import build_card

    text = str(build_card(default_run, repo_id="ltzoo/csa-test"))
    assert "recipe:csa" in text and "method:csa" in text
    assert "CSA (context-shift augmentation): one backbone, two linear heads" in text
    assert "FIFO bank of 128, from epoch 1 on" in text and "at least 0.5" in text
    assert "@inproceedings{shi2023how," in text and "How Re-sampling Helps for Long-Tail Learning?" in text
    assert "accelerate launch -m ltzoo.recipes.csa" in text and "--shift-after 1" in text


@pytest.mark.slow
def test_btm_and_gml_take_the_csa_run(default_run, data, hf_home, tmp_path):
    base = [
        "--dataset",
        "imagefolder",
        "--data-dir",
        str(data),
        "--workers",
        "0",
        "--no-progress",
        "--threads",
        "1",
        "--init",
        str(default_run),
    ]
    out = tmp_path / "btm"
    launch(
        BTM,
        [
            *base,
            "--optimizer",
            "adamw",
            "--subsets",
            "2",
            "--shots",
            "3",
            "--member-epochs",
            "1",
            "--member-batch-size",
            "4",
            "--head-epochs",
            "2",
            "--output",
            str(out),
        ],
        hf_home,
    )
    res = results(out)
    assert res["recipe"] == "btm" and res["parents"] == [str(default_run)] and res["model"] == "resnet20_cifar"
    assert res["metrics"]["test"]["num_samples"] == sum(TEST)
    for key in ("acc", "hm"):  # BTM's table starts from the CSA model as it is
        assert res["table"]["stage 1"]["test"][key] == results(default_run)["metrics"]["test"][key], key
    out = tmp_path / "gml"
    launch(GML, [*base, "--head-epochs", "2", "--output", str(out)], hf_home)
    res = results(out)
    assert res["recipe"] == "gml" and res["parents"] == [str(default_run)]
    assert res["table"]["original"]["test"]["acc"] == results(default_run)["metrics"]["test"]["acc"]


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(tmp_path, hf_home):
    # more images than the other tests, so that killing mid-training cannot miss the window
    data = make_imagefolder(tmp_path / "data", {"train": [160, 60, 24], "val": VAL, "test": TEST}, channels=1, seed=2)
    args = [*COMMON, "--data-dir", str(data), "--epochs", "3", "--seed", "5"]
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
    assert (run_b / "checkpoints" / "epoch_0" / csa.BANK_FILE).is_file()

    launch(RECIPE, [*args, "--output", str(run_a)], hf_home)
    resumed = launch(RECIPE, [*args, "--output", str(run_b)], hf_home)  # resume is automatic
    assert "resumed from" in resumed.stdout

    a, b = results(run_a), results(run_b)
    for split in ("val", "test"):
        for key in METRIC_KEYS:
            assert b["metrics"][split][key] == a["metrics"][split][key], (split, key)
    assert b["selected_epoch"] == a["selected_epoch"] and b["shifted_steps"] == a["shifted_steps"]
    log_a, log_b = read_log(run_a), read_log(run_b)
    assert log_a[0]["bank"] >= BATCH, "epoch 1 shifts from its first step only with the restored bank"
    assert [r["epoch"] for r in log_b] == [0, 1, 2] == [r["epoch"] for r in log_a]
    for key in ("loss", "loss1", "loss2", "admitted", "shifted_steps", "bank"):
        assert [r[key] for r in log_b] == [r[key] for r in log_a], key
    wa, wb = load_file(str(run_a / "model.safetensors")), load_file(str(run_b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"


@pytest.mark.slow
def test_two_processes(data, hf_home, tmp_path):
    out = tmp_path / "ddp"
    launch(RECIPE, [*COMMON, "--data-dir", str(data), "--epochs", "2", "--output", str(out)], hf_home, processes=2)
    res = results(out)
    assert res["num_processes"] == 2 and res["metrics"]["test"]["num_samples"] == sum(TEST)
    log = read_log(out)
    steps = sum(TRAIN) // BATCH // 2  # each process takes len // 2 of the 7 batches (drop_last)
    assert [r["images"] for r in log] == [2 * steps * BATCH] * 2
    assert log[0]["shifted_steps"] == 0 and log[1]["shifted_steps"] == steps
    # both processes' admitted images enter the one bank every process holds
    assert log[0]["bank"] == min(128, log[0]["admitted"]) and log[0]["admitted"] > 0
    check_timm_contract(out, data, res)
