"""The package's shape: no import cycle, every module importable on its own in a fresh interpreter, no
``sys.path`` edits, and no bare ``print`` in the library (it logs; recipes print through accelerate)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ltzoo"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """The ltzoo modules ``name`` imports, at module level or inside functions (relative imports resolved)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` the module mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in MODULES and t != name}
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph, as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_the_package():
    graph = {name: imports_of(name, path) for name, path in MODULES.items()}
    assert "ltzoo.recipes.pretrain" in graph["ltzoo.recipes.btm"]  # the graph sees the imports
    assert "ltzoo.cli.hub" in graph["ltzoo.cli"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_every_module_imports_in_a_fresh_interpreter(order):
    names = [n for n in MODULES if not n.endswith("__main__")]
    names = names if order == "sorted" else names[::-1]
    code = f"import importlib\nfor n in {names!r}:\n    importlib.import_module(n)\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_no_sys_path_edits_and_no_bare_print():
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "recipes").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                pytest.fail(f"{path.relative_to(ROOT)}:{node.lineno}: sys.path: import from the package instead")
            if (
                path.is_relative_to(PACKAGE)
                and isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                pytest.fail(
                    f"{path.relative_to(ROOT)}:{node.lineno}: bare print in the library: log, or "
                    "accelerator.print in a recipe"
                )


def test_top_level_recipes_are_thin_entry_points():
    from ltzoo.recipes import RECIPES

    assert sorted(RECIPES) == sorted(p.stem for p in (ROOT / "recipes").glob("*.py"))
    for name in RECIPES:
        tree = ast.parse((ROOT / "recipes" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert imported == {f"ltzoo.recipes.{name}", "ltzoo.errors"}  # main, run under errors.run_main
        assert len([n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]) == 0


#: The floors, bottom up, as the tree holds them: each is a folder under ltzoo/ (a package), but for the leaves, the
#: two modules that stay at the top. A module may import its own package and the floors below its floor, never one
#: above: data and metrics import nothing above them, methods import no loop, the hub imports no recipe.
FLOORS = (
    ("ltzoo.errors", "ltzoo.files", "ltzoo.config"),
    ("ltzoo.data", "ltzoo.metrics"),
    ("ltzoo.methods", "ltzoo.models"),
    ("ltzoo.runfolder",),
    ("ltzoo.training",),
    ("ltzoo.recipes",),
    ("ltzoo.hub",),
    ("ltzoo.cli",),
)
TOP_LEVEL = {"__init__.py", "__main__.py", "errors.py", "files.py"}


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def floor_of(name: str) -> int:
    return next(i for i, floor in enumerate(FLOORS) if _within(name, floor))


def test_the_tree_is_the_floors():
    """Only the package face, ``__main__``, the errors and the files modules are loose; every folder is a floor."""
    assert {p.name for p in PACKAGE.glob("*.py")} <= TOP_LEVEL
    packages = {f"ltzoo.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    placed = {name for floor in FLOORS for name in floor}
    assert packages <= placed, f"a package in no floor: {sorted(packages - placed)}; add it to FLOORS"
    assert not placed - packages - {f"ltzoo.{n[:-3]}" for n in TOP_LEVEL}, sorted(placed - packages)


def test_no_two_modules_share_a_name():
    """One file per concept, named after it: no two modules of the package have the same file name."""
    seen: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert not {k: v for k, v in seen.items() if len(v) > 1}
    assert not list(PACKAGE.rglob("common.py")) and not list(PACKAGE.rglob("utils.py"))


def test_a_floor_imports_nothing_above_it():
    bad = [
        f"{name} imports {dep}"
        for name, path in MODULES.items()
        if name not in ("ltzoo", "ltzoo.__main__")
        for dep in sorted(imports_of(name, path))
        if dep != "ltzoo" and floor_of(dep) > floor_of(name)
    ]
    assert not bad, bad


def test_the_floor_check_sees_an_upward_import():
    assert floor_of("ltzoo.methods.heads") < floor_of("ltzoo.training.loop") < floor_of("ltzoo.recipes.btm")
    assert floor_of("ltzoo.data.splits") == floor_of("ltzoo.metrics.longtail")


def test_moved_modules_import_from_their_old_path_with_a_warning():
    code = (
        "import warnings, ltzoo\nwarnings.simplefilter('error')\ntry:\n    import ltzoo.heads\n"
        "except DeprecationWarning"
        " as e:\n    print(e)\nwarnings.simplefilter('ignore')\nimport ltzoo.heads, ltzoo.methods.heads\n"
        "assert ltzoo.heads.retrain is ltzoo.methods.heads.retrain\n"
        "from ltzoo.runs import create_model\nfrom ltzoo.runfolder.model_io import create_model as c2\n"
        "assert create_model is c2\n"
        "from ltzoo.losses.ce import CrossEntropyLoss as a\nfrom ltzoo.methods.losses.ce import CrossEntropyLoss as b\n"
        "assert a is b\nimport ltzoo.methods.heads as h\nassert h.__spec__.name == 'ltzoo.methods.heads'\n"
        "from ltzoo.recipes.common import RecipeParser\nfrom ltzoo.runfolder import RunFolder\n"
        "from ltzoo.runfolder.folder import RunFolder as R2\nassert RunFolder is R2"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ltzoo.heads moved to ltzoo.methods.heads" in proc.stdout
    from ltzoo import MOVED

    for new in MOVED.values():
        assert _within(new, [m for m in MODULES]), new


def test_hub_imports_no_recipe_even_by_name():
    for path in (PACKAGE / "hub").rglob("*.py"):
        assert "import_module" not in path.read_text(), f"{path}: the card asks the run's config, not a recipe"
