"""Every copyable command and code snippet of README.md and docs/**/*.md runs, parses, or is marked.

tests/doc_commands.py finds the command blocks and classifies each command (its docstring has the rules):

- run: ``ltzoo`` commands run as written, in-process through ``ltzoo.cli.main`` (the ``ltzoo`` console script's
  entry point) in a workspace whose folders stand for the pages' placeholders, and must exit 0; those that
  evaluate a model on a dataset (about 30 s each on 2 cores) are ``slow``, and the fast suite parses them.
  Python snippets run as written in a fresh interpreter in that workspace;
- parse: recipe commands (they train) are parsed: accelerate's flags by accelerate's parser (``ltzoo launch``'s
  through `ltzoo.cli.launch.recipe_argv`), the recipe's by its own ``build_parser()`` (so every flag exists,
  every value is valid, every ``-c`` names a config of that recipe), ``--model`` is a timm architecture, and
  ``--data-dir`` / ``--init`` name a folder of the workspace (a placeholder) or a zoo entry;
- marked: a command the test cannot run here (installs, the suite itself, benchmarks, the Hub) is allowed in a
  block the page marks with ``<!-- doc-test: skip (REASON) -->`` on the line before it; the recipe and ``ltzoo``
  commands of a marked block are still parsed, the scripts and zoo models it names must exist, and a marked
  python snippet must compile. A command marked for the Hub alone runs (slow) against tests/hubserver.py's
  local Hub, which holds the zoo entries it names.

``python tests/doc_commands.py`` lists every command with its page, line and category.

A command that is none of these fails `test_every_command_is_covered`, naming its page and line. A run folder a
command reads (``--init runs/X``, ``ltzoo eval runs/X``) must be one a recipe command of the pages writes, or a
run of the reader's own, named ``runs/my-...``.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from doc_commands import (
    HUB_PLACEHOLDER,
    REPO_FILE,
    ROOT,
    ZOO_HUB_ID,
    all_commands,
    is_hub_id,
    ltzoo_argv,
    make_workspace,
    parse_recipe_command,
    run_folders,
    substitute,
    written_run_folder,
    zoo_entries,
)

COMMANDS, MARKS, PROBLEMS = all_commands()


def _params(cmds, slow_mark=True):
    return [pytest.param(c, id=c.test_id(), marks=[pytest.mark.slow] if (slow_mark and c.slow) else []) for c in cmds]


RUN = [c for c in COMMANDS if c.kind == "run" and not c.marked and not c.python]
SNIPPETS = [c for c in COMMANDS if c.kind == "run" and not c.marked and c.python]
RECIPES = [c for c in COMMANDS if c.kind == "parse"]
#: ltzoo commands the fast suite does not run (slow, or in a marked block): parsed by ltzoo's own parser
LTZOO_PARSED = [
    c for c in COMMANDS if c.argv and ltzoo_argv(c.argv) is not None and c.kind != "parse" and (c.slow or c.marked)
]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The workspace every command of the pages runs in (built once; each run works on a copy)."""
    return make_workspace(tmp_path_factory.mktemp("doc_commands"), COMMANDS)


@pytest.fixture
def workspace(template, tmp_path, monkeypatch) -> Path:
    """A copy of the workspace (hard links: files are replaced, never written through, by ltzoo), as cwd."""
    ws = tmp_path / "ws"
    shutil.copytree(template, ws, symlinks=True, copy_function=os.link)
    (tmp_path / "shared").symlink_to(template.parent / "shared")
    monkeypatch.chdir(ws)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return ws


# ---------------------------------------------------------------------------------------------- coverage
def test_every_command_is_covered():
    uncovered = [f"{c.where}: `{c.text.splitlines()[0]}`: {c.why}" for c in COMMANDS if c.category == "UNCOVERED"]
    message = ""
    if uncovered:
        message += (
            "commands the doc test cannot run or parse; give the page a command it can, or mark the block with "
            "<!-- doc-test: skip (REASON) --> on the line before it:\n  " + "\n  ".join(uncovered) + "\n"
        )
    if PROBLEMS:
        message += "doc-test marks:\n  " + "\n  ".join(PROBLEMS)
    if message:
        pytest.fail(message, pytrace=False)


def test_the_pages_have_commands_of_each_kind():
    """The finder finds the pages' blocks (a regression in it would pass every other test vacuously)."""
    assert len(RUN) >= 8 and len(SNIPPETS) >= 1 and len(RECIPES) >= 20 and len(MARKS) >= 5
    assert {c.page for c in COMMANDS} >= {"README.md", "docs/data.md", "docs/metrics.md", "docs/fine-tune.md"}


