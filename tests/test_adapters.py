"""ltzoo.methods.adapters on tiny random ViTs, ResNets and ConvNeXts: targets, wrapping, what trains, merged export,
member states, and the merge of adapter members (linear in the update)."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import ltzoo.models  # noqa: F401
from ltzoo.errors import UserError
from ltzoo.methods import adapters as ad
from ltzoo.methods.merge import average_checkpoints


def tiny_vit(num_classes: int = 3) -> nn.Module:
    return timm.create_model(
        "vit_pico_patch4_28", embed_dim=16, depth=2, num_heads=2, in_chans=1, num_classes=num_classes
    )


def tiny_resnet(num_classes: int = 3) -> nn.Module:
    return timm.create_model("resnet20_cifar", in_chans=1, num_classes=num_classes)


def tiny_convnext(num_classes: int = 3) -> nn.Module:
    return timm.create_model(
        "convnext_atto", dims=(8, 16, 32, 64), depths=(1, 1, 1, 1), in_chans=1, num_classes=num_classes
    )


MODELS = {"vit": tiny_vit, "resnet": tiny_resnet, "convnext": tiny_convnext}
SIZE = {"vit": 28, "resnet": 16, "convnext": 32}  # ViT-Pico's fixed 28 px; ConvNeXt downsamples 32x


def _train(net: nn.Module, steps: int = 3, seed: int = 0, size: int = 28) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 1, size, size, generator=g), torch.randint(0, 3, (8,), generator=g)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()


def test_default_targets_per_family():
    vit = ad.default_targets(tiny_vit())
    assert vit == [f"blocks.{b}.{m}" for b in range(2) for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]
    res = tiny_resnet()
    assert ad.default_targets(res) == [n for n, m in res.named_modules() if isinstance(m, nn.Conv2d)]
    cnx = ad.default_targets(tiny_convnext())
    assert cnx and all(n.endswith(("mlp.fc1", "mlp.fc2")) for n in cnx)
    assert not any("head" in n or n == "fc" for n in vit + cnx), "the classifier is trained whole, not adapted"


def test_targets_by_suffix_and_unmatched():
    assert ad.resolve_targets(tiny_vit(), ["qkv"]) == ["blocks.0.attn.qkv", "blocks.1.attn.qkv"]
    with pytest.raises(UserError, match=r"--peft-targets attention matches no Linear or Conv2d module .*qkv") as err:
        ad.resolve_targets(tiny_vit(), ["qkv", "attention"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "family,method",
    [(f, m) for f in ("vit", "resnet") for m in ("lora", "loha", "ia3", "bias", "head")]
    + [("convnext", "lora"), ("convnext", "head")],
)
def test_wrap_train_merge(family, method):
    torch.manual_seed(0)
    model = MODELS[family]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = ad.AdapterSpec(method, rank=4, alpha=8)
    net = ad.wrap(model, spec)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(
        (
            "head" in n
            or ".fc." in n
            or n.startswith("fc.")
            or "lora_" in n
            or "hada_" in n
            or "ia3_" in n
            or (method == "bias" and n.endswith("bias"))
        )
        for n in trainable
    ), trainable
    _train(net, size=SIZE[family])
    x = torch.randn(4, 1, SIZE[family], SIZE[family])
    with torch.no_grad():
        adapted = net(x)
    state = ad.trainable_state(net, spec)
    full_bytes = sum(v.numel() * v.element_size() for v in before.values())
    assert sum(v.numel() * v.element_size() for v in state.values()) < full_bytes, "smaller than the model (tiny dims)"
    plain = ad.merged(net)
    assert type(plain).__module__.startswith("timm") or type(plain).__module__.startswith("ltzoo.models")
    sd = plain.state_dict()
    assert sd.keys() == before.keys(), "no adapter tensors in the export"
    with torch.no_grad():
        assert torch.allclose(plain(x), adapted, atol=1e-4, rtol=1e-4)
    # norm statistics and frozen weights are those of the base
    for k, v in before.items():
        if "running_" in k:
            assert torch.equal(sd[k], v), k
    # the export loads into a plain model, strictly, and gives the same outputs
    fresh = MODELS[family]()
    fresh.load_state_dict(sd)
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(x), adapted, atol=1e-4, rtol=1e-4)


def test_member_state_round_trip():
    torch.manual_seed(0)
    base = tiny_vit()
    spec = ad.AdapterSpec("lora", 4, 8)
    net = ad.wrap(__import__("copy").deepcopy(base), spec)
    _train(net)
    state = ad.trainable_state(net, spec)
    assert all("lora_" in k or ".head." in k for k in state), sorted(state)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        ref = net(x)
        merged = ad.merged_state(base, spec, state)
        plain = tiny_vit()
        plain.load_state_dict(merged)
        assert torch.allclose(plain.eval()(x), ref, atol=1e-5)


def test_average_of_merged_lora_members_is_average_update():
    """Averaging merged members = W0 + mean(s B_i A_i); not W0 + s mean(B) mean(A), and of rank above r."""
    torch.manual_seed(0)
    base = tiny_vit()
    spec = ad.AdapterSpec("lora", 2, 4)
    states, deltas, factors = [], [], []
    for m in range(3):
        net = ad.wrap(__import__("copy").deepcopy(base), spec)
        _train(net, steps=4, seed=m)
        lin = net.base_model.model.blocks[0].attn.qkv
        a, b, s = lin.lora_A["default"].weight.detach(), lin.lora_B["default"].weight.detach(), lin.scaling["default"]
        deltas.append(s * b @ a)
        factors.append((a, b, s))
        states.append(ad.merged_state(base, spec, ad.trainable_state(net, spec)))
    avg = average_checkpoints(states)
    w0 = base.state_dict()["blocks.0.attn.qkv.weight"]
    mean_delta = torch.stack(deltas).mean(0)
    assert torch.allclose(avg["blocks.0.attn.qkv.weight"], w0 + mean_delta, atol=1e-6)
    factor_avg = (
        factors[0][2] * torch.stack([f[1] for f in factors]).mean(0) @ torch.stack([f[0] for f in factors]).mean(0)
    )
    assert not torch.allclose(mean_delta, factor_avg, atol=1e-6), "not the factors' average"
    assert torch.linalg.matrix_rank(mean_delta) > spec.rank, "the averaged update is not of rank r"


def test_bn_statistics_frozen_under_train():
    net = ad.wrap(tiny_resnet(), ad.AdapterSpec("lora", 2, 4))
    before = {k: v.clone() for k, v in net.state_dict().items() if "running_mean" in k}
    _train(net, size=16)
    after = {k: v for k, v in net.state_dict().items() if "running_mean" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_peft_cannot_wrap_is_one_line():
    with pytest.raises(
        UserError, match=r"peft cannot wrap convnext_atto with --peft lora \(.*groups.*\); choose other"
    ):
        ad.wrap(tiny_convnext(), ad.AdapterSpec("lora", 3, 4, ("conv_dw",)))


def test_none_is_untouched():
    model = tiny_vit()
    assert ad.wrap(model, ad.AdapterSpec()) is model and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--peft", "bias", "--lora-rank", "4"], "--lora-rank sets --peft lora or loha"),
        (["--peft", "head", "--peft-targets", "qkv"], "--peft-targets names the modules"),
        (["--peft", "lora", "--train-params", "classifier"], "--peft lora chooses what trains"),
        (
            ["--pretrained-file", "x.safetensors", "--init", "RUN"],
            "--pretrained-file starts --model from a weights file",
        ),
    ],
)
def test_check_adapter_args(argv, message):
    from ltzoo.recipes.flags import RecipeParser, add_finetune_flags, add_model_args, check_finetune, check_start

    p = RecipeParser("test")
    add_model_args(p)
    add_finetune_flags(p)
    p.add_argument("--train-params", default="all")
    args = p.parse_known_args(argv)[0]
    given = p.given(argv)
    assert message in (check_start(args, given) or check_finetune(args, given))


def test_layer_decay_through_timm():
    from ltzoo.training.optim import create_optimizer

    net = ad.wrap(tiny_vit(), ad.AdapterSpec("lora", 2, 4))
    opt = create_optimizer(net, "adamw", 1e-3, 0.05, layer_decay=0.5)
    scales = sorted({g.get("lr_scale", 1.0) for g in opt.param_groups})
    assert len(scales) > 2 and max(scales) == 1.0
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert ids == {id(p) for p in net.parameters() if p.requires_grad}, "the adapter and head only"
