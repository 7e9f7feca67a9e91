"""ltzoo.models.pretrained: weights from a local file or timm's Hub cache, their errors, and the input that
comes with them (BatchPreprocess resizing and channel repetition, the exported pretrained_cfg)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

import ltzoo.models  # noqa: F401  (registers resnet20_cifar, vit_pico_patch4_28)
from ltzoo.data.loader import BatchPreprocess
from ltzoo.errors import UserError
from ltzoo.models import pretrained as pt


@pytest.fixture(scope="module")
def r20_file(tmp_path_factory) -> tuple[Path, dict]:
    torch.manual_seed(0)
    sd = timm.create_model("resnet20_cifar", num_classes=10).state_dict()
    path = tmp_path_factory.mktemp("w") / "r20.safetensors"
    save_file(sd, str(path))
    return path, sd


def _same_backbone(model, sd, skip=("fc.",)) -> None:
    got = model.state_dict()
    for k, v in sd.items():
        if not k.startswith(skip):
            assert torch.equal(got[k], v), k


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_file_loads_like_timm_overlay(r20_file, tmp_path, suffix):
    path, sd = r20_file
    if suffix != ".safetensors":
        path = tmp_path / f"r20{suffix}"
        torch.save(sd, path)
    net = pt.create_pretrained("resnet20_cifar", num_classes=4, pretrained_file=path)
    _same_backbone(net, sd)
    assert net.num_classes == 4 and net.conv1.in_channels == 3
    assert pt.input_from_weights(net) and "state_dict" not in net.pretrained_cfg
    # timm's own overlay loads the same numbers
    ref = timm.create_model(
        "resnet20_cifar", pretrained=True, num_classes=4, pretrained_cfg_overlay=dict(file=str(path), num_classes=10)
    )
    _same_backbone(net, ref.state_dict())


def test_same_classes_keep_the_head(r20_file):
    path, sd = r20_file
    net = pt.create_pretrained("resnet20_cifar", num_classes=10, pretrained_file=path)
    _same_backbone(net, sd, skip=())


def test_vit_file(tmp_path):
    sd = timm.create_model("vit_pico_patch4_28", in_chans=3, num_classes=7).state_dict()
    save_file(sd, str(tmp_path / "v.safetensors"))
    net = pt.create_pretrained("vit_pico_patch4_28", num_classes=3, pretrained_file=tmp_path / "v.safetensors")
    _same_backbone(net, sd, skip=("head.",))
    assert net.patch_embed.proj.in_channels == 3 and net.pretrained_cfg["input_size"] == (3, 28, 28)


def test_pickle_refused(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a whole module: needs unpickling of arbitrary classes
    with pytest.raises(UserError, match=r"weights_only.*refuses|refuses.*weights_only") as err:
        pt.create_pretrained("resnet20_cifar", num_classes=3, pretrained_file=path)
    assert "\n" not in str(err.value) and "state dict" in str(err.value)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        pt.create_pretrained("resnet20_cifar", num_classes=3, pretrained_file=tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="bad.safetensors"):
        pt.create_pretrained("resnet20_cifar", num_classes=3, pretrained_file=bad)


def test_mismatch_names_first_tensor(tmp_path):
    save_file(timm.create_model("resnet32_cifar").state_dict(), str(tmp_path / "r32.safetensors"))
    with pytest.raises(
        UserError,
        match=r"does not fit resnet20_cifar: first mismatch: layer1\.3\.\S+ is in the file, "
        r"not in the model \(and \d+ more\)",
    ):
        pt.create_pretrained("resnet20_cifar", num_classes=3, pretrained_file=tmp_path / "r32.safetensors")
    save_file(
        timm.create_model("vit_pico_patch4_28", embed_dim=32, in_chans=3).state_dict(), str(tmp_path / "v.safetensors")
    )
    with pytest.raises(
        UserError, match=r"first mismatch: \S+ has shape \(.*32.*\) in the file and \(.*64.*\) in the model"
    ):
        pt.create_pretrained("vit_pico_patch4_28", num_classes=3, pretrained_file=tmp_path / "v.safetensors")


def test_first_mismatch_parses_torch_messages():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(RuntimeError) as err:
        model.load_state_dict({"weight": torch.zeros(2, 4), "bias": torch.zeros(2), "extra": torch.zeros(1)})
    assert pt.first_mismatch(str(err.value)).startswith("first mismatch: extra is in the file, not in the model")


def test_unknown_model(tmp_path):
    with pytest.raises(UserError, match="unknown timm model"):
        pt.create_pretrained("no_such_model_xyz", num_classes=3, pretrained_file=tmp_path / "x.safetensors")


# ------------------------------------------------------------------------------------------------ Hub
@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_hub_offline_not_cached_is_one_fast_line(empty_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(UserError, match=r"resnet10t.*not in the local cache and the Hub is offline.*--pretrained-file"):
        pt.create_pretrained("resnet10t", num_classes=3)
    assert time.perf_counter() - start < 5


def test_hub_unreachable_not_cached_is_fast(empty_cache, monkeypatch):
    from huggingface_hub import constants
    from launching import free_port

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", constants.ENDPOINT + "/{repo_id}/resolve/{revision}/{filename}"
    )
    start = time.perf_counter()
    with pytest.raises(UserError, match="not in the local cache and the Hub cannot be reached"):
        pt.create_pretrained("resnet10t", num_classes=3)
    assert time.perf_counter() - start < 10, "one attempt, no retries"


def test_hub_cached_loads_offline(empty_cache, monkeypatch):
    """Weights in the cache load with no request at all (the endpoint points nowhere)."""
    from huggingface_hub import constants

    sd = timm.create_model("resnet10t", num_classes=1000).state_dict()
    snap = empty_cache / "models--timm--resnet10t.c3_in1k" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    save_file(sd, str(snap / "model.safetensors"))
    (empty_cache / "models--timm--resnet10t.c3_in1k" / "refs").mkdir()
    (empty_cache / "models--timm--resnet10t.c3_in1k" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    assert pt.hub_weights_cached("timm/resnet10t.c3_in1k")
    net = pt.create_pretrained("resnet10t", num_classes=3)
    _same_backbone(net, sd)
    assert pt.input_from_weights(net) and net.pretrained_cfg["input_size"] == (3, 176, 176)
    assert constants.HF_HUB_OFFLINE is False, "offline mode is restored"


# ---------------------------------------------------------------------------------------------- input
@pytest.mark.parametrize("interpolation,pil", [("bilinear", "BILINEAR"), ("bicubic", "BICUBIC")])
def test_batch_resize_matches_pil(interpolation, pil):
    """A grayscale uint8 batch resized and repeated on the batch = PIL's resize of each image, convert('RGB')."""
    from PIL import Image

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (4, 1, 8, 8), dtype=np.uint8)
    prep = BatchPreprocess(
        (0.0, 0.0, 0.0),
        (1 / 255, 1 / 255, 1 / 255),
        crop_padding=0,
        size=(32, 32),
        channels=3,
        interpolation=interpolation,
    )
    got = prep(torch.from_numpy(imgs))
    assert got.shape == (4, 3, 32, 32)
    ref = torch.stack(
        [
            torch.from_numpy(
                np.array(Image.fromarray(imgs[i, 0]).resize((32, 32), getattr(Image.Resampling, pil)).convert("RGB"))
            )
            .permute(2, 0, 1)
            .float()
            for i in range(4)
        ]
    )
    diff = (got - ref).abs()
    assert diff.max() <= 2.0 + 1e-4 and (diff > 1.0 + 1e-4).float().mean() < 0.01, "rounding steps from PIL, no more"


