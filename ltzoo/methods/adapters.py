"""Parameter-efficient fine-tuning of timm models through Hugging Face peft, and its export as plain timm.

    spec = AdapterSpec("lora", rank=8, alpha=16)
    net = wrap(model, spec)          # peft's LoRA on the family's default targets; the classifier trains too
    ...train net...
    save_adapter(net, spec, run_dir / "adapter")      # the adapter alone (kilobytes to megabytes)
    plain = merged(net, spec)        # peft's merge_and_unload: a plain timm model, no adapter tensors

Methods (``--peft``; the flags are declared in `ltzoo.recipes.flags.add_finetune_flags`):
- ``lora`` (Hu et al., 2022), ``loha`` (LoHa, Hyeon-Woo et al., 2022) and ``ia3`` (Liu et al., 2022):
  peft's, on the target modules (`default_targets`: a ViT's attention and MLP linears, the convolutions
  of a ResNet, the pointwise convolutions (MLP linears) of a ConvNeXt; ``--peft-targets`` overrides);
- ``bias``: bias-only tuning (BitFit, Ben Zaken et al., 2022), no adapter module: every bias trains;
- ``head``: the classifier alone (a linear probe of the frozen backbone).
In every method the classifier trains (peft's ``modules_to_save``), and the rest of the network is frozen,
its BatchNorm statistics included (`freeze_norm_statistics`): the adapter and the base weights alone give
the trained model back.

Merging. Each of these methods changes a weight by an additive delta, W = W0 + dW (LoRA: dW = s B A;
LoHa: a Hadamard product of two low-rank products; IA3: W0 (l - 1), a per-channel scaling). Merging
(``merge_and_unload``) writes W0 + dW into the layer, so the average of M merged models is
W0 + mean_i dW_i: averaging merged weights (BTM's merge over adapter members, `ltzoo.methods.merge`) averages
the updates exactly. It is not an average of the factors (mean B times mean A is another matrix), and
the averaged LoRA update has rank up to M r, not r: the merge is a full weight, not a LoRA adapter.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ltzoo.errors import UserError, one_line

_logger = logging.getLogger(__name__)

#: The methods of ``--peft`` (``none``: train every weight).
METHODS = ("none", "lora", "loha", "ia3", "bias", "head")
#: The methods peft implements (the others only choose which parameters train).
PEFT_METHODS = ("lora", "loha", "ia3")
#: The module types peft's LoRA, LoHa and IA3 can wrap.
WRAPPABLE = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class AdapterSpec:
    """What ``--peft`` and its flags ask for."""

    method: str = "none"
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] | None = None  # None: `default_targets`

    @property
    def enabled(self) -> bool:
        return self.method != "none"


def spec_from_args(args: argparse.Namespace) -> AdapterSpec:
    """The `AdapterSpec` of parsed flags (``--peft none`` when the recipe has no such flag)."""
    return AdapterSpec(
        getattr(args, "peft", "none"),
        getattr(args, "lora_rank", 8),
        getattr(args, "lora_alpha", 16.0),
        tuple(args.peft_targets) if getattr(args, "peft_targets", None) else None,
    )


# ------------------------------------------------------------------------------------------ targets
def classifier_names(model: nn.Module) -> list[str]:
    """The module names of the classifier (timm's pretrained_cfg ``classifier``)."""
    head = getattr(model, "pretrained_cfg", {}).get("classifier") or "head"
    names = [head] if isinstance(head, str) else list(head)
    modules = dict(model.named_modules())
    found = [n for n in names if n in modules]
    if not found:
        raise UserError(
            f"{type(model).__name__} has no classifier module named {names}",
            "use a timm classification model (its pretrained_cfg names the classifier)",
        )
    return found


def candidate_modules(model: nn.Module) -> list[str]:
    """Names of the modules peft can adapt (Linear and Conv2d layers), the classifier aside."""
    heads = classifier_names(model)
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, WRAPPABLE) and n and not any(n == h or n.startswith(h + ".") for h in heads)
    ]


def _matches(name: str, target: str) -> bool:
    """peft's rule for a list of target names: the full name or its last components."""
    return name == target or name.endswith("." + target)


def default_targets(model: nn.Module) -> list[str]:
    """The modules adapted by default, by architecture family (the classifier is trained whole, not adapted).

    ViT: the attention's qkv and output projections and the MLP's linears; ConvNeXt: its MLP linears
    (the pointwise convolutions; depthwise ones are left alone); ResNet and other convolutional nets:
    every convolution. Anything else: every Linear and Conv2d layer.
    """
    names = candidate_modules(model)
    family = type(model).__name__.lower()
    if "visiontransformer" in family or "vit" in family:
        chosen = [n for n in names if re.search(r"\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))$", n)]
    elif "convnext" in family:
        chosen = [n for n in names if re.search(r"\.mlp\.(fc1|fc2)$", n)]
    else:
        chosen = [n for n in names if isinstance(model.get_submodule(n), nn.Conv2d)]
    return chosen or names


