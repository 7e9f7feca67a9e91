"""Calibration of the zoo's models: test ECE and NLL before and after temperature scaling, and what calibration
does for the EM estimate of a shifted test prior (Saerens et al. 2002, which assumes calibrated posteriors).

    python benchmarks/calibration.py

For each zoo entry with validation and test predictions (zoo/<name>/predictions.safetensors), the model's
uncalibrated logits are taken (an entry that ltzoo already calibrated holds z / T: they are multiplied back by its
recorded T), a temperature is fitted on the validation logits (`ltzoo.methods.calibration`), and the test split is
scored before and after: ECE (with the stratified bootstrap's 95% interval), NLL, classwise ECE. Then SADE's sweep of
shifted test priors (`ltzoo.metrics.priors.prior_sweep`, forward 50 to backward 50) is run on both: the EM
estimate's total-variation error to the true prior, and the accuracy of the predictions corrected with it, averaged
over the 11 priors. No model is run; writes benchmarks/results/calibration.{json,md}.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results"
#: the prior a model's probabilities carry (shifted_priors.py's rule): the training frequencies for plain CE
CE_ENTRIES = ("resnet20-ce-fmnistlt", "resnet20-ft-fmnisttarget5lt")


def uncalibrated_logits(entry: Path):
    """(val, test) logits and labels of the model as trained, and the temperature the entry already folded in."""
    from ltzoo.runfolder.predictions import load_predictions

    pred = load_predictions(entry / "predictions.safetensors")
    results = json.loads((entry / "results.json").read_text())
    t = (
        (results.get("calibration") or {}).get("temperature", 1.0)
        if (results.get("calibration") or {}).get("fitted")
        else 1.0
    )
    return {s: (pred.logits[s].double() * t, pred.labels[s]) for s in pred.logits}, pred.train_counts, t


def row(entry: Path) -> dict | None:
    from ltzoo.cli.data import model_prior
    from ltzoo.methods.calibration import calibrate
    from ltzoo.metrics import probability_metrics
    from ltzoo.metrics.bootstrap import ece_interval
    from ltzoo.metrics.priors import prior_sweep

    splits, counts, folded = uncalibrated_logits(entry)
    if "val" not in splits or "test" not in splits:
        return None
    cal = calibrate(*splits["val"])
    (z, y), t = splits["test"], cal.temperature
    before, after = probability_metrics(z.float(), y), probability_metrics((z / t).float(), y)
    n = len(counts)
    kind = "train" if entry.name in CE_ENTRIES else "uniform"
    # a calibrated CE model carries the training prior to the power 1/T (`ltzoo eval --model-prior train` too)
    sweeps = {
        "before": prior_sweep(z, y, counts, model_prior(kind, counts)),
        "after": prior_sweep(z / t, y, counts, model_prior(kind, counts, t)),
    }

    def mean(kind: str, f) -> float:
        return sum(f(r) for r in sweeps[kind]) / len(sweeps[kind])

    return {
        "entry": entry.name,
        "temperature": t,
        "rule": cal.rule,
        "already_folded": folded,
        "acc": float((z.argmax(-1) == y).double().mean()),
        "test": {
            "ece_before": before["ece"],
            "ece_after": after["ece"],
            "ece_before_interval": ece_interval(z, y, n),
            "ece_after_interval": ece_interval(z / t, y, n),
            "nll_before": before["nll"],
            "nll_after": after["nll"],
            "classwise_ece_before": before["classwise_ece"],
            "classwise_ece_after": after["classwise_ece"],
        },
        "source_prior": "train" if entry.name in CE_ENTRIES else "uniform",
        "shifted_priors": {
            kind: {
                "em_error_mean": mean(kind, lambda r: r["em_error"]),
                "em_corrected_acc_mean": mean(kind, lambda r: r["em"]["acc"]),
                "true_prior_corrected_acc_mean": mean(kind, lambda r: r["given"]["acc"]),
                "rows": [
                    {
                        "prior": r["prior"],
                        "em_error": r["em_error"],
                        "em_acc": r["em"]["acc"],
                        "given_acc": r["given"]["acc"],
                    }
                    for r in sweeps[kind]
                ],
            }
            for kind in sweeps
        },
    }


def pct(v: float) -> str:
    return f"{100 * v:.2f}"


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "# Calibration of the zoo: temperature scaling, before and after",
        "",
        "Written by `python benchmarks/calibration.py` from each entry's kept predictions (no model is run). T: the "
        "temperature that minimises the validation NLL (`ltzoo.methods.calibration`), what every recipe now folds "
        "into the exported classifier. Test ECE: top-label, 15 bins, with the 95% stratified-bootstrap interval. "
        "Accuracy, HM and every per-class recall are the same before and after (a temperature keeps the predictions).",
        "",
        "| zoo model | T | test acc % | test ECE % before | test ECE % after | test NLL before | test NLL after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["test"]
        lines.append(
            f"| {r['entry']} | {r['temperature']:.2f} | {pct(r['acc'])} | {pct(t['ece_before'])} "
            f"({pct(t['ece_before_interval'][0])}-{pct(t['ece_before_interval'][1])}) | {pct(t['ece_after'])} "
            f"({pct(t['ece_after_interval'][0])}-{pct(t['ece_after_interval'][1])}) | {t['nll_before']:.4f} | "
            f"{t['nll_after']:.4f} |"
        )
    lines += [
        "",
        "## Shifted test priors: the EM prior estimate with and without calibration",
        "",
        "SADE's 11 test priors (forward-50 ... uniform ... backward-50), exact reweightings of the balanced test "
        "split. EM error: total variation distance of Saerens et al.'s EM estimate (from the unlabelled test "
        "logits) to the "
        "true prior, averaged over the priors; EM-corrected accuracy: the logits adjusted by log(estimate / model "
        "prior), averaged; the true-prior columns are the ceiling of any estimate. The model prior of a CE model "
        "calibrated with temperature T is the training prior to the power 1/T (its log-prior term is divided by T "
        "too).",
        "",
        "| zoo model | model prior | EM error before | EM error after | EM-corrected acc % before | after | "
        "true-prior-corrected acc % before | after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, a = r["shifted_priors"]["before"], r["shifted_priors"]["after"]
        lines.append(
            f"| {r['entry']} | {r['source_prior']} | {b['em_error_mean']:.4f} | {a['em_error_mean']:.4f} | "
            f"{pct(b['em_corrected_acc_mean'])} | {pct(a['em_corrected_acc_mean'])} | "
            f"{pct(b['true_prior_corrected_acc_mean'])} | {pct(a['true_prior_corrected_acc_mean'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    rows = [r for entry in sorted((ROOT / "zoo").iterdir()) if entry.is_dir() and (r := row(entry)) is not None]
    (OUT / "calibration.json").write_text(json.dumps(rows, indent=1) + "\n")
    (OUT / "calibration.md").write_text(to_markdown(rows))
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
