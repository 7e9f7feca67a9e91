"""The zoo's Fashion-MNIST-LT models under shifted test priors (SADE's test-agnostic protocol), from their kept
predictions, with post-hoc prior correction by the true prior and by EM's estimate.

    python benchmarks/shifted_priors.py

Each entry runs `ltzoo eval --predictions zoo/<name>/predictions.safetensors --shifted-priors` with the prior its
probabilities carry (`--model-prior`: the training frequencies for plain CE, uniform for Balanced Softmax and the
balanced heads), writing benchmarks/results/shifted_priors/<name>/ (eval.json, shifted_priors.png) and the
tables in benchmarks/results/shifted_priors.md. Exact reweighting of the balanced test split (1,000 images
per class); no model is run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "shifted_priors"
#: zoo entry -> the prior its probabilities carry
ENTRIES = {"resnet20-ce-fmnistlt": "train", "resnet20-bsce-fmnistlt": "uniform", "resnet20-btm-gml-fmnistlt": "uniform"}


def main() -> int:
    from ltzoo.cli import main as ltzoo
    from ltzoo.metrics.priors import sweep_table

    parts = [
        "# Shifted test priors: the zoo's Fashion-MNIST-LT models",
        "",
        "Written by `python benchmarks/shifted_priors.py` from each model's kept test predictions "
        "(zoo/<name>/predictions.safetensors). Forward-k: the training class order at imbalance k; backward-k: "
        "reversed (SADE's test-agnostic protocol). Accuracy, NLL and ECE under each prior are exact reweightings "
        "of the balanced test split; HM as predicted is the same under every prior (per-class recall is "
        "prior-invariant). LA: logit adjustment by log(test prior / model prior), with the true test prior or "
        "with the one EM estimates from the unlabelled test logits (Saerens et al. 2002); EM error: total "
        "variation distance of its estimate to the true prior.",
        "",
    ]
    for name, prior in ENTRIES.items():
        out = OUT / name
        argv = [
            "eval",
            "--predictions",
            str(ROOT / "zoo" / name / "predictions.safetensors"),
            "--shifted-priors",
            "--model-prior",
            prior,
            "--bootstrap",
            "0",
            "--output",
            str(out),
        ]
        if ltzoo(argv) != 0:
            return 1
        rows = json.loads((out / "eval.json").read_text())["shifted_priors"]["rows"]
        parts += [
            f"## {name} (model prior: {prior})",
            "",
            sweep_table(rows),
            "",
            f"![accuracy under shifted priors]({out.relative_to(OUT.parent).as_posix()}/shifted_priors.png)",
            "",
        ]
    (OUT.parent / "shifted_priors.md").write_text("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
