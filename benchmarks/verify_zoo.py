"""Re-evaluate every zoo model with `ltzoo eval` and compare the result with its card, exactly.

    python benchmarks/verify_zoo.py                 # every zoo/<name>/, test and validation splits
    python benchmarks/verify_zoo.py --names resnet20-ce-fmnistlt --splits test

For each entry, `python -m ltzoo eval zoo/<name>` runs in a fresh process on the data the run was
trained on (dataset, imbalance, profile, class order, shot cuts and seed read from the entry's
run_config.yaml). Its predictions must equal the run's own, kept in the entry's predictions.safetensors: the
same labels and the same predicted class for every image (compared exactly). The metrics derived from them must
equal results.json to floating-point tolerance (`REL_TOL`: another CPU's kernels may round the last bit of a
mean differently) and the card's model-index to its two decimals. Writes benchmarks/results/verify_zoo.{json,md};
exits 1 when any entry disagrees.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from huggingface_hub import ModelCard

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: run_config.yaml key -> `ltzoo eval` flag (the data flags that decide the class counts and the split)
DATA_FLAGS = {
    "data_dir": "--data-dir",
    "imbalance": "--imbalance",
    "profile": "--profile",
    "val_per_class": "--val-per-class",
    "class_order": "--class-order",
    "seed": "--seed",
}
SPLITS = {"test": "test", "val": "validation"}
METRICS = ("acc", "mean_class_acc", "hm", "gm", "min_recall", "many", "medium", "few")
#: relative tolerance of a derived metric: the same predictions give metrics that differ by a few ulps at most
#: (e.g. a GM of 0.9181971419060836 on an Intel AMX CPU and ...837 in results.json, written on another CPU)
REL_TOL = 1e-12


def eval_command(entry: Path, config: dict, split: str) -> list[str]:
    """`python -m ltzoo eval` of one zoo entry on one split, with the data flags of its run."""
    cmd = [
        sys.executable,
        "-m",
        "ltzoo",
        "eval",
        str(entry),
        "--dataset",
        config["dataset"],
        "--split",
        split,
        "--json",
        "--workers",
        "0",
    ]
    return cmd + data_flags(config)


def data_flags(config: dict) -> list[str]:
    """The data flags of a zoo entry's run (its run_config.yaml), for `ltzoo eval` and `ltzoo calibrate`."""
    out = []
    for key, flag in DATA_FLAGS.items():
        value = config.get(key)
        if value is None or (key == "data_dir" and not Path(str(value)).exists()):
            continue  # unset: the evaluator's default, as it was the run's
        out += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    if config.get("shot_cuts"):
        out += ["--shot-cuts", *map(str, config["shot_cuts"])]
    return out


def same_metric(a: float | None, b: float | None) -> bool:
    """Equal to floating-point tolerance (both None counts as equal)."""
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=REL_TOL)


def on_card(value: float, card: float) -> bool:
    """A metric shown on the card as a percentage with two decimals: its rounding, or a tie at the half-way point."""
    return round(100 * value, 2) == card or abs(100 * value - card) <= 0.005 + 1e-9


def prediction_differences(entry: Path, saved: Path, split: str) -> list[str]:
    """How the evaluator's predictions differ from the run's own (kept in the entry): labels and argmax, exactly."""
    from ltzoo.runfolder.predictions import load_predictions

    kept = entry / "predictions.safetensors"
    if not kept.is_file():
        return []  # an entry without kept predictions: the metrics alone are compared
    mine, theirs = load_predictions(saved), load_predictions(kept)
    if split not in theirs.logits:
        return []
    (z1, y1), (z2, y2) = mine.split(split), theirs.split(split)
    if not (y1.shape == y2.shape and bool((y1 == y2).all())):
        return ["labels differ from the run's kept predictions"]
    differ = int((z1.argmax(-1) != z2.argmax(-1)).sum())
    return [f"predictions: {differ} of {len(y1)} images predicted another class than the run did"] if differ else []


