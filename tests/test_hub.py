"""Model cards, push and load round trips, ``ltzoo eval`` on pushed models, and the zoo catalogue.

The Hub is tests/hubserver.py's LocalHub (the ``local_hub`` fixture); run folders are made once per
module by the real recipes (1 epoch on a tiny image folder).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import LOCAL_HUB_TOKEN
from fixtures import make_imagefolder
from hubserver import disable_retry_sleep
from huggingface_hub import ModelCard, constants

from ltzoo.cli import main as ltzoo_main
from ltzoo.hub import HubError, build_card, catalogue, push_run, write_card
from ltzoo.hub import push as push_mod
from ltzoo.hub.card import (
    BACKBONE_CITES,
    BIB_PATH,
    LIBRARY_CITE,
    METRICS,
    RECIPE_CITES,
    TEMPLATE_PATH,
    bibtex,
    config_yaml,
    index_metrics,
    pct,
    render_command,
)
from ltzoo.metrics import SUMMARY_KEYS, summary_table
from ltzoo.recipes import btm, pretrain

REPO_ROOT = Path(__file__).resolve().parents[1]
COUNTS = {"train": [150, 60, 25, 12, 6], "val": [4] * 5, "test": [8] * 5}
CARD_FILES = {
    ".gitattributes",
    "config.json",
    "model.safetensors",
    "results.json",
    "per_class_recall.png",
    "README.md",
    "reliability.png",
    "predictions.safetensors",
}  # the last two: written by ltzoo.training.evaluation


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Three finished run folders: stage 1 (ltzoo's resnet20_cifar), a timm-native test_resnet, BTM on stage 1."""
    root = tmp_path_factory.mktemp("hub_runs")
    data = make_imagefolder(root / "data", COUNTS, size=(8, 8), channels=1)
    common = [
        "--dataset",
        "imagefolder",
        "--data-dir",
        str(data),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--workers",
        "0",
        "--no-progress",
        "--lr",
        "0.05",
    ]
    pretrain.main(common + ["--model", "resnet20_cifar", "--output", str(root / "stage1")])
    # fp32: test_resnet shrinks 8x8 images to 1x1 maps before its stride-2 convolutions, whose bf16 weight
    # gradient on the CPU (torch 2.14, oneDNN 3.12) is sometimes NaN (ltzoo.training.numerics), which stops the run
    fresh_accelerate_state()  # accelerate keeps one precision per process
    pretrain.main(
        common
        + ["--model", "test_resnet", "--loss", "bsce", "--mixed-precision", "no", "--output", str(root / "native")]
    )
    fresh_accelerate_state()
    btm.main(
        [
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(data),
            "--workers",
            "0",
            "--no-progress",
            "--model",
            "resnet20_cifar",
            "--init",
            str(root / "stage1"),
            "--subsets",
            "2",
            "--shots",
            "5",
            "--allow-fewer",
            "--member-epochs",
            "1",
            "--head-epochs",
            "2",
            "--output",
            str(root / "btm"),
        ]
    )
    return {"root": root, "data": data, "stage1": root / "stage1", "native": root / "native", "btm": root / "btm"}


