"""Models as the run folder holds them: create a recipe's model, load one from a run folder, hub id or
timm name, save one in timm's Hub format; the evaluation preprocessing they record. (The run folder's
life, from its lock to the export, is `ltzoo.runfolder.folder`'s; atomic file writes are `ltzoo.files`'.)

The run folder, the contract between stages.

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
import itertools
import json
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from ltzoo.data.splits import LTDataset
from ltzoo.errors import UserError, user_error
from ltzoo.methods.calibration import restore_classifier
from ltzoo.models.pretrained import (
    INPUT_KEY,
    create_pretrained,
    input_from_weights,
    mark_input_from_weights,
    weights_data_config,
)
from ltzoo.runfolder.layout import (  # noqa: F401  (RESULTS, RUN_CONFIG: re-exported)
    MODEL_CONFIG,
    RESULTS,
    RUN_CONFIG,
    UNCALIBRATED_HEAD,
    WEIGHTS,
)

_logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ models
def data_config(ds: LTDataset, model: nn.Module | None = None) -> dict:
    """The evaluation preprocessing of a dataset, in timm's data-config terms.

    A model made from pretrained weights (`ltzoo.models.pretrained`) takes the input of its weights:
    their size, mean, std and interpolation (`weights_data_config`). Otherwise, in-memory datasets are
    evaluated at their native size with no resize or crop (crop_pct 1.0): timm's
    ``resolve_data_config`` + ``create_transform`` on a PIL image then reproduce ltzoo's own
    preprocessing exactly. File-backed datasets use the model's default input size and crop.
    """
    if model is not None and input_from_weights(model):  # pretrained weights: their input, images resized to it
        return weights_data_config(model, in_memory=ds.train.in_memory)
    if ds.train.in_memory:
        return {
            "input_size": tuple(ds.input_size),
            "mean": tuple(ds.mean),
            "std": tuple(ds.std),
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "crop_mode": "center",
        }
    cfg = timm.data.resolve_data_config({}, model=model) if model is not None else {}
    return {
        "input_size": cfg.get("input_size", ds.input_size),
        "mean": tuple(ds.mean),
        "std": tuple(ds.std),
        "crop_pct": cfg.get("crop_pct", 0.875),
        "interpolation": cfg.get("interpolation", "bicubic"),
        "crop_mode": "center",
    }


def batch_preprocess(ds: LTDataset, model: nn.Module, crop_padding: int = 0, channels_last: bool = False):
    """`BatchPreprocess` feeding ``model`` its evaluation input (`data_config`): the dataset's normalisation
    at its native size, or, for a model made from pretrained weights, the weights' size (in-memory uint8
    batches resized, grayscale repeated to the model's channels), mean and std. ``crop_padding`` (random
    translation, training only) is in native pixels, applied before the resize. A file-backed dataset's uint8
    batches come augmented by their loader's transform (`image_transform`): it gets no second crop or flip."""
    from ltzoo.data.loader import BatchPreprocess

    cfg = data_config(ds, model)
    aug = {"crop_padding": crop_padding, "flip": True} if ds.train.in_memory else {"crop_padding": 0, "flip": False}
    if not input_from_weights(model):
        return BatchPreprocess(cfg["mean"], cfg["std"], channels_last=channels_last, **aug)
    return BatchPreprocess(
        cfg["mean"],
        cfg["std"],
        channels_last=channels_last,
        **aug,
        size=tuple(cfg["input_size"][1:]),
        channels=cfg["input_size"][0],
        interpolation=cfg["interpolation"],
    )


def _run_device_is_gpu() -> bool:
    """Whether this process's run trains on a GPU: accelerate's state where a run set one up (``--cpu`` on a CUDA
    host is a CPU run), else whether CUDA is available."""
    from accelerate.state import PartialState

    if PartialState._shared_state:  # an Accelerator (or launch) set the run's device
        return PartialState().device.type == "cuda"
    return torch.cuda.is_available()


def image_transform(ds: LTDataset, model: nn.Module, train: bool = False, on_device: bool | None = None):
    """timm's transform for a file-backed dataset (None for in-memory ones, which `BatchPreprocess` handles), as a
    `ltzoo.data.decode.FileImageTransform`: JPEGs decoded at the smallest scale the crop allows, uint8 out (the
    normalisation is `batch_preprocess`'s, on the device)."""
    from ltzoo.data.decode import file_transform

    if ds.train.in_memory and (ds.test.in_memory or len(ds.test) == 0):
        return None
    if on_device is None:  # a GPU does the resize, flip and jitter; on a CPU the workers are the spare cores
        on_device = _run_device_is_gpu()
    return file_transform(timm.data.create_transform(**data_config(ds, model), is_training=train), on_device=on_device)