@pytest.mark.parametrize("mark", MARKS, ids=[f"{m.page}:{m.line} ({m.reason})" for m in MARKS])
def test_a_marked_block_has_a_reason(mark):
    """The marks, listed by their ids: each gives its reason, and a marked python snippet still compiles (the
    recipe and ltzoo commands of a marked block are parsed below, the names in it checked)."""
    assert mark.reason.strip()
    for c in COMMANDS:
        if c.block.mark is mark and c.python:
            compile(c.text, c.where, "exec")


def test_names_in_commands_exist():
    """The repository files a command or snippet names exist, and a zoo hub id (but the placeholder
    ``ltzoo/NAME``) names an entry of zoo/, in every block, marked ones included."""
    entries, wrong = zoo_entries(), []
    for c in COMMANDS:
        for t in c.text.split() if c.python else c.argv:
            t = t.strip("\"'(),")
            if REPO_FILE.match(t) and not (ROOT / t).is_file():
                wrong.append(f"{c.where}: {t} is not a file of the repository")
            m = ZOO_HUB_ID.fullmatch(t)
            if m and not (ROOT / t).exists() and not t.endswith(HUB_PLACEHOLDER) and m["name"] not in entries:
                wrong.append(f"{c.where}: {t} names no zoo entry (zoo/ has {', '.join(sorted(entries))})")
    assert not wrong, "\n".join(wrong)


def test_the_ltzoo_command_is_cli_main():
    """The in-process runs below call ltzoo.cli.main: the installed ``ltzoo`` console script is that function."""
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "ltzoo"]
    assert script.value == "ltzoo.cli:main"


# ------------------------------------------------------------------------------------------------- run
def _ltzoo(args: list[str], capsys) -> tuple[int, str]:
    from ltzoo.cli import main

    try:
        rc = main(args)
    except SystemExit as exc:  # --help, or a usage error
        rc = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize("cmd", _params(RUN))
def test_command_runs_as_written(cmd, workspace, capsys):
    rc, output = _ltzoo(ltzoo_argv(cmd.argv), capsys)
    assert rc == 0, f"{cmd.where}: `{cmd.text}` exited {rc}:\n{output[-3000:]}"


