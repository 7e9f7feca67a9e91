"""The ltzoo command: inspect datasets, evaluate models, list the recipe configs, and publish the zoo.

    ltzoo data fmnist_lt --imbalance 100
    ltzoo data places_lt --train-list Places_LT_train.txt --json
    ltzoo eval RUN_DIR_OR_HUB_ID --dataset fmnist_lt --split test [--save-predictions] [--shifted-priors]
    ltzoo eval --predictions FILE
    ltzoo compare A B --dataset fmnist_lt
    ltzoo calibrate RUN_DIR_OR_HUB_ID --dataset fmnist_lt [--output DIR | --in-place]
    ltzoo configs [NAME]
    ltzoo card RUN_DIR
    ltzoo push RUN_DIR ORG/NAME [--private] [--revision R] [--dry-run]
    ltzoo zoo
    ltzoo launch [ACCELERATE FLAGS] RECIPE [RECIPE FLAGS]

Every command that reports numbers takes ``--json`` (one JSON object on stdout). The commands live
one group per module (`ltzoo.cli.data`, `ltzoo.cli.compare`, `ltzoo.cli.calibrate`, `ltzoo.cli.configs`,
`ltzoo.cli.hub`, `ltzoo.cli.launch`), each listing its commands in ``COMMANDS``; `GROUPS` below registers them. The
recipes run under
``accelerate launch -m ltzoo.recipes.<name>``, or ``ltzoo launch`` (the same, with a user error in one
line on any number of processes). Every command follows ltzoo's error contract (`ltzoo.errors`): bad
input ends with one line, ``ltzoo COMMAND: error: <problem>; <fix>``, and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ltzoo import __version__
from ltzoo.cli import calibrate, compare, configs, data, hub, launch
from ltzoo.errors import ArgumentParser, DefaultsHelpFormatter, run_main

#: The command groups, in the order ``ltzoo --help`` lists them.
GROUPS = (data, compare, calibrate, configs, hub, launch)


def build_parser() -> argparse.ArgumentParser:
    """The ltzoo argument parser with every command of `GROUPS` (usage errors in one line)."""
    p = ArgumentParser(prog="ltzoo", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"ltzoo {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        for name, (func, add_args) in group.COMMANDS.items():
            summary = (func.__doc__ or "").split("\n")[0].replace("%", "%%")  # argparse %-formats a help string
            sp = sub.add_parser(name, help=summary, description=func.__doc__, formatter_class=DefaultsHelpFormatter)
            add_args(sp)
            sp.set_defaults(func=func)
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; everything after ``launch`` is accelerate's flags and the recipe's, passed as they are."""
    parser, argv = build_parser(), list(argv)
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if at is not None and argv[at] == "launch" and argv[at + 1 :] not in (["-h"], ["--help"]):
        args = parser.parse_args(argv[: at + 1])
        args.argv = argv[at + 1 :]
        return args
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ltzoo`` console script and of ``python -m ltzoo``; returns the exit code.

    Runs the command under `ltzoo.errors.run_main`: bad input ends with one line, ``ltzoo COMMAND:
    error: <problem>; <fix>``, and exit code 2; a bug keeps its traceback.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return run_main(lambda: args.func(args), f"ltzoo {args.command}", exit=False)
