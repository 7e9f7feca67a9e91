"""The recipes' command lines: each offers the flags it honours, refuses at parse time the combinations it
cannot honour (naming the flag and the fix), shares its data flags with the ``ltzoo`` CLI, and BTM hands
its own stage 1 an explicit argument namespace."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from ltzoo.cli import build_parser as cli_parser
from ltzoo.recipes import btm, gml, pretrain
from ltzoo.training.optim import create_optimizer, create_scheduler


def parse(recipe, *argv: str) -> argparse.Namespace:
    return recipe.build_parser().parse_args(list(argv))


def refused(recipe, capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        parse(recipe, *argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


# ------------------------------------------------------------------------------------------- pretrain
def test_soft_target_losses_are_asked_of_the_losses():
    assert list(pretrain.soft_target_losses()) == ["ce", "bsce", "la"]  # the loss registry's answer


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--mixup", "0.2", "--loss", "focal"], ["--mixup/--cutmix", "--loss focal", "use --loss ce, bsce or la"]),
        (["--cutmix", "1", "--loss", "ldam_drw"], ["--loss ldam_drw", "drop --mixup/--cutmix"]),
        (["--label-smoothing", "0.1", "--loss", "bsce"], ["--label-smoothing", "use --loss ce"]),
        (["--tau", "2", "--loss", "ce"], ["--tau", "use --loss la"]),
        (["--drw-epoch", "3", "--loss", "ldam"], ["--drw-epoch", "use --loss ldam_drw"]),
        (["--new-head"], ["--new-head", "give --init"]),
        (["--init", "runs/x", "--pretrained"], ["--pretrained", "--init"]),
    ],
)
def test_pretrain_refuses_what_it_cannot_honour(argv, words, capsys):
    err = refused(pretrain, capsys, *argv)
    assert err.startswith("pretrain.py: error: ")
    assert all(w in err for w in words), err


def test_label_smoothing_is_applied_once_with_mixup():
    args = parse(
        pretrain, "--mixup", "0.2", "--loss", "bsce", "--label-smoothing", "0.1"
    )  # Mixup smooths bsce's targets
    assert pretrain.loss_kwargs(args) == {}
    args = parse(pretrain, "--mixup", "0.2", "--label-smoothing", "0.1")
    assert pretrain.loss_kwargs(args) == {"smoothing": 0.0}  # timm's Mixup smooths; the loss does not again
    assert pretrain.loss_kwargs(parse(pretrain, "--label-smoothing", "0.1")) == {"smoothing": 0.1}


def test_pretrain_accepts_what_the_config_sets_with_init(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("pretrained: true\n")  # a config's start, overridden by --init on the command line
    assert parse(pretrain, "-c", str(cfg), "--init", "runs/x").init == "runs/x"


# ------------------------------------------------------------------------------------------------ btm
@pytest.mark.parametrize(
    "argv, words",
    [
        (["--classifier", "lws", "--ensemble"], ["--ensemble", "--classifier lws", "drop --ensemble"]),
        (["--classifier", "la", "--ensemble"], ["--ensemble", "--classifier la"]),
        (["--classifier", "taunorm", "--head-lr", "0.1"], ["--head-lr", "drop --head-lr"]),
        (["--classifier", "none", "--head-epochs", "3"], ["--head-epochs"]),
        (["--new-head"], ["--new-head", "give --init"]),
        (["--init", "runs/x", "--epochs", "3", "--lr", "0.5"], ["--epochs, --lr", "drop --epochs, --lr"]),
        (["--init", "runs/x", "--stage1-loss", "bsce"], ["--stage1-loss"]),
        (["--steps", "100", "--epochs", "3"], ["--steps 100 and --epochs 3", "give one of them"]),
    ],
)
def test_btm_refuses_what_it_cannot_honour(argv, words, capsys):
    err = refused(btm, capsys, *argv)
    assert err.startswith("btm.py: error: ")
    assert all(w in err for w in words), err


def test_btm_accepts_stage1_settings_from_a_config_with_init(tmp_path):
    cfg = tmp_path / "btm.yaml"
    cfg.write_text("epochs: 3\nlr: 0.5\nclassifier: lws\n")  # the stage 1 a run without --init would train
    args = parse(btm, "-c", str(cfg), "--init", "runs/x", "--model", "resnet20_cifar")
    assert (args.epochs, args.init, args.ensemble) == (3, "runs/x", None)  # --ensemble unset: on for gml/crt only
    assert parse(btm, "--classifier", "lws", "--no-ensemble").ensemble is False
    # wb trains its head: it takes the head's schedule
    args = parse(btm, "--classifier", "wb", "--head-lr", "0.02", "--head-epochs", "5")
    assert (args.classifier, args.head_lr, args.head_epochs) == ("wb", 0.02, 5)


def test_btm_stage1_is_called_with_explicit_arguments(tmp_path):
    """Every flag BTM shares with the stage-1 recipe reaches stage 1; the others are stage 1's defaults."""
    args = parse(
        btm,
        "--dataset",
        "imagefolder",
        "--data-dir",
        "d",
        "--imbalance",
        "10",
        "--profile",
        "step",
        "--val-per-class",
        "3",
        "--workers",
        "0",
        "--model",
        "resnet56_cifar",
        "--pretrained",
        "--epochs",
        "7",
        "--batch-size",
        "16",
        "--lr",
        "0.02",
        "--weight-decay",
        "0.001",
        "--optimizer",
        "adamw",
        "--warmup-epochs",
        "0.5",
        "--seed",
        "4",
        "--mixed-precision",
        "no",
        "--grad-accum",
        "2",
        "--threads",
        "1",
        "--no-resume",
        "--save-every",
        "2",
        "--no-progress",
        "--stage1-loss",
        "bsce",
        "--subsets",
        "3",
    )
    s1 = btm.stage1_args(args, tmp_path / "stage1")
    defaults = vars(parse(pretrain))
    assert set(vars(s1)) == set(defaults)  # a complete stage-1 namespace, nothing of BTM's own
    assert (s1.loss, s1.output, s1.init, s1.new_head, s1.config) == (
        "bsce",
        str(tmp_path / "stage1"),
        None,
        False,
        None,
    )
    for key in (
        "dataset",
        "data_dir",
        "imbalance",
        "profile",
        "val_per_class",
        "workers",
        "model",
        "pretrained",
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "optimizer",
        "warmup_epochs",
        "seed",
        "mixed_precision",
        "grad_accum",
        "threads",
        "resume",
        "save_every",
        "no_progress",
    ):
        assert getattr(s1, key) == getattr(args, key), key
    assert (s1.sampler, s1.mixup, s1.select) == (defaults["sampler"], defaults["mixup"], defaults["select"])


