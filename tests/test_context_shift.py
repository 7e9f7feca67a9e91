"""CSA (`ltzoo.methods.context_shift`): the context bank, context shift, Grad-CAM masks, the folded head and a
training epoch."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from fixtures import class_images
from torch import nn

import ltzoo  # noqa: F401  (registers resnet20_cifar with timm)
from ltzoo.data import create_sampler
from ltzoo.data.loader import BatchPreprocess, make_loader
from ltzoo.data.splits import Split
from ltzoo.methods.context_shift import ContextBank, CSAModel, context_shift, fold_heads, gradcam_masks, shift_batch
from ltzoo.methods.losses import create_loss
from ltzoo.recipes.csa import (
    train_csa_epoch,
)  # the loop is the recipe's; ltzoo.methods.context_shift, the method, imports no loop


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and lose much on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tagged(n: int, start: int = 0) -> torch.Tensor:
    """Images (n, 1, 2, 2) whose every pixel is the image's tag, start, start + 1, ..."""
    return torch.arange(start, start + n, dtype=torch.float32)[:, None, None, None].expand(n, 1, 2, 2).clone()


def _tags(x: torch.Tensor) -> list[int]:
    return x[:, 0, 0, 0].long().tolist()


# ----------------------------------------------------------------------------------------- bank
def test_bank_admits_only_images_at_or_above_the_threshold():
    bank = ContextBank(capacity=10)
    probs = torch.tensor([0.9, 0.1, 0.85, 0.8, 0.79, 1.0])
    x = _tagged(6)
    assert bank.add(x, x * 0 + 0.5, probs, threshold=0.8) == 4
    assert _tags(bank.images) == [0, 2, 3, 5]
    assert bank.masks.shape == (4, 1, 2, 2) and bool((bank.masks == 0.5).all())
    assert bank.add(_tagged(3, 10), _tagged(3), torch.full((3,), 0.5)) == 0 and len(bank) == 4


def test_bank_is_fifo_with_its_capacity():
    bank = ContextBank(capacity=4)
    bank.add(_tagged(3), _tagged(3), torch.ones(3))
    bank.add(_tagged(3, 3), _tagged(3, 3), torch.ones(3))
    assert _tags(bank.images) == [2, 3, 4, 5] and _tags(bank.masks) == [2, 3, 4, 5]
    bank.add(_tagged(6, 10), _tagged(6, 10), torch.ones(6))  # more than the capacity at once: the newest stay
    assert _tags(bank.images) == [12, 13, 14, 15]
    with pytest.raises(ValueError, match="capacity"):
        ContextBank(0)


