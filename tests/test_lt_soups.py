"""LT-Soups in the BTM recipe (issue 30): subsets of a schedule of imbalance ratios, members trained with the
logit-adjusted loss, the classifier fine-tuned with it; and the step profile's head share eta."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures import make_imagefolder  # tests/ is on sys.path (conftest.py)

from ltzoo.data import imbalanced_subsets
from ltzoo.data.profiles import head_classes, longtail_counts, parse_profile
from ltzoo.methods.heads import HEAD_METHODS, Features, Head, retrain


def test_imbalanced_subsets_cap_each_class_at_ratio_times_k():
    labels = torch.tensor([0] * 40 + [1] * 12 + [2] * 3)
    subsets = imbalanced_subsets(labels, 3, shots=3, ratios=[1, 2, 8, 100], seed=0)
    counts = [torch.bincount(labels[s], minlength=3).tolist() for s in subsets]
    assert counts == [[3, 3, 3], [6, 6, 3], [24, 12, 3], [40, 12, 3]]  # balanced ... the whole training set
    assert all(torch.equal(s, s.sort().values) for s in subsets)
    again = imbalanced_subsets(labels, 3, shots=3, ratios=[1, 2, 8, 100], seed=0)
    assert all(torch.equal(a, b) for a, b in zip(subsets, again))  # seeded


@pytest.mark.parametrize(
    ("profile", "heads"), [("step", 5), ("step:0.2", 2), ("step:0.8", 8), ("step:0.01", 1), ("step:0.99", 9)]
)
def test_the_step_profile_takes_a_head_share(profile, heads):
    counts = longtail_counts(100, 10, 10, profile)
    assert counts == [100] * heads + [10] * (10 - heads)
    assert head_classes(10, parse_profile(profile)[1]) == heads


@pytest.mark.parametrize("bad", ["step:0", "step:1", "step:x", "exp:0.5", "steps"])
def test_a_bad_profile_is_refused(bad):
    with pytest.raises(ValueError, match="profile"):
        parse_profile(bad)
    from ltzoo.recipes import pretrain

    with pytest.raises(SystemExit):
        pretrain.build_parser().parse_args(["--profile", bad])


def test_la_train_head_lifts_the_tail_over_plain_ce():
    """Fine-tuned with the logit-adjusted loss, the classifier recalls the rare class better than the same fine-tuning
    with plain cross-entropy (which learns the prior into the bias)."""
    from ltzoo.methods.heads import HeadFit, _train_head
    from ltzoo.methods.losses import create_loss

    g = torch.Generator().manual_seed(0)
    counts = [400, 20]
    x = torch.cat([torch.randn(400, 4, generator=g) + 0.6, torch.randn(20, 4, generator=g) - 0.6])
    y = torch.tensor([0] * 400 + [1] * 20)
    head = Head(torch.zeros(2, 4), torch.zeros(2))
    new, info = retrain("la_train", head, Features(x, y), None, counts, epochs=30, seed=0)
    assert info["method"] == "la_train" and HEAD_METHODS["la_train"].lr is not None
    fit = HeadFit(counts, epochs=30, lr=HEAD_METHODS["la_train"].lr)
    ce = _train_head(head, Features(x, y), create_loss("ce", counts), fit, sampler="instance")
    tail = y == 1
    assert (new(x[tail]).argmax(1) == 1).float().mean() > (ce(x[tail]).argmax(1) == 1).float().mean()


def test_btm_refuses_what_lt_soups_cannot_honour():
    from ltzoo.recipes import btm

    p = btm.build_parser()
    assert p.parse_args(["--soup-ratios", "1", "2", "4"]).soup_ratios == [1.0, 2.0, 4.0]
    for argv in (["--subsets", "2"], ["--disjoint"], ["--allow-fewer"]):
        with pytest.raises(SystemExit):
            p.parse_args(["--soup-ratios", "1", "2", "4", *argv])
    assert p.parse_args(["--soup-ratios", "1", "2", "--merge", "sequential"]).merge_lm == 0.7  # the authors' rate
    for argv in (
        ["--merge-lm", "0.5"],  # without --merge sequential
        ["--soup-ratios", "1", "2", "--merge", "sequential", "--merge-lm", "0"],
        ["--merge", "sequential"],  # BTM's balanced members have no order to weigh them by
    ):
        with pytest.raises(SystemExit):
            p.parse_args(argv)


def _lt_soups(tmp_path, *flags: str) -> tuple[dict, Path]:
    """The packaged LT-Soups setting, two members (ratios 1 and 4), on a tiny 3-class folder: (results, run folder)."""
    from ltzoo.recipes import btm

    data = make_imagefolder(
        tmp_path / "data", {"train": [40, 15, 6], "val": [5, 5, 5], "test": [9, 8, 6]}, size=(8, 8), channels=1
    )
    out = tmp_path / "soup"
    argv = [
        *("--dataset", "imagefolder", "--data-dir", str(data), "--workers", "0", "--no-progress", "--threads", "1"),
        *("--mixed-precision", "no", "--model", "resnet20_cifar", "--epochs", "1", "--batch-size", "8"),
        *("-c", "fmnist_lt/btm_ltsoups", "--dataset", "imagefolder", *flags),
        *("--soup-ratios", "1", "4", "--member-epochs", "1", "--member-batch-size", "4", "--head-epochs", "2"),
        *("--calibration-min-images", "0", "--output", str(out)),
    ]
    return btm.main(argv), out


@pytest.mark.slow
def test_lt_soups_runs_from_the_btm_recipe(tmp_path, inproc):
    res, _ = _lt_soups(tmp_path)
    assert res["method"] == "lt-soups+la_train" and res["members"] == 2
    assert set(res["table"]) >= {"stage 1", "LT-Soups", "LT-Soups+la_train"}
    config = json.loads(json.dumps(res["config"]))
    assert config["subsets"] == 2 and config["resolved"]["subsets"] == "one LT-Soups member per --soup-ratios value"
    assert config["member_loss"] == "la" and config["classifier"] == "la_train" and config["ensemble"] is False


@pytest.mark.slow
def test_lt_soups_trains_adapter_members_as_btm_does(tmp_path, inproc):
    """--peft lora: each LT-Soups member trains adapters on its subset; the soup (here the authors' sequential merge,
    from the stage-1 model) of the merged members is exported as a plain timm model (no adapter tensors)."""
    from safetensors import safe_open

    res, out = _lt_soups(tmp_path, "--peft", "lora", "--lora-rank", "2", "--merge", "sequential")
    assert res["method"] == "lt-soups+la_train" and res["members"] == 2
    assert res["config"]["peft"] == "lora" and res["config"]["merge"] == "sequential"
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any("lora" in k or "base_model" in k for k in keys), "merged: no adapter tensors"
    members = sorted((out / "members").glob("*.safetensors"))
    assert len(members) == 2
    for member in members:  # a member saved its adapters (and the classifier), not the whole network
        with safe_open(str(member), "pt") as f:
            assert any("lora" in k for k in f.keys())
        assert member.stat().st_size < (out / "model.safetensors").stat().st_size / 3
