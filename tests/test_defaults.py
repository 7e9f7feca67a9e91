"""ltzoo.recipes.defaults: the training defaults that follow the data and the start, and the linear baseline
(ltzoo.training.baseline) every run reports."""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pytest
import torch
import yaml
from fixtures import make_imagefolder  # tests/ is on sys.path (conftest.py)

from ltzoo.recipes import defaults
from ltzoo.training import baseline


def _args(**kw):
    base = {"pretrained": False, "pretrained_file": None, "init": None, "new_head": False, "peft": "none"}
    base |= {"optimizer": None, "lr": None, "weight_decay": None}
    return argparse.Namespace(model="resnet20_cifar", **{**base, **kw})


@pytest.mark.parametrize(
    ("kw", "kind"),
    [
        ({}, "scratch"),
        ({"pretrained": True}, "transfer"),
        ({"pretrained_file": "w.safetensors"}, "transfer"),
        ({"init": "runs/x", "new_head": True}, "transfer"),
        ({"init": "runs/x"}, "resume"),
    ],
)
def test_start_kind(kw, kind):
    assert defaults.start_kind(_args(**kw)) == kind


def test_optimiser_from_scratch_and_from_weights():
    values, rule = defaults.optimiser_defaults(_args())
    assert values == defaults.SCRATCH and rule.startswith("from scratch: SGD")
    values, rule = defaults.optimiser_defaults(_args(init="runs/src", new_head=True))
    assert values["optimizer"] == "adamw" and values["lr"] == 1e-3 and values["layer_decay"] == 0.75
    assert "a new classifier on runs/src" in rule and "layer-wise decay 0.75" in rule
    for peft, lr in (("lora", 3e-3), ("head", 1e-2), ("bias", 1e-2), ("ia3", 3e-3)):
        values, rule = defaults.optimiser_defaults(_args(pretrained=True, peft=peft))
        assert (values["optimizer"], values["lr"], values["layer_decay"]) == ("adamw", lr, None), peft
    # adapters on a random initialisation are still adapters: their rate, not SGD's 0.1
    assert defaults.optimiser_defaults(_args(peft="lora"))[0]["lr"] == 3e-3


def test_a_rate_given_without_an_optimiser_keeps_sgd_and_init_run_keeps_its_own(tmp_path):
    # places_lt/ce's way before these defaults: --pretrained with --lr 0.01 and no --optimizer was SGD's
    values, rule = defaults.optimiser_defaults(_args(pretrained=True, lr=0.01))
    assert values["optimizer"] == "sgd" and rule.startswith("--lr given without --optimizer")
    # --init RUN (these classes): RUN's recorded optimiser, else SGD as before
    (tmp_path / "run_config.yaml").write_text(yaml.safe_dump({"optimizer": "adamw"}))
    values, rule = defaults.optimiser_defaults(_args(init=str(tmp_path)))
    assert values["optimizer"] == "adamw" and rule.startswith(f"the optimiser --init {tmp_path} was trained with")
    values, rule = defaults.optimiser_defaults(_args(init="hf-hub:org/model"))
    assert values["optimizer"] == "sgd" and "records no optimiser" in rule


def test_member_rate_follows_the_optimiser():
    assert defaults.member_lr("sgd", "none")[0] == 0.01
    assert defaults.member_lr("adamw", "none")[0] == 5e-4
    assert defaults.member_lr("adamw", "lora")[0] == 2e-3
    assert defaults.member_lr("adamw", "head")[0] == 5e-3


@pytest.mark.parametrize(
    ("images", "processes", "batch"),
    [
        (14_592, 1, 128),  # Fashion-MNIST-LT: the usual batch
        (2_048, 1, 128),  # exactly 16 batches of 128
        (2_047, 1, 64),
        (656, 1, 32),  # the 676-image folder, less its validation images
        (297, 1, 16),  # never below 16 ...
        (10, 1, 10),  # ... unless the training set is smaller than that
        (14_592, 8, 64),  # per process
    ],
)
def test_batch_size_fits_the_training_set(images, processes, batch):
    got, rule = defaults.choose_batch_size(images, processes)
    assert got == batch, rule
    assert f"{images // processes:,} training images per process" in rule


