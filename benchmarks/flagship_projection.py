"""Wall time of the ImageNet-LT flagship configs on one and eight GPUs, re-projected with ltzoo's new loader rates.

GPU rates: benchmarks/results/gpu_h200/ (ResNet-50 and ViT-B/16 measured on one H200). Decoding rates per loader
worker: the H200 host's 325 images/s for timm's 224-px training transform (gpu_speed.json, an Intel Xeon) scaled by
what benchmarks/results/loader_speed.json measured here, interleaved in one run: ltzoo's training (or evaluation)
loader against timm's training loader, per worker. Each phase takes the longer of its GPU time and its decoding
time (``workers`` loader workers per process); processes split the images evenly; BTM members train one per
process; start-up and checkpoints are not counted (gpu_speed.py's assumptions). Projected for the configs'
``workers: 8`` and for 15 workers (a 16-core host per GPU, one core left to the training process).

    python benchmarks/flagship_projection.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = ROOT / "ltzoo" / "recipes" / "configs" / "imagenet_lt"


def rates() -> dict:
    gpu = json.loads((RESULTS / "gpu_h200" / "gpu_speed.json").read_text())
    loader = json.loads((RESULTS / "loader_speed.json").read_text())["images_per_second_per_worker"]
    ft = {}
    for line in (RESULTS / "gpu_h200" / "gpu_finetune_speed.jsonl").read_text().splitlines():
        r = json.loads(line) if line.strip() else None
        if r and r.get("arch", "").startswith("vit_base_patch16_clip"):
            ft[(r.get("peft"), r.get("batch"))] = r.get("images_per_s")
    m = gpu["measured"]
    host = m["decode"]["images_per_second_per_worker"]
    scale_train = loader["ltzoo train"] / loader["timm train"]
    scale_eval = loader["ltzoo eval"] / loader["timm train"]
    # on a GPU ltzoo takes the device path (its workers decode and crop; the GPU resizes, flips and jitters)
    device_train = loader["ltzoo train, device path"] / loader["timm train"]
    device_eval = loader["ltzoo eval, device path"] / loader["timm train"]
    return {
        "gpu": gpu["hardware"]["gpu"],
        "host_cpu": gpu["hardware"]["cpu"],
        "train": m["train_eager"]["images_per_second"],
        "member": m["train_member"]["images_per_second"],
        "eval": m["eval_fp32"]["images_per_second"],
        "head_steps": m["head"]["steps_per_second"],
        "vit_lora_256": ft.get(("lora", 256)),
        "vit_lora_64": ft.get(("lora", 64)),
        "vit_eval": ft.get(("eval fp32", 512)),
        "decode_before": host,
        "decode_train": host * scale_train,
        "decode_eval": host * scale_eval,
        "scale_train": scale_train,
        "scale_eval": scale_eval,
        "decode_train_device": host * device_train,
        "decode_eval_device": host * device_eval,
        "scale_train_device": device_train,
        "scale_eval_device": device_eval,
    }


def phase(images: float, gpu_rate: float, decode_rate: float, workers: int, procs: int) -> dict:
    gpu = images / (gpu_rate * procs)
    dec = images / (decode_rate * workers * procs)
    return {
        "images": images,
        "gpu_s": gpu,
        "decode_s": dec,
        "s": max(gpu, dec),
        "bound": "GPU" if gpu >= dec else "decoding",
    }


def project(r: dict, lt: dict, workers: int | None, procs: int, decode: str = "new") -> dict:
    cfg = {n: yaml.safe_load((CONFIGS / f"{n}.yaml").read_text()) for n in ("ce", "btm", "lora_clip", "btm_lora")}
    dt = {"before": r["decode_before"], "new": r["decode_train"], "device": r["decode_train_device"]}[decode]
    de = {"before": r["decode_before"], "new": r["decode_eval"], "device": r["decode_eval_device"]}[decode]
    n, v, t = lt["train_images"], lt["val_images"], lt["test_images"]
    out = {}
    w = workers or int(cfg["ce"].get("workers", 8))
    e = int(cfg["ce"]["epochs"])
    out["ce"] = {
        "train": phase(e * n, r["train"], dt, w, procs),
        "val_each_epoch": phase(e * v, r["eval"], de, w, procs),
        "final_eval": phase(v + t, r["eval"], de, w, procs),
    }
    for name, member_rate, eval_rate in (
        ("btm", r["member"], r["eval"]),
        ("btm_lora", r["vit_lora_64"], r["vit_eval"]),
    ):
        b = cfg[name]
        per_member = int(b["shots"]) * lt["num_classes"] * int(b["member_epochs"])
        rounds = math.ceil(int(b["subsets"]) / procs)
        head_steps = int(b.get("head_epochs", 30)) * math.ceil(n / 512)
        out[name] = {
            "members": phase(rounds * per_member * procs, member_rate, dt, w, procs),
            "features": phase(n + v, eval_rate, de, w, procs),
            "evaluations": phase(3 * (v + t), eval_rate, de, w, procs),
            "head_cpu": {"s": head_steps / r["head_steps"], "bound": "CPU"},
        }
    le = int(cfg["lora_clip"]["epochs"])
    out["lora_clip / lora_in21k"] = {
        "train": phase(le * n, r["vit_lora_256"], dt, w, procs),
        "val_each_epoch": phase(le * v, r["vit_eval"], de, w, procs),
        "final_eval": phase(v + t, r["vit_eval"], de, w, procs),
    }
    return out


def _dur(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def main() -> int:
    lt = json.loads((ROOT / "benchmarks" / "imagenet_lt.json").read_text())
    r = rates()
    res = {"rates": r, "projections": {}}
    settings = (
        ("before (timm decode, workers 8)", 8, "before"),
        ("worker path, workers 8", 8, "new"),
        ("worker path, workers 15", 15, "new"),
        ("device path (a GPU run's), workers 8", 8, "device"),
        ("device path (a GPU run's), workers 15", 15, "device"),
    )
    for label, workers, decode in settings:
        for procs in (1, 8):
            res["projections"][f"{label}, {procs} GPU"] = project(r, lt, workers, procs, decode)
    lines = [
        f"# ImageNet-LT flagship configs: projected wall time on {r['gpu'].split('x ', 1)[-1]} GPUs",
        "",
        f"Decoding per loader worker on the H200 host ({r['host_cpu']}): {r['decode_before']:.0f} images/s with timm's "
        f"training transform (measured there), projected {r['decode_train']:.0f} images/s for ltzoo's training "
        f"loader and {r['decode_eval']:.0f} for its evaluation loader (x{r['scale_train']:.2f} and "
        f"x{r['scale_eval']:.2f}: loader_speed.json, ltzoo's loaders against timm's training loader, 1 worker, "
        "interleaved on this project's CPU). GPU rates: gpu_h200/gpu_speed.json (ResNet-50: "
        f"{r['train']:.0f} images/s training, {r['member']:.0f} at batch 64, {r['eval']:.0f} fp32 evaluation) and "
        f"gpu_finetune_speed.md (ViT-B/16 LoRA {r['vit_lora_256']:.0f} images/s at batch 256, "
        f"{r['vit_lora_64']:.0f} at 64, {r['vit_eval']:.0f} evaluation).",
        "",
        "| config | setting | 1 GPU | bound by (largest phase) | 8 GPUs | bound by (largest phase) |",
        "|---|---|---|---|---|---|",
    ]
    for cfg in ("ce", "btm", "lora_clip / lora_in21k", "btm_lora"):
        for label, _, _ in settings:
            cells = []
            for procs in (1, 8):
                ph = res["projections"][f"{label}, {procs} GPU"][cfg]
                total = sum(p["s"] for p in ph.values())
                big = max(ph.items(), key=lambda kv: kv[1]["s"])
                cells += [_dur(total), f"{big[1]['bound']} ({big[0]})"]
            lines.append(f"| {cfg} | {label} | " + " | ".join(cells) + " |")
    ce1 = res["projections"]["worker path, workers 8, 1 GPU"]["ce"]["train"]
    ce15 = res["projections"]["worker path, workers 15, 1 GPU"]["ce"]["train"]
    cd8 = res["projections"]["device path (a GPU run's), workers 8, 1 GPU"]["ce"]["train"]
    lines += [
        "",
        f"Stage 1 (ce) training on one GPU: the GPU needs {_dur(ce1['gpu_s'])}; 8 workers decode it in "
        f"{_dur(ce1['decode_s'])} ({ce1['bound']}-bound), 15 workers in {_dur(ce15['decode_s'])} "
        f"({ce15['bound']}-bound). GPU-bound needs {r['train'] / r['decode_train']:.1f} workers at the projected "
        "per-worker rate. On the device path a GPU run takes (its workers decode and crop, at "
        f"{r['decode_train_device']:.0f} images/s each, x{r['scale_train_device']:.2f} timm's), 8 workers decode it in "
        f"{_dur(cd8['decode_s'])} ({cd8['bound']}-bound; GPU-bound from {r['train'] / r['decode_train_device']:.1f} "
        "workers). The device's share of the work (resize, flip, jitter of each crop) is not in the GPU rate, which "
        "was measured on ready batches: no GPU was lent to measure it.",
        "",
        "Re-run: `python benchmarks/flagship_projection.py` (after benchmarks/loader_speed.py).",
        "",
    ]
    (RESULTS / "flagship_projection.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / "flagship_projection.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
