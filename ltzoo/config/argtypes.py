"""argparse ``type=`` functions that check a flag's value when it is parsed.

Each names the value it got and what is wanted; argparse adds the flag (``error: argument --epochs:
expected an integer >= 1, got 0``). They accept the value as a string (the command line) or already
typed (a YAML config's value: see `check_config_values`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _number(value: Any, kind: type, wanted: str):
    if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value!r}")
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value!r}") from None
    if kind is float and not math.isfinite(out):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value!r}")
    return out


def positive_int(value: Any) -> int:
    """An integer >= 1 (epochs, batch size, counts of subsets or members)."""
    wanted = "an integer >= 1"
    n = _number(value, int, wanted)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value!r}")
    return n


def nonneg_int(value: Any) -> int:
    """An integer >= 0 (workers, images per class where 0 means none)."""
    wanted = "an integer >= 0"
    n = _number(value, int, wanted)
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value!r}")
    return n


def positive_float(value: Any) -> float:
    """A finite number > 0 (learning rates, temperatures)."""
    wanted = "a number > 0"
    x = _number(value, float, wanted)
    if x <= 0:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value!r}")
    return x


def nonneg_float(value: Any) -> float:
    """A finite number >= 0 (weight decay, warm-up epochs)."""
    wanted = "a number >= 0"
    x = _number(value, float, wanted)
    if x < 0:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value!r}")
    return x


def imbalance_ratio(value: Any) -> float:
    """An imbalance ratio rho >= 1 (largest class / smallest class)."""
    wanted = "an imbalance ratio >= 1 (largest class / smallest class)"
    x = _number(value, float, wanted)
    if x < 1:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value!r}")
    return x


def unit_interval(value: Any) -> float:
    """A ratio in [0, 1] (label smoothing, mixing weights)."""
    wanted = "a ratio in [0, 1]"
    x = _number(value, float, wanted)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value!r}")
    return x


def positive_fraction(value: Any) -> float:
    """A ratio in (0, 1] (a share of the data that must not be empty)."""
    wanted = "a ratio in (0, 1]"
    x = _number(value, float, wanted)
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value!r}")
    return x


def existing_file(value: Any) -> str:
    """The path of a file that exists (returned as given, a string)."""
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"file {value} does not exist")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value} is a folder, expected a file")
    return str(value)


def existing_dir(value: Any) -> str:
    """The path of a folder that exists (returned as given, a string)."""
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"folder {value} does not exist")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a file, expected a folder")
    return str(value)


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