def test_budget_in_optimiser_steps():
    # the README's run: 15 epochs of 114 steps = 1,710 >= 1,500: unchanged
    assert defaults.choose_epochs(114, 15, defaults.MIN_STEPS)[0] == 15
    # a 656-image folder at batch 32: 20 steps per epoch, 75 epochs for 1,500 steps
    epochs, rule = defaults.choose_epochs(20, 15, defaults.MIN_STEPS)
    assert epochs == 75 and rule.startswith("1,500 optimiser steps") and "the usual 15 epochs give 300" in rule
    assert defaults.choose_epochs(1, 15, defaults.MIN_STEPS)[0] == defaults.MAX_EPOCHS  # capped
    assert defaults.choose_steps_epochs(1000, 30) == (34, "--steps 1000: 34 epochs of 30 optimiser steps")
    assert defaults.choose_warmup(15) == (1.0, "the usual 1 epoch of linear warm-up")
    assert defaults.choose_warmup(100)[0] == 3.0


@pytest.mark.parametrize(
    ("counts", "chooses"), [(None, False), ([], False), ([2, 3, 9], False), ([5, 5, 5], True), ([100] * 3, True)]
)
def test_validation_chooses_only_when_it_can(counts, chooses):
    got, rule = defaults.choose_on_validation(counts)
    assert got is chooses, rule
    if counts and not chooses:
        assert "fewer than 5 (--min-val-per-class)" in rule and "steps of 50%" in rule


def test_the_flags_leave_the_schedule_to_the_run():
    from ltzoo.recipes import btm, csa, pretrain

    for module in (pretrain, btm):
        args = module.build_parser().parse_args([])
        for name in ("epochs", "batch_size", "lr", "warmup_epochs", "weight_decay", "optimizer"):
            assert getattr(args, name) is None, (module.__name__, name)
    assert btm.build_parser().parse_args([]).member_lr is None
    # CSA keeps its own schedule
    args = csa.build_parser().parse_args([])
    assert (args.epochs, args.batch_size, args.lr, args.optimizer) == (15, 128, 0.1, "sgd")
    with pytest.raises(SystemExit):
        pretrain.build_parser().parse_args(["--steps", "100", "--epochs", "3"])
    with pytest.raises(SystemExit):
        pretrain.build_parser().parse_args(["--lr-steps", "3"])  # needs --epochs


def test_btm_takes_stage1_flags_with_new_head():
    from ltzoo.recipes import btm

    p = btm.build_parser()
    assert p.parse_args(["--init", "x", "--new-head", "--epochs", "3"]).epochs == 3
    with pytest.raises(SystemExit):
        p.parse_args(["--init", "x", "--epochs", "3"])  # --init x is the stage 1: no stage-1 flags


def test_recorded_optimiser(tmp_path):
    from ltzoo.recipes.defaults import recorded_optimiser

    (tmp_path / "run_config.yaml").write_text(yaml.safe_dump({"optimizer": "adamw"}))
    assert recorded_optimiser(str(tmp_path)) == "adamw"
    (tmp_path / "run_config.yaml").write_text(": not yaml :\n  - [")
    assert recorded_optimiser(str(tmp_path)) is None
    assert recorded_optimiser("hf-hub:ltzoo/x") is None


# ----------------------------------------------------------------------------------------------- baseline
def test_capped_indices_keep_every_tail_image():
    labels = torch.tensor([0] * 100 + [1] * 30 + [2] * 5)
    keep = baseline.capped_indices(labels, 3, cap=50)
    counts = torch.bincount(labels[keep], minlength=3).tolist()
    assert counts == [22, 22, 5] and len(keep) <= 50
    assert len(baseline.capped_indices(labels, 3, cap=1000)) == len(labels)


