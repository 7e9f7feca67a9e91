"""Model cards built from a run folder.

    card = build_card("runs/btm-fmnist_lt-resnet32_cifar-s0", repo_id="ltzoo/btm-fmnist-lt-resnet32")
    write_card("runs/btm-...", "hub_cards/btm-fmnist-lt-resnet32.md", repo_id="ltzoo/btm-fmnist-lt-resnet32")

The card is huggingface_hub's `ModelCard`, rendered from the Jinja template ``templates/model_card.md``
of this package. Its YAML metadata (`ModelCardData`) carries ``library_name: timm``, the license, tags,
datasets, ``base_model`` (the parent's hub id, where there is one), an ``ltzoo`` block (name, hub id,
recipe, method, backbone, dataset, parents, seed, commit: what ``ltzoo zoo`` lists) and a ``model-index``
whose results hold accuracy, mean class accuracy, HM, GM, min recall and many/medium/few accuracy on
the test and validation splits, as percentages with 2 decimals (the rounding of ltzoo's summary table).

Every number comes from the run folder's ``results.json`` (and the parameter count from
``model.safetensors``); the reproduce command and configuration from its ``run_config.yaml`` (the
``config`` of ``results.json`` when there is none). Building a card only reads the run folder.

This module gathers values; the template holds the prose and lays out every table. Display names and
citations are not kept here: datasets, losses and classifier methods name themselves in their registries
(`ltzoo.data.datasets.DATASETS`, `ltzoo.methods.losses.loss_spec`, `ltzoo.methods.heads.HEAD_METHODS`), whose ``cite``
keys are entries of ``ltzoo/references.bib``.

Parents (the ``--init`` of each stage, recorded in ``results.json`` as ``parents``) are shown by hub id.
A parent's hub id is, in this order: the one given in ``parent_ids`` (``ltzoo card/push --parent-id``);
the reference itself when it is a hub id; for a local run folder, the ``hub_id`` of its own card
(``PARENT/README.md``, written by ``ltzoo card PARENT --repo-id ORG/NAME``) or of its ``results.json``.
A local parent without one is shown as a local run by its folder name, and gets no ``base_model``.
"""

from __future__ import annotations

import functools
import json
import logging
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ltzoo.runfolder.layout import CARD, MODEL_CONFIG, PER_CLASS_PLOT, RELIABILITY, RESULTS, WEIGHTS

_logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "model_card.md"
REPO_ROOT = Path(__file__).resolve().parents[2]
PLOT = PER_CLASS_PLOT
HUB_URL = "https://huggingface.co"

#: results.json metric key -> (model-index metric type, readable name, table header).
METRICS: dict[str, tuple[str, str, str]] = {
    "acc": ("accuracy", "Top-1 accuracy", "Acc"),
    "mean_class_acc": ("mean_class_accuracy", "Mean per-class recall (balanced accuracy)", "Mean class acc"),
    "hm": ("hm", "Harmonic mean of per-class recall", "HM"),
    "gm": ("gm", "Geometric mean of per-class recall", "GM"),
    "min_recall": ("min_recall", "Lowest per-class recall (worst class)", "Min recall"),
    "many": ("many", "Many-shot accuracy", "Many"),
    "medium": ("medium", "Medium-shot accuracy", "Medium"),
    "few": ("few", "Few-shot accuracy", "Few"),
}
#: Probability metrics in model-index (after `METRICS`): key -> (type, readable name, as a percentage).
PROBABILITY_METRICS: dict[str, tuple[str, str, bool]] = {
    "top5": ("top_5_accuracy", "Top-5 accuracy", True),
    "ece": ("ece", "Expected calibration error (top-label, 15 equal-width bins)", True),
    "nll": ("nll", "Negative log-likelihood (nats per image)", False),
}
#: results.json split -> model-index split name.
SPLITS = {"test": "test", "val": "validation"}

#: BibTeX of every paper a card may cite, keyed as the registries' ``cite`` fields name them.
BIB_PATH = Path(__file__).resolve().parents[1] / "references.bib"
#: Papers of recipes beyond their parts (losses and classifier heads cite through their own registries).
RECIPE_CITES = {"btm": ("yu2025reviving",), "csa": ("shi2023how",)}
BACKBONE_CITES = {"resnet": "he2016deep"}  # architecture name prefix -> paper, when timm's cfg names none
LIBRARY_CITE = "rw2019timm"


