"""Speed: ltzoo's training loop, before and after bf16 + channels_last, against pure compute and the
per-image pipelines of other long-tail code bases; evaluation; JPEG decoding at 224 px.

    python benchmarks/speed.py                 # about 5 minutes on 2 cores; --quick for a smoke run
    python benchmarks/speed.py --with-compile  # also torch.compile: its compile time and steady state

Every variant below lives in its own process (its own accelerate state, as in a recipe run) and waits;
the parent runs them one at a time, round after round (A B C ... C B A ...), so load from other work on a
shared machine slows them alike. Only the ratios of medians are meant to be compared; absolute images/s
depend on the load. Written to benchmarks/results/speed.{json,md}.

Variants (resnet20_cifar, Fashion-MNIST-LT 1x28x28, batch 128, the machine's cores as torch threads):
1. today_loop: `ltzoo.training.loop.train_one_epoch` in fp32 on contiguous tensors (the recipes' loop before
   issue 10; `--mixed-precision no --no-channels-last`);
2. default_loop: the same loop with the new defaults (`ltzoo.training.accelerator`: mixed precision auto, channels_last
   auto);
3. default_compute: forward + backward + SGD step on one batch already in memory, same precision/format;
4. per_image: the per-image pipeline of the BTM and classifier-balancing code bases (PIL images,
   torchvision RandomCrop/Flip/ToTensor/Normalize in a DataLoader with workers, fp32 model, plain
   loop); per_image_default feeds the same pipeline to the default-precision model;
5. eval_loop: `ltzoo.training.evaluation.evaluate` on the 1,000-image validation split (fp32 always) against
   pure_forward, the fp32 forward of batches in memory (no_grad, same memory format);
6. files: a generated JPEG folder (500x375) through timm's training transform at 224 px in loader
   workers (`ltzoo.data.loader.make_loader`): images decoded per second, and per worker.
With --with-compile: default_compiled, the default_compute step on a `torch.compile`d model (its first
call, the compile, timed apart).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TARGETS = {  # ratio name: (numerator, denominator, wanted minimum)
    "default_vs_today": ("default_loop", "today_loop", 1.8),
    "default_vs_compute": ("default_loop", "default_compute", 0.9),
    "default_vs_per_image": ("default_loop", "per_image", 3.0),
    "eval_vs_forward": ("eval_loop", "pure_forward", 0.9),
}
INFO = {  # ratios reported without a target
    "per_image_default_vs_compute": ("per_image_default", "default_compute"),
    "compute_vs_today": ("default_compute", "today_loop"),
    "compiled_vs_compute": ("default_compiled", "default_compute"),
}


# ------------------------------------------------------------------------------ the variants (children)
class _Take:
    """The first ``n`` batches of a loader (a whole epoch is not needed to measure throughput)."""

    def __init__(self, loader, n: int):
        self.loader, self.n = loader, n

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == self.n:
                return
            yield batch


def _fmnist(cfg):
    from ltzoo.data import load_dataset

    return load_dataset("fmnist_lt", seed=0)


def _model(cfg, ds, channels_last: bool):
    import timm
    import torch

    import ltzoo  # noqa: F401
    from ltzoo.training import accelerator as accel

    torch.manual_seed(0)
    model = timm.create_model(cfg["model"], num_classes=ds.num_classes, in_chans=ds.in_chans)
    return accel.to_channels_last(model) if channels_last else model


def _settings(cfg, default: bool, model) -> tuple[str, bool]:
    from ltzoo.training import accelerator as accel

    if not default:
        return "no", False
    return accel.resolve_mixed_precision("auto", "cpu"), accel.resolve_channels_last(None, model)


def _loop(cfg, default: bool):
    """Variants 1 and 2: the recipes' training loop over the in-memory fast path."""
    import torch
    from accelerate import Accelerator

    from ltzoo.data import create_sampler
    from ltzoo.data.loader import BatchPreprocess, make_loader
    from ltzoo.training import accelerator as accel
    from ltzoo.training.loop import train_one_epoch

    ds = _fmnist(cfg)
    probe = _model(cfg, ds, False)
    precision, cl = _settings(cfg, default, probe)
    accelerator = Accelerator(cpu=True, mixed_precision=precision)
    model = _model(cfg, ds, cl)
    prep = BatchPreprocess(ds.mean, ds.std, crop_padding=3, channels_last=cl)
    loader = make_loader(
        ds.train, cfg["batch_size"], create_sampler("instance", ds.train.labels, ds.num_classes), drop_last=True
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    loss_fn = torch.nn.CrossEntropyLoss()
    epoch = [0]

    def measure(steps: int) -> float:
        epoch[0] += 1
        loader.set_epoch(epoch[0])
        stats = train_one_epoch(
            accelerator, model, _Take(loader, steps), loss_fn, opt, prep, epoch=epoch[0], progress=False
        )
        return stats["images"] / stats["seconds"]

    return measure, accel.describe(precision, cl, False)


def _compute(cfg, compiled: bool = False):
    """Variant 3: forward + backward + step on one batch in memory, at the default precision and format."""
    import torch

    from ltzoo.training import accelerator as accel

    ds = _fmnist(cfg)
    precision, cl = _settings(cfg, True, _model(cfg, ds, False))
    model = _model(cfg, ds, cl).train()
    if compiled:  # a cold compile, as on a user's first run: inductor's on-disk caches start empty
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="ltzoo-inductor-")
    net = accel.compile_model(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    fmt = torch.channels_last if cl else torch.contiguous_format
    x = ((ds.train.images[: cfg["batch_size"]].float() / 255 - ds.mean[0]) / ds.std[0]).contiguous(memory_format=fmt)
    y = ds.train.labels[: cfg["batch_size"]]

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    extra = {}
    if compiled:  # the first call compiles forward and backward: timed apart
        start = time.perf_counter()
        step()
        extra["compile_seconds"] = time.perf_counter() - start

    def measure(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * len(y) / (time.perf_counter() - start)

    return measure, {**accel.describe(precision, cl, compiled), **extra}


class _PerImage:
    """Fashion-MNIST images one at a time through PIL and torchvision transforms (BTM's data code)."""

    def __init__(self, images, labels, mean, std, padding: int):
        from torchvision import transforms as T

        self.images, self.labels = images.numpy(), labels.tolist()
        self.transform = T.Compose(
            [T.RandomCrop(28, padding=padding), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
        )

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i, 0], mode="L")), self.labels[i]


