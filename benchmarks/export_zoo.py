"""Export the zoo's Fashion-MNIST-LT entries from the benchmark grid's runs.

    python benchmarks/export_zoo.py [--seed 2] [--grid bench] [--only NAME ...]

Copies each entry's model and results from runs/<grid>/<setting>/s<seed>/<run> into zoo/<name>/ and
generates its card (zoo/<name>/README.md and hub_cards/<name>.md) with `ltzoo card`, every number
read from the run's results.json. Each folder is then ready for `ltzoo push zoo/<name> ltzoo/<name>`.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ltzoo.cli import main as ltzoo

ROOT = Path(__file__).resolve().parent.parent
FILES = ("config.json", "model.safetensors", "results.json", "per_class_recall.png", "run_config.yaml",
         "predictions.safetensors", "reliability.png")
# zoo name -> (method-table setting, grid run, hub id of the model it starts from)
ENTRIES = {
    "resnet20-ce-fmnistlt": ("rho100", "ce", None),
    "resnet20-gml-fmnistlt": ("rho100", "gml_on_ce", "ltzoo/resnet20-ce-fmnistlt"),
    "resnet20-btm-gml-fmnistlt": ("rho100", "btm_on_ce", "ltzoo/resnet20-ce-fmnistlt"),
    "resnet20-bsce-fmnistlt": ("rho100", "bsce", None),
    "resnet20-btm-gml-bsce-fmnistlt": ("rho100", "btm_on_bsce", "ltzoo/resnet20-bsce-fmnistlt"),
    # CSA's benchmark: Fashion-MNIST-LT with irrelevant background contexts
    "resnet20-csa-fmnistctxlt": ("ctx_rho100", "csa", None),
    "resnet20-btm-gml-csa-fmnistctxlt": ("ctx_rho100", "btm_on_csa", "ltzoo/resnet20-csa-fmnistctxlt"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--grid", default="bench", help="runs/GRID/<setting>/s<seed>/<run> holds the runs")
    p.add_argument("--only", nargs="+", choices=list(ENTRIES), help="export these entries only")
    args = p.parse_args()
    for name, (setting, run, parent) in ENTRIES.items():
        if args.only and name not in args.only:
            continue
        src = ROOT / "runs" / args.grid / setting / f"s{args.seed}" / run
        if not (src / "results.json").is_file():
            print(f"{name}: {src} has not finished, skipped")
            continue
        dst = ROOT / "zoo" / name
        dst.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            if (src / f).is_file():
                shutil.copy2(src / f, dst / f)
        card = ["card", str(dst), "--name", name, "--repo-id", f"ltzoo/{name}",
                "--cards-dir", str(ROOT / "hub_cards")]
        if parent:
            card += ["--parent-id", parent]
        if ltzoo(card) != 0:
            raise SystemExit(f"{name}: `ltzoo {' '.join(card)}` failed (its error is above)")
        print(f"{name}: exported to {dst.relative_to(ROOT)}; push with `ltzoo push zoo/{name} ltzoo/{name}`")


if __name__ == "__main__":
    main()