# ------------------------------------------------------------------------------------------------ gml
@pytest.mark.parametrize(
    "flag",
    [
        "--epochs",
        "--batch-size",
        "--lr",
        "--optimizer",
        "--resume",
        "--weight-decay",
        "--warmup-epochs",
        "--grad-accum",
        "--save-every",
        "--model",
        "--pretrained",
        "--new-head",
    ],
)
def test_gml_takes_no_training_flags(flag):
    assert flag not in flags(gml.build_parser())


def test_gml_needs_init(capsys):
    assert "give --init" in refused(gml, capsys)
    assert parse(gml, "--init", "runs/x").init == "runs/x"


# ----------------------------------------------------------------------------------- shared data flags
def test_data_flags_are_the_same_in_the_recipes_and_the_cli():
    sub = next(a for a in cli_parser()._actions if isinstance(a, argparse._SubParsersAction))
    data = {o for o in flags(sub.choices["data"]) if o not in ("-h", "--help", "--json", "--check-files")}
    assert data >= {
        "--data-dir",
        "--imbalance",
        "--profile",
        "--val-per-class",
        "--seed",
        "--train-list",
        "--class-order",
        "--shot-cuts",
    }
    # `ltzoo data` describes a split list without its images (--check-files to check them, --skip-bad-files to
    # check them and drop the bad ones: the fix its bad-file error names); the commands that read the images
    # check them and can skip the bad ones
    assert {"--check-files", "--skip-bad-files"} <= flags(sub.choices["data"])
    for recipe in (pretrain, btm, gml):
        assert data <= flags(recipe.build_parser()), recipe.__name__
    assert data - {"--seed"} <= flags(sub.choices["eval"])


# --------------------------------------------------------------------------------- optimiser, schedule
def test_optimizer_decays_weights_only_and_skips_frozen_parameters():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )
    net[3].weight.requires_grad_(False)
    opt = create_optimizer(net, "sgd", 0.1, 5e-4)
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    params = {id(p) for g in opt.param_groups for p in g["params"]}
    assert decay == {id(net[0].weight)}
    assert params == {id(p) for p in net.parameters() if p.requires_grad}
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    assert isinstance(create_optimizer(net, "adamw", 0.1, 5e-4), torch.optim.AdamW)


@pytest.mark.parametrize("total, warmup", [(20, 5), (12, 0), (9, 1)])
def test_schedule_warms_up_linearly_then_decays_to_zero(total, warmup):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
    sched = create_scheduler(opt, total, warmup)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    for step, lr in enumerate(lrs):
        if step < warmup:
            expected = 0.4 * (step + 1) / warmup
        else:
            expected = 0.4 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        assert lr == pytest.approx(expected, rel=1e-9, abs=1e-12), step
