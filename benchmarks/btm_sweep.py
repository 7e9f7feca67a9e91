"""How BTM's defaults were chosen: a sweep of its settings, scored on the VALIDATION split only.

    python benchmarks/btm_sweep.py --init runs/bench/rho100/s0/ce

Starting from one stage-1 model, it fine-tunes members under each setting (one knob at a time from a
base setting), merges them both ways (BN statistics averaged, or re-estimated), and records the
merged model's validation metrics, then the GML head's learning rate and epochs on the chosen merged
model. The test split is never read. Output: benchmarks/results/btm_sweep.{json,md}.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from ltzoo.data import balanced_subsets, load_dataset
from ltzoo.data.loader import BatchPreprocess, make_loader
from ltzoo.engine import metrics_from_logits, predict
from ltzoo.heads import Features, Head, ensemble, retrain
from ltzoo.merge import average_checkpoints
from ltzoo.recipes import btm
from ltzoo.recipes.members import fine_tune_member, reestimate_on_subsets
from ltzoo.runs import create_model

ROOT = Path(__file__).resolve().parent.parent

BASE = dict(subsets=4, shots=50, member_epochs=10, member_lr=0.01, member_bn="train", train_params="all")
KNOBS = {"member_epochs": [5, 20], "member_lr": [0.003, 0.03], "member_bn": ["frozen"], "subsets": [8]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (the grid's runners hold the other cores)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    acc = Accelerator()
    ds = load_dataset("fmnist_lt", seed=a.seed)
    base = create_model(ds, "resnet20_cifar", init=a.init)
    prep = BatchPreprocess(ds.mean, ds.std, crop_padding=3)
    val_dl, train_dl = make_loader(ds.val, 500), make_loader(ds.train, 500)
    model = copy.deepcopy(base)
    args = btm.build_parser().parse_args(["--seed", str(a.seed), "--no-progress"])

    def val_metrics(m) -> dict:
        logits, labels = predict(acc, m, val_dl, prep, progress=False)
        return metrics_from_logits(logits, labels, ds.train_counts, ds.shot_thresholds, "val")

    rows = [{"setting": "stage 1", **brief(val_metrics(base))}]
    settings = [("base", BASE)] + [(f"{k}={v}", {**BASE, k: v}) for k, vs in KNOBS.items() for v in vs]
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, s in settings:
            start = time.perf_counter()
            for k, v in s.items():
                setattr(args, k, v)
            subsets = balanced_subsets(ds.train.labels, ds.num_classes, s["shots"], s["subsets"], seed=a.seed)
            paths = [Path(tmp) / f"{name}_{m}.safetensors" for m in range(s["subsets"])]
            for m, path in enumerate(paths):
                fine_tune_member(acc, base, ds, subsets[m], prep, args, m, path)
            seconds = time.perf_counter() - start
            for bn in ("average", "reestimate"):
                model.load_state_dict(average_checkpoints(paths))
                if bn == "reestimate":
                    reestimate_on_subsets(model, ds, subsets, prep, None, a.seed)
                row = {"setting": f"{name}, bn {bn}", **brief(val_metrics(model)), "member_seconds": round(seconds, 1)}
                rows.append(row)
                print(row, flush=True)
                if best is None or (row["hm"], row["acc"]) > (best[0]["hm"], best[0]["acc"]):
                    best = (row, copy.deepcopy(model.state_dict()))
        model.load_state_dict(best[1])
    feats = {k: Features(*predict(acc, model, dl, prep, features=True, progress=False))
             for k, dl in (("train", train_dl), ("val", val_dl))}
    orig = Head.from_module(model.get_classifier())
    head_rows = []
    for lr in (0.01, 0.05, 0.2):
        for epochs in (10, 30):
            h, _ = retrain("gml", orig, feats["train"], feats["val"], ds.train_counts, epochs=epochs, lr=lr, seed=a.seed)
            for ens in (False, True):
                hh = ensemble(orig, h, feats["val"], ds.train_counts)[0] if ens else h
                m = metrics_from_logits(hh(feats["val"].x), feats["val"].y, ds.train_counts, ds.shot_thresholds, "val")
                head_rows.append({"setting": f"gml lr={lr} epochs={epochs}{' +ens' if ens else ''}", **brief(m)})
    out = {"split": "val", "init": a.init, "base": BASE, "btm": rows, "best_btm": best[0]["setting"], "gml_head": head_rows}
    res = ROOT / "benchmarks" / "results"
    (res / "btm_sweep.json").write_text(json.dumps(out, indent=2) + "\n")
    table = lambda rs: ["| setting | acc | hm | gm | min | many | medium | few |", "|---|---|---|---|---|---|---|---|"] + [
        f"| {r['setting']} | " + " | ".join(f"{100 * r[k]:.1f}" for k in ("acc", "hm", "gm", "min_recall", "many", "medium", "few")) + " |"
        for r in rs]
    md = [f"BTM settings on Fashion-MNIST-LT rho=100, stage 1 = {a.init}; VALIDATION split (100/class), test never read.",
          f"Base: {BASE}. Best merged model: {best[0]['setting']}.", ""] + table(rows) + [
          "", "GML head on the best merged model (validation):", ""] + table(head_rows) + [
          "", f"Re-run: `python benchmarks/btm_sweep.py --init {a.init}`"]
    (res / "btm_sweep.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def brief(m: dict) -> dict:
    return {k: m[k] for k in ("acc", "hm", "gm", "min_recall", "many", "medium", "few")}


if __name__ == "__main__":
    main()