def card_values(entry: Path) -> dict[str, dict[str, float]]:
    """split -> metric type -> value, from the model-index of the entry's card (README.md)."""
    data = ModelCard.load(entry / "README.md").data.to_dict()
    out: dict[str, dict[str, float]] = {}
    for res in data["model-index"][0]["results"]:
        split = res["dataset"]["split"]
        out.setdefault(split, {})
        for m in res["metrics"]:
            out[split][m["type"]] = m["value"]
    return out


def compare(entry: Path, splits: list[str]) -> dict:
    """Evaluate one entry on each split; the differences with its card and results.json (empty: equal)."""
    config = yaml.safe_load((entry / "run_config.yaml").read_text())
    results = json.loads((entry / "results.json").read_text())
    card = card_values(entry)
    report = {"name": entry.name, "git_commit": config.get("git_commit"), "splits": {}}
    for split in splits:
        if split not in results["metrics"]:  # e.g. a source model trained without a validation split
            continue
        cmd = eval_command(entry, config, split)
        with tempfile.TemporaryDirectory() as tmp:
            saved = Path(tmp) / "predictions.safetensors"
            proc = subprocess.run([*cmd, "--save-predictions", str(saved)], cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                report["splits"][split] = {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
                continue
            diffs = prediction_differences(entry, saved, split)
        got = json.loads(proc.stdout)["metrics"]
        want = results["metrics"][split]
        card_split = card.get(SPLITS[split], {})
        for key in METRICS:
            if not same_metric(got.get(key), want.get(key)):
                diffs.append(f"{key}: eval {got.get(key)} vs results.json {want.get(key)}")
            card_key = {"acc": "accuracy", "mean_class_acc": "mean_class_accuracy"}.get(key, key)
            if card_key in card_split and got.get(key) is not None and not on_card(got[key], card_split[card_key]):
                diffs.append(f"{key}: eval {round(100 * got[key], 2)} vs card {card_split[card_key]}")
        report["splits"][split] = {
            "hm": got["hm"],
            "acc": got["acc"],
            "min_recall": got["min_recall"],
            "differences": diffs,
            "command": " ".join(cmd[1:]),
        }
    report["ok"] = bool(report["splits"]) and all(
        not s.get("error") and not s["differences"] for s in report["splits"].values()
    )
    return report


def to_markdown(reports: list[dict]) -> str:
    lines = [
        "# Zoo verification: `ltzoo eval` of every zoo model against its card and results.json",
        "",
        "Re-run: `python benchmarks/verify_zoo.py`. Each model is evaluated in a fresh process (fp32) on the "
        "split named (the splits its results.json has); a row is `exact` when every image gets the class the run's "
        "kept predictions give it and every metric equals results.json (to a relative 1e-12) and the card (to its "
        "two decimals).",
        "",
        "| entry | git commit | split | acc | HM | min recall | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        for split, s in r["splits"].items():
            if "error" in s:
                lines.append(f"| {r['name']} | {r['git_commit']} | {split} | - | - | - | error: {s['error'][0]} |")
                continue
            verdict = "exact" if not s["differences"] else "; ".join(s["differences"])
            lines.append(
                f"| {r['name']} | {(r['git_commit'] or '?')[:12]} | {split} | {100 * s['acc']:.2f} | "
                f"{100 * s['hm']:.2f} | {100 * s['min_recall']:.2f} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoo", default=str(ROOT / "zoo"), help="folder of zoo entries")
    p.add_argument("--names", nargs="*", default=None, help="entries to check (default: all)")
    p.add_argument("--splits", nargs="+", default=["test", "val"], choices=list(SPLITS))
    p.add_argument("--out", default=str(RESULTS / "verify_zoo"), help="output path without extension")
    args = p.parse_args(argv)
    entries = sorted(
        d
        for d in Path(args.zoo).iterdir()
        if (d / "results.json").is_file() and (args.names is None or d.name in args.names)
    )
    reports = []
    for entry in entries:
        reports.append(compare(entry, args.splits))
        print(f"{entry.name}: {'exact' if reports[-1]['ok'] else 'DIFFERS'}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(reports, indent=2) + "\n")
    out.with_suffix(".md").write_text(to_markdown(reports))
    return 0 if all(r["ok"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