def fresh_accelerate_state() -> None:
    """Forget accelerate's per-process state, so that the next in-process run may choose another precision."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def folder_state(path: Path) -> dict:
    """Every file under ``path`` with its content hash, size and modification time."""
    return {
        str(p.relative_to(path)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def write_results(run_dir: Path, results: dict) -> None:
    """Rewrite a run's results.json, and its run_config.yaml (the card's source of the config) to match."""
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "run_config.yaml").write_text(yaml.safe_dump(results["config"], sort_keys=False))


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints", "pretrain", "members", "*.safetensors.tmp"))
    return dst


def card_metrics(card: ModelCard, split: str = "test") -> dict:
    return {r.metric_type: r.metric_value for r in card.data.eval_results if r.dataset_split == split}


def expected_metrics(results: dict, split: str = "test") -> dict:
    return index_metrics(results["metrics"][split])


def run_python(code: str, env: dict | None = None, timeout: int = 120) -> str:
    """Run ``code`` in a fresh interpreter (the test's environment: HF_ENDPOINT, HF_HOME, ...)."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=str(REPO_ROOT),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def local_logits(run_dir: Path, x: torch.Tensor) -> torch.Tensor:
    import timm

    model = timm.create_model(f"local-dir:{run_dir}", pretrained=True).eval()
    with torch.no_grad():
        return model(x)


# ---------------------------------------------------------------------------------------------- cards
def test_card_metadata_and_numbers_parse_back(runs, tmp_path):
    before = folder_state(runs["btm"])
    out = write_card(runs["btm"], tmp_path / "card.md", repo_id="ltzoo/btm-tiny", parent_ids=["ltzoo/stage1-tiny"])
    assert folder_state(runs["btm"]) == before  # building a card only reads the run folder
    card = ModelCard.load(out)
    results = results_of(runs["btm"])
    data = card.data
    assert data.library_name == "timm" and data.license == "apache-2.0"
    assert data.base_model == "ltzoo/stage1-tiny" and data.model_name == "btm-tiny"
    assert {"image-classification", "timm", "ltzoo", "long-tailed", "method:btm+gml+ens"} <= set(data.tags)
    meta = data.to_dict()["ltzoo"]
    assert meta["hub_id"] == "ltzoo/btm-tiny" and meta["backbone"] == "resnet20_cifar" and meta["requires_ltzoo"]
    assert meta["parents"] == ["ltzoo/stage1-tiny"] and meta["seed"] == results["config"]["seed"]
    for split, hub_split in (("test", "test"), ("val", "validation")):
        assert card_metrics(card, hub_split) == expected_metrics(results, split)
        assert {"hm", "gm", "min_recall", "accuracy", "many", "medium", "few"} <= set(card_metrics(card, hub_split))
    names = {r.metric_type: r.metric_name for r in data.eval_results}
    assert names["hm"] == "Harmonic mean of per-class recall" and "fewer than 20 training images" in names["few"]

    text = card.text
    # the metrics table rounds exactly as ltzoo's summary table
    ours = next(ln for ln in text.splitlines() if ln.startswith("| test |"))
    theirs = summary_table({"m": results["metrics"]}).splitlines()[-1]
    assert ours.split("|")[2:] == theirs.split("|")[3:]
    assert "![Per-class recall" in text and "(per_class_recall.png)" in text
    assert 'timm.create_model("hf-hub:ltzoo/btm-tiny", pretrained=True)' in text and "import ltzoo" in text
    assert "accelerate launch -m ltzoo.recipes.btm" in text and "--init ltzoo/stage1-tiny" in text
    assert results["config"]["git_commit"] is None or results["config"]["git_commit"] in text
    assert "[`ltzoo/stage1-tiny`](https://huggingface.co/ltzoo/stage1-tiny)" in text
    for cite in ("arXiv:2401.16811", "Reviving Undersampling", "No One Left Behind", "arXiv:2303.03630", "rw2019timm"):
        assert cite in text
    assert "```yaml" in text and "Every model the run compared" in text  # BTM's stage comparison
    assert out.read_text().startswith("---\n")


def test_card_numbers_come_from_results_json(runs, tmp_path):
    """Edited numbers in results.json (with rounding edge cases) are exactly what the card shows."""
    run = copy_run(runs["stage1"], tmp_path / "run")
    results = results_of(run)
    fake = {
        "acc": 0.123449999,
        "mean_class_acc": 0.5,
        "hm": 0.3333333,
        "gm": 0.41666,
        "min_recall": 0.015,
        "many": 0.98765,
        "medium": 0.00049,
        "few": None,
    }
    results["metrics"]["test"].update(fake)
    (run / "results.json").write_text(json.dumps(results))
    card = build_card(run, repo_id="org/edited")
    got = {t: v for t, v in card_metrics(card).items() if t in {mtype for mtype, _, _ in METRICS.values()}}
    assert got == {METRICS[k][0]: float(f"{100 * v:.2f}") for k, v in fake.items() if v is not None}
    assert "few" not in got  # an empty group has no number, it is not typed as 0
    row = next(ln for ln in card.text.splitlines() if ln.startswith("| test |"))
    assert row == "| test | 12.34 | 50.00 | 33.33 | 41.67 | 1.50 | 98.77 | 0.05 | - |"
    # the linear baseline every run reports: its numbers and the model's margin over it, in points of HM
    results["baseline"] = {**results["baseline"], "test": {**results["baseline"]["test"], "hm": 0.25, "acc": 0.5}}
    (run / "results.json").write_text(json.dumps(results))
    text = " ".join(build_card(run, repo_id="org/edited").text.split())
    assert "Linear baseline on the same data (logistic regression" in text
    # the settings the run decided itself, with their rules
    assert "What the run decided itself" in text and "`warmup_epochs`: the usual 1 epoch" in text
    assert "test HM 25.00%, accuracy 50.00%" in text and "this model is +8.33 points of HM above it" in text


def test_card_for_timm_native_stage1(runs):
    card = build_card(runs["native"], repo_id="org/native-tiny")
    text = card.text
    assert card.data.to_dict()["ltzoo"]["requires_ltzoo"] is False
    assert card.data.base_model is None
    assert "import ltzoo" not in text and "a timm architecture" in text
    assert "trained from scratch" in text and "Balanced Meta-Softmax" in text  # the stage-1 loss's paper
    assert "Reviving Undersampling" not in text and "rw2019timm" in text


def test_parent_hub_id_from_the_parents_card(runs, tmp_path):
    """A local parent is shown by the hub id of its own card (``ltzoo card PARENT --repo-id``), else by name."""
    stage1 = copy_run(runs["stage1"], tmp_path / "stage1")
    run = copy_run(runs["btm"], tmp_path / "btm")
    results = results_of(run)
    results["parents"] = [str(stage1)]
    results["config"]["init"] = str(stage1)
    write_results(run, results)

    local = build_card(run, repo_id="org/btm")
    assert local.data.base_model is None and "`stage1` (a local run folder, not on the Hub)" in local.text
    assert local.data.to_dict()["ltzoo"]["parents"] == ["local:stage1"]

    write_card(stage1, repo_id="org/stage1")  # stage1/README.md records its hub id
    card = build_card(run, repo_id="org/btm")
    assert card.data.base_model == "org/stage1" and "--init org/stage1" in card.text
    assert "[`org/stage1`]" in card.text and "`ce` (pretrain)" in card.text
    with pytest.raises(ValueError, match="not a hub id"):
        build_card(run, parent_ids=["not a hub id"])


def test_card_of_timm_pretrained_start_and_of_gml_recipe(runs, tmp_path):
    """--pretrained: timm's weights are the base model; recipes/gml.py runs get GML's text and citations."""
    run = copy_run(runs["native"], tmp_path / "pretrained")
    results = results_of(run)
    results["config"]["pretrained"] = True
    write_results(run, results)
    card = build_card(run, repo_id="org/p")
    assert card.data.base_model == "timm/test_resnet.r160_in1k"
    assert (
        "[`timm/test_resnet.r160_in1k`](https://huggingface.co/timm/test_resnet.r160_in1k): timm's pretrained weights"
        in card.text
    )
    assert "--pretrained" in card.text and "trained from scratch" not in card.text

    run = copy_run(runs["btm"], tmp_path / "gml")
    results = results_of(run)
    results.update(recipe="gml", method="gml+ens")
    results["config"].update(
        recipe="gml",
        head_epochs=7,
        p=1.0,
        ensemble=True,
        baselines=True,
        flags=importlib.import_module("ltzoo.recipes.gml").build_parser().flag_table(),
    )
    write_results(run, results)
    card = build_card(run, repo_id="org/g", parent_ids=["org/stage1"])
    text = card.text
    assert "geometric mean loss (GML)" in text and "for 7 epochs, ensembled with the original classifier" in text
    assert "accelerate launch -m ltzoo.recipes.gml" in text and "--head-epochs 7" in text and "--subsets" not in text
    assert "--epochs" not in text.split("```bash\naccelerate launch")[1].split("```")[0]  # gml takes no --epochs
    assert "No One Left Behind" in text and "Decoupling Representation" in text and "Reviving" not in text


@pytest.mark.parametrize(
    "ref, hub_id",
    [
        ("hf-hub:ltzoo/stage1", "ltzoo/stage1"),
        ("ltzoo/stage1", "ltzoo/stage1"),
        ("timm/resnet18.a1_in1k", "timm/resnet18.a1_in1k"),
        ("runs/pretrain-ce-fmnist_lt-resnet32_cifar-s0", None),
        ("runs/btm-x/stage1", None),
        ("/abs/run", None),
        ("./run", None),
        ("local-dir:/abs/run", None),
        ("resnet18", None),
    ],
)
def test_parent_refs(ref, hub_id):
    from ltzoo.hub.card import _hub_ref

    assert _hub_ref(ref) == hub_id


def test_btm_with_its_own_stage1(runs, tmp_path):
    """BTM run without --init trains stage 1 into RUN/stage1: the card says so and its command has no --init."""
    run = copy_run(runs["btm"], tmp_path / "btm-run")
    copy_run(runs["stage1"], run / "stage1")
    results = results_of(run)
    results["config"].update(output="runs/btm-elsewhere", init="runs/btm-elsewhere/stage1")
    results["parents"] = ["runs/btm-elsewhere/stage1"]  # recorded relative to another working directory
    write_results(run, results)
    card = build_card(run, repo_id="org/btm")
    assert "stage 1, trained by the same command (`stage1/` of the run folder" in card.text
    assert "`ce` (pretrain)" in card.text and card.data.base_model is None
    command = card.text.split("```bash\naccelerate launch")[1].split("```")[0]
    assert "--init" not in command and "\ninit:" not in card.text


@pytest.mark.parametrize("which", ["stage1", "btm"])
def test_card_command_and_config_reproduce_the_run_arguments(runs, tmp_path, which):
    """The card's command line and YAML config parse back to the run's resolved arguments."""
    results = results_of(runs[which])
    config, recipe = results["config"], results["recipe"]
    parser = importlib.import_module(f"ltzoo.recipes.{recipe}").build_parser()  # the test's; the card imports none
    assert config["flags"] == json.loads(json.dumps(parser.flag_table())), "the run's config records the recipe's flags"
    expected = {
        k: v
        for k, v in config.items()
        if k not in ("config", "output", "recipe", "git_commit", "flags", "resolved", "parsed")
    }
    argv = shlex.split(render_command(config, recipe).replace("\\\n", " "))
    assert argv[:4] == ["accelerate", "launch", "-m", f"ltzoo.recipes.{recipe}"]
    parsed = vars(parser.parse_args(argv[4:]))
    assert {k: parsed[k] for k in expected} == expected
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_yaml(config, recipe))
    parsed = vars(parser.parse_args(["-c", str(cfg)]))
    assert {k: parsed[k] for k in expected} == expected


