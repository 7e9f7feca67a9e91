"""The documentation site: `mkdocs build --strict` passes, and its generated pages follow the code and the results.

The site's hooks (docs/hooks.py) generate the recipe flag references from the recipes' parsers, the zoo
leaderboard from hub_cards/ and zoo/, and the benchmark pages from benchmarks/results; these tests build the site
once (seconds) and check those pages against their sources.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_hooks():
    spec = importlib.util.spec_from_file_location("ltzoo_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()


def page_text(site: Path, page: str) -> str:
    """The text of a built page, tags stripped."""
    return html.unescape(re.sub(r"<[^>]+>", "", (site / page / "index.html").read_text()))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


def test_strict_build_makes_every_page(site):
    for page in (
        "",
        "getting-started",
        "data",
        "fine-tune",
        "recipes",
        "metrics",
        "zoo",
        "benchmarks",
        "benchmarks/method-tables",
        "benchmarks/speed",
        "benchmarks/all-results",
        "errors",
        "cli",
        "architecture",
        "cifar-lt",
        "methods",
        "api",
        "changelog",
    ):
        assert (site / page / "index.html").is_file(), page
    assert not list(site.rglob("*.py")), "the hooks and scripts are not published"


@pytest.mark.parametrize("recipe", hooks.recipe_names())
def test_recipe_page_lists_every_flag_of_its_parser(site, recipe):
    text = page_text(site, f"recipes/{recipe}")
    parser = hooks.recipe_parser(recipe)
    flags = {s for a in parser._actions for s in a.option_strings if a.help != "==SUPPRESS=="} - {"-h", "--help"}
    missing = sorted(f for f in flags if f not in text)
    assert not missing, f"recipes/{recipe} lacks {missing}"
    for name, _ in hooks.shipped_configs(recipe):
        assert name in text


def test_a_new_recipe_gets_a_page_from_its_parser(monkeypatch):
    module = types.ModuleType("ltzoo.recipes.tinyrecipe")
    module.__doc__ = "Tiny: a recipe that appeared after the docs were written.\n\nIt trains nothing."

    class TinyRecipe:
        @staticmethod
        def build_parser():
            import argparse

            p = argparse.ArgumentParser(prog="tinyrecipe.py")
            p.add_argument("--widgets", type=int, default=3, help="how many widgets")
            return p

    TinyRecipe.__module__ = module.__name__
    module.TinyRecipe = TinyRecipe
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(hooks, "recipe_names", lambda: ["pretrain", "tinyrecipe"])
    page = hooks.generated_recipe_page("tinyrecipe")
    assert "--widgets" in page and "how many widgets" in page and "`3`" in page
    config = {"nav": [{"Recipes": ["recipes/index.md"]}]}
    hooks.on_config(config)
    assert {"tinyrecipe": "recipes/tinyrecipe.md"} in config["nav"][0]["Recipes"]


def test_zoo_leaderboard_from_the_cards(site):
    from ltzoo.hub.zoo import catalogue

    text = page_text(site, "zoo")
    for entry in catalogue(ROOT / "hub_cards"):
        assert entry["name"] in text
        assert f"{entry['hm']:.2f}" in text and f"{entry['min_recall']:.2f}" in text
        assert (site / "zoo" / entry["name"] / "per_class_recall.png").is_file()


def test_benchmark_numbers_come_from_the_results_files(site):
    rows = {r["method"]: r for r in csv.DictReader((ROOT / "benchmarks/results/method_table_rho100.csv").open())}
    tables = page_text(site, "benchmarks/method-tables")
    for method in ("CE", "CE + BTM + GML", "BSCE 45 ep. + BTM + GML"):
        assert f"{100 * float(rows[method]['hm']):.2f} ± {100 * float(rows[method]['hm_std']):.2f}" in tables
    which = (ROOT / "benchmarks/results/which_method.md").read_text().split("\n")[2]
    assert html.unescape(re.sub(r"<[^>]+>", "", which.split("|")[2])).strip() in page_text(site, "benchmarks")


def test_a_new_results_file_appears_on_the_all_results_page(tmp_path, monkeypatch):
    (tmp_path / "transfer_cifar.md").write_text("# Transfer to CIFAR\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    (tmp_path / "hm_vs_acc_cifar.png").write_bytes(b"")
    monkeypatch.setattr(hooks, "RESULTS", tmp_path)
    monkeypatch.setattr(hooks, "shown_results", lambda: set())
    page = hooks.all_results_page()
    assert "benchmarks/results/transfer_cifar.md" in page and "### Transfer to CIFAR" in page


def test_links_of_an_included_results_file_work_on_the_site(tmp_path, monkeypatch):
    (tmp_path / "plot.png").write_bytes(b"")
    monkeypatch.setattr(hooks, "RESULTS", tmp_path)
    text = hooks.relink(
        "![a plot](plot.png) see [the table](other.md) and [timm](https://github.com/huggingface)", tmp_path
    )
    assert "![a plot](/benchmarks/results/plot.png)" in text
    assert "[the table]" not in text and "the table (`" in text and "(https://github.com/huggingface)" in text


def test_a_misnamed_row_fails_the_build():
    with pytest.raises(KeyError, match="no row"):
        hooks.row("rho100", "A method no table has")


#: pages other issues write (provisional here): the numbers they cite are theirs to source
OTHERS = {"fine-tune.md", "metrics.md", "architecture.md", "cifar-lt.md", "methods.md"}


def test_hand_written_pages_type_no_result():
    """Results (two-decimal numbers) on the site come from the results files, never from a page's text."""
    typed = {}
    for page in (ROOT / "docs").rglob("*.md"):
        if page.relative_to(ROOT / "docs").as_posix() in OTHERS:
            continue
        text = page.read_text()
        text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks
        text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", text, flags=re.S)  # macros: read from results files
        text = re.sub(r"`[^`]*`", "", text)  # code spans
        found = re.findall(r"\b\d+\.\d\d\b", text)
        if found:
            typed[str(page.relative_to(ROOT))] = found
    assert not typed, f"typed results (read them from benchmarks/results with a macro, docs/hooks.py): {typed}"


