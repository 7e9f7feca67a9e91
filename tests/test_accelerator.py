"""ltzoo.training.accelerator: the precision, memory-format and compile choices, and fp32 evaluation under them."""

from __future__ import annotations

import argparse

import pytest
import timm
import torch
from torch import nn

import ltzoo  # noqa: F401  (registers resnet20_cifar)
from ltzoo.data.loader import BatchPreprocess
from ltzoo.runfolder import provenance
from ltzoo.training import accelerator as accel


def _flags(monkeypatch, *flags):
    monkeypatch.setattr(provenance, "cpu_info", lambda: {"model": "test CPU", "flags": sorted(flags)})


@pytest.mark.parametrize(
    "flags,fast",
    [
        (("avx2", "avx512f", "avx512_bf16"), True),
        (("amx_bf16", "amx_tile"), True),
        (("avx2", "avx512f"), False),
        (("fpu",), False),
    ],
)
def test_bf16_is_fast_on_cpu_follows_the_flags(monkeypatch, flags, fast):
    _flags(monkeypatch, *flags)
    assert provenance.bf16_is_fast("cpu") is fast
    assert accel.resolve_mixed_precision("auto", "cpu") == ("bf16" if fast else "no")
    assert accel.resolve_mixed_precision(None, "cpu") == ("bf16" if fast else "no")


def test_bf16_is_fast_elsewhere_is_false_without_the_device():
    assert provenance.bf16_is_fast("meta") is False
    if not torch.cuda.is_available():
        assert provenance.bf16_is_fast("cuda") is False


@pytest.mark.parametrize("value", ["no", "bf16", "BF16"])
def test_explicit_mixed_precision_passes_through(monkeypatch, value):
    _flags(monkeypatch)  # no bf16 units: an explicit bf16 is still honoured
    assert accel.resolve_mixed_precision(value, "cpu") == value.lower()


def test_bad_mixed_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of auto, no, bf16, fp16"):
        accel.resolve_mixed_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        accel.resolve_mixed_precision("fp16", "cpu")


def test_cpu_info_reads_this_machine():
    info = provenance.cpu_info()
    assert info["model"] and isinstance(info["flags"], list)
    hw = provenance.hardware_summary("cpu")
    assert set(hw["cpu_flags"]) <= set(provenance.REPORTED_CPU_FLAGS) and hw["torch_threads"] >= 1


def test_channels_last_auto_follows_the_architecture():
    cnn = timm.create_model("resnet20_cifar", num_classes=3, in_chans=1)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, patch_size=16)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    assert accel.is_convolutional(cnn) and not accel.is_convolutional(vit) and not accel.is_convolutional(mlp)
    assert accel.resolve_channels_last(None, cnn) and accel.resolve_channels_last("auto", cnn)
    assert not accel.resolve_channels_last(None, vit)
    assert accel.resolve_channels_last(False, cnn) is False and accel.resolve_channels_last(True, mlp) is True
    with pytest.raises(ValueError):
        accel.resolve_channels_last("sometimes", cnn)


def test_to_channels_last_converts_conv_weights():
    model = accel.to_channels_last(timm.create_model("resnet20_cifar", num_classes=3, in_chans=3))
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[-1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs)


@pytest.mark.parametrize("train", [False, True])
def test_batch_preprocess_channels_last_same_values(train):
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    plain, cl = (
        BatchPreprocess((0.5,) * 3, (0.25,) * 3, 2),
        BatchPreprocess((0.5,) * 3, (0.25,) * 3, 2, channels_last=True),
    )
    a = plain(x, train=train, generator=torch.Generator().manual_seed(1))
    b = cl(x, train=train, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert b.is_contiguous(memory_format=torch.channels_last) and not b.is_contiguous()
    f = torch.randn(2, 3, 8, 8)  # a float batch from timm's transforms: same values, the model's layout
    assert torch.equal(cl(f), f) and cl(f).is_contiguous(memory_format=torch.channels_last)
    assert plain(f) is f


def test_unwrap_strips_compile_and_ddp_wrappers():
    model = nn.Linear(2, 2)
    assert accel.unwrap(accel.compile_model(model)) is model  # torch.compile is lazy: nothing compiles here
    assert accel.unwrap(model) is model


def _bf16_prepared(seed=0):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True, mixed_precision="bf16")
    torch.manual_seed(seed)
    model = timm.create_model("resnet20_cifar", num_classes=3, in_chans=1)
    plain = timm.create_model("resnet20_cifar", num_classes=3, in_chans=1)
    plain.load_state_dict(model.state_dict())
    return accelerator, accel.without_autocast_wrapper(accelerator, accelerator.prepare(model)), plain.eval()


def test_full_precision_bypasses_autocast(fresh_accelerate):
    accelerator, model, plain = _bf16_prepared()
    model.eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        exact = plain(x)
        assert torch.equal(model(x), exact), "without accelerate's wrapper the model computes in fp32 by itself"
        with accelerator.autocast():
            trained = model(x)  # how train_step runs it: under the run's autocast
        with torch.autocast("cpu", dtype=torch.bfloat16), accel.full_precision(model) as net:
            inside = net(x)  # not even an enclosing autocast reaches the model
    assert not torch.equal(trained, exact), "under the run's autocast the model computes in bf16"
    assert torch.equal(inside, exact)
    assert "_original_forward" not in vars(model), "accelerate's wrapper is gone (public unwrap_model)"


def test_make_accelerator_is_the_only_constructor():
    """ltzoo constructs an Accelerator in one place (ltzoo.training.accelerator.make_accelerator)."""
    import re
    from pathlib import Path

    root = Path(ltzoo.__file__).parent
    sites = [
        f"{p.relative_to(root)}:{i}"
        for p in root.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"\bAccelerator\(", line)
        and not line.lstrip().startswith(("#", '"', "`"))
        and "`Accelerator(" not in line
    ]
    assert sites == [
        "training/accelerator.py:"
        + str(
            next(
                i
                for i, line in enumerate(Path(accel.__file__).read_text().splitlines(), 1)
                if "return Accelerator(" in line
            )
        )
    ], sites


def test_speed_arguments():
    p = argparse.ArgumentParser()
    accel.add_speed_arguments(p.add_argument_group("speed"))
    d = p.parse_args([])
    assert (d.mixed_precision, d.channels_last, d.compile) == ("auto", None, False)
    d = p.parse_args(["--mixed-precision", "no", "--no-channels-last", "--compile"])
    assert (d.mixed_precision, d.channels_last, d.compile) == ("no", False, True)
    assert p.parse_args(["--channels-last"]).channels_last is True
    assert accel.describe("bf16", True, False)["eval_precision"] == "fp32"
