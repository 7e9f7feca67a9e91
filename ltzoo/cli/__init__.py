"""The ltzoo command: inspect datasets, evaluate models, list the recipe configs, and publish the zoo.

    ltzoo data fmnist_lt --imbalance 100
    ltzoo data places_lt --train-list Places_LT_train.txt --json
    ltzoo eval RUN_DIR_OR_HUB_ID --dataset fmnist_lt --split test
    ltzoo configs [NAME]
    ltzoo card RUN_DIR
    ltzoo push RUN_DIR ORG/NAME [--private] [--revision R] [--dry-run]
    ltzoo zoo

Every command that reports numbers takes ``--json`` (one JSON object on stdout). The commands live
one group per module (`ltzoo.cli.data`, `ltzoo.cli.configs`, `ltzoo.cli.hub`), each listing its
commands in ``COMMANDS``; `GROUPS` below registers them. The recipes are not commands: they run under
``accelerate launch -m ltzoo.recipes.<name>``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ltzoo import __version__
from ltzoo.cli import configs, data, hub

#: The command groups, in the order ``ltzoo --help`` lists them.
GROUPS = (data, configs, hub)


def build_parser() -> argparse.ArgumentParser:
    """The ltzoo argument parser with every command of `GROUPS`."""
    p = argparse.ArgumentParser(prog="ltzoo", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"ltzoo {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        for name, (func, add_args) in group.COMMANDS.items():
            sp = sub.add_parser(name, help=(func.__doc__ or "").split("\n")[0], description=func.__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
            add_args(sp)
            sp.set_defaults(func=func)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ltzoo`` console script and of ``python -m ltzoo``.

    Bad input (a ValueError, FileNotFoundError or RuntimeError from the library) ends with one line,
    ``ltzoo COMMAND: error: ...``, and exit code 2.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        sys.stderr.write(f"ltzoo {args.command}: error: {exc}\n")
        return 2
