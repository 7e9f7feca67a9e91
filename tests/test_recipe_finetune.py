"""Fine-tuning from pretrained weights in the recipes: --pretrained-file, --peft, the merged export reproduced by
plain timm and `ltzoo eval`, BTM over adapter members on two processes, and the bad input of issue 21."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from fixtures import make_imagefolder
from launching import launch_cmd, recipe_env
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import ltzoo.models  # noqa: F401
from ltzoo.methods import adapters
from ltzoo.methods.merge import average_checkpoints

ROOT = Path(__file__).resolve().parent.parent
TRAIN, VAL, TEST = [40, 15, 6], [3, 3, 3], [9, 8, 6]
COMMON = [
    "--dataset",
    "imagefolder",
    "--batch-size",
    "8",
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


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """3 classes of 8x8 grayscale images (in memory): a CIFAR ResNet's 3x32x32 weights need resizing + RGB."""
    return make_imagefolder(
        tmp_path_factory.mktemp("d"), {"train": TRAIN, "val": VAL, "test": TEST}, size=(8, 8), channels=1
    )


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "resnet20_cifar.safetensors"
    save_file(timm.create_model("resnet20_cifar", num_classes=10).state_dict(), str(path))
    return path


def _launch(recipe: str, args: list[str], tmp_path: Path, processes: int = 1) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        launch_cmd(ROOT / "recipes" / f"{recipe}.py", args, processes),
        cwd=ROOT,
        env=recipe_env(tmp_path / "hf"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def lora_run(data, weights, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("lora")
    out = tmp / "run"
    proc = _launch(
        "pretrain",
        [
            *COMMON,
            "--data-dir",
            str(data),
            "--model",
            "resnet20_cifar",
            "--pretrained-file",
            str(weights),
            "--peft",
            "lora",
            "--lora-rank",
            "4",
            "--epochs",
            "2",
            "--output",
            str(out),
        ],
        tmp,
    )
    assert "fine-tuning from weights file" in proc.stdout and "LoRA r=4" in proc.stdout, "stated in the first lines"
    return out


def _timm_metrics(run: Path, data: Path) -> list[int]:
    """Predictions of the export through timm alone: local-dir + timm's data config + transform on PIL images."""
    from PIL import Image

    model = timm.create_model(f"local-dir:{run}", pretrained=True).eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    tf = timm.data.create_transform(**cfg)
    preds, labels = [], []
    with torch.no_grad():
        for c, name in enumerate(model.pretrained_cfg["label_names"]):
            for f in sorted((data / "test" / name).iterdir()):
                with Image.open(f) as img:
                    preds.append(int(model(tf(img.convert("RGB"))[None]).argmax(-1)))
                labels.append(c)
    return preds, labels


@pytest.mark.slow
def test_lora_export_is_plain_timm_and_reproduces(lora_run, data, tmp_path):
    res = json.loads((lora_run / "results.json").read_text())
    cfg = json.loads((lora_run / "config.json").read_text())["pretrained_cfg"]
    assert cfg["input_size"] == [3, 32, 32] and cfg["crop_pct"] == 1.0 and cfg["mean"] == [0.4914, 0.4822, 0.4465]
    with safe_open(str(lora_run / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not any("lora" in k or "base_model" in k for k in keys), "merged: no adapter tensors"
    adapter = lora_run / "adapter" / "adapter_model.safetensors"
    assert adapter.is_file() and adapter.stat().st_size < (lora_run / "model.safetensors").stat().st_size / 3
    preds, labels = _timm_metrics(lora_run, data)
    from ltzoo.metrics import longtail_metrics

    mine = longtail_metrics(torch.tensor(labels), torch.tensor(preds), res["train_counts"], num_classes=3)
    assert mine["acc"] == pytest.approx(res["metrics"]["test"]["acc"], abs=1.5 / sum(TEST)), (
        "plain timm (PIL resize) reproduces results.json, up to one image from resize rounding"
    )
    # ltzoo eval: the same batch pipeline, the same numbers exactly
    from ltzoo.cli import main as cli

    assert (
        cli(
            [
                "eval",
                str(lora_run),
                "--dataset",
                "imagefolder",
                "--data-dir",
                str(data),
                "--workers",
                "0",
                "--output",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    ev = json.loads((tmp_path / "ev" / "eval.json").read_text())["metrics"]
    for k in ("acc", "hm", "gm", "min_recall"):
        assert ev[k] == pytest.approx(res["metrics"]["test"][k], abs=1e-12), k


@pytest.mark.slow
def test_btm_lora_members_on_two_processes(lora_run, data, tmp_path):
    out = tmp_path / "btm"
    _launch(
        "btm",
        [
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(data),
            "--init",
            str(lora_run),
            "--peft",
            "lora",
            "--lora-rank",
            "4",
            "--subsets",
            "2",
            "--shots",
            "5",
            "--member-epochs",
            "1",
            "--member-batch-size",
            "8",
            "--optimizer",
            "adamw",
            "--member-lr",
            "0.002",
            "--head-epochs",
            "2",
            "--workers",
            "0",
            "--no-progress",
            "--threads",
            "1",
            "--output",
            str(out),
        ],
        tmp_path,
        processes=2,
    )
    members = sorted((out / "members").glob("member_*.safetensors"))
    assert len(members) == 2
    full = (out / "model.safetensors").stat().st_size
    assert all(p.stat().st_size < full / 3 for p in members), "a member is an adapter, not a model"
    assert not list((out / "members").glob(".merged-*")), "the merged members were temporary"
    # the merge = the average of each member merged into the stage-1 weights
    base = timm.create_model(f"local-dir:{lora_run}", pretrained=True)
    spec = adapters.AdapterSpec("lora", 4, 16.0)
    expected = average_checkpoints(adapters.merged_state(base, spec, load_file(str(p))) for p in members)
    got = load_file(str(out / "merged" / "model.safetensors"))
    for k, v in expected.items():
        assert torch.allclose(got[k], v, atol=1e-6), k
    res = json.loads((out / "results.json").read_text())
    assert res["num_processes"] == 2 and res["method"].startswith("btm+gml")


# -------------------------------------------------------------------------------------- bad input
def _no_folder(path: Path) -> None:
    assert not path.exists(), "nothing left behind"


def test_pickled_file_refused(data, tmp_path, inproc):
    from ltzoo.errors import UserError
    from ltzoo.recipes import pretrain

    bad = tmp_path / "model.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, bad)
    with pytest.raises(UserError, match="weights_only") as err:
        pretrain.main(
            [*COMMON, "--data-dir", str(data), "--pretrained-file", str(bad), "--output", str(tmp_path / "o")]
        )
    assert "\n" not in str(err.value)
    _no_folder(tmp_path / "o")


def test_mismatching_file(data, tmp_path, inproc):
    from ltzoo.errors import UserError
    from ltzoo.recipes import pretrain

    other = tmp_path / "r32.safetensors"
    save_file(timm.create_model("resnet32_cifar").state_dict(), str(other))
    with pytest.raises(UserError, match="first mismatch: layer1.3"):
        pretrain.main(
            [
                *COMMON,
                "--data-dir",
                str(data),
                "--model",
                "resnet20_cifar",
                "--pretrained-file",
                str(other),
                "--output",
                str(tmp_path / "o"),
            ]
        )
    _no_folder(tmp_path / "o")


def test_targets_matching_nothing(data, weights, tmp_path, inproc):
    from ltzoo.errors import UserError
    from ltzoo.recipes import pretrain

    with pytest.raises(UserError, match=r"--peft-targets qkv matches no .* conv1") as err:
        pretrain.main(
            [
                *COMMON,
                "--data-dir",
                str(data),
                "--model",
                "resnet20_cifar",
                "--pretrained-file",
                str(weights),
                "--peft",
                "lora",
                "--peft-targets",
                "qkv",
                "--output",
                str(tmp_path / "o"),
            ]
        )
    assert "\n" not in str(err.value)
    _no_folder(tmp_path / "o")


def test_peft_init_other_classes_needs_new_head(tmp_path, inproc):
    """--peft with --init of a model whose head does not fit: the --new-head line, before training."""
    from ltzoo.data import load_dataset
    from ltzoo.recipes import pretrain
    from ltzoo.runfolder.model_io import save_model

    d3 = make_imagefolder(tmp_path / "d3", {"train": [6, 4, 4], "test": [2, 2, 2]}, size=(8, 8), channels=1)
    d4 = make_imagefolder(tmp_path / "d4", {"train": [6, 4, 4, 4], "test": [2, 2, 2, 2]}, size=(8, 8), channels=1)
    ds3 = load_dataset("imagefolder", data_dir=str(d3), val_per_class=0)
    from ltzoo.runfolder.model_io import create_model

    save_model(create_model(ds3, "resnet20_cifar"), tmp_path / "run3", ds3)
    with pytest.raises(ValueError, match="--new-head"):
        pretrain.main(
            [
                *COMMON,
                "--data-dir",
                str(d4),
                "--val-per-class",
                "0",
                "--init",
                str(tmp_path / "run3"),
                "--peft",
                "lora",
                "--output",
                str(tmp_path / "o"),
            ]
        )
    _no_folder(tmp_path / "o")


def test_grayscale_weights_file_on_rgb_images(tmp_path, inproc):
    """A 1-channel weights file (a grayscale model's, like the zoo's resnet20-fmnistsource5) on RGB images with
    --peft lora: the first convolution is adapted to 3 channels and the run trains and exports (it used to stop
    in its first step on a conv-weight/input channel mismatch, leaving a run folder with run_config.yaml only)."""
    from ltzoo.recipes import pretrain

    rgb = make_imagefolder(tmp_path / "rgb", {"train": [8, 6, 6], "test": [2, 2, 2]}, size=(8, 8), channels=3)
    torch.manual_seed(0)
    save_file(
        timm.create_model("resnet20_cifar", in_chans=1, num_classes=5).state_dict(), str(tmp_path / "g.safetensors")
    )
    out = tmp_path / "o"
    pretrain.main(
        [
            *COMMON,
            "--data-dir",
            str(rgb),
            "--val-per-class",
            "1",
            "--model",
            "resnet20_cifar",
            "--pretrained-file",
            str(tmp_path / "g.safetensors"),
            "--peft",
            "lora",
            "--epochs",
            "1",
            "--output",
            str(out),
        ]
    )
    config = json.loads((out / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32] and len(config["pretrained_cfg"]["mean"]) == 3
    assert json.loads((out / "results.json").read_text())["metrics"]["test"]["acc"] >= 0
    assert timm.create_model(f"local-dir:{out}", pretrained=True).conv1.in_channels == 3


def test_flag_combinations_refused(capsys):
    from ltzoo.recipes import btm, pretrain

    with pytest.raises(SystemExit):
        pretrain.build_parser().parse_args(["--peft", "head", "--lora-rank", "4"])
    assert "--lora-rank sets --peft lora or loha" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        btm.build_parser().parse_args(["--init", "RUN", "--pretrained-file", "w.safetensors"])
    assert "--pretrained-file" in capsys.readouterr().err
    assert np.isclose(btm.build_parser().parse_args(["--peft", "lora", "--lora-alpha", "4"]).lora_alpha, 4.0)
