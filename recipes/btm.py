"""BTM: Balanced Training and Merging ("Reviving Undersampling for Long-Tailed Learning", 2024).

    accelerate launch recipes/btm.py                       # the whole pipeline on Fashion-MNIST-LT
    accelerate launch recipes/btm.py --init runs/pretrain-ce-fmnist_lt-resnet32_cifar-s0 --classifier gml

1. Stage 1 (only without --init): train the long-tailed model with recipes/pretrain.py.
2. Draw M class-balanced subsets of K images per class; fine-tune the whole stage-1 network on each.
   The members are independent: on N processes each trains every N-th member; each member is saved
   before the next starts, and a resumed run skips the saved ones
   (those fine-tuned from the same stage-1 weights, subset and settings, recorded in each member's file).
3. Merge the members by weight averaging (uniform, or greedy soup by validation HM); BN statistics
   averaged or re-estimated on the subsets' images.
4. Fine-tune the merged model's classifier on cached features: GML (default), cRT, LWS, tau-norm or
   logit adjustment, optionally ensembled with the merged head.
Every choice is made on the balanced validation split; each reported model is tested once.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors import safe_open
from safetensors.torch import save_file

from ltzoo.data import balanced_subsets, create_sampler, load_dataset
from ltzoo.data.loader import BatchPreprocess, make_loader
from ltzoo.engine import metrics_from_logits, predict
from ltzoo.heads import METHODS, Features, Head, ensemble, retrain
from ltzoo.losses import create_loss
from ltzoo.merge import average_checkpoints, greedy_soup, reestimate_bn
from ltzoo.recipe import (base_parser, configure_threads, create_optimizer, dataset_kwargs, default_output,
                          finish_run, parse_args, run_cli, setup_logging, summary_table, warmup_cosine)
from ltzoo.runs import atomic_path, create_model, image_transform, save_model, write_json, write_run_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain  # noqa: E402  (stage 1, when no --init is given)


def build_parser():
    p = base_parser(__doc__.split("\n")[0])
    p.set_defaults(model="resnet20_cifar", epochs=15, lr=0.1)  # the stage-1 defaults, used without --init
    g = p.add_argument_group("BTM")
    g.add_argument("--stage1-loss", default="ce", help="stage-1 loss when no --init is given")
    g.add_argument("--subsets", type=int, default=4, help="M, balanced subsets (= merged members)")
    g.add_argument("--shots", type=int, default=50, help="K, images per class in each subset")
    g.add_argument("--disjoint", action="store_true", help="subsets share no image")
    g.add_argument("--allow-fewer", action="store_true", help="a class with fewer than K images gives all it has")
    g.add_argument("--member-epochs", type=int, default=10, help="fine-tuning epochs over each subset")
    g.add_argument("--member-lr", type=float, default=0.01, help="peak learning rate of member fine-tuning")
    g.add_argument("--member-batch-size", type=int, default=64)
    g.add_argument("--train-params", default="all", choices=("all", "backbone", "classifier"))
    g.add_argument("--member-bn", default="train", choices=("train", "frozen"),
                   help="train: BN statistics follow the balanced subset; frozen: keep stage 1's (needs a lower "
                        "--member-lr: at 0.01 it diverged on Fashion-MNIST-LT, benchmarks/results/btm_sweep.md)")
    g.add_argument("--merge", default="uniform", choices=("uniform", "greedy"))
    g.add_argument("--bn-merge", default="average", choices=("average", "reestimate"),
                   help="BN statistics of the merged model: averaged (the paper's; higher validation HM in "
                        "benchmarks/results/btm_sweep.md), or re-estimated on the subsets' images")
    g.add_argument("--classifier", default="gml", choices=("none",) + METHODS)
    g.add_argument("--ensemble", action=argparse.BooleanOptionalAction, default=True, help="ensemble the new head with the merged one")
    g.add_argument("--head-epochs", type=int, default=30)
    g.add_argument("--head-lr", type=float, default=None, help="unset: 0.05 for gml, 0.1 for crt/lws")
    return p


def stage1(args, out: Path) -> str:
    """Train the stage-1 model into out/stage1 and return its path."""
    argv = ["--dataset", args.dataset, "--model", args.model, "--loss", args.stage1_loss, "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed),
            "--output", str(out / "stage1")] + [f for f in ["--no-progress"] if args.no_progress] \
        + [f for f in ["--no-resume"] if not args.resume] + [f for f in ["--pretrained"] if args.pretrained]
    # the same data (profile included) and optimisation flags as this run
    for flag in ("data_dir", "imbalance", "profile", "val_per_class", "train_list", "val_list", "test_list", "workers",
                 "optimizer", "weight_decay", "warmup_epochs", "grad_accum", "save_every", "mixed_precision", "threads"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    pretrain.main(argv, end_training=False)
    return str(out / "stage1")


def trainable(model, which: str):
    head = set(map(id, model.get_classifier().parameters()))
    for p in model.parameters():
        p.requires_grad = which == "all" or ((id(p) in head) == (which == "classifier"))
    return [p for p in model.parameters() if p.requires_grad]


def fine_tune_member(accelerator, base, ds, subset, prep, args, m: int, path: Path,
                     settings: dict[str, str] | None = None) -> None:
    """Fine-tune a copy of the stage-1 model on one balanced subset; save it atomically.

    The member trains on this process alone, with no collective operation (processes train different
    numbers of members, and a resumed run skips some): its training depends on (seed, m) only, not on
    which process, or how many, run it. ``settings`` (see `member_settings`) are stored in the file.
    """
    start = time.perf_counter()
    seed = args.seed * 1000 + m
    set_seed(seed)
    model = copy.deepcopy(base).to(accelerator.device)
    params = trainable(model, args.train_params)
    split = ds.train.subset(subset)
    batch_size = min(args.member_batch_size, len(split))  # a subset smaller than a batch still trains
    loader = make_loader(split, batch_size, create_sampler("instance", split.labels, ds.num_classes, seed=seed),
                         image_transform(ds, model, train=True), args.workers, drop_last=True)
    hp = copy.copy(args)
    hp.lr = args.member_lr
    optimizer = create_optimizer(model, hp, params)
    scheduler = warmup_cosine(optimizer, args.member_epochs * len(loader), len(loader))
    loss_fn = create_loss("ce").to(accelerator.device)
    # the optimizer is not prepared by accelerate, so fp16 loss scaling is done here
    scaler = torch.amp.GradScaler(accelerator.device.type, enabled=accelerator.mixed_precision == "fp16")
    net = _Frozen(model, args.member_bn)
    for epoch in range(args.member_epochs):
        loader.sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919)
        net.train()
        for x, y in loader:
            x, y = x.to(accelerator.device, non_blocking=True), y.to(accelerator.device, non_blocking=True)
            x = prep(x, train=True, generator=gen)
            with accelerator.autocast():
                loss = loss_fn(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
    meta = {**(settings or {}), "train_seconds": f"{time.perf_counter() - start:.3f}"}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)


def member_settings(args, subset: torch.Tensor, init_digest: str) -> dict[str, str]:
    """What a member depends on, stored in its file: a resumed run re-trains a member made otherwise."""
    keys = ("seed", "member_epochs", "member_lr", "member_batch_size", "train_params", "member_bn", "optimizer",
            "weight_decay")
    return {"init_sha1": init_digest, "subset_sha1": hashlib.sha1(subset.cpu().numpy().tobytes()).hexdigest(),
            **{k: str(getattr(args, k)) for k in keys}}


def state_digest(model: torch.nn.Module) -> str:
    """SHA-1 of a model's weights (names and values)."""
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def member_train_seconds(path: Path) -> float:
    """The fine-tuning time recorded in a member's file (0 if it has none)."""
    with safe_open(str(path), "pt") as f:
        return float((f.metadata() or {}).get("train_seconds", 0.0))


