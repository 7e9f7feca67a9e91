"""The run folder, the contract between stages.

A run folder holds ``config.json`` + ``model.safetensors`` in timm's Hub format (written by timm's
``save_for_hf``, with ``label_names`` and a ``pretrained_cfg`` that describes exactly the evaluation
preprocessing), ``results.json`` (metrics on validation and test, training class counts, wall time,
peak memory, the resolved config), ``run_config.yaml`` (the resolved config, seed and git commit),
the per-class recall plot and the log. It loads with
``timm.create_model('local-dir:RUN_DIR', pretrained=True)``, and later stages take it, or a hub id,
as ``--init``.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``): a
crash leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import timm
import torch
import yaml
from torch import nn

from ltzoo.data.splits import LTDataset

_logger = logging.getLogger(__name__)

RESULTS = "results.json"
RUN_CONFIG = "run_config.yaml"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (Path, torch.device)):
        return str(v)
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, (set, tuple)):
        return list(v)
    raise TypeError(f"not JSON serialisable: {type(v)}")


def read_json(path: str | Path) -> dict:
    """Read a JSON file with a clear error when it is missing or corrupt."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: is this a finished ltzoo run folder?") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); the file is corrupt, re-run the stage that wrote it") from None


def git_commit() -> str | None:
    """The git commit of the ltzoo source tree, with '-dirty' when it has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def write_run_config(run_dir: str | Path, config: dict) -> dict:
    """Write the resolved config, with the git commit, as ``run_config.yaml``; returns what was written."""
    config = {**config, "git_commit": git_commit()}
    with atomic_path(Path(run_dir) / RUN_CONFIG) as tmp:
        tmp.write_text(yaml.safe_dump(json.loads(json.dumps(config, default=_jsonable)), sort_keys=False))
    return config


# ------------------------------------------------------------------------------------------ models
def data_config(ds: LTDataset, model: nn.Module | None = None) -> dict:
    """The evaluation preprocessing of a dataset, in timm's data-config terms.

    In-memory datasets are evaluated at their native size with no resize or crop (crop_pct 1.0): timm's
    ``resolve_data_config`` + ``create_transform`` on a PIL image then reproduce ltzoo's own
    preprocessing exactly. File-backed datasets use the model's default input size and crop.
    """
    if ds.train.in_memory:
        return {"input_size": tuple(ds.input_size), "mean": tuple(ds.mean), "std": tuple(ds.std),
                "crop_pct": 1.0, "interpolation": "bilinear", "crop_mode": "center"}
    cfg = timm.data.resolve_data_config({}, model=model) if model is not None else {}
    return {"input_size": cfg.get("input_size", ds.input_size), "mean": tuple(ds.mean), "std": tuple(ds.std),
            "crop_pct": cfg.get("crop_pct", 0.875), "interpolation": cfg.get("interpolation", "bicubic"),
            "crop_mode": "center"}


def image_transform(ds: LTDataset, model: nn.Module, train: bool = False):
    """timm's transform for a file-backed dataset (None for in-memory ones, which `BatchPreprocess` handles)."""
    if ds.train.in_memory and (ds.test.in_memory or len(ds.test) == 0):
        return None
    return timm.data.create_transform(**data_config(ds, model), is_training=train)


def resolve_model_ref(ref: str) -> str:
    """A timm model reference for ``--init``/``ltzoo eval``: a run folder, a hub id or a timm name."""
    if ref.startswith(("hf-hub:", "local-dir:", "timm/")):
        return ref
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json: not a finished ltzoo run folder or timm export")
        return f"local-dir:{path.resolve()}"
    if "/" in ref and not ref.startswith((".", "/")):
        return f"hf-hub:{ref}"
    if ref.startswith((".", "/")):
        raise FileNotFoundError(f"run folder {ref} does not exist")
    return ref


def load_model(ref: str, pretrained: bool = True, **kwargs) -> nn.Module:
    """Create a model from a run folder, hub id or timm name (``pretrained`` loads its weights)."""
    name = resolve_model_ref(ref)
    from safetensors import SafetensorError

    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the config.json of {ref} is not valid JSON ({exc}); it is corrupt: re-export or "
                         "re-download it") from exc
    except RuntimeError as exc:
        if str(exc).startswith("Unknown model"):
            raise RuntimeError(f"{ref} is not a run folder, a hub id (ORG/NAME) or a timm model name "
                               "(timm.list_models() lists the names)") from exc
        raise RuntimeError(f"could not load weights of {ref} ({exc}); the checkpoint does not match its config "
                           "or is corrupt: re-export or re-download it") from exc
    except SafetensorError as exc:
        raise RuntimeError(f"could not read the weights of {ref} ({exc}); model.safetensors is truncated or "
                           "corrupt: re-export or re-download it") from exc


def label_names(model: nn.Module) -> list[str] | None:
    """The class names a timm model was saved with, if any."""
    names = getattr(model, "pretrained_cfg", {}).get("label_names")
    if isinstance(names, dict):
        return [names[k] for k in sorted(names, key=int)]
    return list(names) if names else None


def check_classes(model: nn.Module, ds: LTDataset, ref: str) -> None:
    """Raise a clear error if a loaded model's classifier does not match the dataset's classes."""
    if model.num_classes != ds.num_classes:
        raise ValueError(
            f"{ref} has {model.num_classes} classes but {ds.name} has {ds.num_classes}; use a model trained on "
            "this dataset, or fine-tune it with --init ... --new-head (a new classifier; ltzoo.recipes.pretrain or btm)"
        )
    names = label_names(model)
    if names and list(names) != list(ds.class_names):
        diff = next(i for i, (a, b) in enumerate(zip(names, ds.class_names)) if a != b)
        raise ValueError(
            f"{ref} was trained on other classes than {ds.name}: class {diff} is {names[diff]!r} there and "
            f"{ds.class_names[diff]!r} here; use a model trained on this dataset, or train one from it with "
            "--init ... --new-head (a new classifier; ltzoo.recipes.pretrain or btm)"
        )


def create_model(ds: LTDataset, model: str, init: str | None = None, new_head: bool = False,
                 pretrained: bool = False, **kwargs) -> nn.Module:
    """The model a recipe trains: ``init`` (run folder / hub id) if given, else a fresh timm ``model``.

    Input channels and classes follow the dataset; the pretrained_cfg is set to the dataset's
    evaluation preprocessing (see `data_config`).
    """
    if init:
        net = load_model(init)
        if new_head:
            net.reset_classifier(ds.num_classes)
        else:
            check_classes(net, ds, init)
        if getattr(net, "pretrained_cfg", {}).get("input_size", (ds.in_chans,))[0] != ds.in_chans:
            raise ValueError(f"{init} takes {net.pretrained_cfg['input_size'][0]}-channel images but {ds.name} has "
                             f"{ds.in_chans}; pick a model made for this dataset")
    else:
        net = timm.create_model(model, pretrained=pretrained, num_classes=ds.num_classes, in_chans=ds.in_chans, **kwargs)
    net.pretrained_cfg = {**net.pretrained_cfg, **data_config(ds, net), "label_names": list(ds.class_names)}
    return net


def save_model(model: nn.Module, run_dir: str | Path, ds: LTDataset) -> None:
    """Write ``config.json`` + ``model.safetensors`` with timm's ``save_for_hf``, atomically."""
    from timm.models._hub import save_for_hf

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".export-") as tmp:
        save_for_hf(model, tmp, model_config={"label_names": list(ds.class_names)},
                    data_config=data_config(ds, model), safe_serialization=True)
        for name in ("config.json", "model.safetensors"):
            os.replace(Path(tmp) / name, run_dir / name)
