"""Shifted batch normalisation (ltzoo.methods.shifted_bn): BN statistics re-estimated on class-balanced batches, nothing
else changed, and when the recipes turn it on."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import ltzoo  # noqa: F401  (registers resnet20_cifar with timm)
from ltzoo.data import LTDataset, Split
from ltzoo.data.samplers import create_sampler
from ltzoo.methods.shifted_bn import shift_batchnorm, uses_shifted_bn

STATS = ("running_mean", "running_var", "num_batches_tracked")


def _dataset(counts: list[int], size: int) -> LTDataset:
    """In-memory uint8 images, class c all of value 255 * c (two classes: black and white), mean 0 and std 1."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    images = (labels * 255).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, size, size).contiguous()
    split = Split("train", labels, images=images)
    return LTDataset(
        "toy", [f"class_{c}" for c in range(len(counts))], split, None, split, (1, size, size), (0.0,), (1.0,)
    )


def test_statistics_are_those_of_class_balanced_batches():
    """90 black and 10 white 4x4 images: instance-balanced BN statistics would see 10% white; the shifted ones see
    the class-balanced draw's share (about half), exactly: mean = share, variance = its unbiased variance."""
    ds = _dataset([90, 10], size=4)  # 4 // 8 = 0: no translation, and a flip leaves a constant image as it is
    net = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(16, 2))
    shift_batchnorm(net, ds, seed=3)
    drawn = ds.train.labels[create_sampler("balanced", ds.train.labels, 2, seed=3).indices()].double()
    share, n = float(drawn.mean()), drawn.numel() * 16  # every pixel of every drawn image
    assert 0.3 < share < 0.7
    bn = net[0]
    torch.testing.assert_close(bn.running_mean, torch.tensor([share]), rtol=0, atol=1e-6)
    torch.testing.assert_close(bn.running_var, torch.tensor([share * (1 - share) * n / (n - 1)]), rtol=0, atol=1e-6)
    assert not net.training


def test_only_batchnorm_statistics_change():
    """The BN affine and every other weight are MiSLAS's stage-1 values: only running mean / variance move."""
    torch.manual_seed(0)
    model = timm.create_model("resnet20_cifar", num_classes=3, in_chans=1).eval()
    labels = torch.arange(60) % 3
    labels[:40] = 0  # long-tailed: 46, 7, 7
    images = torch.randint(0, 256, (60, 1, 16, 16), dtype=torch.uint8)
    split = Split("train", labels, images=images)
    ds = LTDataset("toy", ["a", "b", "c"], split, None, split, (1, 16, 16), (0.5,), (0.25,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shift_batchnorm(model, ds, seed=0, batch_size=16)
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.endswith(STATS) for k in moved), sorted(moved)
    assert {k.rsplit(".", 1)[0] for k in moved if k.endswith("running_mean")} == {
        name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
    }  # every BN layer


def test_when_the_recipes_shift():
    assert uses_shifted_bn(None, "las") and not uses_shifted_bn(None, "gml") and not uses_shifted_bn(None, "none")
    assert not uses_shifted_bn(False, "las") and uses_shifted_bn(True, "gml")


def test_recipe_flags():
    from ltzoo.recipes import btm, gml

    flags = ["--dataset", "fmnist_lt", "--init", "RUN_DIR"]
    assert gml.build_parser().parse_args(flags).shift_bn is False
    assert gml.build_parser().parse_args([*flags, "--shift-bn"]).shift_bn is True
    assert btm.build_parser().parse_args(flags).shift_bn is None  # unset: the classifier decides (las: on)
    assert btm.build_parser().parse_args([*flags, "--classifier", "las", "--no-shift-bn"]).shift_bn is False


@pytest.mark.parametrize("seed", (0, 1))
def test_shift_is_deterministic(seed):
    ds = _dataset([30, 6], size=8)
    nets = [nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 2)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    for net in nets:
        shift_batchnorm(net, ds, seed=seed, batch_size=8)
    assert torch.equal(nets[0][1].running_mean, nets[1][1].running_mean)
    assert torch.equal(nets[0][1].running_var, nets[1][1].running_var)