def trained_member(path: Path, settings: dict[str, str]) -> bool:
    """True if ``path`` holds a member fine-tuned with ``settings``."""
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        meta.pop("train_seconds", None)
        return meta == settings
    except Exception:  # a corrupt or foreign file: train the member again
        return False


class _Frozen(torch.nn.Module):
    """Wraps a model so that train() keeps BatchNorm layers in eval mode when asked."""

    def __init__(self, model, bn: str):
        super().__init__()
        self.model, self.bn = model, bn

    def train(self, mode: bool = True):
        self.model.train(mode)
        if self.bn == "frozen":
            for mod in self.model.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.eval()
        return self

    def forward(self, x):
        return self.model(x)


def reestimate_on_subsets(net, ds, subsets, prep, transform, seed: int, workers: int = 0) -> None:
    """Re-estimate the merged model's BN statistics on the union of the balanced subsets' images."""
    union = ds.train.subset(torch.cat(subsets).unique())
    # shuffled (seeded): the training-mode batches must not be one class each, as a class-sorted split gives
    order = torch.utils.data.RandomSampler(range(len(union)), generator=torch.Generator().manual_seed(seed))
    device = next(net.parameters()).device
    reestimate_bn(net, (prep(x.to(device)) for x, _ in make_loader(union, 256, order, transform=transform,
                                                                   num_workers=workers)))