def test_bank_sample_and_state_round_trip():
    bank = ContextBank(capacity=8)
    with pytest.raises(RuntimeError, match="empty"):
        bank.sample(2)
    bank.add(_tagged(6), _tagged(6) / 10, torch.ones(6))
    assert bank.ready(6) and not bank.ready(7)
    x, m = bank.sample(6, torch.Generator().manual_seed(0))
    assert sorted(_tags(x)) == list(range(6))  # distinct pairs when the bank holds enough
    assert torch.equal(m, x / 10)  # images and masks stay paired
    assert len(bank.sample(9, torch.Generator().manual_seed(0))[0]) == 9  # with replacement beyond
    other = ContextBank()
    other.load_state_dict(bank.state_dict())
    assert other.capacity == 8 and torch.equal(other.images, bank.images) and torch.equal(other.masks, bank.masks)
    a, b = bank.sample(4, torch.Generator().manual_seed(3)), other.sample(4, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    empty = ContextBank(5)
    empty.load_state_dict(ContextBank(5).state_dict())
    assert len(empty) == 0


# ------------------------------------------------------------------------------------ context shift
def test_context_shift_endpoints_and_blend():
    gen = torch.Generator().manual_seed(0)
    x, bank_x = torch.randn(4, 3, 5, 5, generator=gen), torch.randn(4, 3, 5, 5, generator=gen)
    mask = torch.rand(4, 1, 5, 5, generator=gen)
    assert torch.equal(context_shift(x, bank_x, mask, 0.0), x)
    assert torch.equal(context_shift(x, bank_x, torch.ones_like(mask), 1.0), bank_x)
    mixed = context_shift(x, bank_x, mask, 0.3)
    assert torch.allclose(mixed, 0.3 * mask * bank_x + (1 - 0.3 * mask) * x)


def test_shift_batch_keeps_the_labels_and_draws_from_the_generator():
    bank = ContextBank()
    bank.add(torch.randn(16, 3, 4, 4), torch.rand(16, 1, 4, 4), torch.ones(16))
    x, y = torch.randn(8, 3, 4, 4), torch.arange(8) % 3
    y_before = y.clone()
    shifted, y_out, lam = shift_batch(x, y, bank, torch.Generator().manual_seed(5))
    assert torch.equal(y_out, y_before) and torch.equal(y, y_before)
    assert 0 <= lam < 1 and not torch.equal(shifted, x)
    gen = torch.Generator().manual_seed(5)  # the same draws by hand: pairs, then lam
    bx, bm = bank.sample(8, gen)
    assert torch.equal(shifted, context_shift(x, bx, bm, float(torch.rand((), generator=gen))))


# -------------------------------------------------------------------------------------- Grad-CAM
def _net(num_classes: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet20_cifar", num_classes=num_classes, **kw)


def test_gradcam_masks_shape_range_and_no_gradient_leak():
    net = _net().train()
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    masks, logits = gradcam_masks(net, net.get_classifier(), x, y)
    assert masks.shape == (6, 1, 8, 8) and masks.dtype == torch.float32
    assert bool(torch.isfinite(masks).all()) and masks.min() >= 0 and masks.max() <= 1
    assert masks.amin(dim=(1, 2, 3)).lt(masks.amax(dim=(1, 2, 3))).any()  # not constant: it locates something
    assert not masks.requires_grad and not logits.requires_grad
    assert all(p.grad is None for p in net.parameters())
    assert net.training  # mode restored
    with torch.no_grad():
        assert torch.allclose(logits, net.eval()(x), atol=1e-5)  # logits of the eval-mode pass


class _MapNet(nn.Module):
    """forward_features is the identity, forward_head a global average pool: Grad-CAM has a closed form."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)

    def forward_features(self, x):
        return x

    def forward_head(self, x, pre_logits=False):
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)


def test_gradcam_matches_its_closed_form():
    torch.manual_seed(1)
    net = _MapNet(4, 3)
    x, y = torch.randn(5, 4, 6, 6), torch.tensor([0, 1, 2, 1, 0])
    masks, _ = gradcam_masks(net, net.fc, x, y)
    # d logit_y / d map = W_y / HW everywhere, so cam = relu(sum_c W_yc x_c) up to a positive factor
    cam = F.relu(torch.einsum("nc,nchw->nhw", net.fc.weight[y].detach(), x))[:, None]
    lo, hi = cam.amin(dim=(2, 3), keepdim=True), cam.amax(dim=(2, 3), keepdim=True)
    expected = (1 - (cam - lo) / (hi - lo)) ** 2
    assert torch.allclose(masks, expected, atol=1e-5)
    assert torch.allclose(masks.amin(dim=(1, 2, 3)), torch.zeros(5), atol=1e-6)  # the peak is foreground


def test_gradcam_on_vit_tokens():
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, depth=1, num_classes=3)
    masks, logits = gradcam_masks(net, net.get_classifier(), torch.randn(2, 3, 16, 16), torch.tensor([0, 2]))
    assert masks.shape == (2, 1, 16, 16) and bool(torch.isfinite(masks).all()) and logits.shape == (2, 3)


# ------------------------------------------------------------------------------------- two heads
def test_fold_heads_gives_the_averaged_logits():
    torch.manual_seed(0)
    h1, h2 = nn.Linear(7, 5).double(), nn.Linear(7, 5).double()
    f = torch.randn(11, 7, dtype=torch.float64)
    fc = fold_heads(h1, h2)
    assert isinstance(fc, nn.Linear) and fc.weight.dtype == torch.float64
    assert torch.allclose(fc(f), (h1(f) + h2(f)) / 2, rtol=0, atol=1e-12)
    assert torch.equal(fc.weight, (h1.weight + h2.weight) / 2) and torch.equal(fc.bias, (h1.bias + h2.bias) / 2)
    nobias = fold_heads(nn.Linear(7, 5, bias=False), nn.Linear(7, 5, bias=False))
    assert nobias.bias is None
    with pytest.raises(ValueError, match="differ in shape"):
        fold_heads(nn.Linear(7, 5), nn.Linear(7, 4))


def test_csa_model_exports_plain_timm_with_the_averaged_logits():
    model = CSAModel(_net())
    with torch.no_grad():
        model.head2.weight.add_(0.5)  # heads that differ
    model.eval()
    x = torch.randn(4, 3, 8, 8)
    plain = model.export().eval()
    assert type(plain) is type(model.net) and isinstance(plain.get_classifier(), nn.Linear)
    assert set(plain.state_dict()) == set(_net().state_dict())  # no second head: loads into a fresh timm model
    with torch.no_grad():
        f = model.features(x)
        assert torch.allclose(plain(x), (model.head1(f) + model.head2(f)) / 2, atol=1e-5)
        assert torch.allclose(model(x), plain(x), atol=1e-5)
        z1, z2 = model(x, x.flip(0))
        assert torch.allclose(z1, model.head1(f), atol=1e-5) and z2.shape == z1.shape
    assert not torch.equal(plain.get_classifier().weight, model.head1.weight)  # export leaves the model as it was
    with pytest.raises(TypeError, match="nn.Linear classifier"):
        CSAModel(timm.create_model("resnet20_cifar", num_classes=0))


# --------------------------------------------------------------------------------------- training
COUNTS = [48, 16, 8]


def _setup(seed: int = 0):
    rng = np.random.default_rng(0)
    x = np.concatenate([class_images(c, n, (8, 8), 3, rng) for c, n in enumerate(COUNTS)])
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    split = Split("train", y, images=torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    acc = Accelerator(cpu=True)
    model = CSAModel(_net(3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)  # no weight decay: zero gradients change nothing
    loaders = [
        make_loader(split, 8, create_sampler(name, y, 3, seed=seed), drop_last=True)
        for name in ("instance", "balanced")
    ]
    model, opt, *loaders = acc.prepare(model, opt, *loaders)
    prep = BatchPreprocess((0.5,) * 3, (0.25,) * 3, crop_padding=1)
    return acc, model, opt, loaders, prep, create_loss("ce", COUNTS)


def _epoch(setup, bank, epoch, **kw):
    acc, model, opt, (inst, bal), prep, loss = setup
    for dl in (inst, bal):
        dl.set_epoch(epoch)  # accelerate hands the epoch to the sampler
    return train_csa_epoch(
        acc,
        model,
        inst,
        bal,
        loss,
        opt,
        prep,
        bank,
        epoch=epoch,
        progress=False,
        **{"warmup_epochs": 1, "threshold": 0.5, **kw},
    )


def test_train_csa_epoch_learns_fills_the_bank_and_shifts_after_warmup():
    setup = _setup()
    model, bank = setup[1], ContextBank(capacity=16)
    head2_start, body_start = model.head2.weight.detach().clone(), copy.deepcopy(model.net.state_dict())
    first = _epoch(setup, bank, 0)
    assert first["images"] == 72 and first["shifted_steps"] == 0
    assert torch.equal(model.head2.weight, head2_start)  # branch 2 waits for the shift (as the authors' code)
    stats = [first] + [_epoch(setup, bank, e) for e in range(1, 5)]
    assert stats[-1]["loss1"] < first["loss1"]
    assert sum(s["admitted"] for s in stats) > 0 and len(bank) == 16
    assert any(s["shifted_steps"] > 0 for s in stats[1:])
    assert not torch.equal(model.head2.weight, head2_start)
    assert any(not torch.equal(v, model.net.state_dict()[k]) for k, v in body_start.items())


def test_train_csa_epoch_resumes_exactly_from_saved_states():
    straight, bank = _setup(), ContextBank(capacity=16)
    for e in range(3):
        _epoch(straight, bank, e, branch2_before_shift=True)
    first, bank1 = _setup(), ContextBank(capacity=16)
    for e in range(2):
        _epoch(first, bank1, e, branch2_before_shift=True)
    resumed, bank2 = _setup(), ContextBank(capacity=16)
    resumed[1].load_state_dict(first[1].state_dict())
    resumed[2].load_state_dict(first[2].state_dict())
    bank2.load_state_dict(bank1.state_dict())
    _epoch(resumed, bank2, 2, branch2_before_shift=True)
    for k, v in straight[1].state_dict().items():
        assert torch.equal(v, resumed[1].state_dict()[k]), k
    assert torch.equal(bank.images, bank2.images)


def test_train_csa_epoch_stops_on_a_non_finite_loss():
    """CSA's epoch is watched like stage 1's: a NaN loss ends it on one line naming the epoch and step."""
    from ltzoo.training.numerics import NonFiniteTraining

    *setup, _ = _setup()
    calls = []

    def nan_from_step_3(logits, y):
        calls.append(1)
        return F.cross_entropy(logits, y) * (float("nan") if len(calls) > 3 else 1.0)

    with pytest.raises(NonFiniteTraining, match=r"at epoch 2, step 3 \(fp32\); lower --lr"):
        _epoch((*setup, nan_from_step_3), ContextBank(capacity=16), 2)


TWO_PROCESS_SCRIPT = """
import sys
import torch
from accelerate import Accelerator
sys.path.insert(0, {tests!r})
import test_context_shift as t

acc = Accelerator()
setup = t._setup()
bank = t.ContextBank(capacity=16)
stats = [t._epoch(setup, bank, e) for e in range(3)]
torch.save({{"bank": bank.state_dict(), "model": acc.unwrap_model(setup[1]).state_dict(), "stats": stats}},
           {out!r} + f"/rank{{acc.process_index}}.pt")
"""


@pytest.mark.slow
def test_two_processes_share_one_bank(tmp_path):
    """Under 2 processes the admitted images are gathered: both hold the same bank, so one checkpoint resumes both."""
    import subprocess

    from launching import launch_cmd, recipe_env

    script = tmp_path / "two.py"
    script.write_text(TWO_PROCESS_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    proc = subprocess.run(
        launch_cmd(script, [], processes=2),
        env=recipe_env(tmp_path / "hf"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt", weights_only=False) for i in (0, 1))
    assert torch.equal(r0["bank"]["images"], r1["bank"]["images"]) and len(r0["bank"]["images"]) == 16
    assert torch.equal(r0["bank"]["masks"], r1["bank"]["masks"])
    for k, v in r0["model"].items():  # parameters agree (DDP); batch-norm buffers are each process's own
        assert "running_" in k or "num_batches" in k or torch.equal(v, r1["model"][k]), k
    assert r0["stats"] == [{**s, "seconds": r0["stats"][i]["seconds"]} for i, s in enumerate(r1["stats"])]
    assert r0["stats"][0]["images"] == 2 * (72 // 2 // 8) * 8 and r0["stats"][-1]["shifted_steps"] > 0


def test_bank_state_saves_channels_last_batches(tmp_path):
    """Batches of an RGB model in channels_last fill the bank; its state still saves as safetensors."""
    from safetensors.torch import load_file, save_file

    bank = ContextBank(4)
    images = torch.rand(4, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    masks = torch.rand(4, 1, 6, 6).contiguous(memory_format=torch.channels_last)
    bank.add(images, masks, torch.ones(4))
    save_file(bank.state_dict(), str(tmp_path / "bank.safetensors"))
    restored = ContextBank(4)
    restored.load_state_dict(load_file(str(tmp_path / "bank.safetensors")))
    assert torch.equal(restored.images, bank.images) and torch.equal(restored.masks, bank.masks)
