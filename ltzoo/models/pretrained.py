"""Pretrained weights for a recipe's model: timm's Hub cache (``--pretrained``) or a local file
(``--pretrained-file``), and the input configuration that comes with them.

    net = create_pretrained("vit_small_patch16_224.augreg_in21k", num_classes=10)
    net = create_pretrained("resnet50", num_classes=10, pretrained_file="resnet50.safetensors")

A file is loaded the way timm's ``pretrained_cfg_overlay=dict(file=...)`` loads one (timm's
``load_pretrained``: the model's checkpoint filter, the first convolution adapted to the channels, the
classifier dropped when the classes differ), except that ltzoo reads it first: safetensors as they are,
``.pth``/``.bin`` with ``torch.load(weights_only=True)`` (timm's `load_state_dict`), so that a pickle
that is not a plain state dict is refused with one line, and a state dict that does not fit the model
names its first mismatching tensor.

``--pretrained`` looks in the Hugging Face cache first and loads from it with the Hub offline (no
request at all); weights that are not cached are asked for once, with a short timeout and no retries,
so that an offline machine answers in one line at once rather than after huggingface_hub's retries.

A model whose weights were loaded (from either source, or an ltzoo run folder made from them) takes its
images as those weights expect: the input size, mean, std and interpolation of its pretrained_cfg
(`weights_data_config`). The run folder's pretrained_cfg records the same values (with
``crop_pct`` 1.0: in-memory images are resized whole), so timm's own data config reproduces the
recipe's evaluation, and a later stage (``--init``) is fed the same way. In-process, such a model's
pretrained_cfg is marked by ``INPUT_KEY`` (not exported: timm's PretrainedCfg takes no unknown key).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

import timm
import torch
from torch import nn

from ltzoo.errors import UserError, one_line, user_error

_logger = logging.getLogger(__name__)

#: pretrained_cfg key marking a model whose input is its weights' (size, mean, std, interpolation).
INPUT_KEY = "ltzoo_input"
#: the value of INPUT_KEY: images are fed as the pretrained weights expect.
INPUT_FROM_WEIGHTS = "pretrained_cfg"
#: Seconds to wait for the Hub when weights are not cached (one attempt, no retries).
HUB_TIMEOUT_S = 5.0
#: Files timm looks for in a timm Hub repo, in its order.
HUB_WEIGHT_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin")


def create_pretrained(
    name: str,
    num_classes: int,
    pretrained_file: str | Path | None = None,
    *,
    channels: int | None = None,
    norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    **kwargs,
) -> nn.Module:
    """A timm model ``name`` with pretrained weights: timm's Hub weights or ``pretrained_file``.

    The model keeps the channels of its weights (3 for the Hub's image models) when the data has fewer:
    grayscale images are repeated to them on the batch (`ltzoo.data.loader.BatchPreprocess`). A file with
    fewer input channels than the data (``channels``; e.g. a grayscale model's weights, RGB images) gets a
    model with the data's channels, its first convolution adapted as timm adapts pretrained weights
    (``adapt_input_conv``: repeated over the channels and scaled, so a gray image gives the same features).
    Its pretrained_cfg is marked (``INPUT_KEY``) so its input follows the weights (`weights_data_config`).

    Args:
        channels: the data's input channels (None: the weights' channels, whatever the data).
        norm: the data's (mean, std), the normalisation of a file whose channels are not those of the
            architecture's default config (whose mean and std then describe other weights).

    Raises:
        UserError: an unknown name, weights not cached and the Hub unreachable, an unreadable or refused
            file, a state dict that does not fit the model.
    """
    if pretrained_file is not None:
        net = _from_file(name, num_classes, Path(pretrained_file), channels=channels, norm=norm, **kwargs)
    else:
        net = _from_hub(name, num_classes, **kwargs)
    net.pretrained_cfg = {**net.pretrained_cfg, INPUT_KEY: INPUT_FROM_WEIGHTS}
    return net


def _known(name: str) -> bool:
    return timm.is_model(name.split(".")[0])


def _check_name(name: str) -> None:
    if not _known(name):
        close = timm.list_models(f"*{name.split('.')[0].split('_')[0]}*")[:5]
        raise UserError(
            f"unknown timm model {name!r}" + (f" (close: {', '.join(close)})" if close else ""),
            "pass a name from timm.list_models()",
        )


# ------------------------------------------------------------------------------------------- a file
def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file, or from a ``.pth``/``.bin`` with ``weights_only=True``.

    Raises:
        UserError: a missing or unreadable file, or a pickle ``weights_only`` refuses (one that holds
            more than tensors: never unpickled here).
    """
    from timm.models import load_state_dict

    if not path.is_file():
        raise UserError(f"--pretrained-file {path} does not exist", "check the path")
    try:
        sd = load_state_dict(str(path), use_ema=False, weights_only=True)  # timm's reader: safetensors or torch.load
    except (pickle.UnpicklingError, RuntimeError) as exc:
        if not isinstance(exc, pickle.UnpicklingError) and "weights_only" not in str(exc):
            raise UserError(
                f"--pretrained-file {path} is not a readable torch state dict "
                f"({type(exc).__name__}: {one_line(exc)[:160]})",
                "pass a .safetensors file or a .pth/.bin state dict",
            ) from exc
        raise UserError(
            f"--pretrained-file {path} is a pickle that torch.load(weights_only=True) refuses "
            f"({one_line(exc).split('. ')[0][:160]}): it holds more than tensors, and ltzoo never "
            "unpickles arbitrary objects",
            "re-save it as a plain state dict (torch.save(model.state_dict(), ...)) or as safetensors, "
            "from code you trust",
        ) from exc
    except Exception as exc:
        err = user_error(exc)
        if err is not None:
            raise UserError(f"--pretrained-file {path}: {err}") from exc
        raise UserError(
            f"--pretrained-file {path} is neither a safetensors file nor a torch state dict "
            f"({type(exc).__name__}: {one_line(exc)[:160]})",
            "pass a .safetensors file or a .pth/.bin state dict",
        ) from exc
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(
            f"--pretrained-file {path} holds no state dict of tensors",
            "save the model's state_dict(), not the model or a training state",
        )
    return sd


def _from_file(
    name: str, num_classes: int, path: Path, channels: int | None = None, norm: tuple | None = None, **kwargs
) -> nn.Module:
    _check_name(name)
    sd = read_state_dict(path)
    cfg = timm.models.get_pretrained_cfg(name.split(".")[0])
    head = (cfg.classifier if cfg is not None else None) or "head"
    heads = (head,) if isinstance(head, str) else tuple(head)
    file_classes = next((int(sd[f"{h}.weight"].shape[0]) for h in heads if f"{h}.weight" in sd), num_classes)
    file_chans = _file_channels(name, sd)
    # more channels in the data than in the file: timm's load_pretrained adapts the first convolution from the
    # file's channels (the overlay's input_size) to the model's (adapt_input_conv); fewer: repeated on the batch
    in_chans = channels if channels is not None and channels > file_chans else file_chans
    if file_classes != num_classes:
        # a new classifier: the file's is replaced by a freshly initialised one here, rather than dropped by timm
        # (which then loads non-strictly, and a file of another architecture would load in part, silently)
        fresh = timm.create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs).state_dict()
        sd = {k: v for k, v in sd.items() if not any(k.startswith(h + ".") for h in heads)}
        sd.update({k: v for k, v in fresh.items() if any(k.startswith(h + ".") for h in heads)})
    # timm's load_pretrained, fed the state dict ltzoo read (strict; custom_load off: the file is a state dict,
    # not a checkpoint in the model's own format such as big_vision's .npz)
    overlay = dict(
        state_dict=sd,
        file=str(path),
        custom_load=False,
        num_classes=num_classes,
        input_size=(file_chans, *(cfg.input_size[1:] if cfg is not None else (224, 224))),
    )
    try:
        net = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=num_classes, in_chans=in_chans, **kwargs
        )
    except RuntimeError as exc:
        raise UserError(
            f"--pretrained-file {path} does not fit {name}: {first_mismatch(str(exc))}",
            f"pass weights saved from {name} (same architecture and sizes), or the --model they are for",
        ) from exc
    net_cfg = {k: v for k, v in net.pretrained_cfg.items() if k != "state_dict"}  # not into config.json
    net_cfg["input_size"] = (in_chans, *tuple(net_cfg["input_size"])[1:])
    if in_chans != file_chans:
        _logger.warning(
            "--pretrained-file %s has %d input channel(s) and the data %d: the first convolution of %s is "
            "adapted to them (timm's adapt_input_conv)",
            path,
            file_chans,
            in_chans,
            name,
        )
    if file_chans != (int(cfg.input_size[0]) if cfg is not None else 3):  # the architecture's mean/std: other weights'
        net_cfg.update(_normalisation(net_cfg, in_chans, norm))
    net.pretrained_cfg = net_cfg
    return net