def test_folded_logistic_regression_is_scikit_learns():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(120, 6)) * [1, 2, 3, 4, 5, 6] + 3).float()
    y = torch.from_numpy(rng.integers(0, 3, 120))
    weight, bias = baseline.fit_logistic(x, y, 4)  # class 3 has no training image
    scaler = StandardScaler().fit(x.double().numpy())
    clf = LogisticRegression(class_weight="balanced", max_iter=baseline.MAX_ITER, random_state=0)
    clf.fit(scaler.transform(x.double().numpy()), y.numpy())
    expected = clf.decision_function(scaler.transform(x.double().numpy()))
    got = (x @ weight.T + bias).double()
    assert np.allclose(got[:, :3].numpy(), expected, atol=1e-3)
    assert (got.argmax(1)[:, None] != 3).all()  # an absent class is never predicted
    # two classes: scikit-learn keeps one row, folded into two logits with the same argmax
    y2 = (y > 0).long()
    w2, b2 = baseline.fit_logistic(x, y2, 2)
    clf2 = LogisticRegression(class_weight="balanced", max_iter=baseline.MAX_ITER, random_state=0)
    clf2.fit(scaler.transform(x.double().numpy()), y2.numpy())
    assert ((x @ w2.T + b2).argmax(1).numpy() == clf2.predict(scaler.transform(x.double().numpy()))).all()


def test_below_baseline_line():
    base = {"features": "pixels (64 values)", "val": {"hm": 0.6}, "test": {"hm": 0.7}}
    assert baseline.below_baseline_line({"val": {"hm": 0.7}, "test": {"hm": 0.5}}, base) is None  # on validation
    line = baseline.below_baseline_line({"val": {"hm": 0.5}}, base, "the model")
    assert line.startswith("the model is below the linear baseline on val HM (50.00 vs 60.00, pixels")


@pytest.mark.slow
def test_a_small_folder_gets_a_budget_in_steps_and_a_baseline(tmp_path, inproc, caplog):
    """A folder of 82 training images: the batch decided from them, the length from --steps (the default 1,500 steps
    would make a long test), a validation split too small to choose on (3 per class: fixed rules, said), the
    baseline in results.json."""
    from ltzoo.recipes import pretrain

    data = make_imagefolder(tmp_path / "data", {"train": [40, 30, 12], "test": [6, 6, 6]}, size=(8, 8), channels=1)
    out = tmp_path / "run"
    argv = [
        *("--dataset", "imagefolder", "--data-dir", str(data), "--workers", "0", "--no-progress", "--threads", "1"),
        *("--mixed-precision", "no", "--model", "resnet20_cifar", "--steps", "12", "--output", str(out)),
    ]
    with caplog.at_level(logging.INFO):
        res = pretrain.main(argv)
    config = yaml.safe_load((out / "run_config.yaml").read_text())
    # 82 images less 3 per class held out = 73: batch 16 (at least 16), 4 steps per epoch, 3 epochs for 12 steps
    assert config["batch_size"] == 16 and config["resolved"]["batch_size"].startswith("73 training images")
    assert config["epochs"] == 3 and config["resolved"]["epochs"] == "--steps 12: 3 epochs of 4 optimiser steps"
    assert (config["optimizer"], config["lr"], config["weight_decay"]) == ("sgd", 0.1, 5e-4)
    assert config["parsed"]["epochs"] is None  # the flags as given stay apart from what the run decided
    assert res["selection"].startswith("the last epoch: fixed rules") and res["selected_epoch"] == 2
    b = json.loads((out / "results.json").read_text())["baseline"]
    assert b["features"].startswith("pixels (64 values") and b["train_images"] == 73
    assert set(b) >= {"val", "test", "method", "seconds"} and 0 <= b["test"]["hm"] <= 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("batch size 16" in m for m in messages) and any("epochs 3" in m for m in messages)
