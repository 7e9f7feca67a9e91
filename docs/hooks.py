"""MkDocs hooks: the pages of ltzoo's site that are generated at build time, so they cannot drift.

- a page per recipe of `ltzoo.recipes.RECIPES` (``recipes/<name>.md``): its flag reference read from the
  recipe's own argparse parser (the module's ``build_parser()``, or a recipe class's), its shipped configs
  read from ``ltzoo/recipes/configs``; a recipe without a hand-written page gets one from its docstring;
- ``zoo.md``: the leaderboard and each model's per-class recall plot, from ``hub_cards/`` and ``zoo/*/``;
- ``benchmarks/all-results.md``: every file of ``benchmarks/results`` that no other page shows (a new
  ``transfer_*.md`` appears there by itself), with its plots;
- ``cli.md``: the ``ltzoo`` command's reference, from `ltzoo.cli.build_parser`.

Hand-written pages whose front matter says ``macros: true`` are rendered with Jinja first: every number in
their prose is a call such as ``{{ row("rho100", "CE").hm }}`` that reads a results file (`MACROS`), and a
name that is not in the file fails the build. Plots of ``benchmarks/results`` and ``zoo/`` are copied into
the site under the same paths.
"""

from __future__ import annotations

import argparse
import csv
import html
import importlib
import inspect
import json
import re
from functools import cache
from pathlib import Path

import jinja2
import yaml
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ZOO = ROOT / "zoo"
CARDS = ROOT / "hub_cards"
DOCS = ROOT / "docs"
#: a macro that shows a results file on a page: result("path under benchmarks/results")
_RESULT_CALL = re.compile(r"""result\(\s*["']([^"']+)["']""")


# ------------------------------------------------------------------------------------------- recipes
def recipe_names() -> list[str]:
    """The recipes, as `ltzoo launch` knows them (`ltzoo.recipes.RECIPES`)."""
    from ltzoo.recipes import RECIPES

    return list(RECIPES)


def recipe_parser(name: str) -> argparse.ArgumentParser:
    """The argparse parser of recipe ``name``: its module's ``build_parser()``, else a recipe class's."""
    module = importlib.import_module(f"ltzoo.recipes.{name}")
    owners = [module] + [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__]
    for owner in owners:
        build = getattr(owner, "build_parser", None)
        if callable(build) and not any(
            p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            for p in inspect.signature(build).parameters.values()
        ):
            parser = build()
            if isinstance(parser, argparse.ArgumentParser):
                return parser
    raise RuntimeError(
        f"ltzoo.recipes.{name} has no build_parser() returning an ArgumentParser (module or "
        f"class); docs/hooks.py reads each recipe's flags from it"
    )


def _cell(text: str) -> str:
    return html.escape(text).replace("|", "&#124;").replace("\n", " ")


def _default(action: argparse.Action) -> str:
    if action.default in (None, argparse.SUPPRESS) or action.nargs == 0 and action.default is False:
        return ""
    return f"`{action.default}`"


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        try:
            text = text % dict(vars(action), prog=prog)
        except (KeyError, TypeError, ValueError):
            pass
    text = _cell(text)
    if action.choices is not None:
        text += " (one of: " + ", ".join(f"`{c}`" for c in action.choices) + ")"
    return text


def _flags(action: argparse.Action) -> str:
    """``--flag VALUE`` for each of the action's option strings, as --help shows them."""
    if not action.option_strings:
        return f"`{action.dest}`"
    metavar = action.metavar or action.dest.upper()
    if action.nargs == 0:
        value = ""
    elif isinstance(metavar, tuple):
        value = " " + " ".join(metavar)
    elif isinstance(action.nargs, int):
        value = " " + " ".join([metavar] * action.nargs)
    elif action.nargs in ("*", "+"):
        value = f" {metavar} ..."
    else:
        value = f" {metavar}"
    return ", ".join(f"`{n}{value}`" for n in action.option_strings)


def flag_reference(parser: argparse.ArgumentParser, level: int = 3) -> str:
    """Every flag of ``parser`` by argument group, in argparse's --help order: the flag, its default, its help."""
    out = []
    for group in parser._action_groups:  # what argparse's --help iterates; no public accessor exists
        actions = [
            a
            for a in group._group_actions
            if a.help != argparse.SUPPRESS and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
        ]
        if not actions:
            continue
        title = {"options": "general", "optional arguments": "general"}.get(group.title, group.title)
        title = f"`{title}`" if title in recipe_names() else title[:1].upper() + title[1:]
        out += [f"{'#' * level} {title}", ""]
        for a in actions:
            default = _default(a)
            out += [
                _flags(a) + (f" &nbsp; (default {default})" if default else ""),
                f":   {_help(a, parser.prog) or '-'}",
                "",
            ]
    return "\n".join(out)