def test_no_resize_without_size():
    x = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    assert BatchPreprocess((0.5,), (0.5,), crop_padding=0)(x).shape == (2, 1, 8, 8)


def test_weights_data_config_and_export(r20_file, tmp_path):
    """A pretrained model on in-memory 8x8 grayscale data: the weights' input, exported without ltzoo's marker."""
    from fixtures import make_imagefolder

    from ltzoo.data import load_dataset
    from ltzoo.runfolder.model_io import batch_preprocess, create_model, data_config, save_model

    data = make_imagefolder(tmp_path / "d", {"train": [6, 4], "test": [2, 2]}, size=(8, 8), channels=1)
    ds = load_dataset("imagefolder", data_dir=str(data), val_per_class=0)
    net = create_model(ds, "resnet20_cifar", pretrained_file=str(r20_file[0]))
    cfg = data_config(ds, net)
    assert cfg["input_size"] == (3, 32, 32) and cfg["crop_pct"] == 1.0 and cfg["mean"] == (0.4914, 0.4822, 0.4465)
    prep = batch_preprocess(ds, net)
    assert prep(ds.test.images).shape == (4, 3, 32, 32)
    save_model(net, tmp_path / "run", ds)
    again = timm.create_model(f"local-dir:{tmp_path / 'run'}", pretrained=True)
    assert pt.INPUT_KEY not in again.pretrained_cfg and tuple(again.pretrained_cfg["input_size"]) == (3, 32, 32)
    assert pt.INPUT_KEY in net.pretrained_cfg, "the in-process marker survives the export"


@pytest.mark.parametrize("channels", [3, 1])
def test_grayscale_weights_file(tmp_path, channels):
    """A 1-channel weights file (a model trained on grayscale data): on RGB images the model takes 3 channels, its
    first convolution adapted as timm adapts pretrained weights; on grayscale images it stays 1-channel. Either way
    it is fed the data's normalisation (the architecture's RGB mean/std describe other weights) and trains."""
    from fixtures import make_imagefolder

    from ltzoo.data import load_dataset
    from ltzoo.runfolder.model_io import batch_preprocess, create_model, save_model

    torch.manual_seed(0)
    sd = timm.create_model("resnet20_cifar", in_chans=1, num_classes=5).state_dict()
    save_file(sd, str(tmp_path / "gray.safetensors"))
    data = make_imagefolder(tmp_path / "d", {"train": [6, 4], "test": [2, 2]}, size=(8, 8), channels=channels)
    ds = load_dataset("imagefolder", data_dir=str(data), val_per_class=0)
    net = create_model(ds, "resnet20_cifar", pretrained_file=str(tmp_path / "gray.safetensors"))
    assert net.conv1.in_channels == channels and net.pretrained_cfg["input_size"] == (channels, 32, 32)
    expected = sd["conv1.weight"].repeat(1, channels, 1, 1) / channels  # timm's adapt_input_conv from 1 channel
    torch.testing.assert_close(net.conv1.weight.detach(), expected)
    _same_backbone(net, sd, skip=("fc.", "conv1."))
    assert net.pretrained_cfg["mean"] == tuple(ds.mean) and len(net.pretrained_cfg["std"]) == channels
    x = batch_preprocess(ds, net)(ds.train.images, train=True)
    assert x.shape == (10, channels, 32, 32)
    net(x).sum().backward()  # the training step's forward and backward
    save_model(net, tmp_path / "run", ds)
    again = timm.create_model(f"local-dir:{tmp_path / 'run'}", pretrained=True)
    assert again.conv1.in_channels == channels and tuple(again.pretrained_cfg["input_size"]) == (channels, 32, 32)