# ------------------------------------------------------------------------------------------- helpers
def pct(value: float | None) -> float | None:
    """A fraction as a percentage with 2 decimals, rounded exactly as ltzoo's summary table prints it."""
    return None if value is None else float(f"{100 * value:.2f}")


def index_metrics(m: dict) -> dict[str, float]:
    """Every model-index metric of one split's metrics: type -> value (percentages with 2 decimals, NLL with 4)."""
    out = {mtype: pct(m.get(key)) for key, (mtype, _, _) in METRICS.items() if m.get(key) is not None}
    out.update(
        {
            mtype: pct(m[key]) if as_pct else round(float(m[key]), 4)
            for key, (mtype, _, as_pct) in PROBABILITY_METRICS.items()
            if m.get(key) is not None
        }
    )
    return out


def interval_lines(m: dict) -> list[str]:
    """The card's text on the bootstrap intervals of one split's metrics (none without them)."""
    from ltzoo.metrics import interval_text

    boot = m.get("bootstrap") or {}
    intervals = boot.get("intervals") or {}
    if not intervals:
        return []
    cells = [
        f"{METRICS[k][2]} {interval_text(m.get(k), intervals[k])}"
        for k in METRICS
        if k in intervals and m.get(k) is not None
    ]
    return [
        f"{100 * boot.get('level', 0.95):g}% intervals on the test split ({boot['method']}, {boot['resamples']} "
        f"resamples, seed {boot['seed']}): " + "; ".join(cells) + ".",
        *[f"Note: {n}." for n in boot.get("notes", [])],
    ]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _repo_id(ref: str) -> str | None:
    """``ORG/NAME`` of a hub id given with or without ``hf-hub:`` (None when it is not of that form)."""
    ref = ref[len("hf-hub:") :] if ref.startswith("hf-hub:") else ref
    parts = ref.split("/")
    return ref if len(parts) == 2 and all(p.strip() == p and p and " " not in p for p in parts) else None


def _hub_ref(ref: str) -> str | None:
    """The hub id an ``--init`` reference names, or None for a local run folder.

    As ltzoo resolves ``--init``: ``hf-hub:`` and ``timm/`` refs are hub ids; paths (absolute,
    ``./``, ``~``, ``local-dir:``, existing folders, ``runs/...`` or more than one ``/``) are local.
    """
    if ref.startswith(("hf-hub:", "timm/")):
        return _repo_id(ref)
    if ref.startswith(("local-dir:", ".", "/", "~")) or Path(ref).expanduser().exists() or ref.startswith("runs/"):
        return None
    return _repo_id(ref)


def card_hub_id(path: Path) -> str | None:
    """The hub id recorded in a card file's ``ltzoo`` metadata (None if there is no such card)."""
    if not path.is_file():
        return None
    try:
        meta = ModelCard.load(path).data.to_dict()
    except Exception:  # not a card, or unreadable metadata: no hub id
        return None
    block = meta.get("ltzoo") or {}
    return block.get("hub_id") if isinstance(block, dict) else None


def _local_parent(ref: str, run_dir: Path) -> Path | None:
    """The folder a local ``--init`` reference points to (tried as given, then beside / inside the run)."""
    ref = ref[len("local-dir:") :] if ref.startswith("local-dir:") else ref
    path = Path(ref).expanduser()
    for cand in (path, run_dir / path.name, run_dir.parent / path.name):
        if cand.is_dir():
            return cand
    return None


def _parent_info(ref: str, run_dir: Path, override: str | None, depth: int = 0) -> dict:
    """What the card says about one parent: its hub id (or None), a display name and its own chain."""
    hub_id = _repo_id(override) if override else None
    if override and hub_id is None:
        raise ValueError(f"--parent-id {override!r} is not a hub id (ORG/NAME)")
    folder = None if _hub_ref(ref) else _local_parent(ref, run_dir)
    results = _read_json(folder / RESULTS) if folder is not None else None
    if hub_id is None:
        hub_id = _hub_ref(ref)
    if hub_id is None and folder is not None:
        hub_id = card_hub_id(folder / CARD) or (results or {}).get("hub_id")
    if folder is None and hub_id is None:
        name = Path(ref).name
    else:
        name = hub_id or folder.name
    upstream = []
    if results and depth < 10:
        upstream = [_parent_info(p, folder, None, depth + 1) for p in results.get("parents") or []]
    return {
        "ref": ref,
        "hub_id": hub_id,
        "name": name,
        "local": hub_id is None,
        "method": (results or {}).get("method"),
        "recipe": (results or {}).get("recipe"),
        "parents": upstream,
    }


