"""One error contract for the ``ltzoo`` CLI and every recipe.

A *user error* (a bad flag or value, bad data, a missing or corrupt file, an offline or unreachable Hub, a
full or read-only disk) ends the program with exit code 2 and ONE line on stderr, ``prog: error: <the
problem>; <the fix>``. Anything else is a bug in ltzoo and keeps its traceback.

- `UserError` is what ltzoo raises for bad input. It subclasses ValueError, ltzoo's older convention, so
  ``except ValueError`` keeps working.
- `user_error` turns the exceptions third-party libraries raise for bad input (safetensors, PIL, OSError
  with ENOSPC/EROFS/EACCES/ENOENT, timm's unknown model, huggingface_hub's offline and not-found errors,
  YAML) into a `UserError` with a clear one-line message; None for anything else.
- `run_main` runs a ``main`` under that contract: the entry point of every recipe and of the CLI.
- `ArgumentParser` is argparse with one-line usage errors (exit code 2), the parser of the CLI and the recipes.
- `launch` is ``accelerate launch`` with the same flags, for user errors under the launcher: accelerate's
  launcher turns any non-zero exit of the recipe into its own traceback (``CalledProcessError`` for one
  process, torch elastic's ``ChildFailedError`` box for several), and nothing a child process does can
  silence its parent. `launch` runs accelerate's launcher in-process with ``LTZOO_ERROR_DIR`` set; a recipe
  process that ends on a user error records its line there (`run_main` does it), and `launch` then prints
  the line once and exits 2 instead of showing the launcher's traceback. A crash (no record, or a process
  that failed otherwise) keeps every traceback. Plain ``accelerate launch -q`` also ends a one-process run
  on the recipe's one line (exit code 1); for several processes accelerate has no quiet mode.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)

#: Exit code of a user error (argparse's, for bad flags, too).
USER_ERROR_EXIT = 2
#: Exit code of an interrupted run (Ctrl-C), as a shell reports SIGINT.
INTERRUPT_EXIT = 130
#: Folder where recipe processes record user errors for `launch` (set by `launch` only).
ERROR_DIR_ENV = "LTZOO_ERROR_DIR"
#: Set to 1 to see the traceback of user errors too (debugging ltzoo).
TRACEBACK_ENV = "LTZOO_TRACEBACK"


class UserError(ValueError):
    """Bad input: the message names the problem and the fix; shown as one line, without a traceback."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem, self.fix = problem, fix
        super().__init__(one_line(f"{problem}; {fix}" if fix else problem))


