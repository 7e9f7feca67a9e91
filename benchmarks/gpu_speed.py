"""GPU speed: ResNet-50 at 224 px with ltzoo's GPU defaults, and the projected ImageNet-LT wall times.

    python benchmarks/gpu_speed.py --out benchmarks/results/gpu_h200      # about 3 minutes on an H200
    python benchmarks/gpu_speed.py --cpu-smoke --out /tmp/gpu_smoke        # tiny sizes on the CPU: checks the script

Synthetic data shaped like ImageNet-LT (benchmarks/imagenet_lt.json: 1,000 classes, 115,846 training
images, 1,280 to 5 per class): random uint8 batches made on the GPU, labels drawn from the long-tailed
class counts, normalised on the GPU as `ltzoo.data.loader.BatchPreprocess` does. Measured, each in a
short timed window after warm-up:
- training (forward, backward, SGD step) under bf16 autocast, channels_last, eager and `torch.compile`d
  (a failed compile is recorded, not fatal), at the stage-1 batch and at the BTM member batch;
- evaluation as ltzoo evaluates (fp32, no autocast, channels_last) and, for comparison, under bf16;
- peak GPU memory of each;
- on the host: JPEG decoding through timm's 224-px training transform (images/s per loader worker)
  and GML head training on cached features (ltzoo.methods.heads runs it on the CPU).
Then the wall time of recipes/configs/imagenet_lt/{ce,btm}.yaml is projected from those rates: bounded by
the GPU and by JPEG decoding in the configured loader workers (whichever is slower), for one GPU and for
``--gpus`` GPUs (linear scaling assumed). Writes gpu_speed.json and gpu_speed.md to ``--out``.

Needs torch, timm and PyYAML; imports nothing that needs `datasets`.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parent.parent

import timm  # noqa: E402
import timm.data  # noqa: E402

from ltzoo.runfolder import provenance  # noqa: E402
from ltzoo.training import accelerator as accel  # noqa: E402  (torch only)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CONFIG_DIRS = ("ltzoo/recipes/configs/imagenet_lt", "recipes/configs/imagenet_lt")  # after and before the move


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ data
class SyntheticLT:
    """Random uint8 images on the device with labels drawn from the long-tailed class counts."""

    def __init__(self, counts: list[int], size: int, device: torch.device, pool: int = 4, seed: int = 0):
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        self.prior = torch.tensor(counts, dtype=torch.float)
        self.size, self.device, self.pool = size, device, pool
        self.cache: dict[int, list] = {}
        mean, std = torch.tensor(IMAGENET_MEAN, device=device), torch.tensor(IMAGENET_STD, device=device)
        self.mean, self.std = mean.view(1, 3, 1, 1) * 255, std.view(1, 3, 1, 1) * 255

    def batches(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A few distinct (uint8 image, label) batches, made once per batch size."""
        if batch_size not in self.cache:
            self.cache[batch_size] = [
                (
                    torch.randint(0, 256, (batch_size, 3, self.size, self.size), dtype=torch.uint8, device=self.device),
                    torch.multinomial(self.prior, batch_size, replacement=True, generator=self.gen).to(self.device),
                )
                for _ in range(self.pool)
            ]
        return self.cache[batch_size]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW to normalised float in channels_last, on the device."""
        x = x.contiguous(memory_format=torch.channels_last)
        return (x.float() - self.mean) / self.std


# ----------------------------------------------------------------------------------- measurements
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # peak RSS of the process


def timed(step, device: torch.device, warmup: int, seconds: float, images_per_step: int, chunk: int = 5) -> dict:
    """Images/s of ``step`` over a window of about ``seconds`` after ``warmup`` steps; the first step timed apart."""
    start = time.perf_counter()
    step(0)
    sync(device)
    first = time.perf_counter() - start
    for i in range(1, warmup):
        step(i)
    sync(device)
    steps, start = 0, time.perf_counter()
    while True:
        for _ in range(chunk):
            step(steps)
            steps += 1
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return {
        "images_per_second": steps * images_per_step / elapsed,
        "steps": steps,
        "window_seconds": elapsed,
        "first_step_seconds": first,
    }


def create(name: str, num_classes: int, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=num_classes)
    return accel.to_channels_last(model.to(device))


def train_rate(args, data: SyntheticLT, device, batch_size: int, compiled: bool) -> dict:
    """bf16 autocast training, channels_last; SGD with Nesterov momentum as the recipes' optimiser."""
    model = create(args.model, len(data.prior), device).train()
    net = accel.compile_model(model, backend=args.compile_backend) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    batches = data.batches(batch_size)

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(net(data.normalise(x)), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    reset_peak(device)
    out = timed(step, device, args.warmup, args.seconds, batch_size)
    out["peak_memory_gib"] = peak_gib(device)
    if compiled:
        out["compile_seconds"] = out["first_step_seconds"]
    model = net = opt = None  # free the device memory before the next measurement
    return out


def eval_rate(args, data: SyntheticLT, device, batch_size: int, bf16: bool) -> dict:
    """Forward passes in eval mode under no_grad: fp32 (as ltzoo evaluates) or under bf16 autocast."""
    model = create(args.model, len(data.prior), device).eval()
    batches = data.batches(batch_size)

    @torch.no_grad()
    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(data.normalise(batches[i % len(batches)][0]))

    reset_peak(device)
    out = timed(step, device, max(2, args.warmup // 3), args.seconds * 0.6, batch_size)
    out["peak_memory_gib"] = peak_gib(device)
    model = None  # free the device memory before the next measurement (step's closure holds it)
    return out


def decode_rate(seconds: float, n: int = 24) -> dict:
    """JPEG decode + timm's 224-px training transform, one process: images/s per loader worker."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(n):  # smooth 500x375 RGB images with a little noise, JPEG quality 90 (ImageNet-like sizes)
        small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        img = np.asarray(small.resize((500, 375), Image.BICUBIC)).astype(np.int16)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    transform = timm.data.create_transform(input_size=224, is_training=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a loader worker
    try:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            with Image.open(io.BytesIO(blobs[done % n])) as im:
                transform(im.convert("RGB"))
            done += 1
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return {"images_per_second_per_worker": done / elapsed, "images": done, "jpeg_kib": sum(map(len, blobs)) / n / 1024}


def head_rate(seconds: float, feat_dim: int, num_classes: int, batch_size: int = 512) -> dict:
    """SGD steps/s of a linear head on cached CPU features (ltzoo.methods.heads trains GML heads so)."""
    x = torch.randn(batch_size, feat_dim)
    y = torch.randint(0, num_classes, (batch_size,))
    w = torch.zeros(num_classes, feat_dim, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loss = F.cross_entropy(x @ w.T + b, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    return {"steps_per_second": steps / (time.perf_counter() - start), "batch_size": batch_size, "feat_dim": feat_dim}


# -------------------------------------------------------------------------------------- projection
def load_configs(folder: str | None) -> tuple[dict, dict, str]:
    dirs = [folder] if folder else list(CONFIG_DIRS)
    for d in dirs:
        path = ROOT / d if not Path(d).is_absolute() else Path(d)
        if (path / "ce.yaml").is_file() and (path / "btm.yaml").is_file():
            read = lambda name, path=path: yaml.safe_load((path / name).read_text()) or {}  # noqa: E731
            return read("ce.yaml"), read("btm.yaml"), str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    raise FileNotFoundError(f"no ce.yaml and btm.yaml in {dirs}; pass --configs")


def project(m: dict, lt: dict, ce: dict, btm: dict, gpus: int) -> dict:
    """Projected seconds of the ImageNet-LT stage-1 and BTM recipes from the measured rates.

    Each phase takes the longer of its GPU time and its JPEG decoding time (``workers`` loader workers per
    process, each at the measured per-worker rate); ``gpus`` processes split the images evenly.
    """
    train = m["train_eager"]["images_per_second"]
    train_c = m.get("train_compiled", {}).get("images_per_second")
    evals = m["eval_fp32"]["images_per_second"]
    member = m.get("train_member", {}).get("images_per_second", train)
    per_worker = m["decode"]["images_per_second_per_worker"]
    n, v, t = lt["train_images"], lt["val_images"], lt["test_images"]

    def phase(images: float, gpu_rate: float, workers: int, procs: int) -> dict:
        gpu = images / (gpu_rate * procs)
        decode = images / (per_worker * workers * procs)
        return {
            "images": images,
            "gpu_seconds": gpu,
            "decode_seconds": decode,
            "seconds": max(gpu, decode),
            "bound": "GPU" if gpu >= decode else "JPEG decoding",
        }

    out = {}
    for procs in sorted({1, gpus}):
        w1 = int(ce.get("workers", 8))
        epochs = int(ce.get("epochs", 90))
        s1 = {
            "train": phase(epochs * n, train, w1, procs),
            "val_each_epoch": phase(epochs * v, evals, w1, procs),
            "final_eval": phase(v + t, evals, w1, procs),
        }
        s1_total = sum(p["seconds"] for p in s1.values())
        compiled = None
        if train_c:
            compiled = (
                s1_total
                - s1["train"]["seconds"]
                + phase(epochs * n, train_c, w1, procs)["seconds"]
                + m["train_compiled"]["compile_seconds"]
            )
        w2 = int(btm.get("workers", 8))
        members, shots, mep = int(btm.get("subsets", 4)), int(btm.get("shots", 50)), int(btm.get("member_epochs", 10))
        per_member = shots * lt["num_classes"] * mep
        rounds = math.ceil(members / procs)  # one member per process at a time, no collective
        head_steps = int(btm.get("head_epochs", 30)) * math.ceil(n / m["head"]["batch_size"])
        b = {
            "members": phase(rounds * per_member * procs, member, w2, procs),
            "features": phase(n + v, evals, w2, procs),  # train + val features, fp32
            "evaluations": phase(3 * (v + t), evals, w2, procs),  # stage 1, merged, final: val + test
            "head_cpu": {"seconds": head_steps / m["head"]["steps_per_second"], "bound": "CPU (ltzoo.methods.heads)"},
        }
        b_total = sum(p["seconds"] for p in b.values())
        out[f"{procs}_gpu"] = {
            "stage1": s1,
            "stage1_seconds": s1_total,
            "stage1_compiled_seconds": compiled,
            "btm": b,
            "btm_seconds": b_total,
            "btm_over_stage1": b_total / s1_total,
            "member_images": members * per_member,
        }
    return out


# ----------------------------------------------------------------------------------------- report
def markdown(res: dict) -> str:
    hw, m = res["hardware"], res["measured"]
    lines = [
        f"# GPU speed: {res['model']} at {res['image_size']} px on {hw['gpu'] or 'CPU (smoke run)'}",
        "",
        f"torch {hw['torch']}, timm {res['timm']}; host CPU {hw['cpu']} ({os.cpu_count()} cores). "
        f"Synthetic ImageNet-LT-shaped data on the device; bf16 autocast and channels_last for training, "
        f"fp32 for evaluation (as ltzoo evaluates); cudnn.benchmark {res['cudnn_benchmark']}, "
        f"TF32 convolutions {res['tf32']['cudnn']}, TF32 matmuls {res['tf32']['matmul']}.",
        "",
        "| measurement | batch | images/s | peak memory GiB | note |",
        "|---|---|---|---|---|",
    ]
    names = {
        "train_eager": "training, bf16 + channels_last",
        "train_compiled": "training, bf16 + channels_last, compiled",
        "train_member": "training at the BTM member batch",
        "eval_fp32": "evaluation, fp32 (ltzoo's)",
        "eval_bf16": "evaluation under bf16 (not used by ltzoo)",
    }
    for key, label in names.items():
        r = m.get(key)
        if r is None:
            continue
        note = f"compile {r['compile_seconds']:.0f} s" if "compile_seconds" in r else ""
        lines.append(
            f"| {label} | {r['batch_size']} | {r['images_per_second']:.0f} | {r['peak_memory_gib']:.1f} | {note} |"
        )
    for key, err in res["errors"].items():
        lines.append(f"| {names.get(key, key)} | - | failed | - | {err.strip().splitlines()[-1][:120]} |")
    d, h = m["decode"], m["head"]
    lines += [
        "",
        f"Host: JPEG decode + timm 224-px training transform {d['images_per_second_per_worker']:.0f} images/s per "
        f"loader worker; GML head on cached features (CPU, batch {h['batch_size']}, {h['feat_dim']} features) "
        f"{h['steps_per_second']:.1f} steps/s.",
        "",
    ]
    for key, p in res["projection"].items():
        s1, b = p["stage1"], p["btm"]
        gpus = int(key.split("_")[0])
        lines += [
            f"## Projected wall time on {gpus} GPU{'s' if gpus > 1 else ''} ({res['configs']})",
            "",
            "| recipe phase | images | GPU time | decoding time | projected | bound by |",
            "|---|---|---|---|---|---|",
        ]
        for name, ph in [*(("stage 1 " + k, v) for k, v in s1.items()), *(("BTM " + k, v) for k, v in b.items())]:
            images = f"{ph['images']:,.0f}" if "images" in ph else "-"
            lines.append(
                f"| {name} | {images} | {_dur(ph.get('gpu_seconds'))} | {_dur(ph.get('decode_seconds'))} "
                f"| {_dur(ph['seconds'])} | {ph['bound']} |"
            )
        lines += [
            "",
            f"Stage 1: **{_dur(p['stage1_seconds'])}**"
            + (
                f" ({_dur(p['stage1_compiled_seconds'])} compiled, compile time included)"
                if p["stage1_compiled_seconds"]
                else ""
            )
            + f"; BTM: **{_dur(p['btm_seconds'])}** ({p['btm_over_stage1']:.1%} of stage 1).",
            "",
        ]
    lines += [
        "Assumptions: processes split images evenly and scale linearly; each phase is as slow as the slower of the "
        "GPU and JPEG decoding in the config's loader workers (decoding needs that many free cores per process); "
        "BTM members train one per process at a time; checkpointing and start-up are not counted.",
        "",
        f"Re-run: `python benchmarks/gpu_speed.py --out {res['out']}` ({res['seconds']:.0f} s this time).",
    ]
    return "\n".join(lines) + "\n"


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"


# ------------------------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for gpu_speed.json and gpu_speed.md")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=None, help="training batch; unset: the stage-1 config's")
    p.add_argument("--eval-batch-size", type=int, default=None, help="unset: twice the training batch, as the recipes")
    p.add_argument("--warmup", type=int, default=15, help="untimed steps before each window")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each timed training window")
    p.add_argument("--gpus", type=int, default=8, help="GPUs to project the recipes' wall time for (and 1)")
    p.add_argument("--configs", default=None, help="folder with the ImageNet-LT ce.yaml and btm.yaml")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="also measure torch.compile")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="check the script on a CPU: resnet18 at 64 px, batch 8, 1-s windows, compile with the eager backend",
    )
    args = p.parse_args()
    start = time.perf_counter()
    lt = json.loads((ROOT / "benchmarks" / "imagenet_lt.json").read_text())
    ce, btm, configs = load_configs(args.configs)
    if args.cpu_smoke:
        device = torch.device("cpu")
        args.model, args.image_size, args.warmup, args.seconds = "resnet18", 64, 2, 1.0
        args.batch_size, args.compile_backend = args.batch_size or 8, "eager"
    elif not torch.cuda.is_available():
        sys.exit("gpu_speed.py: no CUDA GPU here; use --cpu-smoke to check the script on a CPU")
    else:
        device = torch.device("cuda")
    bs = args.batch_size or int(ce.get("batch_size", 256))
    ebs = args.eval_batch_size or 2 * bs
    mbs = min(int(btm.get("member_batch_size", 64)), bs)
    log(f"{args.model} at {args.image_size} px on {device}: batch {bs}, eval batch {ebs}, member batch {mbs}")
    data = SyntheticLT(lt["train_class_counts"], args.image_size, device)
    measured, errors = {}, {}
    plan = [
        ("train_eager", lambda: train_rate(args, data, device, bs, False), bs),
        ("eval_fp32", lambda: eval_rate(args, data, device, ebs, False), ebs),
        ("eval_bf16", lambda: eval_rate(args, data, device, ebs, True), ebs),
        ("train_member", lambda: train_rate(args, data, device, mbs, False), mbs),
    ]
    compiled = [("train_compiled", lambda: train_rate(args, data, device, bs, True), bs)] if args.compile else []
    run_plan(plan, measured, errors, device)
    if "train_eager" not in measured or "eval_fp32" not in measured:
        sys.exit(f"gpu_speed.py: the eager measurements failed: {errors}")
    log("host: JPEG decoding per worker, GML head on cached features ...")
    measured["decode"] = decode_rate(2.0 if args.cpu_smoke else 6.0)
    feat_dim = timm.create_model(args.model, num_classes=0, pretrained=False).num_features
    measured["head"] = head_rate(1.0 if args.cpu_smoke else 4.0, feat_dim, lt["num_classes"])
    log(
        f"decode {measured['decode']['images_per_second_per_worker']:.0f} images/s/worker, "
        f"head {measured['head']['steps_per_second']:.1f} steps/s"
    )
    res = {
        "model": args.model,
        "image_size": args.image_size,
        "timm": timm.__version__,
        "device": str(device),
        "hardware": {**provenance.hardware_summary(device), "host": platform.node(), "cores": os.cpu_count()},
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "imagenet_lt": {k: v for k, v in lt.items() if k != "train_class_counts"},
        "configs": configs,
        "measured": measured,
        "errors": errors,
        "smoke": args.cpu_smoke,
        "out": args.out,
    }
    write(res, lt, ce, btm, args, start)  # written before compiling too: a compile that hangs loses nothing
    if compiled:
        run_plan(compiled, measured, errors, device)
        write(res, lt, ce, btm, args, start)
    print(markdown(res), flush=True)
    log(f"done in {res['seconds']:.0f} s; wrote {Path(args.out) / 'gpu_speed.json'} and gpu_speed.md")


def run_plan(plan, measured: dict, errors: dict, device: torch.device) -> None:
    """Run each measurement; a failure (compile above all) is recorded with its traceback, not fatal."""
    for key, fn, batch in plan:
        log(f"{key} ...")
        try:
            measured[key] = {**fn(), "batch_size": batch}
            r = measured[key]
            log(
                f"{key}: {r['images_per_second']:.0f} images/s, peak {r['peak_memory_gib']:.1f} GiB"
                + (f", compile {r['compile_seconds']:.0f} s" if "compile_seconds" in r else "")
            )
        except Exception:  # noqa: BLE001
            errors[key] = traceback.format_exc(limit=3)
            log(f"{key} failed: {errors[key].strip().splitlines()[-1]}")
        if device.type == "cuda":
            torch.cuda.empty_cache()


def write(res: dict, lt: dict, ce: dict, btm: dict, args, start: float) -> None:
    res["projection"] = project(res["measured"], lt, ce, btm, args.gpus)
    res["seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_speed.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "gpu_speed.md").write_text(markdown(res))


if __name__ == "__main__":
    main()