def resolve_model_ref(ref: str) -> str:
    """A timm model reference for ``--init``/``ltzoo eval``: a run folder, a hub id or a timm name.

    - ``hf-hub:``, ``local-dir:`` and ``timm/`` references are timm's, kept as they are.
    - An existing folder is a run folder (``local-dir:``; it must hold config.json); an existing file is
      refused (a run folder is wanted, not its weights file).
    - A reference that exists nowhere but looks like a local path is refused in one line, "no run folder or
      weights file at REF", instead of being asked of the Hub. It looks like one when it starts with ``.``,
      ``/`` or ``~``, or holds a path separator without being of the hub id form ``org/name`` (``runs/a/b``),
      or is of that form and its first component is a folder here that holds runs: ``runs/x`` is a hub id
      ``org/name`` by its form, and is taken as a missing run folder when ``runs/`` exists in the current
      folder with a run in it (a folder holding config.json or run_config.yaml). A folder without runs does
      not count: from a checkout, ``ltzoo/NAME`` stays the hub id, whatever the package's ``ltzoo/`` folder.
    - Otherwise ``org/name`` is a hub id (``hf-hub:org/name``; if the Hub cannot give it either, `load_model`
      says that there is no run folder of that name) and anything else is a timm model name.
    """
    if ref.startswith(("hf-hub:", "local-dir:", "timm/")):
        return ref
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / MODEL_CONFIG).is_file():
            raise UserError(
                f"{path} has no config.json: not a finished ltzoo run folder or timm export",
                "pass the folder of a finished run (one holding config.json and model.safetensors)",
            )
        return f"local-dir:{path.resolve()}"
    if path.exists():
        raise UserError(
            f"{ref} is a file, not a run folder",
            "pass the folder of a finished run, a hub id (ORG/NAME) or a timm model name",
        )
    if looks_like_a_path(ref):
        raise UserError(f"no run folder or weights file at {ref}", NO_RUN_FIX)
    if _HUB_ID.fullmatch(ref):
        return f"hf-hub:{ref}"
    return ref


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
#: The fix of a model reference that names nothing.
NO_RUN_FIX = "pass a run folder (it holds config.json and model.safetensors) or a hub id org/name"


def looks_like_a_path(ref: str) -> bool:
    """Whether a model reference that does not exist is meant as a local path, not a hub id or timm name (the
    rule of `resolve_model_ref`: ``.``, ``/``, ``~`` first; a separator outside the ``org/name`` form; or
    ``org/name`` whose ``org`` is a folder of runs here, like ``runs/x`` where ``runs/`` holds a run)."""
    if ref.startswith((".", "/", "~")):
        return True
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if not any(sep in ref for sep in separators):
        return False
    if not _HUB_ID.fullmatch(ref):
        return True
    return _holds_runs(Path(ref.split("/", 1)[0]))


def _holds_runs(folder: Path, look_at: int = 1000) -> bool:
    """Whether ``folder`` is a folder with a run folder in it (config.json or run_config.yaml), among its first
    ``look_at`` entries."""
    try:
        return folder.is_dir() and any(
            child.is_dir() and ((child / MODEL_CONFIG).is_file() or (child / RUN_CONFIG).is_file())
            for child in itertools.islice(folder.iterdir(), look_at)
        )
    except OSError:  # unreadable: not taken as a folder of runs
        return False