def one_line(text: str) -> str:
    """``text`` on one line (line breaks and the indentation after them become single spaces)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


# ------------------------------------------------------------------------------------ classification
_OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space or write the run folder elsewhere (--output)"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write the run folder elsewhere (--output)"),
    errno.EROFS: ("read-only file system", "write the run folder to a writable place (--output)"),
    errno.EACCES: ("permission denied", "fix the permissions or use a path you may read/write"),
    errno.EPERM: ("operation not permitted", "fix the permissions or use a path you may read/write"),
    errno.ENOENT: ("no such file or directory", "check the path"),
    errno.ENOTDIR: ("not a directory", "check the path"),
    errno.EISDIR: ("is a directory, not a file", "pass the file inside it"),
}


def user_error(exc: BaseException, hub_id: str | None = None) -> UserError | None:
    """A `UserError` with a one-line message for an exception caused by bad input, else None (a bug).

    Args:
        exc: any exception.
        hub_id: the hub id being loaded when ``exc`` happened, named in Hub errors.
    """
    if isinstance(exc, UserError):
        return exc
    for check in (_hub_error, _safetensors_error, _image_error, _timm_error, _yaml_error, _memory_error, _os_error):
        found = check(exc, hub_id) if check is _hub_error else check(exc)
        if found is not None:
            return found
    if isinstance(exc, ValueError):  # ltzoo's convention before UserError: its ValueErrors are bad input
        return UserError(str(exc))
    return None


def _network_error(exc: BaseException) -> bool:
    """A failed connection: httpx's or requests' transport errors, a refused connection, an unknown host."""
    import socket

    names = {f"{c.__module__.split('.')[0]}.{c.__name__}" for c in type(exc).__mro__}
    return isinstance(exc, (ConnectionRefusedError, socket.gaierror)) or bool(
        names & {"httpx.TransportError", "httpx2.TransportError", "requests.ConnectionError", "requests.Timeout"}
    )


def _hub_error(exc: BaseException, hub_id: str | None) -> UserError | None:
    try:
        from huggingface_hub import errors as hf
    except ImportError:  # pragma: no cover - a dependency of ltzoo
        return None
    what = f"hub model {hub_id}" if hub_id else "a file from the Hugging Face Hub"
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    if isinstance(exc, (hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled)) or (offline and _network_error(exc)):
        if offline:
            return UserError(
                f"{what} is not in the local cache and the Hub is offline (HF_HUB_OFFLINE=1)",
                "download it once online (unset HF_HUB_OFFLINE), or pass a run folder instead",
            )
        return UserError(
            f"{what} is not in the local cache and the Hub cannot be reached",
            "check the network connection (or HF_ENDPOINT), or pass a run folder instead",
        )
    if _network_error(exc):
        return UserError(
            f"cannot reach the Hugging Face Hub to fetch {what} ({type(exc).__name__})",
            "check the network connection (or HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to use the cache",
        )
    if isinstance(exc, hf.GatedRepoError):
        return UserError(f"{what} is gated", "accept its terms on the Hub and log in (hf auth login or HF_TOKEN)")
    if isinstance(exc, hf.RepositoryNotFoundError):
        return UserError(
            f"{what} does not exist on the Hub or is private",
            "check the id (ORG/NAME), or log in (hf auth login or HF_TOKEN) if it is private",
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return UserError(f"the revision asked for of {what} does not exist", "check the --revision")
    if isinstance(exc, hf.EntryNotFoundError):
        return UserError(
            f"{what} lacks a file ltzoo needs ({one_line(exc)[:200]})",
            "check that the repo is a timm model (config.json + model.safetensors)",
        )
    return None


def _safetensors_error(exc: BaseException) -> UserError | None:
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, SafetensorError):
        return UserError(
            f"a weights file is not a readable safetensors file ({one_line(exc)}): it is truncated or corrupt",
            "re-export or re-download it",
        )
    return None


def _image_error(exc: BaseException) -> UserError | None:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, UnidentifiedImageError):
        return UserError(
            f"{one_line(exc)} (not an image, or corrupt)",
            "replace the file or remove it from the split (or skip bad files: --skip-bad-files)",
        )
    if isinstance(exc, Image.DecompressionBombError):
        return UserError(one_line(exc), "replace the image by a smaller one or remove it from the split")
    return None


def _timm_error(exc: BaseException) -> UserError | None:
    if isinstance(exc, RuntimeError) and str(exc).startswith("Unknown model"):
        name = str(exc)[len("Unknown model") :].strip(" ()")
        return UserError(
            f"unknown model {name!r}: not a timm architecture, a run folder or a hub id (ORG/NAME)",
            "timm.list_models('*part-of-name*') lists the architectures",
        )
    return None


def _yaml_error(exc: BaseException) -> UserError | None:
    try:
        import yaml
    except ImportError:  # pragma: no cover
        return None
    if not isinstance(exc, yaml.YAMLError):
        return None
    mark = getattr(exc, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "a YAML file"
    problem = getattr(exc, "problem", None) or one_line(exc)
    return UserError(f"{where}: not valid YAML ({problem})", "fix the syntax (a config is `flag_name: value` lines)")


def _memory_error(exc: BaseException) -> UserError | None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, torch.OutOfMemoryError):
        return UserError(
            "out of accelerator memory",
            "lower --batch-size (with --grad-accum to keep the effective batch) or use a smaller --model",
        )
    return None


def _os_error(exc: BaseException) -> UserError | None:
    if not isinstance(exc, OSError):
        return None
    if isinstance(exc, FileNotFoundError) and exc.errno is None:  # raised by ltzoo, with its own message
        return UserError(str(exc))
    if exc.errno not in _OS_ERRORS:
        return None
    problem, fix = _OS_ERRORS[exc.errno]
    return UserError(f"{exc.filename}: {problem}" if exc.filename is not None else problem, fix)


# ------------------------------------------------------------------------------------------ run_main
def run_main(main: Callable[..., Any], prog: str, argv: Sequence[str] | None = None, *, exit: bool = True) -> int:
    """Run ``main`` under ltzoo's error contract; the entry point of every recipe and of the CLI.

    A user error (see `user_error`) writes ``<prog>: error: <message>`` on stderr, one line, and gives
    exit code 2 (130 for Ctrl-C); any other exception propagates with its traceback (exit code 1). Under
    `launch` the line is recorded for the launcher instead, which prints it once. ``LTZOO_TRACEBACK=1``
    shows the traceback of user errors too.

    Args:
        main: called as ``main(argv)`` when ``argv`` is given, else ``main()``; an int it returns is the
            exit code (a recipe's results dict, or None, means 0).
        prog: the program name in the message (a script path is shortened to its file name).
        argv: the arguments, if ``main`` takes them.
        exit: ``sys.exit`` with the code (True, for scripts) or return it (False, for console entry
            points whose caller exits).
    """
    prog = os.path.basename(str(prog)) or str(prog)
    try:
        result = main() if argv is None else main(argv)
        code = result if isinstance(result, int) and not isinstance(result, bool) else 0
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        code = INTERRUPT_EXIT
    except Exception as exc:
        err = user_error(exc)
        if err is None or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            _record("crash", type(exc).__name__)  # tells `launch` to keep the launcher's traceback too
            raise
        report_user_error(f"{prog}: error: {err}")
        code = USER_ERROR_EXIT
    if exit:
        sys.stderr.flush()
        sys.exit(code)
    return code


def report_user_error(line: str) -> None:
    """Show a user error's line: on stderr, or recorded for `launch` when running under it."""
    if not _record("error", line):
        sys.stderr.write(line + "\n")


def _record(kind: str, text: str) -> bool:
    """Record how this process ended for `launch` (``<kind>.<rank>`` in ``$LTZOO_ERROR_DIR``); False if not under it."""
    folder = os.environ.get(ERROR_DIR_ENV)
    if not folder or not Path(folder).is_dir():
        return False
    try:
        (Path(folder) / f"{kind}.{os.environ.get('RANK', '0')}").write_text(text + "\n")
        return True
    except OSError:
        return False


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each flag's default, once: not where the help text already says it (``default:``,
    ``unset:``), and not for a flag whose default is "not given" (None, False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or "unset:" in text:
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, ``prog: error: <message>``, with exit code 2 (no usage
    dump), and reach `launch` like any user error. Its subparsers are of the same class."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments"):
            message += f"; `{self.prog} --help` lists the flags"
        report_user_error(f"{self.prog}: error: {one_line(message)}")
        sys.stderr.flush()
        sys.exit(USER_ERROR_EXIT)


