"""Tests of ltzoo.models: the CIFAR ResNets through timm's model API, builder and Hub format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from timm.models import model_entrypoint, save_for_hf

import ltzoo  # noqa: F401  (registers the architectures)
from ltzoo.models.resnet_cifar import CIFAR10_MEAN, CIFAR10_STD, ResNetCifar

MODELS = [name for name in timm.list_models("*_cifar") if model_entrypoint(name).__module__.startswith("ltzoo.")]
# Parameter counts with 10 classes: the option-A counts of He et al. (0.27M/0.46M/0.85M) + 2,752 for option B.
PARAM_RANGES = {
    "resnet20_cifar": (0.26e6, 0.28e6),
    "resnet32_cifar": (0.45e6, 0.48e6),
    "resnet56_cifar": (0.84e6, 0.87e6),
}
INPUTS = [(1, 28, 28), (3, 32, 32)]

torch.set_num_threads(1)


def _create(name: str, in_chans: int = 3, num_classes: int = 10, **kwargs) -> ResNetCifar:
    return timm.create_model(name, in_chans=in_chans, num_classes=num_classes, **kwargs).eval()


def _images(in_chans: int = 1, size: tuple[int, int] = (28, 28), n: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, in_chans, *size, generator=gen)


def test_registered_names():
    assert MODELS == ["resnet20_cifar", "resnet32_cifar", "resnet56_cifar"]
    assert all(timm.models.get_pretrained_cfg(f"{name}.untrained") is not None for name in MODELS)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("chw", INPUTS, ids=lambda chw: "x".join(map(str, chw)))
def test_forward_shape(name: str, chw: tuple[int, int, int]):
    model = _create(name, in_chans=chw[0], num_classes=7)
    assert model.in_chans == chw[0] and model.conv1.in_channels == chw[0]
    with torch.no_grad():
        assert model(_images(chw[0], chw[1:])).shape == (2, 7)


@pytest.mark.parametrize("name", MODELS)
def test_param_count(name: str):
    low, high = PARAM_RANGES[name]
    n_params = sum(p.numel() for p in _create(name).parameters())
    assert low < n_params < high


def test_architecture():
    model = _create("resnet32_cifar")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.out_channels == 16
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [5, 5, 5]
    assert [s[0].conv1.stride for s in (model.layer1, model.layer2, model.layer3)] == [(1, 1), (2, 2), (2, 2)]
    # option B: projection shortcuts only where the shape changes (timm's BasicBlock: None is the identity)
    assert model.layer1[0].downsample is None
    assert model.layer2[0].downsample[0].kernel_size == (1, 1) and model.layer2[0].downsample[0].stride == (2, 2)
    assert model.layer2[0].downsample[0].padding == (0, 0)
    assert model.layer2[1].downsample is None
    assert isinstance(model.fc, torch.nn.Linear) and model.get_classifier() is model.fc
    assert model.get_classifier(name_only=True) == "fc"


@pytest.mark.parametrize("name", MODELS)
def test_features_and_head(name: str):
    model = _create(name, in_chans=1)
    assert model.num_features == model.head_hidden_size == 64
    with torch.no_grad():
        feats = model.forward_features(_images())
        assert feats.shape == (2, 64, 7, 7)
        assert model.forward_head(feats, pre_logits=True).shape == (2, 64)
        assert torch.equal(model.forward_head(feats), model(_images()))


@pytest.mark.parametrize("size", [(32, 32), (40, 24), (9, 9)])
def test_any_input_size(size: tuple[int, int]):
    with torch.no_grad():
        assert _create("resnet20_cifar")(_images(3, size)).shape == (2, 10)


def test_reset_classifier():
    model = _create("resnet20_cifar")
    model.reset_classifier(5)
    assert model.num_classes == 5 and model.fc.out_features == 5
    model.reset_classifier(0)
    assert model.num_classes == 0
    with torch.no_grad():
        assert model(_images(3, (32, 32))).shape == (2, 64)
    model.reset_classifier(3, global_pool="catavgmax")
    assert model.head_hidden_size == 128
    with torch.no_grad():
        assert model(_images(3, (32, 32))).shape == (2, 3)


def test_pretrained_cfg():
    model = _create("resnet32_cifar", in_chans=1)
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    assert cfg["architecture"] == "resnet32_cifar" and cfg["tag"] == "untrained"
    assert tuple(cfg["input_size"]) == (3, 32, 32) and cfg["num_classes"] == 10
    assert tuple(cfg["mean"]) == CIFAR10_MEAN and tuple(cfg["std"]) == CIFAR10_STD
    assert cfg["crop_pct"] == 1.0 and cfg["interpolation"] == "bilinear"
    assert cfg["first_conv"] == "conv1" and cfg["classifier"] == "fc"
    model.get_submodule(cfg["first_conv"])  # the names resolve
    model.get_submodule(cfg["classifier"])
    assert timm.create_model("resnet20_cifar").num_classes == 10  # default from the cfg


def test_group_matcher_and_checkpointing():
    model = _create("resnet20_cifar")
    assert set(model.group_matcher()) == {"stem", "blocks"}
    x = _images(3, (16, 16))
    with torch.no_grad():
        ref = model(x)
        model.set_grad_checkpointing(True)
        assert torch.allclose(model(x), ref)


def test_features_only():
    model = timm.create_model("resnet20_cifar", features_only=True, in_chans=1)
    assert model.feature_info.channels() == [16, 16, 32, 64]
    assert model.feature_info.reduction() == [1, 1, 2, 4]
    with torch.no_grad():
        shapes = [tuple(f.shape) for f in model(_images())]
    assert shapes == [(2, 16, 28, 28), (2, 16, 28, 28), (2, 32, 14, 14), (2, 64, 7, 7)]


def test_forward_intermediates():
    model = _create("resnet20_cifar", in_chans=1)
    with torch.no_grad():
        final, inter = model.forward_intermediates(_images())
        assert torch.equal(final, model.forward_features(_images()))
        assert [t.shape[1] for t in inter] == [16, 16, 32, 64]
        assert len(model.forward_intermediates(_images(), indices=2, intermediates_only=True)) == 2
    model.prune_intermediate_layers(indices=(2,))
    assert model.num_features == 32 and model.num_classes == 0
    with torch.no_grad():
        assert model(_images()).shape == (2, 32, 14, 14)  # no pool, no classifier: the layer2 map


def _roundtrip(model: torch.nn.Module, directory: Path, x: torch.Tensor, **save_kwargs) -> torch.nn.Module:
    save_for_hf(model, directory, safe_serialization=True, **save_kwargs)
    assert (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()
    loaded = timm.create_model(f"local-dir:{directory}", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    return loaded


@pytest.mark.parametrize("name", MODELS)
def test_hub_roundtrip(name: str, tmp_path: Path):
    model = _create(name, in_chans=1, num_classes=7)
    labels = [f"class_{i}" for i in range(7)]
    loaded = _roundtrip(model, tmp_path, _images(), model_config={"label_names": labels})
    assert loaded.in_chans == 1 and loaded.num_classes == 7
    assert list(loaded.pretrained_cfg["label_names"]) == labels
    assert loaded.pretrained_cfg["input_size"][0] == 1
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == name and config["num_classes"] == 7 and config["num_features"] == 64
    assert config["model_args"]["in_chans"] == 1 and config["model_args"]["num_classes"] == 7


def test_hub_roundtrip_explicit_args(tmp_path: Path):
    """A model built without create_model (no recorded kwargs), exported with explicit model_args."""
    model = ResNetCifar(layers=(3, 3, 3), in_chans=1, num_classes=4).eval()
    model.pretrained_cfg = model.default_cfg = timm.models.get_pretrained_cfg("resnet20_cifar").to_dict()
    data_config = {"input_size": (1, 28, 28), "mean": (0.2860,), "std": (0.3530,)}
    loaded = _roundtrip(model, tmp_path, _images(), model_args={"in_chans": 1}, data_config=data_config)
    assert loaded.in_chans == 1 and loaded.num_classes == 4
    cfg = loaded.pretrained_cfg
    assert tuple(cfg["input_size"]) == (1, 28, 28) and tuple(cfg["mean"]) == (0.2860,)
    with pytest.raises(ValueError):
        save_for_hf(model, tmp_path / "bad", model_args={"in_chans": 3})


def test_hub_roundtrip_after_reset_classifier(tmp_path: Path):
    model = _create("resnet20_cifar", in_chans=1, num_classes=10)
    model.reset_classifier(3)
    model.eval()
    loaded = _roundtrip(model, tmp_path, _images())
    assert loaded.num_classes == 3 and loaded.in_chans == 1


ZOO = sorted(p.parent for p in (Path(__file__).resolve().parent.parent / "zoo").glob("*/model.safetensors"))


@pytest.mark.parametrize("directory", ZOO, ids=[p.name for p in ZOO])
def test_zoo_checkpoints_load_with_every_key(directory: Path):
    """The published weights keep loading: the same parameter names, every one used, finite logits."""
    from safetensors import safe_open

    model = timm.create_model(f"local-dir:{directory}", pretrained=True).eval()
    with safe_open(str(directory / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(model.state_dict())
    with torch.no_grad():
        logits = model(_images(in_chans=model.in_chans))
    assert logits.shape == (2, model.num_classes) and torch.isfinite(logits).all()