def _normalisation(cfg: dict, in_chans: int, norm: tuple | None) -> dict:
    """The mean and std of ``in_chans`` input channels for weights the architecture's default config does not
    describe: the data's (``norm``), else the config's averaged over its channels."""
    if norm is not None and len(norm[0]) == len(norm[1]) == in_chans:
        return {"mean": tuple(float(v) for v in norm[0]), "std": tuple(float(v) for v in norm[1])}
    out = {}
    for key, default in (("mean", 0.5), ("std", 0.5)):
        values = tuple(cfg.get(key) or (default,))
        out[key] = (sum(values) / len(values),) * in_chans
    return out


def _file_channels(name: str, sd: dict) -> int:
    """The input channels of the file's first convolution (the model is built with them)."""
    cfg = timm.models.get_pretrained_cfg(name.split(".")[0])
    first = getattr(cfg, "first_conv", None) if cfg is not None else None
    firsts = (first,) if isinstance(first, str) else tuple(first or ())
    for conv in firsts:
        w = sd.get(f"{conv}.weight")
        if w is not None and w.ndim == 4:
            return int(w.shape[1])
    return 3


_TORCH_ERROR = re.compile(
    r"(Missing key\(s\)|Unexpected key\(s\)) in state_dict: \"([^\"]+)\"|"
    r"size mismatch for ([^:]+): copying a param with shape (torch\.Size\(\[[^\]]*\]\)) from "
    r"checkpoint, the shape in current model is (torch\.Size\(\[[^\]]*\]\))"
)