def _config_recipe(name: str) -> str:
    try:
        from ltzoo.recipes.flags import config_recipe
    except ImportError:  # the recipes' shared module moved: the packaged configs' naming rule
        stem = Path(name).stem
        return stem if stem in recipe_names() and stem != "pretrain" else "pretrain"
    return config_recipe(name)


def shipped_configs(recipe: str) -> list[tuple[str, str]]:
    """(name, YAML text) of every config shipped in ``ltzoo/recipes/configs`` for ``recipe``."""
    root = ROOT / "ltzoo" / "recipes" / "configs"
    files = sorted(root.glob("*/*.yaml"))
    return [
        (f"{p.parent.name}/{p.stem}", p.read_text())
        for p in files
        if _config_recipe(f"{p.parent.name}/{p.stem}") == recipe
    ]


def recipe_configs(recipe: str) -> str:
    configs = shipped_configs(recipe)
    if not configs:
        return f"No config ships for `{recipe}`; every flag has a default."
    out = ["`-c NAME` takes these by name (`ltzoo configs NAME > my.yaml` copies one out to edit):", ""]
    for name, text in configs:
        out += [f'??? example "`{name}`"', "", "    ```yaml"] + [f"    {line}" for line in text.rstrip().splitlines()]
        out += ["    ```", ""]
    return "\n".join(out)


def recipe_flags(recipe: str) -> str:
    parser = recipe_parser(recipe)
    return (
        f"`python -m ltzoo.recipes.{recipe} --help` prints the same list. Read from the recipe's parser "
        "when this site was built.\n\n" + flag_reference(parser)
    )


def generated_recipe_page(name: str) -> str:
    module = importlib.import_module(f"ltzoo.recipes.{name}")
    doc = (module.__doc__ or f"The {name} recipe.").strip()
    first, _, rest = doc.partition("\n")
    return "\n".join(
        [
            f"# `{name}`: {first.rstrip('.')}",
            "",
            rest.strip(),
            "",
            "```bash",
            f"accelerate launch -q -m ltzoo.recipes.{name} [-c CONFIG] [FLAGS]",
            "```",
            "",
            "## Flags",
            "",
            recipe_flags(name),
            "## Shipped configs",
            "",
            recipe_configs(name),
            "",
        ]
    )


# ------------------------------------------------------------------------------------------ the CLI
def cli_page() -> str:
    from ltzoo.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = [
        "# Command line",
        "",
        f"`ltzoo --help`: {_cell((parser.description or '').rstrip('.'))}. Every command below is read "
        "from `ltzoo.cli.build_parser` when this site is built; `ltzoo COMMAND --help` prints the same.",
        "",
        "Global flags:",
        "",
        flag_reference(parser, level=3),
    ]
    for name, sp in sub.choices.items():
        if name == "launch":
            desc = (
                "`ltzoo launch [ACCELERATE FLAGS] RECIPE [RECIPE FLAGS]`: `accelerate launch` with ltzoo's error "
                "contract on any number of processes (see [Recipes](recipes/index.md#several-processes))."
            )
        else:
            desc = _cell(" ".join((sp.description or "").split()))
        out += [f"## `ltzoo {name}`", "", desc, "", flag_reference(sp, level=3)]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- the zoo
def zoo_entries() -> list[dict]:
    """The catalogue of hub_cards/ (`ltzoo.hub.zoo.catalogue`) with each entry's results.json from zoo/."""
    from ltzoo.hub.zoo import catalogue

    entries = catalogue(CARDS)
    for e in entries:
        folder = ZOO / e["name"]
        e["folder"] = folder if folder.is_dir() else None
        results = folder / "results.json"
        e["results"] = json.loads(results.read_text()) if results.is_file() else None
        e["plot"] = folder / "per_class_recall.png" if (folder / "per_class_recall.png").is_file() else None
    return entries