def resolve_targets(model: nn.Module, targets: Sequence[str] | None) -> list[str]:
    """The full names of the modules ``targets`` (names or suffixes) pick, or `default_targets`.

    Raises:
        UserError: a target that matches no module, naming the modules that would.
    """
    if not targets:
        return default_targets(model)
    names = candidate_modules(model)
    unmatched = [t for t in targets if not any(_matches(n, t) for n in names)]
    if unmatched:
        suffixes = sorted({n.split(".")[-1] for n in names})
        shown = ", ".join(suffixes[:12]) + (f" and {len(suffixes) - 12} more" if len(suffixes) > 12 else "")
        raise UserError(
            f"--peft-targets {' '.join(unmatched)} match{'es' if len(unmatched) == 1 else ''} no Linear or "
            f"Conv2d module of {model.pretrained_cfg.get('architecture', type(model).__name__)}",
            f"name modules it has (by name or suffix: {shown}; e.g. {names[0] if names else '-'}), or "
            "leave --peft-targets unset for the family's default",
        )
    return [n for n in names if any(_matches(n, t) for t in targets)]


# ------------------------------------------------------------------------------------------ wrapping
def freeze_norm_statistics(model: nn.Module) -> None:
    """Keep every BatchNorm in eval mode (running statistics frozen) even when ``model.train()`` is called."""

    def stay_eval(module: nn.Module, _inputs) -> None:
        module.training = False

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(stay_eval)


def peft_config(model: nn.Module, spec: AdapterSpec):
    """peft's config of ``spec`` for ``model``: its targets (`resolve_targets`), the classifier saved whole."""
    import peft

    targets = resolve_targets(model, spec.targets)
    heads = classifier_names(model)
    if spec.method == "lora":
        return peft.LoraConfig(
            r=spec.rank, lora_alpha=spec.alpha, lora_dropout=0.0, target_modules=targets, modules_to_save=heads
        )
    if spec.method == "loha":
        return peft.LoHaConfig(r=spec.rank, alpha=spec.alpha, target_modules=targets, modules_to_save=heads)
    if spec.method == "ia3":
        # IA3 scales a feed-forward layer's input and any other layer's output; a ViT's MLP output layers are
        # its feed-forward ones
        ff = [n for n in targets if n.endswith("mlp.fc2")]
        return peft.IA3Config(target_modules=targets, feedforward_modules=ff, modules_to_save=heads)
    raise ValueError(f"{spec.method} is not a peft method ({', '.join(PEFT_METHODS)})")


def wrap(model: nn.Module, spec: AdapterSpec) -> nn.Module:
    """``model`` ready for ``spec``'s fine-tuning: peft's model for lora/loha/ia3, the model itself with only
    its biases (bias) or classifier (head) trainable; norm statistics frozen. ``--peft none``: unchanged.

    Raises:
        UserError: targets that match nothing, or a model or option peft cannot wrap.
    """
    if not spec.enabled:
        return model
    heads = classifier_names(model)
    freeze_norm_statistics(model)
    if spec.method in ("bias", "head"):
        head_params = {id(p) for h in heads for p in model.get_submodule(h).parameters()}
        for name, p in model.named_parameters():
            p.requires_grad = id(p) in head_params or (spec.method == "bias" and name.endswith("bias"))
        return model
    import peft

    config = peft_config(model, spec)
    targets = list(config.target_modules)
    try:
        net = peft.get_peft_model(model, config)
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as exc:
        raise UserError(
            f"peft cannot wrap {model.pretrained_cfg.get('architecture', type(model).__name__)} with "
            f"--peft {spec.method} ({one_line(exc)[:240]})",
            "choose other --peft-targets (Linear or Conv2d layers) or another --peft method",
        ) from exc
    _logger.info(
        "--peft %s on %d modules: %s trainable parameters of %s",
        spec.method,
        len(targets),
        *[f"{n:,}" for n in net.get_nb_trainable_parameters()],
    )
    return net


def base_model(model: nn.Module) -> nn.Module:
    """The timm model inside a peft wrapper (the model itself otherwise); its parameter names are timm's,
    adapter parameters among them (for timm's layer-wise decay, which groups by name)."""
    import peft

    return model.get_base_model() if isinstance(model, peft.PeftModel) else model


