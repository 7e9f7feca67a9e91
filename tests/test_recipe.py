"""ltzoo.recipes.recipe: the evaluation cadence of the epoch loop (--eval-every), decided from the data when
unset, and the phases of a run that announce themselves."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from fixtures import make_imagefolder  # tests/ is on sys.path (conftest.py)

from ltzoo.recipes.flags import SPACED_AFTER_EPOCHS, VALIDATION_SHARE
from ltzoo.recipes.recipe import choose_eval_every

TRAIN, VAL, TEST = [40, 15, 6], [3, 3, 3], [9, 8, 6]  # tests/test_recipe_reference.py's tiny set


@pytest.mark.parametrize(
    ("val", "train", "epochs", "every"),
    [
        (1_000, 14_592, 15, 1),  # Fashion-MNIST-LT (fmnist_lt/ce): 7% of an epoch
        (1_000, 14_592, 200, 1),  # cheap validation: every epoch however long the run
        (900, 12_406, 200, 1),  # CIFAR-10-LT (Cao et al.'s, 100 per class left over): 7%
        (9, 56, 2, 1),  # the tests' tiny set: 16% of an epoch, but 2 epochs
        (9, 56, SPACED_AFTER_EPOCHS, 1),  # ... and up to SPACED_AFTER_EPOCHS epochs
        (20_000, 115_712, 10, 1),  # ImageNet-LT, a 10-epoch LoRA fine-tuning (imagenet_lt/lora_clip)
        (20_000, 115_712, 90, 2),  # ImageNet-LT from scratch (imagenet_lt/ce): 17% of an epoch -> 8.6%
        (7_300, 62_500, 30, 1),  # Places-LT (places_lt/ce): 30 epochs
        (2_000, 10_000, 90, 2),  # exactly twice the share: every 2nd (no float rounding up to 3)
        (1_000, 10_000, 90, 1),  # exactly the share: every epoch
        (25_000, 100_000, 200, 3),
        (0, 100_000, 200, 1),  # no validation split
    ],
)
def test_the_eval_every_rule(val, train, epochs, every):
    got, rule = choose_eval_every(val, train, epochs)
    assert got == every, rule
    assert rule.startswith("no validation" if not val else "every epoch" if every == 1 else f"every {every} epochs")
    if val and every > 1:  # the fewest that keep validation within the share of the images trained on
        assert val / train / every <= VALIDATION_SHARE + 1e-12 < val / train / (every - 1)


def test_eval_every_is_one_training_flag():
    from ltzoo.recipes import btm, csa, gml, pretrain

    for module in (pretrain, csa):
        parser = module.build_parser()
        assert parser.parse_args([]).eval_every is None
        assert parser.parse_args(["--eval-every", "3"]).eval_every == 3
        with pytest.raises(SystemExit):
            parser.parse_args(["--eval-every", "0"])
    for module in (btm, gml):  # no epoch loop of their own to validate
        assert "eval_every" not in vars(module.build_parser().parse_args(["--init", "x"]))


def _messages(caplog) -> list[str]:
    """The logged lines, without the rank accelerate's logger puts first."""
    return [r.getMessage().removeprefix("[RANK 0] ") for r in caplog.records]


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_eval_every_validates_every_nth_and_the_last_epoch(tmp_path, inproc, caplog):
    from ltzoo.recipes import pretrain

    data = make_imagefolder(tmp_path / "data", {"train": TRAIN, "val": VAL, "test": TEST}, size=(8, 8), channels=1)
    argv = [
        *("--dataset", "imagefolder", "--data-dir", str(data), "--workers", "0", "--no-progress", "--threads", "1"),
        *("--mixed-precision", "no", "--model", "resnet20_cifar", "--optimizer", "adamw", "--batch-size", "8"),
        *("--lr", "0.01", "--warmup-epochs", "0", "--epochs", "3", "--min-val-per-class", "1"),
    ]
    out = tmp_path / "every2"
    with caplog.at_level(logging.INFO):
        res = pretrain.main([*argv, "--eval-every", "2", "--output", str(out)])
    log = _log(out)
    assert [r["epoch"] for r in log] == [0, 1, 2]
    assert [r["epoch"] for r in log if "val" in r] == [1, 2]  # every 2nd (0-based 1) and the last
    assert res["selected_epoch"] in (1, 2)
    assert res["selection"] == "best validation hm (validated every 2 epochs and the last)"
    config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert config["eval_every"] == 2 and "eval_every" not in config["resolved"]  # given, not decided
    messages = _messages(caplog)
    assert "validation: every 2 epochs and the last (--eval-every 2)" in messages
    # the phases after training announce themselves and their durations; results.json keeps them
    for what in ("final evaluation (val, test)", "calibration (temperature)"):
        assert f"{what} ..." in messages and any(m.startswith(f"{what}: done in ") for m in messages), what
    seconds = res["seconds"]
    assert set(seconds) == {"train", "validation", "final_evaluation", "calibration"}
    assert seconds["train"] == res["train_seconds"] and all(v >= 0 for v in seconds.values())
    assert sum(seconds.values()) <= res["wall_seconds"]

    # unset: decided from the data (the tiny set's validation is 16% of an epoch, but 3 epochs: every epoch)
    caplog.clear()
    out = tmp_path / "default"
    with caplog.at_level(logging.INFO):
        res = pretrain.main([*argv, "--output", str(out)])
    assert [r["epoch"] for r in _log(out) if "val" in r] == [0, 1, 2]
    assert res["selection"] == "best validation hm"
    config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert config["eval_every"] == 1 and config["resolved"]["eval_every"].startswith("every epoch: ")
    assert f"validation: {config['resolved']['eval_every']}" in _messages(caplog)