def _num(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def zoo_page() -> str:
    entries = zoo_entries()
    out = [
        "# Model zoo",
        "",
        "Plain timm models with cards whose numbers come from each run's `results.json`; this page is generated "
        "from `hub_cards/` and `zoo/` when the site is built. Numbers: test split, %, each model chosen on the "
        "validation split. [Loading one](#loading-a-model) takes one line.",
        "",
    ]
    datasets = sorted(
        {str(e["dataset"]) for e in entries}, key=lambda d: (-sum(str(e["dataset"]) == d for e in entries), d)
    )
    for ds in datasets:
        rows = sorted((e for e in entries if str(e["dataset"]) == ds), key=lambda e: -(e["hm"] or 0))
        ratio = rows[0].get("imbalance_ratio")
        out += [
            f"## `{ds}`" + (f", rho = {ratio:g}" if ratio else ""),
            "",
            "| model | HM | min recall | acc | GM | method |",
            "|---|---|---|---|---|---|",
        ]
        out += [
            f"| [{e['name']}](#{e['name']}) | {_num(e['hm'])} | {_num(e['min_recall'])} | {_num(e['acc'])} | "
            f"{_num(e['gm'])} | {e['method']} |"
            for e in rows
        ]
        out += ["", "Sorted by HM, the harmonic mean of per-class recall ([Metrics](metrics.md)).", ""]
    out += [
        "## Loading a model",
        "",
        "```python",
        "import timm, ltzoo  # ltzoo registers resnet*_cifar with timm",
        "model = timm.create_model('hf-hub:ltzoo/NAME', pretrained=True)",
        "model = timm.create_model('local-dir:zoo/NAME', pretrained=True)  # a checkout",
        "```",
        "",
        "`ltzoo zoo` prints this catalogue; `ltzoo eval ltzoo/NAME --dataset DATASET` re-evaluates a model "
        "(`benchmarks/verify_zoo.py` does it for every entry: [Zoo check](#zoo-check)).",
        "",
    ]
    out += ["## The models", ""]
    for e in sorted(entries, key=lambda e: (datasets.index(str(e["dataset"])), -(e["hm"] or 0))):
        out += [f"### {e['name']} {{#{e['name']}}}", ""]
        facts = [f"method `{e['method']}`", f"backbone `{e['backbone']}`", f"dataset `{e['dataset']}`"]
        test = ((e["results"] or {}).get("metrics") or {}).get("test") or {}
        if e["parents"]:
            facts.append("starts from " + ", ".join(f"`{p}`" for p in e["parents"]))
        out += ["; ".join(facts) + ".", ""]
        res = e["results"] or {}
        if res.get("train_counts") and res.get("class_names"):
            counts = ", ".join(f"{n} {c}" for n, c in zip(res["class_names"], res["train_counts"]))
            out += [f"Training images per class: {counts}.", ""]
        if e["plot"] is not None:
            out += [f"![Per-class test recall of {e['name']}](zoo/{e['name']}/per_class_recall.png)", ""]
        if all(isinstance(test.get(k), float) for k in ("many", "medium", "few")):
            cuts = ((e["results"] or {}).get("dataset") or {}).get("shot_thresholds") or {}
            out += [
                "Test recall by shot group: "
                + ", ".join(
                    f"{k} {_num(100 * test[k])}" + (f" ({cuts[k]} training images)" if k in cuts else "")
                    for k in ("many", "medium", "few")
                )
                + ".",
                "",
            ]
        val = e.get("val") or {}
        if val:
            out += [
                f"Validation split: acc {_num(val.get('acc'))}, HM {_num(val.get('hm'))}, "
                f"min recall {_num(val.get('min_recall'))}.",
                "",
            ]
        out += [
            "```python",
            f"model = timm.create_model('hf-hub:{e['hub_id'] or 'ltzoo/' + e['name']}', pretrained=True)",
        ]
        if e["folder"] is not None:
            out.append(f"model = timm.create_model('local-dir:zoo/{e['name']}', pretrained=True)  # from a checkout")
        out += ["```", "", f"Card: `hub_cards/{e['name']}.md`.", ""]
    out += [
        "## Publish your own",
        "",
        "```bash",
        "ltzoo card RUN_DIR --name NAME          # the model card, every number read from results.json",
        "ltzoo push RUN_DIR ltzoo/NAME           # config, weights, card, results and plot in one commit",
        "ltzoo eval ltzoo/NAME --dataset fmnist_lt --json",
        "ltzoo zoo                               # the catalogue, from hub_cards/",
        "```",
        "",
        "`ltzoo card RUN_DIR --name NAME` writes `hub_cards/NAME.md` and `RUN_DIR/README.md` (the same text), from "
        "the card template shipped in the package (`ltzoo/hub/templates/model_card.md`); a card lists the model's "
        "stage chain with the hub ids of its parents. `hub_cards/README.md` says more.",
        "",
    ]
    verify = RESULTS / "verify_zoo.md"
    if verify.is_file():
        out += [
            "## Zoo check",
            "",
            "`python benchmarks/verify_zoo.py` re-evaluates every zoo model in a fresh process and "
            "compares it with its card and results.json; it writes `benchmarks/results/verify_zoo.md`:",
            "",
            demote(verify.read_text(), 2),
            "",
        ]
    return "\n".join(out)


# ------------------------------------------------------------------------------------ results files
def demote(markdown: str, by: int) -> str:
    """Headings of an included Markdown file moved ``by`` levels down (a file's # title becomes ### ...)."""
    fence = False
    lines = []
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        lines.append("#" * by + line if not fence and re.match(r"#{1,4} ", line) else line)
    return "\n".join(lines)


def plots_of(md: Path) -> list[Path]:
    """The plots a results file goes with: hm_vs_acc_<tag>.png, per_class_recall_<tag>.png beside
    method_table_<tag>.md."""
    stem = md.stem
    tag = stem.split("method_table_", 1)[1] if stem.startswith("method_table_") else stem
    names = [f"hm_vs_acc_{tag}.png", f"per_class_recall_{tag}.png", f"{stem}.png"]
    return [md.parent / n for n in names if (md.parent / n).is_file()]


_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def relink(markdown: str, folder: Path) -> str:
    """Links of a results file made to work on the site: its images under /benchmarks/results/..., links to other
    repository files shown as their path (they are not pages of the site); web links kept."""

    def fix(m: re.Match) -> str:
        bang, text, target = m.groups()
        if re.match(r"[a-z]+:|#", target):
            return m.group(0)
        path = (folder / target.split("#")[0]).resolve()
        if bang and path.is_file() and path.is_relative_to(RESULTS.resolve()):
            return f"![{text}](/benchmarks/results/{path.relative_to(RESULTS.resolve()).as_posix()})"
        shown = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else target
        return f"{text} (`{shown}`)" if text else f"`{shown}`"

    return _LINK.sub(fix, markdown)


def result(path: str, level: int = 3, plots: bool = True, numbers: bool = True) -> str:
    """A results file of benchmarks/results shown on a page: its text (headings demoted), then its plots.

    ``numbers``: its tables hold numbers, kept on one line per cell (class ``numbers``, docs/stylesheets/extra.css).
    """
    md = RESULTS / path
    if not md.is_file():
        raise FileNotFoundError(f"benchmarks/results/{path} does not exist (named by a docs page)")
    text = md.read_text()
    if md.suffix == ".csv":
        rows = list(csv.reader(text.splitlines()))
        text = "\n".join(
            ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            + ["| " + " | ".join(r) + " |" for r in rows[1:]]
        )
    text = relink(text, md.parent)
    out = [demote(text, level - 1) if level > 1 else text]
    if numbers:
        out = ['<div class="numbers" markdown>', "", out[0], "", "</div>"]
    if plots:
        for png in plots_of(md):
            rel = "benchmarks/results/" + png.relative_to(RESULTS).as_posix()
            out.append(f"\n![{png.stem.replace('_', ' ')}](/{rel})")
    return "\n".join(out) + "\n"


def shown_results() -> set[str]:
    """The results files the hand-written pages show with result(...)."""
    shown = set()
    for page in DOCS.rglob("*.md"):
        shown |= set(_RESULT_CALL.findall(page.read_text()))
    return shown


#: results files the generated pages show themselves (the zoo page: the zoo check)
GENERATED_SHOWN = {"verify_zoo.md"}


def all_results_page() -> str:
    shown = shown_results() | GENERATED_SHOWN
    files = sorted(p for p in RESULTS.rglob("*") if p.suffix in (".md",) and p.is_file())
    out = [
        "---",
        "hide:",
        "  - toc",
        "---",
        "",
        "# All results files",
        "",
        "Every Markdown file under `benchmarks/results/` that the other benchmark pages do not show, with its plots, "
        "generated when the site is built (a new results file appears here by itself). The scripts in "
        "`benchmarks/` write them; each file says how to re-run it.",
        "",
    ]
    plotted = set()
    for md in files:
        rel = md.relative_to(RESULTS).as_posix()
        plotted |= {p.relative_to(RESULTS).as_posix() for p in plots_of(md)}
        if rel in shown:
            continue
        out += [f"## `benchmarks/results/{rel}`", "", result(rel, level=3), ""]
    others = sorted(p for p in RESULTS.rglob("*.png") if p.relative_to(RESULTS).as_posix() not in plotted)
    shown_plots = {p for s in shown for p in (plots_of(RESULTS / s) if (RESULTS / s).is_file() else [])}
    others = [p for p in others if p not in shown_plots]
    if others:
        out += ["## Other plots", ""]
        for p in others:
            rel = "benchmarks/results/" + p.relative_to(RESULTS).as_posix()
            out += [f"`{rel}`", "", f"![{p.stem}](/{rel})", ""]
    out += [
        "## On other pages",
        "",
        "Shown on the benchmark pages: " + ", ".join(f"`{s}`" for s in sorted(shown)) + ".",
    ]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- macros
class Cell:
    """A number of a results file, formatted as the tables print it: ``str(cell)`` is ``mean ± std``
    (the mean alone without a spread), ``.m`` the mean alone, ``.v`` the mean as a float."""

    def __init__(self, value: float, std: float | None = None, scale: float = 100.0, digits: int = 2):
        self.v = value * scale
        self.s = None if std is None else std * scale
        self.digits = digits

    @property
    def m(self) -> str:
        return f"{self.v:,.{self.digits}f}"

    def __str__(self) -> str:
        return self.m + (f" ± {self.s:.{self.digits}f}" if self.s is not None else "")


class Row:
    """One row of a method table's CSV: ``row.hm``, ``row.acc``, ... are `Cell`s; ``row.seconds`` in s."""

    def __init__(self, record: dict):
        self.record = record
        self.seeds = int(record["seeds"])

    def __getattr__(self, key: str) -> Cell:
        if key.startswith("__") or key not in self.record:
            raise AttributeError(f"no column {key!r} in the method table (columns: {', '.join(self.record)})")
        raw, std = self.record[key], self.record.get(f"{key}_std")
        if key in ("seconds", "peak_memory_mb"):
            return Cell(float(raw), None, scale=1.0, digits=0)
        spread = float(std) if std not in (None, "") and self.seeds > 1 else None
        return Cell(float(raw), spread)


@cache
def _table(name: str) -> dict[str, Row]:
    """rows of benchmarks/results/[GRID/]method_table_<SETTING>.csv by method; ``name`` is SETTING or GRID/SETTING."""
    grid, _, setting = name.rpartition("/")
    path = RESULTS / grid / f"method_table_{setting}.csv"
    return {r["method"]: Row(r) for r in csv.DictReader(path.open())}


def row(table: str, method: str) -> Row:
    rows = _table(table)
    if method not in rows:
        raise KeyError(f"no row {method!r} in method table {table} (rows: {', '.join(rows)})")
    return rows[method]


@cache
def data(path: str):
    """A JSON or YAML results file of benchmarks/results, parsed."""
    p = RESULTS / path
    return json.loads(p.read_text()) if p.suffix == ".json" else yaml.safe_load(p.read_text())


class Versus:
    """One cell of regimes.json's BTM-against-LT-Soups comparison (test HM, BTM minus LT-Soups, points):
    ``str(v)`` / ``.d`` the mean of the per-seed differences, ``.ci`` their 95% t-interval over the seeds,
    ``.boot`` seed 0's paired bootstrap interval, ``.seeds`` how many seeds; ``.v`` the mean as a float."""

    def __init__(self, record: dict):
        self.v, self.seeds = record["difference"], record["seeds"]
        self.d = self._one(self.v)
        self.ci = self._span(record["interval"])
        self.boot = self._span(record["bootstrap_seed0"])

    @staticmethod
    def _one(x: float) -> str:
        return f"{x:+.1f}" if abs(x) >= 0.05 else f"{x:+.2f}"  # no "-0.0"

    @classmethod
    def _span(cls, iv) -> str:
        return "-" if not iv else f"{cls._one(iv[0])} to {cls._one(iv[1])}"

    def __str__(self) -> str:
        return self.d


def versus(setting: str, rho: int, eta: float, merge: str = "uniform") -> Versus:
    """BTM - LT-Soups in one regime cell of benchmarks/results/regimes.json: LT-Soups' documented setting (its
    members averaged, ``merge="uniform"``) or the authors' script's ``"sequential"`` merge."""
    for rec in data("regimes.json")["btm_vs_lt_soups"]:
        sequential = "sequential merge" in rec["soup"]
        if (rec["setting"], rec["rho"], rec["eta"]) == (setting, rho, eta) and sequential == (merge == "sequential"):
            return Versus(rec)
    raise KeyError(f"no BTM-vs-LT-Soups ({merge}) cell {setting} rho {rho} eta {eta} in regimes.json")


def regime(setting: str, rho: int, eta: float, method: str) -> Row:
    """One method's row in one regime cell of benchmarks/results/regimes.json (``.hm``, ``.min_recall``, ``.acc``,
    ``.many``, ``.few``: `Cell`s, mean ± std over its seeds)."""
    cell = [r for r in data("regimes.json")["rows"] if (r["setting"], r["rho"], r["eta"]) == (setting, rho, eta)]
    for r in cell:
        if r["method"] == method:
            record = {"seeds": r["seeds"]}
            for key in ("hm", "min_recall", "acc", "many", "few"):
                mean, std = r[f"{key}_mean"], r[f"{key}_std"]
                record[key] = None if mean is None else mean / 100  # Cell scales fractions to points
                record[f"{key}_std"] = None if std is None else std / 100
            return Row(record)
    raise KeyError(f"no row {method!r} in regime {setting} rho {rho} eta {eta} (rows: {[r['method'] for r in cell]})")


def pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}"


