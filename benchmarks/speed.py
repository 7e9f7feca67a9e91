"""Speed: the recipe's training and evaluation throughput against the model's pure compute.

    python benchmarks/speed.py [--model resnet20_cifar] [--batch-size 128] [--repeats 3]

Measured side by side in one process, interleaved (pure, pipeline, pure, pipeline, ...) so that a
machine shared with other work slows both alike; medians are reported. Three ratios, written to
benchmarks/results/speed.{json,md}:
- training: images/s of ltzoo's training loop (prepared loader over Fashion-MNIST-LT, batch
  augmentation, loss, accelerate's backward and step) / images/s of forward + backward + SGD step on
  one batch already in memory (target >= 0.9);
- evaluation: images/s of `ltzoo eval`'s loop (`ltzoo.engine.evaluate`, here on the 1,000-image
  validation split to keep the run short; the loop is the same for any split) / images/s
  of the model's forward on one batch in memory, under no_grad (target >= 0.9);
- BTM: the BTM stage's time / the stage-1 time, read from a BTM run folder that trained its own
  stage 1 or from the benchmark grid (target <= 0.25).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import timm
import torch
from accelerate import Accelerator

import ltzoo  # noqa: F401
from ltzoo.data import create_sampler, load_dataset
from ltzoo.data.loader import BatchPreprocess, make_loader
from ltzoo.engine import evaluate, train_one_epoch
from ltzoo.losses import create_loss
from ltzoo.recipes.runfolder import hardware

ROOT = Path(__file__).resolve().parent.parent


def pure_train(model, x, y, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * len(y) / (time.perf_counter() - start)


@torch.no_grad()
def pure_forward(model, x, steps: int) -> float:
    model.eval()
    start = time.perf_counter()
    for _ in range(steps):
        model(x)
    return steps * len(x) / (time.perf_counter() - start)


def pipeline_train(accelerator, model, loader, prep, steps: int, epoch: int) -> float:
    loss_fn = create_loss("ce").to(accelerator.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader.set_epoch(epoch)
    limited = _Take(loader, steps)
    stats = train_one_epoch(accelerator, model, limited, loss_fn, opt, prep, epoch=epoch, progress=False)
    return stats["images"] / stats["seconds"]


class _Take:
    """The first ``n`` batches of a loader (a whole epoch is not needed to measure throughput)."""

    def __init__(self, loader, n: int):
        self.loader, self.n = loader, n

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == self.n:
                return
            yield batch


def btm_ratio() -> dict | None:
    for path in sorted((ROOT / "runs").glob("**/btm_on_ce/results.json")) + sorted((ROOT / "runs").glob("btm-*/results.json")):
        res = json.loads(path.read_text())
        stage1 = res["seconds"].get("stage1") or 0
        parent = Path(res["parents"][0]) / "results.json" if res.get("parents") else None
        if stage1 < 60 and parent and parent.is_file():  # stage 1 trained by another run: its training time
            stage1 = json.loads(parent.read_text()).get("train_seconds", 0)
        if stage1:
            btm = res["seconds"].get("btm_total_one_device", res["seconds"]["btm_total"])
            return {"run": str(path.parent.relative_to(ROOT)), "btm_seconds": btm, "stage1_seconds": stage1,
                    "ratio": btm / stage1}
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20_cifar")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="training steps per measurement")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    accelerator = Accelerator()
    ds = load_dataset("fmnist_lt")
    model = timm.create_model(args.model, num_classes=ds.num_classes, in_chans=ds.in_chans)
    prep = BatchPreprocess(ds.mean, ds.std, crop_padding=3).to(accelerator.device)
    train_dl = make_loader(ds.train, args.batch_size, create_sampler("instance", ds.train.labels, ds.num_classes),
                           drop_last=True)
    test_dl = make_loader(ds.val, args.batch_size * 2)
    model, train_dl, test_dl = accelerator.prepare(model, train_dl, test_dl)
    x = prep(ds.train.images[: args.batch_size].to(accelerator.device))
    y = ds.train.labels[: args.batch_size].to(accelerator.device)
    xe = prep(ds.val.images[: args.batch_size * 2].to(accelerator.device))
    pure_train(model, x, y, 3)  # warm-up
    runs = {"pure_train": [], "pipeline_train": [], "pure_forward": [], "pipeline_eval": []}
    for r in range(args.repeats):
        runs["pure_train"].append(pure_train(model, x, y, args.steps))
        runs["pipeline_train"].append(pipeline_train(accelerator, model, train_dl, prep, args.steps, r))
        runs["pure_forward"].append(pure_forward(model, xe, len(test_dl)))
        start = time.perf_counter()
        evaluate(accelerator, model, test_dl, prep, ds.train_counts, ds.shot_thresholds, "val", progress=False)
        runs["pipeline_eval"].append(len(ds.val) / (time.perf_counter() - start))
    med = {k: statistics.median(v) for k, v in runs.items()}
    out = {
        "hardware": hardware(), "model": args.model, "batch_size": args.batch_size, "images_per_second": med,
        "all_measurements": runs,
        "train_ratio": med["pipeline_train"] / med["pure_train"],
        "eval_ratio": med["pipeline_eval"] / med["pure_forward"],
        "btm": btm_ratio(),
    }
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "speed.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"Speed on {out['hardware']}, {args.model}, batch {args.batch_size}, Fashion-MNIST-LT "
             f"(medians of {args.repeats} interleaved measurements).", "",
             "| measure | pipeline img/s | pure compute img/s | ratio | target |", "|---|---|---|---|---|",
             f"| training | {med['pipeline_train']:.0f} | {med['pure_train']:.0f} | {out['train_ratio']:.2f} | >= 0.9 |",
             f"| evaluation | {med['pipeline_eval']:.0f} | {med['pure_forward']:.0f} | {out['eval_ratio']:.2f} | >= 0.9 |"]
    if out["btm"]:
        b = out["btm"]
        lines.append(f"| BTM stage / stage 1 | {b['btm_seconds']:.0f} s | {b['stage1_seconds']:.0f} s | "
                     f"{b['ratio']:.2f} | <= 0.25 |")
    lines += ["", "Re-run: `python benchmarks/speed.py`"]
    (res / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
