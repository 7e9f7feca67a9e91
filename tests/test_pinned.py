"""Same seed, same numbers: a short fixed BTM run (its own stage 1, two members, GML head) is pinned.

The values below were taken on the code before the recipes moved into the package (commit e258d19), with
today's training loop (fp32, contiguous tensors, one thread: `--mixed-precision no --no-channels-last`), on an AMX
CPU; those of an AVX2 CPU were recorded later (commit 6ef16e3), as the comment at PINNED says. A refactor must leave
them unchanged; a
deliberate change of numbers (a library switch, a new default) updates them in the same commit, with the
reason in its message.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from cpu_kernels import check_weights_hash, kernel_key, recorded_for
from fixtures import make_imagefolder
from launching import launch_cmd, recipe_env
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
BTM = ROOT / "recipes" / "btm.py"
ARGS = [
    "--dataset",
    "imagefolder",
    "--workers",
    "0",
    "--no-progress",
    "--threads",
    "1",
    "--seed",
    "0",
    "--model",
    "resnet20_cifar",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--optimizer",
    "adamw",
    "--lr",
    "0.01",
    "--warmup-epochs",
    "0",
    # the pinned run's settings where ltzoo's defaults now follow the data and the optimiser (ltzoo.recipes.defaults)
    "--weight-decay",
    "5e-4",
    "--member-lr",
    "0.01",
    "--min-val-per-class",
    "1",
    "--subsets",
    "2",
    "--shots",
    "3",
    "--member-epochs",
    "2",
    "--member-batch-size",
    "4",
    "--head-epochs",
    "2",
    "--mixed-precision",
    "no",
    "--no-channels-last",
]
KEYS = ("acc", "mean_class_acc", "hm", "gm", "min_recall")

# by the CPU kernels that made them (tests/cpu_kernels.py): on these tiny runs last-bit differences flip the
# GML head's near-tied predictions. AMX: e258d19's values; AVX2 (no AVX-512): recorded at commit 6ef16e3, the
# same stage 1 and BTM rows, another GML head
_AMX = {
    "stage 1": {
        "val": {"acc": 0.666667, "mean_class_acc": 0.666667, "hm": 0.0, "gm": 0.0, "min_recall": 0.0},
        "test": {"acc": 0.73913, "mean_class_acc": 0.666667, "hm": 0.0, "gm": 0.0, "min_recall": 0.0},
    },
    "BTM": {
        "val": {"acc": 0.333333, "mean_class_acc": 0.333333, "hm": 0.0, "gm": 0.0, "min_recall": 0.0},
        "test": {"acc": 0.347826, "mean_class_acc": 0.333333, "hm": 0.0, "gm": 0.0, "min_recall": 0.0},
    },
    "BTM+gml+ens": {
        "val": {"acc": 0.666667, "mean_class_acc": 0.666667, "hm": 0.0, "gm": 0.0, "min_recall": 0.0},
        "test": {"acc": 0.608696, "mean_class_acc": 0.666667, "hm": 0.0, "gm": 0.0, "min_recall": 0.0},
    },
    "final": {
        "val": {"acc": 0.666667, "mean_class_acc": 0.666667, "hm": 0.0, "gm": 0.0, "min_recall": 0.0},
        "test": {"acc": 0.608696, "mean_class_acc": 0.666667, "hm": 0.0, "gm": 0.0, "min_recall": 0.0},
    },
}
_AVX2_HEAD = {
    "val": {"acc": 0.333333, "mean_class_acc": 0.333333, "hm": 0.0, "gm": 0.0, "min_recall": 0.0},
    "test": {"acc": 0.26087, "mean_class_acc": 0.333333, "hm": 0.0, "gm": 0.0, "min_recall": 0.0},
}
PINNED = {
    "x86_64 amx torch 2.14.1": _AMX,
    "x86_64 avx2 torch 2.14.1": {**_AMX, "BTM+gml+ens": _AVX2_HEAD, "final": _AVX2_HEAD},
    "x86_64 avx512 torch 2.14.1": _AMX,  # the same metrics as AMX's (measured on an AVX512-BF16 EPYC)
}
# the exported weights' SHA-1 by the CPU kernels that made them (tests/cpu_kernels.py); the AVX-512 value (an AMD
# EPYC with AVX512-BF16 and no AMX) equals e258d19's, which came from a machine whose kernels were not recorded
WEIGHTS_SHA1 = {
    "x86_64 amx torch 2.14.1": "81a587efbb019f783c1fc459b14d3d0dc9ea4311",
    "x86_64 avx2 torch 2.14.1": "60090e90bfc3c1e201ea3a70de8ad37d3d7e5b4f",
    "x86_64 avx512 torch 2.14.1": "78a99d67f112950f9c8833e1fbb17ce9b79435fd",
}


def _digest(path: Path) -> str:
    h = hashlib.sha1()
    for k, v in sorted(load_file(str(path)).items()):
        h.update(k.encode())
        h.update(v.contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_pinned_btm_run(tmp_path):
    data = make_imagefolder(
        tmp_path / "data", {"train": [40, 15, 6], "val": [3, 3, 3], "test": [9, 8, 6]}, size=(8, 8), channels=1, seed=0
    )
    out = tmp_path / "run"
    proc = subprocess.run(
        launch_cmd(BTM, [*ARGS, "--data-dir", str(data), "--output", str(out)]),
        cwd=ROOT,
        env=recipe_env(tmp_path / "hf"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    got = {
        name: {s: {k: round(m[s][k], 6) for k in KEYS} for s in ("val", "test")}
        for name, m in [*results["table"].items(), ("final", results["metrics"])]
    }
    print(json.dumps(got))
    expected, own = recorded_for(PINNED)
    assert got == expected, f"on {kernel_key()}" + (
        "" if own else " (no values recorded for it: compared with another kernel set's)"
    )
    check_weights_hash(_digest(out / "model.safetensors"), WEIGHTS_SHA1, "pinned BTM run")