@pytest.mark.slow
def test_btm_announces_and_times_every_phase(tmp_path, inproc, caplog):
    """After its members, BTM's every phase says when it starts and how long it took, and results.json's
    ``seconds`` has each one (the feature pass, the head's fit, the final evaluation and calibration included)."""
    from ltzoo.recipes import btm

    data = make_imagefolder(tmp_path / "data", {"train": TRAIN, "val": VAL, "test": TEST}, size=(8, 8), channels=1)
    argv = [
        *("--dataset", "imagefolder", "--data-dir", str(data), "--workers", "0", "--no-progress", "--threads", "1"),
        *("--mixed-precision", "no", "--model", "resnet20_cifar", "--optimizer", "adamw", "--batch-size", "8"),
        *("--lr", "0.01", "--warmup-epochs", "0", "--epochs", "1", "--subsets", "2", "--shots", "3"),
        *("--member-epochs", "1", "--member-batch-size", "4", "--head-epochs", "2", "--calibration-min-images", "0"),
        *("--output", str(tmp_path / "btm")),
    ]
    with caplog.at_level(logging.INFO):
        res = btm.main(argv)
    messages = _messages(caplog)
    for what in (
        "evaluating stage 1 (val, test)",
        "fine-tuning 2 members (1 epoch each, on 1 process)",
        "merging 2 members (uniform; BN statistics: average)",
        "evaluating the merged model (val, test)",
        "features of the merged model (train, val)",
        "fitting the gml head on 61 training features, 3 classes, 2 epochs (then ensembled)",
        "final evaluation (val, test)",
        "calibration (temperature)",
    ):
        start = messages.index(f"{what} ...")
        assert messages[start + 1 :] and any(m.startswith(f"{what}: done in ") for m in messages[start + 1 :]), what
    s = res["seconds"]
    phases = ("stage1_wall", "stage1_evaluation", "members", "merge", "evaluation", "classifier")
    phases += ("final_evaluation", "calibration")
    assert all(s[k] >= 0 for k in phases) and sum(s[k] for k in phases) <= res["wall_seconds"]
    assert s["shift_bn"] is None and s["features"] + s["head_fit"] <= s["classifier"]  # parts of the classifier's
    assert s["btm_total"] == pytest.approx(s["members"] + s["merge"] + s["classifier"])  # as it always meant
