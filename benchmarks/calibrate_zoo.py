"""Calibrate the zoo in place: every entry's temperature fitted on its validation split and folded into its
classifier (`ltzoo calibrate --in-place`), its results.json, predictions and card regenerated.

    python benchmarks/calibrate_zoo.py [--only NAME ...]

Run it from a clean commit: each entry's results.json records the calibration, its card the ECE and NLL before and
after. The predictions do not change (checked image for image by `ltzoo calibrate`), so every accuracy, HM, GM and
min recall stays as it was; `python benchmarks/verify_zoo.py` then checks the entries against their new cards. An
entry without a validation split (the transfer benchmark's source model) is left as it is, and said so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from export_zoo import ENTRIES
from verify_zoo import data_flags

from ltzoo.cli import main as ltzoo

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=list(ENTRIES), help="calibrate these entries only")
    args = p.parse_args()
    for name, (_, parent) in ENTRIES.items():
        entry = ROOT / "zoo" / name
        if (args.only and name not in args.only) or not entry.is_dir():
            continue
        config = yaml.safe_load((entry / "run_config.yaml").read_text())
        if "val" not in json.loads((entry / "results.json").read_text()).get("metrics", {}):
            print(f"{name}: no validation split, left uncalibrated")
            continue
        cmd = [
            "calibrate",
            str(entry),
            "--dataset",
            config["dataset"],
            *data_flags(config),
            "--in-place",
            "--workers",
            "0",
        ]
        if ltzoo(cmd) != 0:
            raise SystemExit(f"{name}: `ltzoo {' '.join(cmd)}` failed (its error is above)")
        card = [
            "card",
            str(entry),
            "--name",
            name,
            "--repo-id",
            f"ltzoo/{name}",
            "--cards-dir",
            str(ROOT / "hub_cards"),
        ]
        if parent:
            card += ["--parent-id", parent]
        if ltzoo(card) != 0:
            raise SystemExit(f"{name}: `ltzoo {' '.join(card)}` failed (its error is above)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