def trainable_state(model: nn.Module, spec: AdapterSpec) -> dict[str, torch.Tensor]:
    """What ``spec``'s fine-tuning changed, and nothing else: peft's adapter state dict (adapter tensors and
    the classifier), or the trainable tensors of bias / head. Small: a member file of kilobytes."""
    import peft

    if isinstance(model, peft.PeftModel):
        sd = peft.get_peft_model_state_dict(model)
    else:
        sd = {n: p for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().contiguous().cpu() for k, v in sd.items()}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a `trainable_state` into a model wrapped by `wrap` with the same spec."""
    import peft

    if isinstance(model, peft.PeftModel):
        result = peft.set_peft_model_state_dict(model, state)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"adapter state has tensors the model lacks: {result.unexpected_keys[:3]}")
        return
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"adapter state has tensors the model lacks: {sorted(missing)[:3]}")
    model.load_state_dict(state, strict=False)


def merged(model: nn.Module) -> nn.Module:
    """The plain timm model with the adapter merged in (peft's ``merge_and_unload``; bias/head/none: itself).

    Every parameter trains again afterwards (a plain model, as loaded from its export)."""
    import peft

    net = model.merge_and_unload() if isinstance(model, peft.PeftModel) else model
    for p in net.parameters():
        p.requires_grad = True
    return net


def merged_state(base: nn.Module, spec: AdapterSpec, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The full state dict of ``base`` with the adapter ``state`` (a member's `trainable_state`) merged in."""
    net = wrap(copy.deepcopy(base), spec)
    load_trainable_state(net, state)
    return {k: v.detach().contiguous().cpu() for k, v in merged(net).state_dict().items()}


def save_adapter(model: nn.Module, spec: AdapterSpec, folder: str | Path) -> None:
    """The adapter alone into ``folder``: peft's ``save_pretrained`` (adapter_config.json +
    adapter_model.safetensors), or for bias/head the trained tensors as adapter_model.safetensors."""
    import peft
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, peft.PeftModel):
        model.save_pretrained(str(folder))
    else:
        save_file(
            trainable_state(model, spec), str(folder / "adapter_model.safetensors"), metadata={"peft": spec.method}
        )


def describe(args: argparse.Namespace, model: nn.Module) -> str:
    """The run's fine-tuning settings in one line, for its first lines: where the weights come from, what
    trains, the optimiser and schedule, and the input the model gets."""
    start = (
        "timm's Hub weights"
        if getattr(args, "pretrained", False)
        else f"weights file {args.pretrained_file}"
        if getattr(args, "pretrained_file", None)
        else f"--init {args.init}"
        if getattr(args, "init", None)
        else "random initialisation"
    )
    spec = spec_from_args(args)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    what = {
        "none": "every weight",
        "lora": f"LoRA r={spec.rank} alpha={spec.alpha:g} + classifier",
        "loha": f"LoHa r={spec.rank} alpha={spec.alpha:g} + classifier",
        "ia3": "IA3 + classifier",
        "bias": "biases + classifier",
        "head": "the classifier (linear probe)",
    }[spec.method]
    cfg = getattr(model, "pretrained_cfg", {})
    decay = f", layer decay {args.layer_decay:g}" if getattr(args, "layer_decay", None) else ""
    return (
        f"fine-tuning from {start}: trains {what} ({trainable:,} of {total:,} parameters); "
        f"{args.optimizer} lr {args.lr:g} weight decay {args.weight_decay:g}{decay}, {args.epochs} epochs, "
        f"{args.warmup_epochs:g} warm-up; input {tuple(cfg.get('input_size', ()))} mean {tuple(cfg.get('mean', ()))} "
        f"std {tuple(cfg.get('std', ()))} {cfg.get('interpolation', '')}"
        + (f"; config {args.config}" if getattr(args, "config", None) else "")
    )


@contextlib.contextmanager
def merged_members(base: nn.Module, spec: AdapterSpec, members: Sequence[Path], folder: Path) -> Iterator[list[Path]]:
    """The full weights of adapter members (`trainable_state` files trained from ``base``), each merged into
    ``base`` (`merged_state`) and written to a temporary folder inside ``folder``, removed after the block.
    With ``spec`` disabled, the members themselves (already full weights)."""
    if not spec.enabled:
        yield list(members)
        return
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory(dir=folder, prefix=".merged-") as tmp:
        paths = []
        for p in members:
            out = Path(tmp) / Path(p).name
            save_file(merged_state(base, spec, load_file(str(p))), str(out))
            paths.append(out)
        yield paths