def num(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def zoo_result(name: str) -> dict:
    return json.loads((ZOO / name / "results.json").read_text())


def literature_counts(n_max: int, classes: int, rho: float) -> list[int]:
    from ltzoo.data.profiles import longtail_counts

    return longtail_counts(n_max, classes, rho)


def shot_cuts(counts: list[int]) -> str:
    """The many / few cut-offs `ltzoo.metrics.choose_shot_cuts` picks for ``counts``, and the group sizes."""
    from ltzoo.metrics.shots import choose_shot_cuts, shot_group_sizes

    many, few, _ = choose_shot_cuts(counts)
    return f"{many} / {few} ({' / '.join(map(str, shot_group_sizes(counts, many, few)))} classes)"


MACROS = dict(
    recipe_names=recipe_names,
    row=row,
    data=data,
    versus=versus,
    regime=regime,
    pct=pct,
    num=num,
    result=result,
    zoo_result=zoo_result,
    shot_cuts=shot_cuts,
    recipe_flags=recipe_flags,
    recipe_configs=recipe_configs,
    literature_counts=literature_counts,
)


# -------------------------------------------------------------------------------------- mkdocs hooks
def on_config(config, **kwargs):
    """Add a nav entry for each recipe of RECIPES under "Recipes" (a new recipe appears by itself)."""
    for item in config["nav"] or []:
        if isinstance(item, dict) and "Recipes" in item:
            listed = {v if isinstance(v, str) else next(iter(v.values())) for v in item["Recipes"]}
            item["Recipes"] += [{f"{n}": f"recipes/{n}.md"} for n in recipe_names() if f"recipes/{n}.md" not in listed]
    return config


def on_files(files: Files, config, **kwargs) -> Files:
    """The generated pages, and the plots of benchmarks/results and zoo/ under the same paths."""

    def add(uri: str, content=None, path: Path | None = None) -> None:
        if files.get_file_from_path(uri) is not None:
            files.remove(files.get_file_from_path(uri))
        files.append(File.generated(config, uri, content=content, abs_src_path=str(path) if path else None))

    for name in recipe_names():
        if files.get_file_from_path(f"recipes/{name}.md") is None:
            add(f"recipes/{name}.md", generated_recipe_page(name))
    add("zoo.md", zoo_page())
    add("benchmarks/all-results.md", all_results_page())
    add("cli.md", cli_page())
    for png in sorted(RESULTS.rglob("*.png")):
        add("benchmarks/results/" + png.relative_to(RESULTS).as_posix(), path=png)
    for png in sorted(ZOO.glob("*/per_class_recall.png")):
        add("zoo/" + png.relative_to(ZOO).as_posix(), path=png)
    return files


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    """Render a page whose front matter says ``macros: true``; rewrite /benchmarks/... and /zoo/... image links
    to the page's relative path."""
    if page.meta.get("macros"):
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        markdown = env.from_string(markdown).render(**MACROS)
    depth = page.file.src_uri.count("/")
    return re.sub(r"\]\(/((?:benchmarks|zoo)/)", "](" + "../" * depth + r"\1", markdown)