def test_card_reproduces_from_the_runs_own_run_config(runs, tmp_path):
    """The command and YAML come from run_config.yaml; results.json's config only when that file is missing."""
    run = copy_run(runs["stage1"], tmp_path / "run")
    config = yaml.safe_load((run / "run_config.yaml").read_text())
    config.update(seed=123, lr=0.0321)
    (run / "run_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    text = build_card(run, repo_id="org/r").text
    assert "--seed 123" in text and "--lr 0.0321" in text and "\nlr: 0.0321\n" in text
    (run / "run_config.yaml").unlink()
    text = build_card(run, repo_id="org/r").text
    seed = results_of(run)["config"]["seed"]
    assert f"--seed {seed}" in text and "0.0321" not in text


def test_display_names_and_citations_live_in_the_registries():
    """Every cite key a registry names is an entry of ltzoo/references.bib, and every dataset has a name."""
    from ltzoo.data.datasets import DATASETS
    from ltzoo.methods.heads import HEAD_METHODS, METHODS
    from ltzoo.methods.losses import list_losses, loss_spec

    entries = bibtex()
    assert BIB_PATH.parent == REPO_ROOT / "ltzoo" and all(
        e.startswith("@") and e.endswith("}") for e in entries.values()
    )
    keys = [k for n in list_losses() for k in loss_spec(n).cite] + [k for m in HEAD_METHODS.values() for k in m.cite]
    keys += [k for ks in RECIPE_CITES.values() for k in ks] + list(BACKBONE_CITES.values()) + [LIBRARY_CITE]
    assert set(keys) <= set(entries) and set(entries) <= set(keys)  # every entry is used, none is missing
    assert METHODS == tuple(HEAD_METHODS) and all(m.display_name for m in HEAD_METHODS.values())
    assert all(spec.display_name for spec in DATASETS.values())
    assert "references.bib" in (REPO_ROOT / "setup.cfg").read_text()  # shipped as package data


def test_template_ships_with_the_package():
    assert TEMPLATE_PATH == REPO_ROOT / "ltzoo" / "hub" / "templates" / "model_card.md" and TEMPLATE_PATH.is_file()
    assert "{{ card_data }}" in TEMPLATE_PATH.read_text()
    assert "ltzoo/hub/templates/model_card.md" in (REPO_ROOT / "hub_cards" / "README.md").read_text()


# ------------------------------------------------------------------------------------------ push/load
def test_push_load_in_fresh_process_offline_and_repush(runs, local_hub, tmp_path):
    run = runs["stage1"]
    repo = "ltzoo/stage1-tiny"
    before = folder_state(run)
    info = push_run(run, repo)
    assert folder_state(run) == before  # the run folder is untouched
    assert local_hub.request_count("/commit/", "POST") == 1
    history = local_hub.history(repo)
    assert len(history) == 2 and history[0].sha == info.oid  # the initial commit + ONE upload commit
    assert set(local_hub.files(repo)) == CARD_FILES
    for name in ("config.json", "model.safetensors", "results.json", "per_class_recall.png"):
        assert local_hub.read_file(repo, name) == (run / name).read_bytes()
    assert local_hub.read_file(repo, "README.md").decode() == str(build_card(run, repo_id=repo))
    assert not any(LOCAL_HUB_TOKEN.encode() in local_hub.read_file(repo, f) for f in CARD_FILES)

    # the card, read back from the Hub, carries results.json's numbers
    results = results_of(run)
    card = ModelCard.load(repo)
    got, want = card_metrics(card), expected_metrics(results)
    assert got == want and {k: got[k] for k in ("hm", "gm", "min_recall")} == {
        "hm": pct(results["metrics"]["test"]["hm"]),
        "gm": pct(results["metrics"]["test"]["gm"]),
        "min_recall": pct(results["metrics"]["test"]["min_recall"]),
    }

    # load in a fresh process from an empty cache: the timm-native model without ltzoo, then ltzoo's
    # own architecture after `import ltzoo`, through hf-hub: and local-dir:
    push_run(runs["native"], "org/native-tiny")
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    torch.save(x, tmp_path / "x.pt")
    expected, expected_native = local_logits(run, x), local_logits(runs["native"], x)
    hub_cache = Path(constants.HF_HUB_CACHE)
    shutil.rmtree(hub_cache, ignore_errors=True)
    code = f"""
        import sys, timm, torch
        x = torch.load({str(tmp_path / "x.pt")!r})
        with torch.no_grad():
            native = timm.create_model('hf-hub:org/native-tiny', pretrained=True).eval()(x)
        assert 'ltzoo' not in sys.modules, 'ltzoo was imported'
        import ltzoo
        with torch.no_grad():
            hub = timm.create_model('hf-hub:{repo}', pretrained=True).eval()(x)
            local = timm.create_model('local-dir:{run}', pretrained=True).eval()(x)
        torch.save({{'native': native, 'hub': hub, 'local': local}}, {str(tmp_path / "out.pt")!r})
    """
    run_python(code)
    out = torch.load(tmp_path / "out.pt")
    assert torch.equal(out["hub"], expected) and torch.equal(out["local"], expected)
    assert torch.equal(out["native"], expected_native)
    assert any(hub_cache.glob("models--ltzoo--stage1-tiny"))  # the child used the test's HF_HOME

    # offline, from the cache, in another fresh process: no request reaches the Hub
    local_hub.requests.clear()
    run_python(code.replace("out.pt", "offline.pt"), env={"HF_HUB_OFFLINE": "1"})
    assert local_hub.requests == []
    offline = torch.load(tmp_path / "offline.pt")
    assert torch.equal(offline["hub"], expected) and torch.equal(offline["native"], expected_native)

    # a second push updates the card in a new commit
    local_hub.requests.clear()
    push_run(run, repo, name="stage1-renamed")
    assert len(local_hub.history(repo)) == 3 and local_hub.request_count("/commit/", "POST") == 1
    card2 = ModelCard.load(repo)
    assert card2.data.model_name == "stage1-renamed" and card_metrics(card2) == want
    assert folder_state(run) == before
    assert local_hub.server_errors == []


def test_push_large_weights_through_lfs(runs, tmp_path, monkeypatch):
    """Weights above the Hub's regular-file size go up as LFS objects, in the same single commit."""
    import timm
    from hubserver import LocalHub, patch_huggingface_hub

    with LocalHub(token="tok", lfs_threshold=100_000) as hub:
        patch_huggingface_hub(monkeypatch, hub.endpoint, tmp_path / "home", "tok")
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # LocalHub speaks legacy LFS, not Xet
        push_run(runs["stage1"], "ltzoo/lfs")
        files = hub.files("ltzoo/lfs")
        assert files["model.safetensors"].lfs and not files["README.md"].lfs
        assert hub.request_count("/commit/", "POST") == 1 and len(hub.history("ltzoo/lfs")) == 2
        x = torch.randn(2, 1, 8, 8)
        with torch.no_grad():
            loaded = timm.create_model("hf-hub:ltzoo/lfs", pretrained=True).eval()(x)
        assert torch.equal(loaded, local_logits(runs["stage1"], x))


def test_dry_run_and_revision(runs, local_hub, capsys):
    plan = push_run(runs["stage1"], "ltzoo/dry", dry_run=True)
    assert plan["dry_run"] and plan["token_found"] and not local_hub.repo_exists("ltzoo/dry")
    assert [f["path_in_repo"] for f in plan["files"]] == [
        "config.json",
        "model.safetensors",
        "results.json",
        "per_class_recall.png",
        "reliability.png",
        "predictions.safetensors",
        "README.md",
    ]
    assert local_hub.requests == []
    assert ltzoo_main(["push", str(runs["stage1"]), "ltzoo/dry", "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["repo_id"] == "ltzoo/dry" and "card" not in out and LOCAL_HUB_TOKEN not in json.dumps(out)
    assert local_hub.requests == []

    assert ltzoo_main(["push", str(runs["stage1"]), "ltzoo/branchy", "--revision", "dev", "--private", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["revision"] == "dev" and local_hub.repo("ltzoo/branchy").private
    assert set(local_hub.files("ltzoo/branchy", "main")) == {".gitattributes"}
    assert set(local_hub.files("ltzoo/branchy", "dev")) == CARD_FILES and out["commit"] == local_hub.head(
        "ltzoo/branchy", "dev"
    )


def test_failing_hub_gives_a_clear_error_and_keeps_the_folder(runs, local_hub, monkeypatch, caplog, capsys):
    run, repo = runs["stage1"], "ltzoo/flaky"
    before = folder_state(run)
    waits: list[float] = []
    monkeypatch.setattr(push_mod, "_sleep", waits.append)
    disable_retry_sleep(monkeypatch)
    caplog.set_level(logging.DEBUG)

    # a server that keeps failing mid-push (the commit): bounded retries, then a clear error
    local_hub.fail_next("/commit/", status=500, times=3)
    with pytest.raises(HubError) as info:
        push_run(run, repo)
    msg = str(info.value)
    assert "HTTP 500" in msg and "retry later" in msg and "gave up after 3 attempts" in msg
    assert local_hub.request_count("/commit/", "POST") == 3 and waits == [2.0, 4.0]
    assert len(local_hub.history(repo)) == 1  # only the repo's initial commit: nothing half-pushed
    assert folder_state(run) == before

    # a transient failure is retried and the push goes through, in one commit
    local_hub.fail_next("/commit/", status=503, times=1)
    assert ltzoo_main(["push", str(run), repo]) == 0
    assert len(local_hub.history(repo)) == 2 and set(local_hub.files(repo)) == CARD_FILES
    out = capsys.readouterr().out
    assert f"pushed {run} to {repo}@main" in out and f"import ltzoo; timm.create_model('hf-hub:{repo}'" in out

    # the CLI reports the error in one line (a new name: an unchanged card would make no commit to fail)
    local_hub.fail_next("/commit/", status=502, times=3)
    assert ltzoo_main(["push", str(run), repo, "--name", "flaky-2"]) == 2
    assert local_hub.pending_failures() == 0 and len(local_hub.history(repo)) == 2
    err = capsys.readouterr().err
    assert err.startswith("ltzoo push: error: cannot upload") and "HTTP 502" in err
    assert folder_state(run) == before
    assert LOCAL_HUB_TOKEN not in caplog.text + msg + err


def test_auth_and_network_errors_never_show_the_token(runs, local_hub, monkeypatch, caplog, capsys):
    run = runs["stage1"]
    waits: list[float] = []
    monkeypatch.setattr(push_mod, "_sleep", waits.append)
    caplog.set_level(logging.DEBUG)
    secret = "hf_wrongSecretToken1234567890"
    with pytest.raises(HubError) as info:
        push_run(run, "ltzoo/auth", token=secret)
    msg = str(info.value)
    assert "HTTP 401" in msg and "hf auth login" in msg and "HF_TOKEN" in msg
    assert waits == [] and local_hub.request_count("/api/repos/create") == 1  # not retried
    assert not local_hub.repo_exists("ltzoo/auth")

    monkeypatch.setenv("HF_TOKEN", secret)
    assert ltzoo_main(["push", str(run), "ltzoo/auth"]) == 2
    err = capsys.readouterr().err
    assert "HTTP 401" in err

    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="no Hugging Face token found"):
        push_run(run, "ltzoo/auth")

    # an unreachable Hub: retried, then a message about the network and HF_ENDPOINT
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(HubError) as info:
        push_run(run, "ltzoo/auth", token=secret)
    assert "could not be reached" in str(info.value) and "HF_ENDPOINT" in str(info.value)
    assert waits == [2.0, 4.0]
    everything = caplog.text + msg + err + str(info.value) + capsys.readouterr().out
    assert secret not in everything and LOCAL_HUB_TOKEN not in everything


# ----------------------------------------------------------------------------------------- eval, zoo
def test_eval_of_pushed_model_reproduces_the_card(runs, local_hub, tmp_path, capsys):
    run, repo = runs["btm"], "ltzoo/btm-tiny"
    push_run(run, repo, parent_ids=["ltzoo/stage1-tiny"])
    card = ModelCard.load(repo)
    # the card's own `ltzoo eval` command, run as written
    cmd = next(ln for ln in card.text.splitlines() if ln.startswith("ltzoo eval "))
    assert f"hf-hub:{repo}" in cmd and f"--data-dir {runs['data']}" in cmd
    assert ltzoo_main(shlex.split(cmd)[1:] + ["--json", "--output", str(tmp_path / "eval")]) == 0
    out = json.loads(capsys.readouterr().out)
    metrics = out["metrics"]
    assert out["split"] == "test" and out["dataset"] == "imagefolder"
    assert index_metrics(metrics) == card_metrics(card)
    assert {k: metrics[k] for k in SUMMARY_KEYS} == {k: results_of(run)["metrics"]["test"][k] for k in SUMMARY_KEYS}
    assert (tmp_path / "eval" / "eval.json").is_file() and (tmp_path / "eval" / "per_class_recall.png").is_file()

    # the table form, and a run folder by path
    assert (
        ltzoo_main(["eval", str(run), "--dataset", "imagefolder", "--data-dir", str(runs["data"]), "--split", "val"])
        == 0
    )
    text = capsys.readouterr().out
    val_row = next(ln for ln in text.splitlines() if "| val |" in ln)
    assert val_row.split("|")[3:] == summary_table({"m": results_of(run)["metrics"]}).splitlines()[2].split("|")[3:]


def test_cli_card_and_zoo(runs, tmp_path, capsys):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "README.md").write_text("# not a card\n")
    stage1 = copy_run(runs["stage1"], tmp_path / "stage1")
    native = copy_run(runs["native"], tmp_path / "native")
    assert (
        ltzoo_main(["card", str(stage1), "--name", "s1", "--repo-id", "ltzoo/s1", "--cards-dir", str(cards), "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["written"] == [str(stage1 / "README.md"), str(cards / "s1.md")]
    assert (stage1 / "README.md").read_text() == (cards / "s1.md").read_text()
    assert out["test"]["hm"] == pct(results_of(stage1)["metrics"]["test"]["hm"])
    assert ltzoo_main(["card", str(native), "--name", "n1", "--repo-id", "org/n1", "--cards-dir", str(cards)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert ltzoo_main(["card", str(native), "--stdout"]) == 0
    assert capsys.readouterr().out.startswith("---\nlibrary_name: timm")

    assert ltzoo_main(["zoo", "--cards-dir", str(cards), "--json"]) == 0
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert set(models) == {"s1", "n1"}
    for name, run in (("s1", stage1), ("n1", native)):
        test = results_of(run)["metrics"]["test"]
        assert {k: models[name][k] for k in ("acc", "hm", "gm", "min_recall")} == {
            k: pct(test[k]) for k in ("acc", "hm", "gm", "min_recall")
        }
    assert models["s1"]["hub_id"] == "ltzoo/s1" and models["s1"]["backbone"] == "resnet20_cifar"
    assert models["n1"]["method"] == "bsce" and models["n1"]["dataset"] == "imagefolder"
    assert catalogue(cards) == sorted(models.values(), key=lambda e: (e["dataset"], e["name"]))
    assert ltzoo_main(["zoo", "--cards-dir", str(cards)]) == 0
    table = capsys.readouterr().out
    assert "| s1 | ce | resnet20_cifar | imagefolder |" in table and "ltzoo/s1" in table

    # the checkout's own hub_cards/ is a valid (possibly empty) catalogue
    assert ltzoo_main(["zoo", "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out)["models"], list)