def check_weights(path: str | Path) -> Path:
    """Check that a safetensors weights file (or a run folder's model.safetensors) is complete and readable.

    Opens the file with safetensors (its header and that the tensors cover the file exactly; no tensor
    is read). Returns the file's path; raises `UserError` naming the file and the fix.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS).is_file():
            raise UserError(
                f"{path} has no {WEIGHTS}: the run did not finish, or its weights were removed",
                "finish the run (run its recipe again with the same --output: it resumes) or pass another run folder",
            )
        path = path / WEIGHTS
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist", "check the path, or re-export the run")
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except SafetensorError as exc:
        raise UserError(
            f"{path} is not a readable safetensors file ({exc}): it is truncated or corrupt",
            "re-export it (run the recipe again into a fresh --output) or re-download it",
        ) from exc
    except OSError as exc:
        err = user_error(exc)
        if err is None:
            raise
        raise err from exc
    return path


def load_model(ref: str, pretrained: bool = True, **kwargs) -> nn.Module:
    """Create a model from a run folder, hub id or timm name (``pretrained`` loads its weights).

    Bad references, missing or corrupt weights, and hub ids that cannot be fetched (offline, not in the
    cache, not on the Hub) raise `UserError` naming the reference and the fix.
    """
    name = resolve_model_ref(ref)
    if pretrained and name.startswith("local-dir:"):
        check_weights(name[len("local-dir:") :])
    try:
        with _offline_when_unreachable(name):
            return timm.create_model(name, pretrained=pretrained, **kwargs)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"the config.json of {ref} is not valid JSON ({exc}): it is corrupt", "re-export or re-download it"
        ) from exc
    except Exception as exc:
        err = user_error(exc, hub_id=name[len("hf-hub:") :] if name.startswith("hf-hub:") else None)
        if err is not None and name == f"hf-hub:{ref}" and _not_had_from_hub(exc):  # org/name: maybe a path too
            raise UserError(f"no run folder or weights file at {ref}, and {err.problem}", err.fix) from exc
        if err is not None:
            raise (err if ref in str(err) else UserError(f"{ref}: {err}")) from exc
        if isinstance(exc, RuntimeError):  # a state dict that does not fit the architecture of its config
            raise UserError(
                f"could not load the weights of {ref} ({str(exc).splitlines()[0]}): the checkpoint "
                "does not match its config or is corrupt",
                "re-export or re-download it",
            ) from exc
        raise


def _not_had_from_hub(exc: BaseException) -> bool:
    """A hub model that could not be had: not cached (offline or the Hub out of reach), or not on the Hub."""
    from huggingface_hub import errors as hf

    if isinstance(exc, hf.GatedRepoError):  # it exists
        return False
    return isinstance(exc, (hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled, hf.RepositoryNotFoundError))


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick look for the Hub (name resolution and a TCP connection to its endpoint)."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_when_unreachable(name: str) -> Iterator[None]:
    """A hub model with the Hub out of reach: huggingface_hub in offline mode for the block, so the cache
    answers at once (or its not-cached error comes at once) instead of after 30-50 s of retries."""
    from huggingface_hub import constants

    if not name.startswith("hf-hub:") or constants.HF_HUB_OFFLINE or hub_reachable():
        yield
        return
    _logger.warning(
        "the Hugging Face Hub (%s) cannot be reached: %s from the local cache only",
        constants.ENDPOINT,
        name[len("hf-hub:") :],
    )
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


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


def trained_classifier(ref: str) -> dict[str, torch.Tensor] | None:
    """The classifier of ``ref`` (a run folder or hub id) as trained, before calibration folded a temperature into
    it (``classifier_uncalibrated.safetensors`` beside the model); None for a model ltzoo did not calibrate."""
    from safetensors.torch import load_file

    name = resolve_model_ref(ref)
    if name.startswith("local-dir:"):
        path = Path(name[len("local-dir:") :]) / UNCALIBRATED_HEAD
        return load_file(str(path)) if path.is_file() else None
    if not name.startswith("hf-hub:"):
        return None  # a timm name: its own weights, never calibrated by ltzoo
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return load_file(hf_hub_download(name[len("hf-hub:") :], UNCALIBRATED_HEAD))
    except LocalEntryNotFoundError as exc:  # offline and not cached: the calibrated classifier, and a warning
        _logger.warning(
            f"{ref}: {UNCALIBRATED_HEAD} is not in the cache and the Hub is offline ({exc}); training "
            "from its calibrated classifier"
        )
        return None
    except EntryNotFoundError:  # the model has none: ltzoo did not calibrate it
        return None
    except Exception as exc:  # the Hub failing: train on from the calibrated classifier, and say so
        _logger.warning(f"{ref}: could not fetch {UNCALIBRATED_HEAD} ({exc}); training from its calibrated classifier")
        return None


def create_model(
    ds: LTDataset,
    model: str,
    init: str | None = None,
    new_head: bool = False,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    **kwargs,
) -> nn.Module:
    """The model a recipe trains: ``init`` (run folder / hub id) if given, else a timm ``model``, fresh or
    with pretrained weights (``pretrained``: timm's Hub weights; ``pretrained_file``: a local file; see
    `ltzoo.models.pretrained`).

    Classes follow the dataset; so do the input channels of a fresh model (a pretrained one keeps its
    weights', or takes the data's where they are more: a grayscale weights file on RGB images). An ``init``
    model, too, keeps the input it was trained with (its pretrained_cfg: an ltzoo run records exactly that).
    The pretrained_cfg is set to the evaluation preprocessing (see `data_config`).
    """
    if init:
        net = load_model(init)
        mark_input_from_weights(net)  # fed as it was trained (an ltzoo run's pretrained_cfg records exactly that)
        if new_head:
            net.reset_classifier(ds.num_classes)
        else:
            check_classes(net, ds, init)
            trained = trained_classifier(init)
            if trained is not None:  # train on from the classifier as trained, not the calibrated one
                restore_classifier(net, trained)
        if getattr(net, "pretrained_cfg", {}).get("input_size", (ds.in_chans,))[0] not in (
            ds.in_chans,
            3 if input_from_weights(net) and ds.in_chans == 1 else ds.in_chans,
        ):
            raise ValueError(
                f"{init} takes {net.pretrained_cfg['input_size'][0]}-channel images but {ds.name} has "
                f"{ds.in_chans}; pick a model made for this dataset"
            )
    elif pretrained or pretrained_file:
        if pretrained_file:  # a file with fewer channels than the data: its first conv adapted, the data's mean/std
            kwargs = {**kwargs, "channels": ds.in_chans, "norm": (tuple(ds.mean), tuple(ds.std))}
        net = create_pretrained(model, ds.num_classes, pretrained_file=pretrained_file, **kwargs)
    else:
        try:
            net = timm.create_model(
                model, pretrained=pretrained, num_classes=ds.num_classes, in_chans=ds.in_chans, **kwargs
            )
        except (RuntimeError, OSError) as exc:  # an unknown --model; its pretrained weights not fetchable
            err = user_error(exc, hub_id=f"{model} (pretrained weights)")
            if err is None:
                raise
            raise err from exc
    net.pretrained_cfg = {**net.pretrained_cfg, **data_config(ds, net), "label_names": list(ds.class_names)}
    return net


def save_model(model: nn.Module, run_dir: str | Path, ds: LTDataset) -> None:
    """Write ``config.json`` + ``model.safetensors`` with timm's ``save_for_hf``, atomically."""
    from timm.models._hub import save_for_hf

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = data_config(ds, model)
    with (
        tempfile.TemporaryDirectory(dir=run_dir, prefix=".export-") as tmp,
        contiguous_weights(model),
        _unmarked(model),
    ):
        save_for_hf(
            model, tmp, model_config={"label_names": list(ds.class_names)}, data_config=cfg, safe_serialization=True
        )
        umask = os.umask(0)
        os.umask(umask)
        for name in (MODEL_CONFIG, WEIGHTS):
            os.chmod(Path(tmp) / name, 0o666 & ~umask)  # safetensors writes 0600; the folder's other files are 0644
            os.replace(Path(tmp) / name, run_dir / name)


@contextlib.contextmanager
def _unmarked(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` without ltzoo's in-process input marker (`INPUT_KEY`) in its pretrained_cfg inside the block:
    timm's PretrainedCfg takes no unknown key, and the exported cfg already says what the input is."""
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, dict) or INPUT_KEY not in cfg:
        yield model
        return
    model.pretrained_cfg = {k: v for k, v in cfg.items() if k != INPUT_KEY}
    try:
        yield model
    finally:
        model.pretrained_cfg = cfg


@contextlib.contextmanager
def contiguous_weights(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with contiguous weights inside the block (safetensors stores no channels_last tensor), as it
    was after it."""
    channels_last = any(
        p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in model.parameters()
    )
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    try:
        yield model
    finally:
        if channels_last:
            model.to(memory_format=torch.channels_last)


def save_weights(model: nn.Module, path: str | Path) -> None:
    """The model's weights as a safetensors file (whatever their memory format)."""
    from safetensors.torch import save_model as _save

    with contiguous_weights(model):
        _save(model, str(path))