def first_mismatch(message: str) -> str:
    """The first tensor that does not fit, from torch's ``load_state_dict`` error message."""
    found = list(_TORCH_ERROR.finditer(message))
    if not found:
        return one_line(message)[:300]
    m = found[0]
    more = message.count('", "') + len(found) - 1
    tail = f" (and {more} more)" if more > 0 else ""
    if m.group(1):
        where = "missing from the file" if m.group(1).startswith("Missing") else "in the file, not in the model"
        return f"first mismatch: {m.group(2)} is {where}{tail}"
    shape = lambda s: tuple(int(x) for x in re.findall(r"\d+", s))  # noqa: E731
    return (
        f"first mismatch: {m.group(3)} has shape {shape(m.group(4))} in the file and "
        f"{shape(m.group(5))} in the model{tail}"
    )


# -------------------------------------------------------------------------------------- the Hub cache
def hub_weights_cached(hf_hub_id: str) -> bool:
    """True if timm's weights of the Hub repo ``hf_hub_id`` (``org/name``) are in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(hf_hub_id, f), str) for f in HUB_WEIGHT_FILES)


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """huggingface_hub in offline mode inside the block (the cache only, no request)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _hub_reachable(hf_hub_id: str) -> str | None:
    """None if the Hub answers for the repo's weights within `HUB_TIMEOUT_S` (one try), else why not."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "the Hub is offline (HF_HUB_OFFLINE=1)"
    for filename in HUB_WEIGHT_FILES:
        try:
            get_hf_file_metadata(hf_hub_url(hf_hub_id, filename), timeout=HUB_TIMEOUT_S, retry_on_errors=False)
            return None
        except Exception as exc:  # noqa: BLE001 - classified below
            from huggingface_hub import errors as hf

            if isinstance(exc, hf.EntryNotFoundError):
                continue  # the next file name timm tries
            if isinstance(exc, (hf.RepositoryNotFoundError, hf.GatedRepoError)):
                return None  # reachable: timm's own call reports it
            return f"the Hub cannot be reached ({type(exc).__name__})"
    return None


def _from_hub(name: str, num_classes: int, **kwargs) -> nn.Module:
    _check_name(name)
    cfg = timm.models.get_pretrained_cfg(name) or timm.models.get_pretrained_cfg(name.split(".")[0])
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:
        raise UserError(
            f"timm has no pretrained weights for {name}",
            "drop --pretrained, pick a model with weights (timm.list_models(pretrained=True)), or pass "
            "--pretrained-file",
        )
    offline = hub_weights_cached(hub_id)
    if not offline:
        why = _hub_reachable(hub_id)
        if why is not None:
            raise UserError(
                f"the pretrained weights of {name} ({hub_id}) are not in the local cache and {why}",
                'download them once online (python -c "import timm; timm.create_model('
                f"'{name}', pretrained=True)\"), or pass a local file with --pretrained-file",
            )
    try:
        with hub_offline() if offline else contextlib.nullcontext():
            return timm.create_model(
                name, pretrained=True, num_classes=num_classes, in_chans=int(cfg.input_size[0]), **kwargs
            )
    except Exception as exc:
        err = user_error(exc, hub_id=f"{hub_id} (pretrained weights of {name})")
        if err is None:
            raise
        raise err from exc


# ------------------------------------------------------------------------------------ the input
def mark_input_from_weights(model: nn.Module) -> bool:
    """Feed ``model`` as its pretrained_cfg says (`weights_data_config`), if that cfg is whole (an input size
    and one mean and std per input channel); returns whether it is."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size, mean, std = cfg.get("input_size"), cfg.get("mean"), cfg.get("std")
    if not size or not mean or not std or len(mean) != size[0] or len(std) != size[0]:
        return False
    model.pretrained_cfg = {**cfg, INPUT_KEY: INPUT_FROM_WEIGHTS}
    return True


def input_from_weights(model: nn.Module) -> bool:
    """True if ``model``'s input is its pretrained weights' (marked by `create_pretrained`)."""
    return getattr(model, "pretrained_cfg", {}).get(INPUT_KEY) == INPUT_FROM_WEIGHTS


def weights_data_config(model: nn.Module, in_memory: bool) -> dict:
    """The evaluation preprocessing of a model fed as its weights expect, in timm's data-config terms.

    In-memory images are resized whole to the input size (``crop_pct`` 1.0, timm's eval transform then
    resizes and its centre crop keeps everything); file-backed ones take timm's resolved config of the
    model (resize, centre crop). Mean, std and interpolation are the weights'.
    """
    cfg = timm.data.resolve_data_config({}, model=model)
    out = {
        "input_size": tuple(cfg["input_size"]),
        "mean": tuple(cfg["mean"]),
        "std": tuple(cfg["std"]),
        "interpolation": cfg.get("interpolation", "bicubic"),
        "crop_mode": "center",
        "crop_pct": 1.0 if in_memory else cfg.get("crop_pct", 0.875),
    }
    return out
