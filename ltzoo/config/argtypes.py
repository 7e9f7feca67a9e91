"""argparse ``type=`` functions that check a flag's value when it is parsed.

Each names the value it got, what is wanted and the fix, in the one message an argparse type error
carries; argparse adds the flag (``error: argument --epochs: expected an integer >= 1, got '0'; pass a
whole number of 1 or more, e.g. 1``). They accept the value as a string (the command line) or already
typed (a YAML config's value: see `check_config_values`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: What to pass instead, for each kind of value wanted (the fix half of a type error's message).
_FIXES = {
    "an integer >= 1": "pass a whole number of 1 or more, e.g. 1",
    "an integer >= 0": "pass a whole number of 0 or more, e.g. 0",
    "a number > 0": "pass a number above 0, e.g. 0.1",
    "a number >= 0": "pass a number of 0 or more, e.g. 0",
    "an imbalance ratio >= 1 (largest class / smallest class)": "pass a number of 1 or more, e.g. 100 (1: balanced)",
    "a ratio in [0, 1]": "pass a number from 0 to 1, e.g. 0.1",
    "a ratio in (0, 1]": "pass a number above 0 and at most 1, e.g. 0.5",
}


def _wrong(value: Any, wanted: str) -> argparse.ArgumentTypeError:
    """The type error of ``value`` where ``wanted`` is wanted: the problem, then the fix (one message)."""
    return argparse.ArgumentTypeError(f"expected {wanted}, got {value!r}; {_FIXES[wanted]}")


def _number(value: Any, kind: type, wanted: str):
    if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
        raise _wrong(value, wanted)
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise _wrong(value, wanted) from None
    if kind is float and not math.isfinite(out):
        raise _wrong(value, wanted)
    return out


def positive_int(value: Any) -> int:
    """An integer >= 1 (epochs, batch size, counts of subsets or members)."""
    wanted = "an integer >= 1"
    n = _number(value, int, wanted)
    if n < 1:
        raise _wrong(value, wanted)
    return n


def nonneg_int(value: Any) -> int:
    """An integer >= 0 (workers, images per class where 0 means none)."""
    wanted = "an integer >= 0"
    n = _number(value, int, wanted)
    if n < 0:
        raise _wrong(value, wanted)
    return n


def positive_float(value: Any) -> float:
    """A finite number > 0 (learning rates, temperatures)."""
    wanted = "a number > 0"
    x = _number(value, float, wanted)
    if x <= 0:
        raise _wrong(value, wanted)
    return x


def nonneg_float(value: Any) -> float:
    """A finite number >= 0 (weight decay, warm-up epochs)."""
    wanted = "a number >= 0"
    x = _number(value, float, wanted)
    if x < 0:
        raise _wrong(value, wanted)
    return x


def imbalance_ratio(value: Any) -> float:
    """An imbalance ratio rho >= 1 (largest class / smallest class)."""
    wanted = "an imbalance ratio >= 1 (largest class / smallest class)"
    x = _number(value, float, wanted)
    if x < 1:
        raise _wrong(value, wanted)
    return x


def unit_interval(value: Any) -> float:
    """A ratio in [0, 1] (label smoothing, mixing weights)."""
    wanted = "a ratio in [0, 1]"
    x = _number(value, float, wanted)
    if not 0 <= x <= 1:
        raise _wrong(value, wanted)
    return x


def positive_fraction(value: Any) -> float:
    """A ratio in (0, 1] (a share of the data that must not be empty)."""
    wanted = "a ratio in (0, 1]"
    x = _number(value, float, wanted)
    if not 0 < x <= 1:
        raise _wrong(value, wanted)
    return x


#: How a relative path is read, the fix of a path that names nothing.
_PATH_FIX = "check the path (a relative one starts from the current folder)"


def existing_file(value: Any, fix: str | None = None) -> str:
    """The path of a file that exists (returned as given, a string); ``fix``: what to pass when it does not
    (a flag's own, see `file_of`)."""
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"file {value} does not exist; {fix or _PATH_FIX}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value} is a folder, expected a file; {fix or 'pass the file inside it'}")
    return str(value)


def existing_dir(value: Any, fix: str | None = None) -> str:
    """The path of a folder that exists (returned as given, a string); ``fix``: what to pass when it does not
    (a flag's own, see `folder_of`)."""
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"folder {value} does not exist; {fix or _PATH_FIX}")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{value} is a file, expected a folder; {fix or 'pass the folder that holds it'}"
        )
    return str(value)


def file_of(fix: str) -> Callable[[Any], str]:
    """`existing_file` whose error names ``fix`` (what the flag wants, e.g. "pass the `path label` list of the
    training images (docs/data.md)")."""

    def existing(value: Any) -> str:
        return existing_file(value, fix)

    existing.__name__ = existing.__qualname__ = "existing_file"
    existing.__doc__ = f"The path of a file that exists; else: {fix}."
    return existing


def folder_of(fix: str) -> Callable[[Any], str]:
    """`existing_dir` whose error names ``fix`` (what the flag wants)."""

    def existing(value: Any) -> str:
        return existing_dir(value, fix)

    existing.__name__ = existing.__qualname__ = "existing_dir"
    existing.__doc__ = f"The path of a folder that exists; else: {fix}."
    return existing


def check_config_values(parser: argparse.ArgumentParser, config: dict, source: str = "config") -> dict:
    """Run each flag's ``type=`` on a config file's values (argparse checks only the command line's).

    Returns the config with converted values; a bad value ends in ``parser.error`` naming ``source``,
    the key and what is wanted. None (YAML ``null``) is left as it is: it means "unset".
    """
    types: dict[str, Callable] = {a.dest: a.type for a in parser._actions if callable(a.type)}
    out = dict(config)
    for key, value in config.items():
        conv = types.get(key)
        if conv is None or value is None:
            continue
        try:
            out[key] = [conv(v) for v in value] if isinstance(value, list) else conv(value)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            parser.error(f"{source}: {key}: {exc}")
    return out
