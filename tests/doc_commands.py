"""The copyable commands and code snippets of README.md and docs/**/*.md, found and classified for
tests/test_doc_commands.py.

A *command block* is a fenced ```bash / ```sh / ```shell / ```console / ```python block, or a fenced block of
another kind (none, ```text) or an indented block one of whose lines is a command (it starts with ``ltzoo``,
``accelerate``, ``python``, ``pip``, ...). A block's commands are its lines (``\\`` continuations joined, ``#``
comments dropped, only ``$ `` lines of a ```console block), each split at ``&&``, ``||``, ``;`` and ``|`` into
segments; a ```python block is one snippet. Each gets one way of being tested:

- ``run``: an ``ltzoo`` command (run in-process through ``ltzoo.cli.main``, the console script's entry point, in a
  workspace folder; ``slow`` when it evaluates a model on a dataset), or a python snippet (run in a fresh
  interpreter in that workspace);
- ``parse``: a recipe command (``accelerate launch [-q] -m ltzoo.recipes.X``, ``accelerate launch recipes/X.py``,
  ``ltzoo launch ...``, ``python -m ltzoo.recipes.X``, ``python recipes/X.py``): its flags are parsed by the
  recipe's own parser, accelerate's flags by accelerate's;
- ``mark``: anything else (an install, the test suite, a benchmark script, the Hub): allowed only in a block
  that the page marks, on the nearest non-blank line before it, with ``<!-- doc-test: skip (REASON) -->``.
  A mark on a block whose every command runs or parses is refused (it would hide a command from the test),
  except on a python snippet (a sketch that is not a program). Commands marked for the Hub alone (``hub``) run,
  as a slow test, against tests/hubserver.py's local Hub holding the zoo entries they name.

The placeholders of the pages are folders of the workspace (`make_workspace`): ``D`` and ``DATA`` a tiny image
folder (which also holds tiny CIFAR-10/100 folders in torchvision's layout); ``RUN_DIR`` and every ``runs/NAME``
a command reads a copy of a zoo run folder (``runs/my-...``: a run of the reader's own); ``zoo/`` the
repository's zoo; ``eval/predictions.safetensors`` the predictions ``ltzoo eval ... --output eval
--save-predictions`` writes; ``img.png`` a Fashion-MNIST-sized image; ``../shared/data/splits/`` tiny Places-LT
lists. The hub id ``ltzoo/NAME`` is a real zoo entry.

``python tests/doc_commands.py`` prints every command with its page, line and way of being tested.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: the fenced blocks whose every line is a command (python: the block is one snippet)
COMMAND_LANGUAGES = {"bash", "sh", "shell", "console", "python", "py", "pycon"}
#: a line of another block is a command when its first word is one of these
COMMAND_WORDS = ("ltzoo", "accelerate", "python", "python3", "pip", "pip3", "apt-get", "apt", "sudo", "mkdocs")
#: ``<!-- doc-test: skip (REASON) -->``
MARK = re.compile(r"^\s*<!--\s*doc-test:\s*skip\s*\((?P<reason>.*)\)\s*-->\s*$")
#: a hub id of the zoo's organisation (``ltzoo/NAME``, ``hf-hub:ltzoo/NAME``)
ZOO_HUB_ID = re.compile(r"(?:hf-hub:)?ltzoo/(?P<name>[A-Za-z0-9][\w.-]*)(?![\w./-])")
#: the placeholder of a zoo hub id on the pages, and the real entry a test puts in its place
HUB_PLACEHOLDER, HUB_STANDIN = "ltzoo/NAME", "ltzoo/resnet20-ce-fmnistlt"
#: the zoo run folder standing in for a ``runs/NAME`` or ``RUN_DIR`` of the pages (BTM runs: a BTM model)
RUN_STANDIN, BTM_RUN_STANDIN = "resnet20-ce-fmnistlt", "resnet20-btm-gml-fmnistlt"
#: the workspace's top-level entries: a command argument under one of them is a path, not a hub id
WORKSPACE_ENTRIES = ("D", "DATA", "RUN_DIR", "runs", "zoo", "eval", "recipes", "img.png", "..")
#: ltzoo commands that evaluate a model on a dataset (slow: minutes on 2 cores) unless given predictions files
MODEL_COMMANDS = ("eval", "compare", "calibrate")
RECIPE_MODULE = re.compile(r"^ltzoo\.recipes\.(?P<name>\w+)$")
RECIPE_FILE = re.compile(r"^(?:\./)?recipes/(?P<name>\w+)\.py$")
#: a repository file a command names (it must exist)
REPO_FILE = re.compile(r"^(?:\./)?(?:recipes|benchmarks|tests|docs|ltzoo)/[\w./-]+\.(?:py|sh)$")


@dataclass
class Mark:
    page: str
    line: int
    reason: str


@dataclass
class Block:
    page: str
    line: int  #: 1-based line of the fence, or of an indented block's first line
    lang: str  #: the fence's language ("" for none); "indented" for an indented block
    lines: list[tuple[int, str]]  #: (line number, text) of the content, the block's indentation removed
    mark: Mark | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass
class Command:
    """One command segment, or one python snippet, of a page, and how the test covers it."""

    block: Block
    line: int  #: 1-based line of the page where the command starts
    text: str  #: the segment as written (a snippet: its code)
    argv: list[str] = field(default_factory=list)
    kind: str = ""  #: "run", "parse" or "mark"
    why: str = ""  #: for "mark": why the test cannot run it
    slow: bool = False
    python: bool = False  #: a python snippet
    hub: bool = False  #: marked for the Hub alone: it runs against a local Hub-compatible server (slow)

    @property
    def page(self) -> str:
        return self.block.page

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def marked(self) -> bool:
        return self.block.mark is not None

    @property
    def category(self) -> str:
        """What the test does with it: "run", "run (slow)", "parse", "marked", or "UNCOVERED"."""
        if self.kind == "parse":
            return "parse"
        if self.marked:
            return "marked"
        if self.kind == "run":
            return "run (slow)" if self.slow else "run"
        return "UNCOVERED"

    def test_id(self) -> str:
        first = self.text.splitlines()[0] if self.text else ""
        return f"{self.where} {first[:60]}".strip()


# ------------------------------------------------------------------------------------------------- pages
def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")


def blocks_and_marks(page: Path, name: str | None = None) -> tuple[list[Block], list[Mark], list[str]]:
    """A page's code blocks (fenced and indented), its doc-test marks, and the problems of its marks (a mark
    without a reason, a malformed one, one that precedes no code block); ``name``: the page's name in messages
    (default: its path in the repository)."""
    name, text = name or rel(page), page.read_text(encoding="utf-8")
    lines = text.split("\n")
    blocks: list[Block] = []
    marks: list[Mark] = []
    problems: list[str] = []
    i = 0
    if lines and lines[0].strip() == "---":  # YAML front matter (mkdocs macros)
        i = next((j for j in range(1, len(lines)) if lines[j].strip() == "---"), 0) + 1
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            indent, ticks = len(fence["indent"]), fence["fence"]
            j = i + 1
            while j < len(lines) and not re.match(rf"^\s*{re.escape(ticks[0])}{{{len(ticks)},}}\s*$", lines[j]):
                j += 1
            content = [(k + 1, lines[k][indent:] if lines[k][:indent].isspace() else lines[k]) for k in range(i + 1, j)]
            blocks.append(Block(name, i + 1, fence["lang"].lower(), content))
            i = j + 1
            continue
        if line.lstrip().startswith("<!--") and "doc-test" in line:
            m = MARK.match(line)
            if not m:
                problems.append(
                    f"{name}:{i + 1}: not a doc-test mark: {line.strip()!r}; write <!-- doc-test: skip (REASON) -->"
                )
            elif not m["reason"].strip():
                problems.append(f"{name}:{i + 1}: a doc-test mark needs a reason: <!-- doc-test: skip (REASON) -->")
            else:
                marks.append(Mark(name, i + 1, m["reason"].strip()))
            i += 1
            continue
        indented = line.startswith(("    ", "\t")) and line.strip()
        after_break = i == 0 or not lines[i - 1].strip() or MARK.match(lines[i - 1])
        if indented and after_break:
            j = i
            while j < len(lines) and (lines[j].startswith(("    ", "\t")) or not lines[j].strip()):
                j += 1
            content = [(k + 1, lines[k][4:] if lines[k].startswith("    ") else lines[k][1:]) for k in range(i, j)]
            while content and not content[-1][1].strip():
                content.pop()
            blocks.append(Block(name, i + 1, "indented", content))
            i = j
            continue
        i += 1
    # a mark belongs to the block whose nearest non-blank line before it is the mark
    by_line = {m.line: m for m in marks}
    claimed = set()
    for b in blocks:
        k = b.line - 2
        while k >= 0 and not lines[k].strip():
            k -= 1
        if k + 1 in by_line:
            b.mark = by_line[k + 1]
            claimed.add(k + 1)
    for m in marks:
        if m.line not in claimed:
            problems.append(f"{name}:{m.line}: the doc-test mark ({m.reason}) is not on the line before a code block")
    return blocks, marks, problems


def _is_command_line(text: str) -> bool:
    words = text.strip().removeprefix("$ ").split()
    return bool(words) and (words[0] in COMMAND_WORDS or bool(RECIPE_FILE.match(words[0])))


def is_command_block(b: Block) -> bool:
    if b.lang in COMMAND_LANGUAGES:
        return True
    return any(_is_command_line(t) for _, t in b.lines if not t.lstrip().startswith("#"))


def _strip_comment(line: str) -> str:
    """The line without its shell comment (a ``#`` that starts a word, outside quotes)."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k]
    return line


def _segments(text: str) -> list[tuple[str, list[str]]]:
    """The segments of a shell command line split at ``&&``, ``||``, ``;`` and ``|``: (text, argv) each."""
    lex = shlex.shlex(text, posix=True, punctuation_chars=True)
    lex.whitespace_split, lex.commenters = True, ""
    out, argv = [], []
    for token in [*lex, ";"]:
        if token in ("&&", "||", ";", "|", "&"):
            if argv:
                out.append((shlex.join(argv), argv))
            argv = []
        else:
            argv.append(token)
    return out


def commands(block: Block) -> list[Command]:
    """The commands of a command block, each classified (`classify`)."""
    if block.lang in ("python", "py"):
        code = "\n".join(t for _, t in block.lines)
        cmd = Command(block, block.line, code, python=True)
        if "hf-hub:" in code:
            cmd.kind, cmd.why, cmd.hub = "mark", "loads a model from the Hugging Face Hub (needs the network)", True
        else:
            cmd.kind = "run"
        return [cmd]
    if block.lang == "pycon":
        return [
            Command(
                block,
                block.line,
                "\n".join(t for _, t in block.lines),
                python=True,
                kind="mark",
                why="an interactive session (>>>), not a script",
            )
        ]
    out: list[Command] = []
    pending, start = "", 0
    for number, raw in block.lines:
        text = raw
        if block.lang == "console":
            if not raw.startswith("$ ") and not pending:
                continue  # output
            text = raw.removeprefix("$ ")
        text = _strip_comment(text).rstrip()
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        line, pending = pending + text, ""
        if not line.strip():
            continue
        try:
            segments = _segments(line)
        except ValueError as exc:  # an unclosed quote
            out.append(Command(block, start, line, kind="mark", why=f"not a shell command line ({exc})"))
            continue
        for seg_text, argv in segments:
            cmd = Command(block, start, seg_text, argv)
            classify(cmd)
            out.append(cmd)
    return out


def all_commands(page_list: list[Path] | None = None) -> tuple[list[Command], list[Mark], list[str]]:
    """Every command of every page (default: `pages`), every doc-test mark, and the problems found on the way
    (bad marks, a mark on a block that needs none)."""
    cmds: list[Command] = []
    marks: list[Mark] = []
    problems: list[str] = []
    for page in pages() if page_list is None else page_list:
        blocks, page_marks, page_problems = blocks_and_marks(page, None if page.is_relative_to(ROOT) else page.name)
        marks += page_marks
        problems += page_problems
        for b in blocks:
            if not is_command_block(b):
                if b.mark:
                    problems.append(f"{b.where}: the doc-test mark ({b.mark.reason}) is on a block with no command")
                continue
            found = commands(b)
            cmds += found
            if b.mark and not any(c.kind == "mark" or c.python for c in found):
                problems.append(
                    f"{b.where}: the doc-test mark ({b.mark.reason}) is on a block whose every command the test runs "
                    "or parses; remove the mark"
                )
    return cmds, marks, problems


# -------------------------------------------------------------------------------------------- classify
def ltzoo_argv(argv: list[str]) -> list[str] | None:
    """The arguments of an ``ltzoo`` command (``ltzoo ...`` or ``python -m ltzoo ...``), or None."""
    if argv[:1] == ["ltzoo"]:
        return argv[1:]
    if len(argv) >= 3 and argv[0] in ("python", "python3") and argv[1:3] == ["-m", "ltzoo"]:
        return argv[3:]
    return None


def subcommand(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


def is_hub_id(token: str) -> bool:
    """A model argument that names a Hub repository (``hf-hub:...`` or ``org/name`` outside the workspace)."""
    if token.startswith("hf-hub:"):
        return True
    return bool(re.fullmatch(r"[\w-]+/[\w.-]+", token)) and token.split("/")[0] not in WORKSPACE_ENTRIES


def classify(cmd: Command) -> None:
    """Set ``cmd.kind`` (run, parse, mark), ``why`` and ``slow`` from the command's words."""
    argv = cmd.argv
    word = argv[0]
    args = ltzoo_argv(argv)
    if args is not None:
        sub = subcommand(args)
        positional = [a for a in args[args.index(sub) + 1 :] if not a.startswith("-")] if sub else []
        if sub == "launch":
            cmd.kind = "parse"
        elif any(is_hub_id(a) for a in args):
            cmd.kind, cmd.why, cmd.hub = "mark", "names a Hub model (needs the network)", True
        elif sub == "push" and "--dry-run" not in args:
            cmd.kind, cmd.why = "mark", "uploads to the Hub (needs the network and a token)"
        else:
            cmd.kind = "run"
            cmd.slow = (
                sub in MODEL_COMMANDS
                and "--predictions" not in args
                and (sub != "compare" or not all(p.endswith(".safetensors") for p in positional[:2]))
            )
        return
    if recipe_of(argv) is not None:
        cmd.kind = "parse"
        return
    cmd.kind = "mark"
    if word in ("python", "python3"):
        rest = argv[1:]
        if rest[:2] == ["-m", "pytest"]:
            cmd.why = "runs the test suite"
        elif rest[:2] == ["-m", "venv"]:
            cmd.why = "makes a virtual environment"
        elif rest[:1] == ["-m"]:
            cmd.why = f"runs the module {rest[1] if len(rest) > 1 else ''}, which the doc test does not know"
        elif rest and rest[0].endswith(".py"):
            cmd.why = f"runs the script {rest[0]} (benchmarks write benchmarks/results/)"
        else:
            cmd.why = "a python command the doc test does not know"
    elif word in ("pip", "pip3", "apt-get", "apt", "sudo"):
        cmd.why = "installs packages"
    elif word in (".", "source"):
        cmd.why = "activates a virtual environment"
    elif word == "mkdocs":
        cmd.why = "runs mkdocs (tests/test_docs.py builds the site)"
    elif word == "accelerate":
        cmd.why = "an accelerate command other than launching a recipe"
    else:
        cmd.why = f"{word}: a command the doc test does not know"


def recipe_of(argv: list[str]) -> str | None:
    """The name of the recipe a command trains (``pretrain``, ``btm``...) or None, from its words alone."""
    if argv[:2] == ["accelerate", "launch"] or (argv[:1] == ["ltzoo"] and subcommand(argv[1:]) == "launch"):
        for k, a in enumerate(argv):
            if a == "-m" and k + 1 < len(argv) and RECIPE_MODULE.match(argv[k + 1]):
                return RECIPE_MODULE.match(argv[k + 1])["name"]
            if RECIPE_FILE.match(a):
                return RECIPE_FILE.match(a)["name"]
        if argv[0] == "ltzoo":
            from ltzoo.recipes import RECIPES

            return next((a for a in argv[2:] if a in RECIPES), "") or ""
        return ""  # a launch of something else: the parse test says what
    if argv[0] in ("python", "python3") and len(argv) > 1:
        if argv[1] == "-m" and len(argv) > 2 and RECIPE_MODULE.match(argv[2]):
            return RECIPE_MODULE.match(argv[2])["name"]
        if RECIPE_FILE.match(argv[1]):
            return RECIPE_FILE.match(argv[1])["name"]
    return None


# ------------------------------------------------------------------------------------ parse a recipe
def split_recipe_command(argv: list[str]) -> tuple[str, list[str]]:
    """(recipe name, the recipe's own arguments) of a recipe command, accelerate's flags checked by accelerate's
    own parser (``ltzoo launch``: through `ltzoo.cli.launch.recipe_argv`, as `ltzoo launch` runs it).

    Raises:
        ValueError: the command launches no ltzoo recipe, or a recipe file that is not the recipe's entry point.
        SystemExit / UserError: accelerate refuses a flag.
    """
    from accelerate.commands.launch import launch_command_parser

    from ltzoo.recipes import RECIPES

    if argv[0] in ("python", "python3"):
        if argv[1] == "-m":
            name, rest, script = RECIPE_MODULE.match(argv[2])["name"], argv[3:], None
        else:
            name, rest, script = RECIPE_FILE.match(argv[1])["name"], argv[2:], argv[1]
    else:
        if argv[0] == "ltzoo":
            from ltzoo.cli.launch import recipe_argv

            launch_argv = recipe_argv(argv[argv.index("launch") + 1 :])
        else:
            launch_argv = argv[2:]
        args = launch_command_parser().parse_args(launch_argv)
        target, rest = args.training_script, list(args.training_script_args)
        if args.module:
            m = RECIPE_MODULE.match(target)
            if not m:
                raise ValueError(f"-m {target} is not an ltzoo recipe (ltzoo.recipes.{{{','.join(RECIPES)}}})")
            name, script = m["name"], None
        else:
            m = RECIPE_FILE.match(target)
            if not m:
                raise ValueError(f"{target} is not a recipe file of the checkout (recipes/NAME.py)")
            name, script = m["name"], target
    if name not in RECIPES:
        raise ValueError(f"{name} is not a recipe ({', '.join(RECIPES)})")
    if script is not None:
        entry = ROOT / script
        if not entry.is_file() or f"from ltzoo.recipes.{name} import main" not in entry.read_text():
            raise ValueError(f"{script} is not the checkout's entry point of ltzoo.recipes.{name}")
    return name, rest


def parse_recipe_command(argv: list[str]):
    """(recipe name, the namespace its parser makes) of a recipe command, placeholders substituted (raises as
    `split_recipe_command` and the parser do: SystemExit on a usage error)."""
    import importlib

    name, rest = split_recipe_command(substitute(argv))
    return name, importlib.import_module(f"ltzoo.recipes.{name}").build_parser().parse_args(rest)


def written_run_folder(name: str, ns) -> str:
    """The run folder a parsed recipe command writes: its --output, or the recipe's default
    (`ltzoo.recipes.flags.default_output` of the recipe class's run name)."""
    import importlib

    from ltzoo.recipes.flags import default_output
    from ltzoo.recipes.recipe import TrainingRecipe

    cls = importlib.import_module(f"ltzoo.recipes.{name}").main.__self__  # main = TheRecipe.main
    return default_output(cls(ns).run_name() if issubclass(cls, TrainingRecipe) else name, ns).as_posix()


# ------------------------------------------------------------------------------------------ workspace
def substitute(argv: list[str]) -> list[str]:
    """The command with the pages' hub-id placeholder replaced by a real zoo entry."""
    return [a.replace(HUB_PLACEHOLDER, HUB_STANDIN) if a.endswith(HUB_PLACEHOLDER) else a for a in argv]


def run_folders(cmds: list[Command]) -> set[str]:
    """The ``runs/NAME`` folders the commands and snippets read (an ``--output`` is written, not read)."""
    found = set()
    for c in cmds:
        if c.python:
            found |= set(re.findall(r"\bruns/[\w.-]+", c.text))
            continue
        for k, a in enumerate(c.argv):
            if re.fullmatch(r"runs/[\w.-]+/?", a) and (k == 0 or c.argv[k - 1] != "--output"):
                found.add(a.rstrip("/"))
    return found


def make_workspace(root: Path, cmds: list[Command]) -> Path:
    """Write the workspace the commands run in under ``root`` (``root/ws``, and the ``root/shared`` that
    ``../shared/data/splits`` names); returns ``root/ws``."""
    import numpy as np
    from fixtures import class_images, make_cifar_python, make_imagefolder, make_split_lists
    from PIL import Image

    ws = root / "ws"
    ws.mkdir(parents=True)
    make_imagefolder(ws / "DATA", {"train": [24, 12, 6], "val": [2, 2, 2], "test": [3, 3, 3]})
    make_cifar_python(ws / "DATA", fine=False, n_train_per_class=20, n_test_per_class=2)
    make_cifar_python(ws / "DATA", fine=True, n_train_per_class=10, n_test_per_class=2)
    (ws / "D").symlink_to("DATA")
    make_split_lists(
        root / "shared/data/splits", {"train": [12, 6, 3], "val": [2, 2, 2], "test": [2, 2, 2]}, dataset="places_lt"
    )
    shutil.copytree(ROOT / "zoo", ws / "zoo")
    (ws / "recipes").symlink_to(ROOT / "recipes")
    for name in sorted(run_folders(cmds)) + ["RUN_DIR"]:
        standin = BTM_RUN_STANDIN if "btm" in name else RUN_STANDIN
        shutil.copytree(ws / "zoo" / standin, ws / name)
    (ws / "eval").mkdir()
    shutil.copy(ws / "zoo" / RUN_STANDIN / "predictions.safetensors", ws / "eval" / "predictions.safetensors")
    image = class_images(0, 1, (28, 28), 1, np.random.default_rng(0))[0, ..., 0]
    Image.fromarray(image, mode="L").save(ws / "img.png")
    return ws


def zoo_entries() -> set[str]:
    return {p.name for p in (ROOT / "zoo").iterdir() if p.is_dir()}


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    found, all_marks, issues = all_commands()
    for c in found:
        first = c.text.splitlines()[0] if c.text else ""
        print(f"{c.category:11} {c.where:28} {first[:110]}" + (f"   [{c.why}]" if c.kind == "mark" else ""))
    print()
    for m in all_marks:
        print(f"mark {m.page}:{m.line}: {m.reason}")
    for p in issues:
        print("PROBLEM", p)
