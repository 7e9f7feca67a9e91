"""``ltzoo launch``: ``accelerate launch`` with ltzoo's error contract, for any number of processes.

    ltzoo launch --multi_gpu --num_processes 2 -m ltzoo.recipes.btm --dataset imagefolder --data-dir D
    ltzoo launch recipes/btm.py --epochs 3          # a recipe file of a checkout
    ltzoo launch btm --epochs 3                     # a recipe by name: -m ltzoo.recipes.btm

Takes accelerate launch's own flags, then the recipe and its flags. A user error in the recipe ends with
its one line, printed once for all processes, and exit code 2, without accelerate's or torch elastic's
traceback; a crash keeps every traceback (`ltzoo.errors.launch`).
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from ltzoo.errors import UserError, launch
from ltzoo.recipes import RECIPES

_USAGE = "ltzoo launch [ACCELERATE FLAGS] RECIPE [RECIPE FLAGS]"


def recipe_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` checked, with a recipe given by name (``btm``) turned into ``-m ltzoo.recipes.btm``.

    Raises:
        UserError: no recipe, a recipe file that does not exist, or a flag accelerate launch refuses.
    """
    from accelerate.commands.launch import launch_command_parser

    argv = list(argv)
    if not argv:
        raise UserError(
            "no recipe to launch",
            f"{_USAGE}, e.g. `ltzoo launch recipes/btm.py` or `ltzoo launch -m ltzoo.recipes.btm`",
        )
    parser = launch_command_parser()

    def refuse(message: str):
        raise UserError(f"accelerate launch: {message}", f"{_USAGE}; `accelerate launch --help` lists its flags")

    parser.error = refuse
    args = parser.parse_args(argv)
    script = args.training_script
    argv = _explicit_defaults(args) + argv
    if args.module or Path(script).exists():
        return argv
    if "/" in script or script.endswith(".py") or importlib.util.find_spec(f"ltzoo.recipes.{script}") is None:
        raise UserError(
            f"no recipe file {script}", f"give a recipe file, -m MODULE, or a recipe's name ({', '.join(RECIPES)})"
        )
    # the recipe is the first token whose tail is the script and its arguments
    at = next(i for i in range(len(argv)) if argv[i] == script and argv[i + 1 :] == args.training_script_args)
    return argv[:at] + ["-m", f"ltzoo.recipes.{script}"] + argv[at + 1 :]


def _explicit_defaults(args) -> list[str]:
    """accelerate launch's own defaults, passed explicitly when no accelerate config file gives them: its
    six-line "defaults used" warning then does not open every run (and its "mixed_precision 'no'" does not
    contradict the precision the recipe decides and prints in its opening line)."""
    from accelerate.commands.config import default_config_file

    if args.config_file or Path(default_config_file).is_file():
        return []  # a config gives them (and a value passed here would override it)
    given = []
    if args.num_processes is None and not (args.multi_gpu or args.tpu):
        # accelerate's own choice: a process per GPU, several GPUs meaning --multi_gpu
        gpus = 0 if args.cpu else torch_device_count()
        given += ["--num_processes", str(max(gpus, 1))] + (["--multi_gpu"] if gpus > 1 else [])
    if args.num_machines is None:
        given += ["--num_machines", "1"]
    if args.mixed_precision is None:
        given += ["--mixed_precision", "no"]  # accelerate's default; a recipe's --mixed-precision decides
    if args.dynamo_backend is None:
        given += ["--dynamo_backend", "no"]
    if args.num_cpu_threads_per_process is None:
        given += ["--num_cpu_threads_per_process", "1"]  # a recipe's --threads gives each process its share
    return given


def torch_device_count() -> int:
    """How many accelerator devices accelerate launch would count (0 on a CPU-only machine)."""
    from accelerate.utils import get_torch_accelerator_backend  # noqa: PLC0415

    device_type, module = get_torch_accelerator_backend()
    return module.device_count() if module is not None and device_type not in (None, "cpu") else 0


def _add_launch(p) -> None:
    p.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="[ACCELERATE FLAGS] RECIPE [RECIPE FLAGS]",
        help=f"accelerate launch's flags, then the recipe: a file (recipes/btm.py), -m MODULE, or a "
        f"name ({', '.join(RECIPES)}), then its flags",
    )


def cmd_launch(args) -> int:
    """Run a recipe under accelerate launch: a user error is one line (exit code 2) on any number of processes."""
    return launch(recipe_argv(args.argv))


COMMANDS = {"launch": (cmd_launch, _add_launch)}
