"""How every ``ltzoo`` command reports: readable text, or one JSON object with ``--json``."""

from __future__ import annotations

import json
import sys


def emit(obj: dict, as_json: bool, text: str) -> None:
    """Write ``obj`` as one JSON line (``as_json``), else ``text``, to stdout."""
    sys.stdout.write((json.dumps(obj, default=str) if as_json else text) + "\n")
