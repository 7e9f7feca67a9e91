"""``ltzoo configs``: the recipe configs that ship with the package (what ``-c NAME`` takes).

ltzoo configs                    # every config, its recipe and its first comment line
ltzoo configs fmnist_lt/btm      # print one; `> my.yaml`, edit, then `-c my.yaml`
"""

from __future__ import annotations

import sys

from ltzoo.cli.output import emit
from ltzoo.recipes.flags import config_path, config_recipe, list_configs


def _add_configs(p) -> None:
    p.add_argument("name", nargs="?", default=None, help="a config to print, e.g. fmnist_lt/ce")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _summary(name: str) -> str:
    lines = config_path(name).read_text().splitlines()
    return next((ln.lstrip("# ").strip() for ln in lines if ln.startswith("#")), "")


def cmd_configs(args) -> int:
    """List the packaged recipe configs, or print one (to copy and edit)."""
    if args.name:
        path = config_path(args.name)
        text = path.read_text()
        if args.json:
            emit({"name": args.name, "path": str(path), "text": text}, True, "")
        else:
            sys.stdout.write(text)
        return 0
    names = list_configs()
    rows = {n: {"recipe": config_recipe(n), "about": _summary(n)} for n in names}
    emit(
        {"configs": rows},
        args.json,
        "\n".join(f"{n:<20} {r['recipe']:<9} {r['about']}" for n, r in rows.items())
        + "\n\nrun one with `accelerate launch -m ltzoo.recipes.RECIPE -c NAME`; print one with `ltzoo configs NAME`",
    )
    return 0


COMMANDS = {"configs": (cmd_configs, _add_configs)}