@pytest.mark.parametrize("cmd", _params(SNIPPETS))
def test_snippet_runs_as_written(cmd, workspace, tmp_path):
    """In a fresh interpreter (the snippet's own imports register what it needs), in the workspace."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", cmd.text], cwd=workspace, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{cmd.where}: the snippet failed:\n{proc.stderr[-3000:]}"


# ----------------------------------------------------------------------------------------------- parse
@pytest.mark.parametrize("cmd", _params(RECIPES))
def test_recipe_command_parses(cmd, template, monkeypatch, capsys):
    import timm

    import ltzoo  # noqa: F401  (registers the CIFAR architectures with timm)
    from ltzoo.errors import UserError
    from ltzoo.recipes.flags import config_path, config_recipe

    monkeypatch.chdir(template)
    try:
        name, ns = parse_recipe_command(cmd.argv)
    except SystemExit as exc:
        if exc.code == 0:  # --help
            return
        pytest.fail(f"{cmd.where}: `{cmd.text}` does not parse: {capsys.readouterr().err.strip()}")
    except (UserError, ValueError) as exc:
        pytest.fail(f"{cmd.where}: `{cmd.text}`: {exc}")
    if ns.config and not Path(ns.config).is_file():
        assert config_recipe(ns.config) == name, (
            f"{cmd.where}: -c {ns.config} is a config of {config_recipe(ns.config)}"
        )
        assert config_path(ns.config).is_file()
    if getattr(ns, "model", None):
        assert timm.is_model(ns.model), f"{cmd.where}: --model {ns.model} is not a timm architecture"
    if getattr(ns, "data_dir", None):
        assert (template / ns.data_dir).is_dir(), (
            f"{cmd.where}: --data-dir {ns.data_dir}: write D or DATA (the pages' placeholders for a data folder)"
        )
    init = getattr(ns, "init", None)
    if init and not is_hub_id(init):
        assert (template / init).is_dir(), f"{cmd.where}: --init {init} is no run folder (RUN_DIR, runs/NAME)"


def test_a_run_folder_a_page_reads_is_one_a_command_writes(template, monkeypatch):
    """``--init runs/X``, ``ltzoo eval runs/X``... read the folder a recipe command of the pages writes (its
    ``--output``, or the recipe's default run folder), or a run of the reader's own (``runs/my-...``): the
    pages' commands, run one after another, find each other's folders."""
    monkeypatch.chdir(template)
    written = set()
    for c in RECIPES:
        try:
            written.add(written_run_folder(*parse_recipe_command(c.argv)))
        except (SystemExit, Exception):  # a command that does not parse fails its own test
            continue
    read = {f for f in run_folders(COMMANDS) if not f.startswith("runs/my-")}
    missing = sorted(read - written)
    assert not missing, (
        f"run folders the pages read that no command of theirs writes: {missing}; written: {sorted(written)}"
    )


@pytest.mark.parametrize("cmd", _params(LTZOO_PARSED, slow_mark=False))
def test_ltzoo_command_parses(cmd, capsys):
    """The ltzoo commands not run in the fast suite (slow ones, marked ones): their flags exist and parse."""
    from ltzoo.cli import parse_args

    try:
        parse_args(substitute(ltzoo_argv(cmd.argv)))
    except SystemExit as exc:
        assert exc.code == 0, f"{cmd.where}: `{cmd.text}` does not parse: {capsys.readouterr().err.strip()}"


# -------------------------------------------------------------------------------------------------- the Hub
HUB = [c for c in COMMANDS if c.hub and c.marked]


@pytest.mark.slow
@pytest.mark.parametrize("cmd", [pytest.param(c, id=c.test_id()) for c in HUB])
def test_a_hub_command_runs_against_a_local_hub(cmd, workspace, local_hub, capsys):
    """A command marked for the Hub alone, run as written against tests/hubserver.py's Hub holding the zoo
    entries it names (a python snippet in a fresh interpreter, which inherits the server's environment)."""
    from huggingface_hub import HfApi

    names = {m["name"] for m in ZOO_HUB_ID.finditer(cmd.text)} - {HUB_PLACEHOLDER.split("/")[1]}
    assert names, f"{cmd.where}: no zoo hub id"
    api = HfApi()
    for name in sorted(names):
        api.create_repo(f"ltzoo/{name}")
        api.upload_folder(repo_id=f"ltzoo/{name}", folder_path=ROOT / "zoo" / name)
    local_hub.requests.clear()
    if cmd.python:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run(
            [sys.executable, "-c", cmd.text], cwd=workspace, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"{cmd.where}: the snippet failed:\n{proc.stderr[-3000:]}"
    else:
        rc, output = _ltzoo(ltzoo_argv(cmd.argv), capsys)
        assert rc == 0, f"{cmd.where}: `{cmd.text}` exited {rc}:\n{output[-3000:]}"
    for name in names:
        assert local_hub.request_count(f"ltzoo/{name}/resolve/", "GET"), f"ltzoo/{name} was not downloaded"


# ---------------------------------------------------------------------------------- the architecture page
def test_the_recipe_sketch_names_the_code():
    """docs/architecture.md's sketch of a recipe (marked: it is not a program) names a class, its base, its
    steps and its ``main`` as ltzoo/recipes/pretrain.py has them."""
    (sketch,) = [c for c in COMMANDS if c.python and c.page == "docs/architecture.md" and "class Pretrain" in c.text]
    tree = ast.parse(sketch.text)
    from ltzoo.recipes import pretrain

    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            cls = getattr(pretrain, node.name)
            assert [b.id for b in node.bases] == [base.__name__ for base in cls.__bases__]
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    assert item.name in vars(cls), f"{node.name}.{item.name} is not in ltzoo/recipes/pretrain.py"
                elif isinstance(item, ast.Assign):
                    assert hasattr(cls, item.targets[0].id)
        elif isinstance(node, ast.Assign):
            assert ast.unparse(node.value) == "Pretrain.main" and pretrain.main == pretrain.Pretrain.main


# ------------------------------------------------------------------------------------- the finder itself
PAGE = """# A page

```bash
ltzoo configs
accelerate launch -q -m ltzoo.recipes.btm --epochs 2   # trains
pip install something
```

<!-- doc-test: skip (installs a package) -->
```bash
pip install something
```

<!-- doc-test: skip () -->
```bash
pip install something-else
```

<!-- doc-test: skip (nothing follows) -->

Some text.

    python -m ltzoo.recipes.gml \\
        --init RUN_DIR
"""


def test_an_unmarked_command_fails_naming_its_page_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    cmds, marks, problems = all_commands([page])
    assert [(c.where, c.category) for c in cmds] == [
        ("page.md:4", "run"),
        ("page.md:5", "parse"),
        ("page.md:6", "UNCOVERED"),
        ("page.md:11", "marked"),
        ("page.md:16", "UNCOVERED"),
        ("page.md:23", "parse"),
    ]
    assert cmds[-1].argv == ["python", "-m", "ltzoo.recipes.gml", "--init", "RUN_DIR"]
    assert [m.reason for m in marks] == ["installs a package", "nothing follows"]
    assert any("page.md:14: a doc-test mark needs a reason" in p for p in problems)
    assert any("page.md:19: the doc-test mark (nothing follows) is not on the line before" in p for p in problems)
