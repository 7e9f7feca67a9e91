"""Re-evaluate every zoo model and regenerate its card: probability metrics, bootstrap intervals, predictions.

    python benchmarks/reevaluate_zoo.py                     # every zoo/<name>/
    python benchmarks/reevaluate_zoo.py --only resnet20-ce-fmnistlt

For each entry, the model in zoo/<name>/ is evaluated (fp32, `ltzoo.training.evaluation.evaluate_logits`) on the
validation and test splits of the data its run was trained on (dataset flags and seed from its
run_config.yaml). The metrics results.json already holds must come out equal to full precision (else the
entry is left as it is and the script exits 1); the new ones (top-5, ECE, classwise ECE, NLL, Brier, and the
test split's 95% stratified-bootstrap intervals, 1000 resamples, seed 0) are added to results.json, with
``evaluation`` naming the commit that computed them. The logits are kept in zoo/<name>/predictions.safetensors
(`ltzoo compare` and `ltzoo eval --predictions` read them), the reliability diagram in reliability.png, and the
card is regenerated from results.json with `ltzoo card` (zoo/<name>/README.md and hub_cards/<name>.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
from export_zoo import ENTRIES  # noqa: E402  (the zoo's names and parents; benchmarks/ is on sys.path when the script runs)

KEPT = ("acc", "mean_class_acc", "hm", "gm", "min_recall", "many", "medium", "few", "per_class_recall")


def load_data(config: dict):
    from ltzoo.data import load_dataset

    data_dir = config.get("data_dir")
    return load_dataset(
        config["dataset"],
        data_dir=data_dir if data_dir and Path(data_dir).exists() else None,
        imbalance=config.get("imbalance"),
        profile=config.get("profile") or "exp",
        seed=config.get("seed") or 0,
        val_per_class=config.get("val_per_class"),
        n_max=config.get("n_max"),
        class_order=config.get("class_order"),
        shot_cuts=config.get("shot_cuts"),
    )


def reevaluate(entry: Path, bootstrap: int, seed: int) -> list[str]:
    """Evaluate one entry, update its results.json, predictions and card; the differences found (empty: done)."""
    from ltzoo.cli.data import predict_split
    from ltzoo.files import write_json
    from ltzoo.metrics import plot_reliability, reliability_bins
    from ltzoo.runfolder.predictions import PREDICTIONS, RELIABILITY, dataset_meta, save_predictions
    from ltzoo.runfolder.provenance import git_commit
    from ltzoo.training.evaluation import evaluate_logits

    config = yaml.safe_load((entry / "run_config.yaml").read_text())
    results = json.loads((entry / "results.json").read_text())
    ds = load_data(config)
    splits = {"val": ds.val, "test": ds.test}
    outputs = {
        s: predict_split(str(entry), ds, split, workers=0)
        for s, split in splits.items()
        if split is not None and s in results["metrics"]
    }
    diffs, new = [], {}
    for s, (z, y) in outputs.items():
        new[s] = evaluate_logits(z, y, ds.train_counts, ds.shot_thresholds, s, bootstrap if s == "test" else 0, seed)
        diffs += [
            f"{s} {k}: {new[s].get(k)} now, {results['metrics'][s].get(k)} in results.json"
            for k in KEPT
            if new[s].get(k) != results["metrics"][s].get(k)
        ]
    if diffs:
        return diffs
    for s, m in new.items():
        results["metrics"][s].update(m)
    results["evaluation"] = {
        "by": "benchmarks/reevaluate_zoo.py",
        "git_commit": git_commit(),
        "bootstrap": {"resamples": bootstrap, "seed": seed, "split": "test"},
    }
    save_predictions(
        entry / PREDICTIONS,
        {s: z for s, (z, _) in outputs.items()},
        {s: y for s, (_, y) in outputs.items()},
        dataset_meta(ds, f"ltzoo/{entry.name}", {s: splits[s] for s in outputs}),
    )
    plot_reliability(
        reliability_bins(*outputs["test"]),
        entry / RELIABILITY,
        ece=new["test"]["ece"],
        title=f"{entry.name}: reliability on the test split",
    )
    write_json(entry / "results.json", results)
    return write_card(entry)


def write_card(entry: Path) -> list[str]:
    """Regenerate an entry's card from its results.json with `ltzoo card`; the failure, if any."""
    from ltzoo.cli import main as ltzoo

    card = [
        "card",
        str(entry),
        "--name",
        entry.name,
        "--repo-id",
        f"ltzoo/{entry.name}",
        "--cards-dir",
        str(ROOT / "hub_cards"),
    ]
    parent = ENTRIES.get(entry.name, (None, None))[1]
    if parent:
        card += ["--parent-id", parent]
    if ltzoo(card) != 0:
        return [f"`ltzoo {' '.join(card)}` failed"]
    return []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoo", default=str(ROOT / "zoo"))
    p.add_argument("--only", nargs="+", default=None)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--bootstrap-seed", type=int, default=0)
    p.add_argument("--cards-only", action="store_true", help="only regenerate the cards from results.json")
    args = p.parse_args(argv)
    bad = 0
    for entry in sorted(Path(args.zoo).iterdir()):
        if not (entry / "results.json").is_file() or (args.only and entry.name not in args.only):
            continue
        diffs = write_card(entry) if args.cards_only else reevaluate(entry, args.bootstrap, args.bootstrap_seed)
        bad += bool(diffs)
        print(
            f"{entry.name}: {'re-evaluated, card regenerated' if not diffs else 'DIFFERS: ' + '; '.join(diffs)}",
            flush=True,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
