"""ltzoo.training.loop: training under bf16 autocast on the CPU, and evaluation that is fp32 whatever trained."""

from __future__ import annotations

import copy

import pytest
import timm
import torch

import ltzoo  # noqa: F401  (registers resnet20_cifar)
from ltzoo.data.loader import BatchPreprocess, make_loader
from ltzoo.data.splits import Split
from ltzoo.training import accelerator as accel
from ltzoo.training.evaluation import evaluate, predict
from ltzoo.training.loop import train_one_epoch

COUNTS = (12, 6, 4)


def _split(counts, seed=0) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return Split("train", y, images=torch.randint(0, 256, (len(y), 1, 8, 8), dtype=torch.uint8, generator=g))


def _setup(mixed_precision: str, channels_last: bool, seed: int = 0):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True, mixed_precision=mixed_precision)
    torch.manual_seed(seed)
    model = timm.create_model("resnet20_cifar", num_classes=len(COUNTS), in_chans=1)
    if channels_last:
        accel.to_channels_last(model)
    prep = BatchPreprocess((0.5,), (0.25,), crop_padding=1, channels_last=channels_last)
    return accelerator, model, prep


@pytest.mark.parametrize("channels_last", [False, True])
def test_train_one_epoch_bf16_on_cpu(fresh_accelerate, channels_last):
    accelerator, model, prep = _setup("bf16", channels_last)
    before = copy.deepcopy(model.state_dict())
    split = _split(COUNTS)
    loader = make_loader(
        split,
        8,
        torch.utils.data.RandomSampler(split.labels, generator=torch.Generator().manual_seed(0)),
        drop_last=True,
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    seen_dtypes = []
    hook = accel.unwrap(model).conv1.register_forward_hook(lambda m, i, o: seen_dtypes.append(o.dtype))
    stats = train_one_epoch(accelerator, model, loader, torch.nn.CrossEntropyLoss(), opt, prep, progress=False)
    hook.remove()
    assert stats["images"] == 16 and torch.isfinite(torch.tensor(stats["loss"]))
    assert set(seen_dtypes) == {torch.bfloat16}, "the forward pass should run under bf16 autocast"
    after = accelerator.unwrap_model(model).state_dict()
    assert all(after[k].dtype == before[k].dtype for k in before), "weights stay fp32 under autocast"
    assert any(not torch.equal(after[k], before[k]) for k in before if after[k].is_floating_point())


def test_member_style_loop_bf16_on_cpu(fresh_accelerate):
    """The BTM member loop: an unprepared copy, ``accelerator.autocast``, a GradScaler that bf16 leaves off."""
    accelerator, model, prep = _setup("bf16", True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", enabled=accelerator.mixed_precision == "fp16")
    x, y = _split(COUNTS).images[:8], _split(COUNTS).labels[:8]
    w0 = model.fc.weight.detach().clone()
    with accelerator.autocast():
        out = model(prep(x, train=True, generator=torch.Generator().manual_seed(0)))
        loss = torch.nn.functional.cross_entropy(out, y)
    assert out.dtype == torch.bfloat16 and loss.dtype == torch.float32
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert model.fc.weight.dtype == torch.float32 and not torch.equal(model.fc.weight, w0)


def _eval_all(mixed_precision: str, channels_last: bool):
    accelerator, model, prep = _setup(mixed_precision, channels_last)
    split = _split(COUNTS, seed=1)
    loader = make_loader(split, 16)
    model.train()  # a few batches of statistics, so BN is not the identity
    with torch.no_grad():
        for _ in range(3):
            model(prep(split.images[:16]))
    model, loader = accelerator.prepare(model, loader)
    logits, labels = predict(accelerator, model, loader, prep, progress=False)
    feats, _ = predict(accelerator, model, loader, prep, features=True, progress=False)
    metrics = evaluate(accelerator, model, loader, prep, list(COUNTS), (10, 5), "val", progress=False)
    return logits, labels, feats, metrics


@pytest.mark.parametrize("channels_last", [False, True])
def test_prediction_is_fp32_whatever_the_training_precision(fresh_accelerate, channels_last):
    from accelerate.state import AcceleratorState, GradientState

    fp32 = _eval_all("no", channels_last)
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    bf16 = _eval_all("bf16", channels_last)
    assert bf16[0].dtype == torch.float32
    assert torch.equal(fp32[0], bf16[0]) and torch.equal(fp32[1], bf16[1]) and torch.equal(fp32[2], bf16[2])
    assert fp32[3] == bf16[3]


@pytest.mark.parametrize("channels", [1, 3])
def test_batch_preprocess_augments_uint8_as_it_would_floats(channels):
    """Augmenting the uint8 batch, then normalising, gives exactly the floats of augmenting after conversion."""
    x = torch.randint(0, 256, (16, channels, 10, 10), dtype=torch.uint8)
    prep = BatchPreprocess((0.4,) * channels, (0.3,) * channels, crop_padding=2)
    got = prep(x, train=True, generator=torch.Generator().manual_seed(3))
    ref = (prep.augment(x.float().div_(255), torch.Generator().manual_seed(3)) - prep.mean) / prep.std
    assert torch.equal(got, ref)
    assert not torch.equal(got, prep(x)), "training batches are augmented"


class _NanAt(torch.nn.Module):
    """Cross-entropy, NaN from the ``step``-th call on (a loss gone non-finite)."""

    def __init__(self, step: int):
        super().__init__()
        self.step, self.calls = step, 0

    def forward(self, logits, target):
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
        self.calls += 1
        return loss * float("nan") if self.calls > self.step else loss


def _nan_setup(mixed_precision: str, lr: float):
    accelerator, model, prep = _setup(mixed_precision, False)
    loader = make_loader(_split((24, 12, 4)), 8, drop_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    return accelerator, model, loader, opt, prep


@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
def test_non_finite_loss_stops_the_epoch(fresh_accelerate, mixed_precision):
    """A NaN loss ends the epoch on a one-line error naming the epoch, step and precision, not a NaN mean."""
    from ltzoo.training.numerics import NonFiniteTraining

    accelerator, model, loader, opt, prep = _nan_setup(mixed_precision, 0.05)
    with pytest.raises(NonFiniteTraining) as info:
        train_one_epoch(accelerator, model, loader, _NanAt(2), opt, prep, epoch=4, progress=False)
    assert (info.value.epoch, info.value.step, info.value.precision) == (4, 2, mixed_precision)


def test_absurd_learning_rate_stops_the_epoch(fresh_accelerate):
    from ltzoo.training.numerics import NonFiniteTraining

    accelerator, model, loader, opt, prep = _nan_setup("no", 1e30)
    with pytest.raises(NonFiniteTraining, match=r"epoch 0, step 1 \(fp32\); lower --lr"):
        train_one_epoch(accelerator, model, loader, torch.nn.CrossEntropyLoss(), opt, prep, progress=False)


def test_nan_gradient_in_the_last_step_is_caught(fresh_accelerate):
    """The loss of the last step is finite but its gradient is not (as bf16 conv kernels can make): the weights
    are NaN when the epoch ends, and the epoch raises instead of returning them."""
    from ltzoo.training.numerics import NonFiniteTraining

    accelerator, model, loader, opt, prep = _nan_setup("bf16", 0.05)
    steps, calls = len(loader), []

    def nan_at_last_step(grad):
        calls.append(1)
        return grad * float("nan") if len(calls) == steps else grad

    accel.unwrap(model).fc.weight.register_hook(nan_at_last_step)
    with pytest.raises(NonFiniteTraining, match=r"weights became non-finite in epoch 0 .*\(bf16 mixed precision\)"):
        train_one_epoch(accelerator, model, loader, torch.nn.CrossEntropyLoss(), opt, prep, progress=False)


def test_a_phase_says_when_it_starts_and_how_long_it_took(fresh_accelerate, caplog):
    import logging

    from accelerate import Accelerator

    from ltzoo.training.loop import duration, phase

    accelerator = Accelerator(cpu=True)
    log = logging.getLogger("ltzoo.test_phase")
    with caplog.at_level(logging.INFO, logger="ltzoo.test_phase"):
        with phase(accelerator, "merging 2 members", log) as t:
            pass
        with phase(accelerator, "nothing to do", log, show=False) as quiet:
            pass
        with pytest.raises(RuntimeError), phase(accelerator, "failing", log):
            raise RuntimeError("stop")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == ["merging 2 members ...", f"merging 2 members: done in {duration(t.seconds)}"]
    assert lines[2:] == ["failing ..."]  # no end line for a phase that raised, none at all for show=False
    assert t.seconds >= 0 and quiet.seconds >= 0
    assert (duration(4.24), duration(185), duration(3725)) == ("4.2 s", "3 min 05 s", "1 h 02 min")