# ------------------------------------------------------------------------------------------- launch
def launch(argv: Sequence[str]) -> int:
    """``accelerate launch`` with ``argv`` (its flags, then the script and its arguments), run in-process.

    Returns 0, or 2 when the recipe ended on a user error: its line is printed once (once for all
    processes), and accelerate's launcher traceback is left out. Any other failure re-raises the
    launcher's exception, so a crash shows the recipe's traceback and the launcher's.
    """
    from accelerate.commands.launch import launch_command, launch_command_parser

    args = launch_command_parser().parse_args(list(argv))
    old = os.environ.get(ERROR_DIR_ENV)
    # torch elastic logs each failed or stopped process; ChildFailedError's report says the same for a crash
    elastic = logging.getLogger("torch.distributed.elastic.multiprocessing.api")
    level = elastic.level
    elastic.setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="ltzoo-errors-") as folder:
        os.environ[ERROR_DIR_ENV] = folder
        try:
            launch_command(args)
            return 0
        except (Exception, SystemExit) as exc:
            if isinstance(exc, SystemExit) and exc.code in (0, None):
                return 0
            lines = _recorded_errors(folder)
            for line in lines:
                sys.stderr.write(line + "\n")
            if lines and _only_user_errors(exc, folder):
                return USER_ERROR_EXIT
            raise
        finally:
            elastic.setLevel(level)
            if old is None:
                os.environ.pop(ERROR_DIR_ENV, None)
            else:
                os.environ[ERROR_DIR_ENV] = old


def _recorded_errors(folder: str) -> list[str]:
    """The distinct user-error lines the processes recorded, in rank order."""
    files = sorted(Path(folder).glob("error.*"), key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    lines: list[str] = []
    for p in files:
        line = p.read_text().strip()
        if line and line not in lines:
            lines.append(line)
    return lines


def _only_user_errors(exc: BaseException, folder: str) -> bool:
    """True if the launch failed because processes ended on user errors, and none crashed."""
    import signal
    import subprocess

    if any(Path(folder).glob("crash.*")):
        return False
    recorded = {p.suffix[1:] for p in Path(folder).glob("error.*")}
    if isinstance(exc, subprocess.CalledProcessError):  # one process
        return exc.returncode == USER_ERROR_EXIT and "0" in recorded
    if isinstance(exc, SystemExit):  # accelerate launch -q: the child's code is lost; the record says why
        return "0" in recorded
    failures = getattr(exc, "failures", None)  # torch elastic's ChildFailedError: {global rank: failure}
    if not isinstance(failures, dict) or not failures:
        return False
    codes = {str(rank): getattr(failure, "exitcode", None) for rank, failure in failures.items()}
    # a process either ended on its recorded user error, or was stopped by the agent (SIGTERM) after one did
    return (
        all((c == USER_ERROR_EXIT and r in recorded) or c == -signal.SIGTERM for r, c in codes.items())
        and USER_ERROR_EXIT in codes.values()
    )
