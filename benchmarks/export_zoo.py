"""Export the zoo's Fashion-MNIST entries from the benchmarks' runs.

    python benchmarks/export_zoo.py [--seed 2] [--grid bench] [--only NAME ...]

Copies each entry's model and results from its run under runs/ (the method-table grid's
runs/<grid>/<setting>/s<seed>/<run>, or the transfer benchmark's runs/transfer/...) into zoo/<name>/ and
generates its card (zoo/<name>/README.md and hub_cards/<name>.md) with `ltzoo card`, every number
read from the run's results.json. Each folder is then ready for `ltzoo push zoo/<name> ltzoo/<name>`.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ltzoo.cli import main as ltzoo

ROOT = Path(__file__).resolve().parent.parent
FILES = (
    "config.json",
    "model.safetensors",
    "results.json",
    "per_class_recall.png",
    "run_config.yaml",
    "predictions.safetensors",
    "reliability.png",
    "classifier_uncalibrated.safetensors",
)
# zoo name -> (its run under runs/, with {grid} and {seed} filled in; hub id of the model it starts from)
ENTRIES = {
    "resnet20-ce-fmnistlt": ("{grid}/rho100/s{seed}/ce", None),
    "resnet20-gml-fmnistlt": ("{grid}/rho100/s{seed}/gml_on_ce", "ltzoo/resnet20-ce-fmnistlt"),
    "resnet20-btm-gml-fmnistlt": ("{grid}/rho100/s{seed}/btm_on_ce", "ltzoo/resnet20-ce-fmnistlt"),
    "resnet20-bsce-fmnistlt": ("{grid}/rho100/s{seed}/bsce", None),
    "resnet20-btm-gml-bsce-fmnistlt": ("{grid}/rho100/s{seed}/btm_on_bsce", "ltzoo/resnet20-bsce-fmnistlt"),
    # the method table's pick on validation HM (BSCE, 45 epochs, + BTM + GML), with its stage 1
    "resnet20-bsce45-fmnistlt": ("{grid}/rho100/s{seed}/bsce_long", None),
    "resnet20-btm-gml-bsce45-fmnistlt": ("{grid}/rho100/s{seed}/btm_on_bsce_long", "ltzoo/resnet20-bsce45-fmnistlt"),
    # CSA's benchmark: Fashion-MNIST-LT with irrelevant background contexts
    "resnet20-csa-fmnistctxlt": ("{grid}/ctx_rho100/s{seed}/csa", None),
    "resnet20-btm-gml-csa-fmnistctxlt": ("{grid}/ctx_rho100/s{seed}/btm_on_csa", "ltzoo/resnet20-csa-fmnistctxlt"),
    # the transfer benchmark (benchmarks/transfer.py): the source model, a pretrained backbone for
    # Fashion-MNIST's classes 0-4, and the best target pipeline on validation (full fine-tuning + BTM + GML)
    # with the fine-tuned model it starts from
    "resnet20-fmnistsource5": ("transfer/source/resnet20_cifar", None),
    "resnet20-ft-fmnisttarget5lt": ("transfer/resnet20_cifar/s{seed}/full", "ltzoo/resnet20-fmnistsource5"),
    "resnet20-ft-btm-gml-fmnisttarget5lt": (
        "transfer/resnet20_cifar/s{seed}/full_btm",
        "ltzoo/resnet20-ft-fmnisttarget5lt",
    ),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--grid", default="bench", help="runs/GRID/<setting>/s<seed>/<run> holds the runs")
    p.add_argument("--only", nargs="+", choices=list(ENTRIES), help="export these entries only")
    args = p.parse_args()
    for name, (run, parent) in ENTRIES.items():
        if args.only and name not in args.only:
            continue
        src = ROOT / "runs" / run.format(grid=args.grid, seed=args.seed)
        if not (src / "results.json").is_file():
            print(f"{name}: {src} has not finished, skipped")
            continue
        dst = ROOT / "zoo" / name
        dst.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            if (src / f).is_file():
                shutil.copy2(src / f, dst / f)
        card = ["card", str(dst), "--name", name, "--repo-id", f"ltzoo/{name}", "--cards-dir", str(ROOT / "hub_cards")]
        if parent:
            card += ["--parent-id", parent]
        if ltzoo(card) != 0:
            raise SystemExit(f"{name}: `ltzoo {' '.join(card)}` failed (its error is above)")
        # the card in the run folder too: a later entry that starts from this run finds its hub id there, so
        # its card's stage chain names every zoo model it descends from (ltzoo.hub.card)
        shutil.copy2(dst / "README.md", src / "README.md")
        print(f"{name}: exported to {dst.relative_to(ROOT)}; push with `ltzoo push zoo/{name} ltzoo/{name}`")


if __name__ == "__main__":
    main()