def main(argv=None):
    args = parse_args(build_parser(), argv)
    setup_logging()
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    configure_threads(accelerator, args.threads)
    start = time.perf_counter()
    ds = load_dataset(args.dataset, **dataset_kwargs(args))
    # the subsets first: a class with too few images for the shots stops the run before any work
    subsets = balanced_subsets(ds.train.labels, ds.num_classes, args.shots, args.subsets, seed=args.seed,
                               disjoint=args.disjoint, allow_fewer=args.allow_fewer)
    out = default_output("btm", args) if args.init is None else None
    if args.init is None:
        args.init = stage1(args, out)
    t_stage1 = time.perf_counter() - start
    set_seed(args.seed)
    base = create_model(ds, args.model, init=args.init)
    args.model = base.pretrained_cfg.get("architecture") or args.model  # --init's architecture names the run
    out = out or default_output("btm", args)
    config = write_run_config(out, {**vars(args), "recipe": "btm", "output": str(out)}) \
        if accelerator.is_main_process else vars(args)
    prep = BatchPreprocess(ds.mean, ds.std, crop_padding=ds.input_size[-1] // 8).to(accelerator.device)
    tf = image_transform(ds, base)
    loaders = {"train": make_loader(ds.train, 512, transform=tf, num_workers=args.workers),
               "val": make_loader(ds.val, 512, transform=tf, num_workers=args.workers) if ds.val is not None else None,
               "test": make_loader(ds.test, 512, transform=tf, num_workers=args.workers)}
    names = [k for k, v in loaders.items() if v is not None]
    prepared = dict(zip(names, accelerator.prepare(*[loaders[k] for k in names])))
    model = accelerator.prepare(copy.deepcopy(base))

    def evaluate_split(split: str) -> dict:
        logits, labels = predict(accelerator, model, prepared[split], prep, progress=False)
        return metrics_from_logits(logits, labels, ds.train_counts, ds.shot_thresholds, split)

    table = {"stage 1": {s: evaluate_split(s) for s in ("val", "test") if s in prepared}}
    accelerator.print(summary_table(table))

    # 2. balanced subsets and the member fine-tunes (every N-th member on each of N processes)
    t0 = time.perf_counter()
    members = [out / "members" / f"member_{m:02d}.safetensors" for m in range(args.subsets)]
    init_digest = state_digest(base)
    for m in range(accelerator.process_index, args.subsets, accelerator.num_processes):
        settings = member_settings(args, subsets[m], init_digest)
        if args.resume and trained_member(members[m], settings):
            print(f"member {m + 1}/{args.subsets}: already trained, skipped", flush=True)
            continue
        fine_tune_member(accelerator, base, ds, subsets[m], prep, args, m, members[m], settings)
        print(f"member {m + 1}/{args.subsets} fine-tuned on {len(subsets[m])} images "
              f"(process {accelerator.process_index})", flush=True)
    accelerator.wait_for_everyone()
    t_members = time.perf_counter() - t0
    member_seconds = [member_train_seconds(p) for p in members]  # also those a resumed run skipped

    # 3. merge (each process merges the same files, so every model copy is identical)
    t0 = time.perf_counter()
    net = accelerator.unwrap_model(model)

    def val_hm(sd) -> float:
        net.load_state_dict(sd)
        return evaluate_split("val")["hm"] if "val" in prepared else 0.0
    if args.merge == "greedy" and "val" in prepared:
        merged, chosen = greedy_soup(members, [val_hm(average_checkpoints([p])) for p in members], val_hm)
    else:
        merged, chosen = average_checkpoints(members), list(range(args.subsets))
    net.load_state_dict(merged)
    if args.bn_merge == "reestimate":
        reestimate_on_subsets(net, ds, subsets, prep, tf, args.seed, args.workers)
    table["BTM"] = {s: evaluate_split(s) for s in ("val", "test") if s in prepared}
    t_merge = time.perf_counter() - t0
    if accelerator.is_main_process:
        pretrain_merged = out / "merged"
        save_model(net, pretrain_merged, ds)
        write_json(pretrain_merged / "results.json", {"recipe": "btm", "method": "btm", "metrics": table["BTM"],
                                                      "train_counts": ds.train_counts, "parents": [args.init]})

    # 4. classifier fine-tuning on cached features
    t0 = time.perf_counter()
    head_info = {}
    if args.classifier != "none":
        feats = {s: Features(*predict(accelerator, model, prepared[s], prep, features=True, progress=False))
                 for s in ("train", "val") if s in prepared}
        orig = Head.from_module(net.get_classifier())
        new, head_info = retrain(args.classifier, orig, feats["train"], feats.get("val"), ds.train_counts,
                                 epochs=args.head_epochs, lr=args.head_lr, seed=args.seed)
        if args.ensemble and args.classifier in ("gml", "crt"):
            new, head_info["ensemble"] = ensemble(orig, new, feats.get("val"), ds.train_counts)
        new.write_to(net.get_classifier())
    t_head = time.perf_counter() - t0
    name = "BTM" + (f"+{args.classifier}{'+ens' if 'ensemble' in head_info else ''}" if args.classifier != "none" else "")
    btm_seconds = t_members + t_merge + t_head
    results = finish_run(accelerator, model, ds, out, {"val": prepared.get("val"), "test": prepared["test"]}, prep, {
        "recipe": "btm", "method": name.lower(), "model": net.pretrained_cfg.get("architecture", args.model), "parents": [args.init],
        "members": len(members), "merged_members": chosen, "classifier": head_info,
        "selection": "all choices on the validation split", "config": config,
        "seconds": {"stage1": t_stage1, "members": t_members, "merge": t_merge, "classifier": t_head,
                    "btm_total": btm_seconds, "member_train_seconds": member_seconds,
                    # the whole BTM stage on one device, whatever this run reused: every member's training
                    "btm_total_one_device": sum(member_seconds) + t_merge + t_head},
        "wall_seconds": time.perf_counter() - start,
    }, title=name)
    table[name] = results["metrics"]
    results["table"] = {k: {s: {m: v.get(m) for m in ("acc", "mean_class_acc", "hm", "gm", "min_recall", "many", "medium", "few")}
                            for s, v in d.items()} for k, d in table.items()}
    if accelerator.is_main_process:
        write_json(out / "results.json", results)
    accelerator.print(summary_table(table))
    accelerator.print(f"BTM stage: {btm_seconds:.0f} s" + (f" ({btm_seconds / t_stage1:.0%} of stage 1's {t_stage1:.0f} s)"
                                                         if args.init == str(out / "stage1") else ""))
    accelerator.print(f"run folder: {out}")
    accelerator.end_training()
    return results


if __name__ == "__main__":
    run_cli(main, __file__)