def _per_image(cfg, default: bool):
    """Variant 4: the per-image pipeline feeding a plain training loop."""
    import torch
    from torch.utils.data import DataLoader

    from ltzoo.training import accelerator as accel

    ds = _fmnist(cfg)
    precision, cl = _settings(cfg, default, _model(cfg, ds, False))
    model = _model(cfg, ds, cl).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    data = _PerImage(ds.train.images, ds.train.labels, ds.mean, ds.std, 3)
    fmt = torch.channels_last if cl else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)

    def measure(steps: int) -> float:
        loader = DataLoader(
            data, batch_size=cfg["batch_size"], shuffle=True, generator=gen, num_workers=cfg["workers"], drop_last=True
        )
        warm = 2  # batches before the clock starts: worker start-up is not steady state
        for i, (x, y) in enumerate(loader):
            if i == warm:
                start = time.perf_counter()
            if i == warm + steps:
                break
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=fmt)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return steps * cfg["batch_size"] / (time.perf_counter() - start)

    return measure, {**accel.describe(precision, cl, False), "workers": cfg["workers"]}


def _eval(cfg, pure: bool):
    """Variant 5: `evaluate` over the validation split, or the pure fp32 forward of batches in memory."""
    import torch
    from accelerate import Accelerator

    from ltzoo.data.loader import BatchPreprocess, make_loader
    from ltzoo.training import accelerator as accel
    from ltzoo.training.evaluation import evaluate

    ds = _fmnist(cfg)
    precision, cl = _settings(cfg, True, _model(cfg, ds, False))
    model = _model(cfg, ds, cl)
    bs = 2 * cfg["batch_size"]
    prep = BatchPreprocess(ds.mean, ds.std, channels_last=cl)
    if pure:
        model.eval()
        x = prep(ds.val.images[:bs])
        batches = -(-len(ds.val) // bs)

        @torch.no_grad()
        def measure(steps: int) -> float:
            start = time.perf_counter()
            for _ in range(batches):
                model(x)
            return batches * bs / (time.perf_counter() - start)

        return measure, accel.describe("no", cl, False)
    accelerator = Accelerator(cpu=True, mixed_precision=precision)  # trained so; evaluated in fp32
    loader = make_loader(ds.val, bs)
    model, loader = accelerator.prepare(model, loader)

    def measure(steps: int) -> float:
        start = time.perf_counter()
        evaluate(accelerator, model, loader, prep, ds.train_counts, ds.shot_thresholds, "val", progress=False)
        return len(ds.val) / (time.perf_counter() - start)

    return measure, accel.describe(precision, cl, False)


def _files(cfg):
    """Variant 6: JPEG decoding through timm's 224-px training transform in loader workers."""
    import timm.data
    import torch

    from ltzoo.data.loader import make_loader
    from ltzoo.data.splits import Split

    files = sorted(str(p) for p in Path(cfg["jpeg_dir"]).glob("*.jpg"))
    split = Split("train", torch.zeros(len(files), dtype=torch.long), files=files)
    transform = timm.data.create_transform(input_size=224, is_training=True)
    bs = 16

    def measure(steps: int) -> float:
        loader = make_loader(split, bs, transform=transform, num_workers=cfg["workers"])
        it = iter(loader)
        next(it)  # worker start-up and the first batch: not steady state
        start, n = time.perf_counter(), 0
        for x, _ in it:
            n += len(x)
        seconds = time.perf_counter() - start
        del it, loader  # persistent workers end here
        return n / seconds

    return measure, {"workers": cfg["workers"], "input_size": 224, "images": len(files), "batch_size": bs}


BUILDERS = {
    "today_loop": lambda cfg: _loop(cfg, default=False),
    "default_loop": lambda cfg: _loop(cfg, default=True),
    "default_compute": lambda cfg: _compute(cfg),
    "per_image": lambda cfg: _per_image(cfg, default=False),
    "per_image_default": lambda cfg: _per_image(cfg, default=True),
    "eval_loop": lambda cfg: _eval(cfg, pure=False),
    "pure_forward": lambda cfg: _eval(cfg, pure=True),
    "files": _files,
    "default_compiled": lambda cfg: _compute(cfg, compiled=True),
}


def _serve(name: str, cfg: dict, conn) -> None:
    """A variant's process: build it, warm it up, then measure on each request until told to stop."""
    import torch

    torch.set_num_threads(cfg["threads"])
    try:
        measure, info = BUILDERS[name](cfg)
        measure(1)  # warm-up (oneDNN primitive creation, allocator)
        conn.send(("ready", info))
        while (msg := conn.recv()) is not None:
            conn.send(("ok", profile(measure, msg[1]) if isinstance(msg, tuple) else measure(msg)))
    except Exception as exc:  # reported by the parent, which then drops the variant
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def profile(measure, steps: int, top: int = 12) -> list[dict]:
    """The ops that took the most CPU time (self time, torch.profiler) over one measurement."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        measure(steps)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total, "calls": e.count}
        for e in events[:top]
    ]


# ------------------------------------------------------------------------------------ the parent
def make_jpegs(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` smooth random 500x375 RGB JPEGs (quality 90, ImageNet's typical size)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        img = np.asarray(small.resize((500, 375), Image.BICUBIC)).astype(np.int16)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:04d}.jpg", quality=90)


def run(cfg: dict, names: list[str], rounds: int, log) -> tuple[dict, dict, dict, dict]:
    ctx = mp.get_context("spawn")
    procs, conns, info, errors = {}, {}, {}, {}
    for name in names:  # started one at a time: set-up is not measured, but it loads the machine
        parent, child = ctx.Pipe()
        procs[name] = ctx.Process(target=_serve, args=(name, cfg, child), daemon=False)  # may start loader workers
        procs[name].start()
        conns[name] = parent
        status, payload = parent.recv()
        (info if status == "ready" else errors)[name] = payload
        log(f"{name}: {status} {payload}")
    runs = {n: [] for n in names if n in info}
    try:
        for r in range(rounds):
            order = list(runs) if r % 2 == 0 else list(runs)[::-1]  # every variant once per round; the order
            for name in order:  # alternates, so no variant always follows the same neighbour
                steps = cfg["files_steps"] if name == "files" else cfg["steps"]
                conns[name].send(steps)
                status, value = conns[name].recv()
                runs[name].append(value)
            log(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:.0f}" for n, v in runs.items()))
        profiles = {}
        for name in [n for n in cfg["profile"] if n in runs]:
            conns[name].send(("profile", cfg["steps"]))
            profiles[name] = conns[name].recv()[1]
    finally:
        for name, proc in procs.items():
            if proc.is_alive():
                try:
                    conns[name].send(None)
                except (BrokenPipeError, OSError):
                    pass
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    return runs, info, errors, profiles


def btm_ratio() -> dict | None:
    """The BTM stage's time over stage 1's, from a BTM run folder under runs/ that trained its own stage 1."""
    for path in sorted((ROOT / "runs").glob("btm-*/results.json")):
        res = json.loads(path.read_text())
        stage1 = res.get("seconds", {}).get("stage1") or 0
        if stage1 >= 60:
            btm = res["seconds"].get("btm_total_one_device", res["seconds"]["btm_total"])
            return {
                "run": str(path.parent.relative_to(ROOT)),
                "btm_seconds": btm,
                "stage1_seconds": stage1,
                "ratio": btm / stage1,
            }
    return None


def ratios(runs: dict) -> dict:
    """Each ratio as the median over rounds of its per-round ratio (the two measured close together in time),
    with the ratio of the medians and the ratio of the best rounds beside it."""
    out = {}
    for key, spec in {**TARGETS, **INFO}.items():
        num, den = spec[0], spec[1]
        if not (runs.get(num) and runs.get(den)):
            continue
        paired = [a / b for a, b in zip(runs[num], runs[den])]
        out[key] = {
            "ratio": statistics.median(paired),
            "per_round": paired,
            "ratio_of_medians": statistics.median(runs[num]) / statistics.median(runs[den]),
            "ratio_of_best": max(runs[num]) / max(runs[den]),
        }
        if len(spec) == 3:
            out[key].update(target=spec[2], met=out[key]["ratio"] >= spec[2])
    return out


def markdown(out: dict) -> str:
    hw, med, cfg = out["hardware"], out["median_images_per_second"], out["config"]
    flags = ", ".join(hw["cpu_flags"]) or "none of " + ", ".join(("amx_bf16", "avx512_bf16"))
    lines = [
        f"# Speed on {hw['cpu']} ({flags}; {hw['torch_threads']} torch threads"
        + (f"; GPU {hw['gpu']}" if hw["gpu"] else "; no GPU")
        + f"; torch {hw['torch']})",
        "",
        f"{cfg['model']}, Fashion-MNIST-LT 1x28x28, batch {cfg['batch_size']}. Medians of {cfg['rounds']} rounds; in "
        f"each round every variant ran once, in turn (order reversed every other round), {cfg['steps']} steps "
        "each (interleaved, each in its own process). The machine was shared with other work while this ran: "
        "absolute images/s move with the "
        "load, the ratios of interleaved medians are what to compare"
        + (
            f" (1-minute load average {out['load_average']['before'][0]:.1f} before, "
            f"{out['load_average']['after'][0]:.1f} after, on {os.cpu_count()} cores)."
            if "load_average" in out
            else "."
        ),
        "",
        "Default settings chosen by `ltzoo.training.accelerator` here: "
        f"mixed precision **{out['default']['mixed_precision']}**, "
        f"channels_last **{out['default']['channels_last']}**, compile off; evaluation in fp32.",
        "",
        "Ratios: the median over rounds of the per-round ratio (both variants measured within the same round); "
        "the ratio of the medians and of the best rounds are shown beside it.",
        "",
        "| target | ratio | of medians | of best rounds | wanted | met |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "default_vs_today": "default loop / today's loop (fp32, contiguous)",
        "default_vs_compute": "default loop / its pure compute",
        "default_vs_per_image": "default loop / per-image pipeline (PIL + torchvision, fp32)",
        "eval_vs_forward": "evaluation (fp32) / pure fp32 forward",
        "per_image_default_vs_compute": "per-image pipeline feeding the default model / pure compute",
        "compute_vs_today": "pure compute (default) / today's loop",
        "compiled_vs_compute": "compiled pure compute / eager pure compute",
    }
    for key, r in out["ratios"].items():
        lines.append(
            f"| {names[key]} | {r['ratio']:.2f} | {r['ratio_of_medians']:.2f} | {r['ratio_of_best']:.2f} | "
            + (f">= {r['target']} | {'yes' if r['met'] else 'no'} |" if "target" in r else "- | - |")
        )
    lines += ["", "| variant | settings | median images/s | all rounds |", "|---|---|---|---|"]
    for name, v in med.items():
        s = out["settings"].get(name, {})
        desc = ", ".join(f"{k}={s[k]}" for k in ("mixed_precision", "channels_last", "compile", "workers") if k in s)
        lines.append(f"| {name} | {desc} | {v:.0f} | {' '.join(f'{x:.0f}' for x in out['all_measurements'][name])} |")
    if "per_image" in med:
        lines += [
            "",
            "The per-image pipeline's loader workers run on the same cores as the training threads; on a "
            "2-core machine that also runs other work, they take turns with them, which costs more than the "
            "decoding itself. per_image_default feeds the same pipeline to the default-precision model: its "
            "ratio to pure compute is what the pipeline costs at equal precision.",
        ]
    if "files" in med:
        f = out["settings"]["files"]
        lines += [
            "",
            f"JPEG decoding (500x375 JPEGs, timm's 224-px training transform, {f['workers']} loader workers "
            f"on {os.cpu_count()} cores): {med['files']:.0f} images/s, "
            f"{med['files'] / f['workers']:.0f} images/s per worker.",
        ]
    if "default_compiled" in out["settings"]:
        c = out["settings"]["default_compiled"]
        lines += [
            "",
            f"torch.compile: the first step took {c['compile_seconds']:.0f} s (compiling forward and backward, "
            "inductor's caches empty); "
            f"steady state {out['ratios'].get('compiled_vs_compute', {}).get('ratio', float('nan')):.2f}x the "
            "eager step. Not a default: see `ltzoo.training.accelerator`.",
        ]
    for name, rows in out.get("profiles", {}).items():
        lines += [
            "",
            f"Where {name}'s time goes (torch.profiler, self CPU time over {cfg['steps']} steps, top ops):",
            "",
            "| op | share | ms | calls |",
            "|---|---|---|---|",
        ]
        lines += [f"| `{r['op']}` | {r['share']:.1%} | {r['self_ms']:.0f} | {r['calls']} |" for r in rows]
    if out.get("errors"):
        lines += ["", "Variants that failed: " + "; ".join(f"{k}: {v}" for k, v in out["errors"].items())]
    if out.get("btm"):
        b = out["btm"]
        lines += [
            "",
            f"BTM stage / stage 1 ({b['run']}): {b['btm_seconds']:.0f} s / {b['stage1_seconds']:.0f} s = "
            f"{b['ratio']:.2f}.",
        ]
    lines += ["", f"Re-run: `python benchmarks/speed.py{' --with-compile' if 'default_compiled' in med else ''}`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20_cifar")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=4, help="training steps per measurement")
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds (medians over these)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per variant (default: the cores)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="loader workers of the per-image and JPEG variants (default: the cores)",
    )
    p.add_argument("--with-compile", action="store_true", help="also measure a torch.compile'd model")
    p.add_argument("--only", nargs="+", choices=list(BUILDERS), help="measure these variants only")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 2 steps, written to --out")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for speed.json and speed.md")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.steps = 2, 2
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cfg = {
        "model": args.model,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "rounds": args.rounds,
        "threads": args.threads or cores,
        "workers": args.workers or cores,
        "files_steps": 0,
        "profile": ["default_loop", "default_compute"],
    }
    names = args.only or [n for n in BUILDERS if n != "default_compiled" or args.with_compile]
    tmp = Path(tempfile.mkdtemp(prefix="ltzoo-speed-"))
    try:
        if "files" in names:
            make_jpegs(tmp / "jpeg", 48 if args.quick else 160)
            cfg["jpeg_dir"] = str(tmp / "jpeg")
        start, load_before = time.perf_counter(), os.getloadavg()
        runs, info, errors, profiles = run(cfg, names, args.rounds, lambda m: print(m, flush=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    import torch

    torch.set_num_threads(cfg["threads"])
    from ltzoo.runfolder import provenance

    med = {k: statistics.median(v) for k, v in runs.items() if v}
    default = info.get("default_loop") or info.get("default_compute") or {}
    out = {
        "hardware": provenance.hardware_summary("cpu"),
        "config": {k: v for k, v in cfg.items() if k != "jpeg_dir"},
        "default": default,
        "median_images_per_second": med,
        "ratios": ratios(runs),
        "all_measurements": runs,
        "settings": info,
        "errors": errors,
        "profiles": profiles,
        "btm": btm_ratio(),
        "seconds": time.perf_counter() - start,
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "speed.json").write_text(json.dumps(out, indent=2) + "\n")
    (folder / "speed.md").write_text(markdown(out))
    print(markdown(out))


if __name__ == "__main__":
    main()
