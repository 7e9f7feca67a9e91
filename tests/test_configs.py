"""The recipe configs shipped in the package (ltzoo/recipes/configs/): every file parses with its recipe's
flags, by path and by packaged name, and the zoo's ImageNet-LT, Places-LT, iNaturalist-2018 and
CIFAR-100-LT configs run end to end on tiny fixtures in their on-disk formats (tiny model, one epoch,
CPU overrides on the command line)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from fixtures import make_cifar_python, make_split_lists

from ltzoo.recipes.flags import config_path, config_recipe, list_configs

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "ltzoo" / "recipes" / "configs").glob("*/*.yaml"))
# what makes a zoo config runnable on this CPU in seconds; everything else comes from the YAML
RUN = ["--model", "resnet20_cifar", "--workers", "0", "--mixed-precision", "no", "--no-progress"]
TINY = [
    *RUN,
    "--no-pretrained",
    "--epochs",
    "1",
    "--batch-size",
    "8",
]  # stage 1 (btm with --init takes no stage-1 flag)
TINY_BTM = ["--subsets", "2", "--member-epochs", "1", "--head-epochs", "2", "--member-batch-size", "4"]


@pytest.fixture(autouse=True)
def _fresh_accelerator_state(fresh_accelerate):
    """Each test here runs recipes in-process with the precision its config asks for."""


def load_recipe(name: str):
    return importlib.import_module(f"ltzoo.recipes.{name}")


def test_there_are_configs_for_every_zoo_dataset():
    assert {p.parent.name for p in CONFIGS} >= {"fmnist_lt", "cifar100_lt", "imagenet_lt", "places_lt", "inat2018"}
    assert list_configs() == [f"{p.parent.name}/{p.stem}" for p in CONFIGS]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses_with_its_recipe(config):
    recipe = load_recipe(config_recipe(config.name))
    init = ["--init", "RUN_DIR"] if recipe.__name__.endswith("gml") else []  # gml needs a model to start from
    args = recipe.build_parser().parse_args(["-c", str(config), *init])
    assert args.dataset == config.parent.name
    # the packaged name gives the same arguments as the path
    name = f"{config.parent.name}/{config.stem}"
    assert config_path(name) == config
    assert vars(recipe.build_parser().parse_args(["-c", name, *init])) == {**vars(args), "config": name}


def test_unknown_config_names_the_packaged_ones(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load_recipe("pretrain").build_parser().parse_args(["-c", "fmnist_lt/nope"])
    err = capsys.readouterr().err
    assert "no config file fmnist_lt/nope" in err and "fmnist_lt/ce" in err
    with pytest.raises(SystemExit):  # a config of another recipe: its keys are not this recipe's flags
        load_recipe("gml").build_parser().parse_args(["-c", "fmnist_lt/ce"])
    assert "unknown keys" in capsys.readouterr().err


def _fixture(dataset: str, root: Path) -> list[str]:
    """Write a tiny fixture of ``dataset`` in its on-disk format; returns the data flags for it."""
    if dataset == "cifar100_lt":
        make_cifar_python(root, fine=True, n_train_per_class=6, n_test_per_class=2)
        return ["--data-dir", str(root), "--imbalance", "3", "--val-per-class", "1"]
    counts = {"train": [30, 12, 6, 4], "test": [3, 3, 3, 3]}
    if dataset != "inat2018":
        counts["val"] = [2, 2, 2, 2]
    make_split_lists(root, counts, dataset=dataset)
    return ["--data-dir", str(root)] + (["--val-per-class", "1"] if dataset == "inat2018" else [])


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["cifar100_lt", "imagenet_lt", "places_lt", "inat2018"])
def test_zoo_configs_run_on_fixtures(dataset, tmp_path):
    data = _fixture(dataset, tmp_path / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stage1 = tmp_path / "stage1"
        pretrain = load_recipe("pretrain")
        pretrain.main(["-c", f"{dataset}/ce", *data, *TINY, "--output", str(stage1)])
        btm = tmp_path / "btm"
        load_recipe("btm").main(
            [
                "-c",
                f"{dataset}/btm",
                *data,
                *RUN,
                *TINY_BTM,
                "--shots",
                "1",
                "--allow-fewer",
                "--init",
                str(stage1),
                "--output",
                str(btm),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    results = json.loads((btm / "results.json").read_text())
    assert results["recipe"] == "btm" and results["parents"] == [str(stage1)]
    assert {"stage 1", "BTM"} <= set(results["table"])
    expected_test_images = 100 * 2 if dataset == "cifar100_lt" else 4 * 3
    assert results["metrics"]["test"]["num_samples"] == expected_test_images


@pytest.mark.parametrize("recipe", ["pretrain", "btm", "gml"])
def test_recipe_bad_input_is_one_clear_line(recipe):
    """A user error ends the script with exit code 2 and one 'recipe.py: error: ...' line, no traceback."""
    import subprocess

    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes" / f"{recipe}.py"),
            "--dataset",
            "no_such_dataset",
            "--init",
            "zoo/resnet20-ce-fmnistlt",
            "--no-progress",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{recipe}.py: error: unknown dataset 'no_such_dataset'" in proc.stderr