def _chain(parents: list[dict]) -> list[dict]:
    """The stages before this one, oldest first (first-parent line)."""
    out: list[dict] = []
    while parents:
        out.insert(0, parents[0])
        parents = parents[0]["parents"]
    return out


def pretrained_source(arch: str, pretrained_cfg: dict, config: dict) -> str | None:
    """The hub id of the timm weights a run started from (``--pretrained`` without ``--init``), if any."""
    if not config.get("pretrained") or config.get("init"):
        return None
    import timm

    tag = pretrained_cfg.get("tag")
    name = f"{arch}.{tag}" if tag else arch
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # an unknown name: no hub id
        cfg = None
    return getattr(cfg, "hf_hub_id", None) or None


def is_ltzoo_arch(arch: str) -> bool:
    """Whether a timm architecture is one that ``import ltzoo`` registers (not native to timm)."""
    import timm

    import ltzoo  # noqa: F401  (registers ltzoo's architectures)

    try:
        return timm.models.model_entrypoint(arch).__module__.startswith("ltzoo")
    except (RuntimeError, KeyError):
        return False


def count_parameters(path: Path) -> int | None:
    """Learnable parameters in a safetensors file (BatchNorm running statistics excluded)."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    total = 0
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                continue
            n = 1
            for d in f.get_slice(key).get_shape():
                n *= d
            total += n
    return total


_NOT_FLAGS = ("config", "output", "recipe", "git_commit", "help", "flags", "resolved", "parsed")
_ALWAYS = ("dataset", "model", "loss", "epochs", "seed")  # shown even at their defaults, for the reader


def render_command(
    config: dict, recipe: str, num_processes: int = 1, init: str | None = None, omit_init: bool = False
) -> str:
    """``accelerate launch -m ltzoo.recipes.<recipe>`` with the flags whose values differ from the recipe's defaults.

    The run's config says what its flags are (``flags``: each destination's option, kind and default, as
    the recipe wrote them into run_config.yaml), so no recipe is imported here. ``init`` replaces the
    recorded ``--init`` (a parent's hub id instead of a local path); ``omit_init`` drops it (BTM's own
    stage 1). A config without ``flags`` (an older run) lists every flag with a value.
    """
    config = _with_init(config, init, omit_init)
    launch = ["accelerate", "launch"] + (["--num_processes", str(num_processes)] if num_processes > 1 else [])
    groups: list[list[str]] = [launch + recipe_launch(recipe).split()]
    always = set(_ALWAYS) - ({"epochs"} if recipe == "btm" and config.get("init") else set())  # BTM: stage-1 epochs
    flags = config.get("flags")
    if isinstance(flags, dict):
        for dest, (flag, kind, default) in flags.items():
            if dest in _NOT_FLAGS or dest not in config:
                continue
            value = config[dest]
            if value == default and type(value) is type(default) and not (dest in always and value is not None):
                continue
            if kind == "bool":
                groups.append([flag if value else "--no-" + flag[2:]])
            elif kind == "switch":
                if bool(value) != bool(default):
                    groups.append([flag])
            elif value is not None:
                groups.append([flag] + [str(v) for v in (value if isinstance(value, list) else [value])])
    else:
        for key, value in config.items():
            if key in _NOT_FLAGS or value is None or value is False:
                continue
            flag = "--" + key.replace("_", "-")
            groups.append([flag] if value is True else [flag, str(value)])
    return " \\\n    ".join(" ".join(shlex.quote(t) for t in g) for g in groups)


def _with_init(config: dict, init: str | None, omit_init: bool) -> dict:
    config = dict(config)
    if omit_init:
        config["init"] = None
    elif init is not None:
        config["init"] = init
    return config


def config_yaml(config: dict, recipe: str, init: str | None = None, omit_init: bool = False) -> str:
    """The resolved config as a YAML file the recipe takes with ``-c`` (only its own flags, as the config's
    ``flags`` lists them). Unset values (None, which no flag can give, so the recipe's default) are left out.
    """
    flags = config.get("flags")
    known = set(flags) if isinstance(flags, dict) else set(config)
    cfg = {k: v for k, v in _with_init(config, init, omit_init).items() if k in known and k not in _NOT_FLAGS}
    return yaml.safe_dump({k: v for k, v in cfg.items() if v is not None}, sort_keys=False).strip()


def _eval_command(model_ref: str, config: dict, split: str = "test") -> str:
    """``ltzoo eval`` with the data flags of the run (those that differ from ``ltzoo eval``'s defaults)."""
    from ltzoo.data.datasets import default_split_protocol

    parts = ["ltzoo", "eval", model_ref, "--dataset", str(config.get("dataset", "DATASET"))]
    defaults = {
        "data_dir": None,
        "imbalance": None,
        "profile": "exp",
        "val_per_class": None,
        "seed": 0,
        "split_protocol": default_split_protocol(str(config.get("dataset", ""))),
        "train_list": None,
        "val_list": None,
        "test_list": None,
    }
    for key, default in defaults.items():
        value = config.get(key, default)
        if value is not None and value != default:
            parts += ["--" + key.replace("_", "-"), str(value)]
    parts += ["--split", split]
    return " ".join(shlex.quote(p) for p in parts)


def _dataset_names(name: str) -> tuple[str, str | None]:
    """(display name, Hub dataset id or None) of a dataset, from ltzoo's dataset registry."""
    if name.startswith("hf:"):
        ref = name[3:]
        return ref, (None if ref.startswith((".", "/", "~")) else ref)
    from ltzoo.data.datasets import DATASETS

    spec = DATASETS.get(name)
    return (spec.display_name or name, spec.hub_id) if spec is not None else (name, None)


def _loss_info(name: str | None) -> tuple[str | None, tuple[str, ...]]:
    """(display name, cite keys) of a loss from ltzoo's loss registry; an unknown name is shown as is."""
    from ltzoo.methods.losses import loss_spec

    try:
        spec = loss_spec(name)
    except (ValueError, AttributeError):
        return name, ()
    return spec.display_name, spec.cite


def _head_info(name: str | None) -> tuple[str | None, tuple[str, ...]]:
    """(display name, cite keys) of a classifier method from ltzoo.methods.heads' registry."""
    from ltzoo.methods.heads import HEAD_METHODS

    method = HEAD_METHODS.get(name)
    return (method.display_name, method.cite) if method is not None else (name, ())


@functools.cache
def bibtex(path: Path = BIB_PATH) -> dict[str, str]:
    """The entries of a BibTeX file, by key, each as its text from ``@`` to the closing brace."""
    text, entries, start = path.read_text(encoding="utf-8"), {}, 0
    while (at := text.find("@", start)) >= 0:
        depth, brace = 0, text.index("{", at)
        for end in range(brace, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                break
        entry = text[at : end + 1]
        entries[entry[entry.index("{") + 1 : entry.index(",")].strip()] = entry
        start = end + 1
    return entries


def _cite_keys(results: dict, config: dict, arch: str, pretrained_cfg: dict) -> list[str]:
    """The papers a card cites: the recipe's, its classifier's or loss's, the backbone's, timm."""
    recipe, method = results.get("recipe"), str(results.get("method", ""))
    keys: list[str] = list(RECIPE_CITES.get(recipe, ())) + (
        list(RECIPE_CITES["btm"]) if method.startswith("btm") else []
    )
    if recipe == "btm":
        keys += _head_info(_classifier(results, config))[1]
    if recipe == "gml":  # its comparison table has every other classifier method too
        from ltzoo.methods.heads import METHODS

        keys += [k for h in (METHODS if config.get("baselines", True) else ("gml",)) for k in _head_info(h)[1]]
    if recipe in ("pretrain", "csa") and config.get("loss"):
        keys += _loss_info(config["loss"])[1]
    paper_ids = str(pretrained_cfg.get("paper_ids", ""))
    keys += [k for k, e in bibtex().items() if _arxiv(e) and _arxiv(e) in paper_ids]
    keys += [k for prefix, k in BACKBONE_CITES.items() if arch.startswith(prefix)]
    return list(dict.fromkeys(keys + [LIBRARY_CITE]))


def _arxiv(entry: str) -> str | None:
    """The arXiv id a BibTeX entry's note gives (``arXiv:NNNN.NNNNN``), if any."""
    at = entry.find("arXiv:")
    return entry[at + 6 :].split("}")[0].strip() if at >= 0 else None


def _classifier(results: dict, config: dict) -> str | None:
    """The classifier method a BTM run used (results first, then its config)."""
    return (results.get("classifier") or {}).get("method") or config.get("classifier")


def _per_class(results: dict) -> dict | None:
    """The per-class recall table's data: the splits with per-class recalls, and a row per class."""
    metrics, counts = results.get("metrics", {}), results.get("train_counts") or []
    if not counts:
        return None
    names = results.get("class_names") or [str(i) for i in range(len(counts))]
    splits = [(s, SPLITS[s]) for s in ("val", "test") if metrics.get(s, {}).get("per_class_recall")]
    rows = [{"index": c, "name": str(name), "count": n} for c, (name, n) in enumerate(zip(names, counts))]
    return {"splits": splits, "rows": rows}


def run_config(run_dir: Path, results: dict) -> dict:
    """The run's resolved configuration: its own ``run_config.yaml``, else the ``config`` of results.json."""
    from ltzoo.runfolder.model_io import RUN_CONFIG

    path = run_dir / RUN_CONFIG
    if path.is_file():
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(config, dict):
            return config
        _logger.warning("%s holds no mapping; the card uses results.json's config", path)
    return results.get("config") or {}


def recipe_launch(recipe: str) -> str:
    """What ``accelerate launch`` runs for a recipe, as cards print it."""
    return f"-m ltzoo.recipes.{recipe}"


def _group_names(metrics: dict) -> dict[str, str]:
    """Readable names of many/medium/few with their training-count cuts."""
    th = metrics.get("shot_thresholds") or {}
    many, few = th.get("many"), th.get("few")
    if many is None or few is None:
        return {}
    return {
        "many": f"Many-shot accuracy (classes with more than {many} training images)",
        "medium": f"Medium-shot accuracy (classes with {few} to {many} training images)",
        "few": f"Few-shot accuracy (classes with fewer than {few} training images)",
    }


def eval_results(
    results: dict, dataset_type: str, dataset_name: str, dataset_args: dict | None = None
) -> list[EvalResult]:
    """The model-index entries: every metric of `METRICS` on the test split, then on the validation split."""
    out = []
    for split, split_name in SPLITS.items():
        m = (results.get("metrics") or {}).get(split)
        if not m:
            continue
        names = {
            **{k: n for k, (_, n, _) in METRICS.items()},
            **{k: n for k, (_, n, _) in PROBABILITY_METRICS.items()},
            **_group_names(m),
        }
        types = {**{k: t for k, (t, _, _) in METRICS.items()}, **{k: t for k, (t, _, _) in PROBABILITY_METRICS.items()}}
        values = index_metrics(m)
        for key, mtype in types.items():
            value, mname = values.get(mtype), names[key]
            if value is None:
                continue
            out.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Image Classification",
                    dataset_type=dataset_type,
                    dataset_name=dataset_name,
                    dataset_split=split_name,
                    dataset_args=dataset_args or None,
                    metric_type=mtype,
                    metric_name=mname,
                    metric_value=value,
                )
            )
    return out


# ------------------------------------------------------------------------------------------ the card
def build_card(
    run_dir: str | Path,
    repo_id: str | None = None,
    name: str | None = None,
    parent_ids: Sequence[str | None] | None = None,
    template_path: str | Path | None = None,
) -> ModelCard:
    """The model card of a run folder (reads it only).

    Args:
        run_dir: a finished run folder (``results.json``, ``config.json`` and a readable ``model.safetensors``).
        repo_id: the hub id the model is (to be) pushed to; the loading snippet and ``ltzoo.hub_id`` use it.
        name: the model's name in the card and the zoo (default: the repo name, else the folder name).
        parent_ids: hub ids of the parents, in the order of results.json's ``parents`` (None entries: look
            them up, see the module docstring).
        template_path: a Jinja template (default: the package's ``templates/model_card.md``).
    """
    run_dir = Path(run_dir)
    results_path = run_dir / RESULTS
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path} not found: {run_dir} is not a finished ltzoo run folder")
    from ltzoo.files import read_json
    from ltzoo.runfolder.model_io import check_weights

    check_weights(run_dir)  # a card describes weights: missing or corrupt ones are refused, naming the file

    results = read_json(results_path)
    model_cfg = read_json(run_dir / MODEL_CONFIG)
    if repo_id is not None and _repo_id(repo_id) != repo_id:
        raise ValueError(f"repo id {repo_id!r} is not of the form ORG/NAME")
    name = name or (repo_id.split("/")[-1] if repo_id else run_dir.resolve().name)
    config = run_config(run_dir, results)
    pretrained_cfg = model_cfg.get("pretrained_cfg") or {}
    arch = model_cfg.get("architecture") or results.get("model") or config.get("model", "?")
    ltzoo_arch = is_ltzoo_arch(arch)
    ds = results.get("dataset") or {}
    ds_key = ds.get("dataset") or config.get("dataset") or "unknown"
    ds_pretty, ds_hub = _dataset_names(ds_key)
    rho = ds.get("imbalance_ratio")
    ds_label = ds_pretty + (f" (imbalance ratio {rho:g})" if rho is not None else "")
    recipe = results.get("recipe") or config.get("recipe") or "?"
    method = results.get("method") or "?"

    # parents and the stage chain
    refs = list(results.get("parents") or [])
    overrides = list(parent_ids or [])
    if len(overrides) > len(refs):
        raise ValueError(f"{len(overrides)} parent ids given but {run_dir} has {len(refs)} parent(s): {refs}")
    overrides += [None] * (len(refs) - len(overrides))
    parents = [_parent_info(r, run_dir, o) for r, o in zip(refs, overrides)]
    output = config.get("output")
    own_stage1 = (
        recipe == "btm"
        and bool(refs)
        and output is not None
        and config.get("init") is not None
        and Path(config["init"]) == Path(output) / "stage1"
    )
    for p in parents:
        p["own_stage1"] = own_stage1 and p["ref"] == config.get("init")
    chain = _chain(parents)
    hub_parents = [p["hub_id"] for p in parents if p["hub_id"]]
    weights = pretrained_source(arch, pretrained_cfg, config)
    if weights and not chain:  # started from timm's pretrained weights
        chain = [
            {
                "ref": weights,
                "hub_id": weights,
                "name": weights,
                "local": False,
                "method": None,
                "recipe": None,
                "parents": [],
                "own_stage1": False,
                "timm_weights": True,
            }
        ]
        hub_parents = [weights]
    init_id = parents[0]["hub_id"] if parents and config.get("init") == refs[0] else None
    # BTM's own stage 1 fine-tuned from --init X --new-head: the command names X (as given), not the stage 1
    parsed = config.get("parsed") if isinstance(config.get("parsed"), dict) else {}
    command_config, omit_init = config, own_stage1
    if own_stage1 and parsed.get("new_head") and parsed.get("init"):
        command_config, omit_init, init_id = {**config, "init": parsed["init"], "new_head": True}, False, None

    # metadata
    tags = ["image-classification", "timm", "ltzoo", "long-tailed", f"recipe:{recipe}", f"method:{method}", ds_key]
    ltzoo_meta = {
        "name": name,
        "hub_id": repo_id,
        "recipe": recipe,
        "method": method,
        "backbone": arch,
        "dataset": ds_key,
        "imbalance_ratio": rho,
        "num_classes": model_cfg.get("num_classes"),
        "parents": [p["hub_id"] or f"local:{p['name']}" for p in parents],
        "seed": config.get("seed"),
        "git_commit": config.get("git_commit"),
        "requires_ltzoo": ltzoo_arch,
    }
    ds_args = {
        k: v
        for k, v in (("imbalance_ratio", rho), ("profile", ds.get("profile")), ("seed", ds.get("seed")))
        if v is not None
    }
    card_data = ModelCardData(
        library_name="timm",
        license="apache-2.0",
        pipeline_tag="image-classification",
        tags=tags,
        datasets=[ds_hub] if ds_hub else None,
        base_model=hub_parents[0] if hub_parents else None,
        model_name=name,
        eval_results=eval_results(results, ds_hub or ds_key, f"{ds_pretty} ({ds_key})", ds_args) or None,
        ltzoo=ltzoo_meta,
    )
    if hub_parents:
        card_data.base_model_relation = "finetune"

    # body: the template lays out the prose and tables from these values
    n_params = count_parameters(run_dir / WEIGHTS)
    model_ref = f"hf-hub:{repo_id}" if repo_id else f"local-dir:{run_dir.resolve()}"
    in_chans = (pretrained_cfg.get("input_size") or [3])[0]
    metrics = results.get("metrics") or {}
    classifier = _classifier(results, config)
    loss = config.get("loss") or method.split("+")[0]
    ctx: dict[str, Any] = {
        "model_name": name,
        "repo_id": repo_id,
        "model_ref": model_ref,
        "arch": arch,
        "ltzoo_arch": ltzoo_arch,
        "dataset_key": ds_key,
        "dataset_label": ds_label,
        "dataset_hub": ds_hub,
        "dataset": ds,
        "recipe": recipe,
        "launch": recipe_launch(recipe),
        "method": method,
        "run_config": config,
        "loss_display": _loss_info(loss)[0],
        "sampler": config.get("sampler", "instance"),
        "members": results.get("members", config.get("subsets")),
        "classifier": classifier,
        "shots": results.get("shots", config.get("shots")),
        "shots_rule": results.get("shots_rule"),
        "classifier_display": _head_info(classifier)[0],
        "classifier_ensembled": "ensemble" in (results.get("classifier") or {}),
        "num_classes": model_cfg.get("num_classes"),
        "params": f"{n_params / 1e6:.2f}M" if n_params else None,
        "input_size": "x".join(map(str, pretrained_cfg.get("input_size", []))) or None,
        "image_mode": "L" if in_chans == 1 else "RGB",
        "mean": pretrained_cfg.get("mean"),
        "std": pretrained_cfg.get("std"),
        "pretrained_cfg": pretrained_cfg,
        "parents": parents,
        "chain": chain,
        "selection": results.get("selection"),
        "selected_epoch": results.get("selected_epoch"),
        "metric_columns": [{"key": k, "header": h} for k, (_, _, h) in METRICS.items()],
        "splits": [("val", "validation"), ("test", "test")],
        "metrics": metrics,
        "test": metrics.get("test") or {},
        "calibration": results.get("calibration") or {},
        "test_intervals": interval_lines(metrics.get("test") or {}),
        "stages": results.get("table") or {},
        "baseline": results.get("baseline"),
        "decisions": {
            k: v
            for k, v in (config.get("resolved") or {}).items()
            if k not in ("profile", "init", "new_head") and config.get(k) is not None
        },
        "per_class": _per_class(results),
        "has_plot": (run_dir / PLOT).is_file(),
        "plot": PLOT,
        "has_reliability": (run_dir / RELIABILITY).is_file(),
        "val_source": ds.get("val_source"),
        "train_source": ds.get("train_source"),
        "val_rule": ds.get("val_rule"),
        "val_resolution": ds.get("val_resolution"),
        "git_commit": config.get("git_commit"),
        "seed": config.get("seed"),
        "command": render_command(
            command_config, recipe, results.get("num_processes", 1) or 1, init=init_id, omit_init=omit_init
        )
        if config
        else None,
        "config_yaml": config_yaml(command_config, recipe, init=init_id, omit_init=omit_init) if config else None,
        "eval_command": _eval_command(model_ref, config) if config else None,
        "hardware": results.get("hardware"),
        "num_processes": results.get("num_processes"),
        "wall_seconds": results.get("wall_seconds"),
        "train_seconds": results.get("train_seconds"),
        "seconds": results.get("seconds"),
        "peak_memory_mb": results.get("peak_memory_mb"),
        "citations": [bibtex()[k] for k in _cite_keys(results, config, arch, pretrained_cfg)],
        "hub_url": HUB_URL,
        "backbone_paper": pretrained_cfg.get("paper_name"),
        "backbone_paper_ids": pretrained_cfg.get("paper_ids"),
    }
    return ModelCard.from_template(card_data, template_path=str(template_path or TEMPLATE_PATH), **ctx)


def write_card(run_dir: str | Path, out_path: str | Path | None = None, **kwargs) -> Path:
    """Build the card of ``run_dir`` (see `build_card`) and save it (default: ``RUN_DIR/README.md``)."""
    card = build_card(run_dir, **kwargs)
    out = Path(out_path) if out_path is not None else Path(run_dir) / CARD
    from ltzoo.files import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(str(card), encoding="utf-8")
    return out


def default_cards_dir() -> Path:
    """``hub_cards/`` of this checkout when there is one, else ``./hub_cards``."""
    repo_cards = REPO_ROOT / "hub_cards"
    return repo_cards if repo_cards.is_dir() else Path("hub_cards")