def test_readme_links_into_the_docs_exist():
    links = re.findall(r"\]\(((?:docs|hub_cards)/[^)#]+)", (ROOT / "README.md").read_text())
    assert links and all((ROOT / link).is_file() for link in links), links
    assert "<!-- which-method -->" in (ROOT / "README.md").read_text()  # benchmarks/which_method.py writes there


def _python_block(page: str, needle: str) -> str:
    """The ```python block of docs/``page`` that holds ``needle``."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), flags=re.S)
    found = [b for b in blocks if needle in b]
    assert len(found) == 1, f"docs/{page} has {len(found)} python blocks with {needle!r}"
    return found[0]


@pytest.mark.parametrize("channels", [1, 3])
def test_fine_tune_loading_snippet_runs_as_written(tmp_path, channels):
    """docs/fine-tune.md's plain-timm loading snippet, run as written in a fresh interpreter (its own `import ltzoo`
    registers the architecture) beside a tiny runs/my-run and img.png: a grayscale (1-channel) model, as the
    default pipeline trains, and an RGB one. Its logits are those ltzoo's batch pipeline gives the same image."""
    import torch
    from fixtures import make_imagefolder

    from ltzoo.data import load_dataset
    from ltzoo.runfolder.model_io import batch_preprocess, create_model, save_model

    code = _python_block("fine-tune.md", "local-dir:runs/my-run")
    data = make_imagefolder(tmp_path / "data", {"train": [6, 4], "test": [2, 2]}, size=(8, 8), channels=channels)
    ds = load_dataset("imagefolder", data_dir=str(data), val_per_class=0)
    torch.manual_seed(0)
    net = create_model(ds, "resnet20_cifar").eval()
    save_model(net, tmp_path / "runs" / "my-run", ds)
    (tmp_path / "img.png").write_bytes((data / "test" / "class_00" / "00000.png").read_bytes())
    proc = subprocess.run(
        [sys.executable, "-c", code + "\nimport json\nprint(json.dumps(logits.tolist()))"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.tensor(__import__("json").loads(proc.stdout.strip().splitlines()[-1]))
    assert got.shape == (1, 2)
    with torch.no_grad():
        want = net(batch_preprocess(ds, net)(ds.test.images[:1]))  # test/class_00/00000.png, first in its split
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
