"""GPU speed of fine-tuning a ViT-B/16 at 224 px: full, LoRA, bias-only and linear-probe training steps.

    python benchmarks/gpu_finetune_speed.py --out benchmarks/results/gpu_h200     # about 3 minutes on an H200
    python benchmarks/gpu_finetune_speed.py --cpu-smoke --out /tmp/ft_smoke          # tiny sizes on the CPU

For the ImageNet-LT / Places-LT LoRA + BTM + GML configs (ltzoo/recipes/configs/{imagenet_lt,places_lt}/
*clip*.yaml, *in21k*.yaml): the rates their projected GPU times come from. Random weights of the two
architectures (`vit_base_patch16_clip_224`, `vit_base_patch16_224`: their pretrained weights are not
needed to time them; the step costs the same), 1,000 classes, random uint8 batches made on the GPU and
normalised there. Each setting: AdamW steps under bf16 autocast (ltzoo's GPU default), the adapters of
`ltzoo.methods.adapters` (peft's LoRA r=8 on the attention and MLP linears, the classifier trained whole), images/s
after warm-up and peak GPU memory; and fp32 evaluation. Writes gpu_finetune_speed.{json,md} to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import ltzoo.models  # noqa: F401
from ltzoo.methods import adapters


def timed(step, batch: int, device, steps: int, warmup: int) -> dict:
    """Images per second of ``step()`` over ``steps`` calls after ``warmup`` untimed ones, and the peak GPU memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {
        "images_per_s": batch * steps / (time.perf_counter() - start),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0,
    }


def timed_train(model, batch: int, size: int, device, steps: int, warmup: int, amp: bool) -> dict:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    y = torch.randint(0, model.num_classes if hasattr(model, "num_classes") else 1000, (batch,), device=device)
    mean = torch.tensor((0.5, 0.5, 0.5), device=device).view(1, 3, 1, 1)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if amp else torch.autocast(device.type, enabled=False)
    model.train()

    def step() -> None:
        x = (x8.float() / 255 - mean) / 0.5
        with ctx:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return timed(step, batch, device, steps, warmup)


@torch.no_grad()
def timed_eval(model, batch: int, size: int, device, steps: int, warmup: int) -> dict:
    model.eval()
    x = torch.randn(batch, 3, size, size, device=device)
    return timed(lambda: model(x), batch, device, steps, warmup)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--cpu-smoke", action="store_true")
    args = p.parse_args()
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    smoke = args.cpu_smoke
    archs = ["vit_pico_patch4_28"] if smoke else ["vit_base_patch16_clip_224", "vit_base_patch16_224"]
    size = 28 if smoke else 224
    batches = [8] if smoke else [64, 256]
    steps, warmup = (2, 1) if smoke else (20, 5)
    kw = {"in_chans": 3} if smoke else {}
    rows = []
    for arch in archs:
        for method in ("none", "lora", "bias", "head"):
            for batch in batches:
                torch.manual_seed(0)
                model = timm.create_model(arch, num_classes=1000, **kw)
                spec = adapters.AdapterSpec(method, rank=8, alpha=16)
                try:
                    net = adapters.wrap(model, spec).to(device)
                except ImportError as exc:  # peft (and transformers) not installed on this machine
                    print(f"{arch} {method}: skipped ({exc})", flush=True)
                    continue
                state = adapters.trainable_state(net, spec) if spec.enabled else model.state_dict()
                r = timed_train(net, batch, size, device, steps, warmup, amp=not smoke)
                rows.append(
                    {
                        "arch": arch,
                        "peft": method,
                        "batch": batch,
                        **r,
                        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
                        "saved_mb": sum(v.numel() * v.element_size() for v in state.values()) / 2**20,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
                del net, model, state
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        model = timm.create_model(arch, num_classes=1000, **kw).to(device)
        r = timed_eval(model, 8 if smoke else 512, size, device, steps, warmup)
        rows.append(
            {
                "arch": arch,
                "peft": "eval fp32",
                "batch": 8 if smoke else 512,
                **r,
                "trainable_params": 0,
                "saved_mb": 0.0,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        del model
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
    }
    (out / "gpu_finetune_speed.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    lines = [
        f"# Fine-tuning speed: ViT-B/16 at {size} px on 1x {env['device']}",
        "",
        f"torch {env['torch']}, timm {env['timm']}; random weights, synthetic uint8 batches on the device; training: "
        "AdamW steps under bf16 autocast (ltzoo's GPU default), adapters from ltzoo.methods.adapters (peft LoRA r=8 on "
        "the attention and MLP linears; the classifier trains in every setting); evaluation in fp32. "
        f"{steps} timed steps after {warmup} warm-up steps.",
        "",
        "| arch | training | batch | images/s | peak GiB | trainable params | saved MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['peft']} | {r['batch']} | {r['images_per_s']:.0f} | {r['peak_gib']:.1f} | "
            f"{r['trainable_params']:,} | {r['saved_mb']:.1f} |"
        )
    lines += ["", f"Re-run: `python benchmarks/gpu_finetune_speed.py --out {args.out}`"]
    (out / "gpu_finetune_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
