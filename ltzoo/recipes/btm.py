"""BTM: Balanced Training and Merging ("Reviving Undersampling for Long-Tailed Learning", 2024).

    accelerate launch -m ltzoo.recipes.btm                 # the whole pipeline on Fashion-MNIST-LT
    accelerate launch -m ltzoo.recipes.btm --init runs/pretrain-ce-fmnist_lt-resnet32_cifar-s0 --classifier gml
    (from a checkout, `accelerate launch recipes/btm.py ...` is the same recipe)

1. Stage 1 (only without --init): train the long-tailed model with the stage-1 recipe
   (ltzoo.recipes.pretrain, given this run's data, model and training flags and --stage1-loss).
2. Draw M class-balanced subsets of K images per class (unset --shots: K = the smallest class's training
   count, capped at 50, so any long-tailed set runs); fine-tune the whole stage-1 network on each.
   The members are independent: on N processes each trains every N-th member; each member is saved
   before the next starts, and a resumed run skips the saved ones
   (those fine-tuned from the same stage-1 weights, subset and settings, recorded in each member's file).
3. Merge the members by weight averaging (uniform, or greedy soup by validation HM); BN statistics
   averaged or re-estimated on the subsets' images.
4. Fine-tune the merged model's classifier on cached features: GML (default), cRT, LWS, tau-norm,
   logit adjustment or weight balancing (wb); GML and cRT heads ensembled with the merged head (--no-ensemble: not).
Every choice is made on the balanced validation split; each reported model is tested once.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed

from ltzoo.argtypes import positive_float, positive_int
from ltzoo.accel import apply_channels_last, describe, resolve_mixed_precision
from ltzoo.data import balanced_subsets, load_dataset
from ltzoo.data.args import dataset_kwargs
from ltzoo.data.loader import BatchPreprocess, make_loader
from ltzoo.engine import metrics_from_logits, predict
from ltzoo.errors import run_main, UserError
from ltzoo.heads import HEAD_METHODS, METHODS, Features, Head, ensemble, retrain
from ltzoo.losses import list_losses
from ltzoo.merge import average_checkpoints, greedy_soup
from ltzoo.metrics import brief, summary_table
from ltzoo.recipes import pretrain
from ltzoo.recipes.common import (add_data_group, add_init_args, add_optimizer_args, add_output_args,
                                  add_schedule_args, add_system_args, configure_threads, default_output, needs_init,
                                  recipe_parser, RecipeParser, setup_logging)
from ltzoo.recipes.members import fine_tune_member, member_settings, member_train_seconds, reestimate_on_subsets, \
    state_digest, trained_member
from ltzoo.recipes.runfolder import create_run_folder, discard_unfinished_folders, finish_run
from ltzoo.runs import create_model, image_transform, remove_stale_temporaries, save_model, write_json, write_run_config
from ltzoo.shifted_bn import shift_batchnorm, uses_shifted_bn

logger = get_logger(__name__)

#: The flags of the stage 1 BTM trains itself when no --init is given (--model aside: it also names the run).
STAGE1_FLAGS = ("pretrained", "epochs", "batch_size", "lr", "warmup_epochs", "grad_accum", "save_every", "stage1_loss",
                "compile")  # --compile: BTM's own stage 1 only (members are too short to earn a compile back)
#: The classifiers whose retrained head is ensembled with the merged one (the others adjust the merged head itself).
ENSEMBLED = ("gml", "crt")
#: The classifiers that train (and so take --head-epochs and --head-lr); the others adjust the head post hoc.
TRAINED_HEADS = tuple(name for name, method in HEAD_METHODS.items() if method.trained)
#: The most shots an unset --shots takes (the BTM paper's K on CIFAR-LT; tails below it set K instead).
MAX_DEFAULT_SHOTS = 50


def choose_shots(train_counts: list[int], subsets: int = 1, disjoint: bool = False,
                 cap: int = MAX_DEFAULT_SHOTS) -> tuple[int, str]:
    """K for an unset --shots, and the rule that chose it: the smallest class's training count (divided
    among the subsets with --disjoint), capped at ``cap``.

    Raises:
        UserError: a disjoint draw leaves less than one image per class and subset.
    """
    smallest = min(train_counts)
    share = smallest // subsets if disjoint else smallest
    if share < 1:
        raise UserError(f"--disjoint splits each class among --subsets {subsets}, and the smallest class has "
                        f"{smallest} training images", "lower --subsets or drop --disjoint")
    per = f" // {subsets} disjoint subsets" if disjoint else ""
    return min(share, cap), f"the smallest class's {smallest} training images{per}, at most {cap}"


def check_shots(train_counts: list[int], class_names: list[str], shots: int, subsets: int, disjoint: bool) -> None:
    """Refuse a --shots that a class has too few training images for (before any work)."""
    need = shots * subsets if disjoint else shots
    short = [(c, n) for c, n in enumerate(train_counts) if n < need]
    if not short:
        return
    listed = ", ".join(f"{class_names[c]!r} ({n})" for c, n in short[:5]) + (
        f" and {len(short) - 5} more" if len(short) > 5 else "")
    draw = f"{subsets} disjoint subsets of {shots}" if disjoint else f"{shots}"
    fewest = min(train_counts) // (subsets if disjoint else 1)
    verb = "has" if len(short) == 1 else "have"
    raise UserError(f"--shots {shots} draws {draw} training images per class, and {len(short)} of "
                    f"{len(train_counts)} classes {verb} fewer: {listed}",
                    f"lower --shots (at most {fewest}){', drop --disjoint' if disjoint else ''}, leave it unset "
                    "(the smallest class's count, capped at 50), or let those classes give all they have "
                    "(--allow-fewer)")


def _check_stage1(args, given) -> str | None:
    ignored = [f for f in STAGE1_FLAGS if f in given]
    if args.init and ignored:
        flags = ", ".join("--" + f.replace("_", "-") for f in ignored)
        return (f"{flags}: settings of the stage 1 btm trains when there is no --init; --init {args.init} is the "
                f"stage 1 here: drop {flags}")
    return None


def _check_head(args, given) -> str | None:
    if args.ensemble and args.classifier not in ENSEMBLED:
        return (f"--ensemble combines a retrained head (--classifier {' or '.join(ENSEMBLED)}) with the merged one; "
                f"--classifier {args.classifier} adjusts the merged head itself: drop --ensemble, or use --classifier gml")
    trained = [f for f in ("head_lr", "head_epochs") if f in given or (f == "head_lr" and args.head_lr is not None)]
    if trained and args.classifier not in TRAINED_HEADS:
        flag = "--" + trained[0].replace("_", "-")
        return (f"{flag} sets the training of --classifier {', '.join(TRAINED_HEADS)}; --classifier {args.classifier} "
                f"trains nothing: drop {flag}")
    if args.new_head and args.train_params == "backbone" and args.classifier in ("none", "wb"):
        why = ("would export an untrained classifier" if args.classifier == "none" else
               "leaves the classifier untrained, and wb's MaxNorm radius comes from the trained classifier's norms")
        return (f"--new-head with --train-params backbone and --classifier {args.classifier} {why}: "
                "train it (--train-params all or classifier) or retrain it (--classifier gml)")
    return None


def build_parser() -> RecipeParser:
    """The BTM recipe's flags, and the combinations it refuses."""
    p = recipe_parser(__doc__, __file__)
    add_data_group(p)
    g = p.add_argument_group("start")
    g.add_argument("--model", default="resnet20_cifar",
                   help="the stage-1 architecture, any timm name (with --init, the architecture is --init's)")
    add_init_args(g, "the stage-1 model: a run folder or hub id (unset: BTM trains its own stage 1)")
    add_optimizer_args(g)  # of stage 1 and the members
    add_system_args(g)
    g = p.add_argument_group("stage 1 (trained only without --init)")
    g.add_argument("--stage1-loss", default="ce", choices=list_losses(), help="the stage-1 loss")
    g.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=False,
                   help="start stage 1 from timm's pretrained weights of --model")
    add_schedule_args(g)
    g.set_defaults(epochs=15, lr=0.1)
    g = p.add_argument_group("run folder")
    add_output_args(g, resume="continue: stage 1 from its last checkpoint, and skip the members already "
                              "fine-tuned with the same settings", checkpoints=True)
    g = p.add_argument_group("BTM")
    g.add_argument("--subsets", type=positive_int, default=4, help="M, balanced subsets (= merged members)")
    g.add_argument("--shots", type=positive_int, default=None,
                   help=f"K, images per class in each subset; unset: the smallest class's training images "
                        f"(with --disjoint, divided by --subsets), capped at {MAX_DEFAULT_SHOTS}")
    g.add_argument("--disjoint", action="store_true", help="subsets share no image")
    g.add_argument("--allow-fewer", action="store_true", help="a class with fewer than K images gives all it has")
    g.add_argument("--member-epochs", type=positive_int, default=10, help="fine-tuning epochs over each subset")
    g.add_argument("--member-lr", type=positive_float, default=0.01, help="peak learning rate of member fine-tuning")
    g.add_argument("--member-batch-size", type=positive_int, default=64)
    g.add_argument("--train-params", default="all", choices=("all", "backbone", "classifier"))
    g.add_argument("--member-bn", default="train", choices=("train", "frozen"),
                   help="train: BN statistics follow the balanced subset; frozen: keep stage 1's (needs a lower "
                        "--member-lr: at 0.01 it diverged on Fashion-MNIST-LT, benchmarks/results/btm_sweep.md)")
    g.add_argument("--merge", default="uniform", choices=("uniform", "greedy"))
    g.add_argument("--bn-merge", default="average", choices=("average", "reestimate"),
                   help="BN statistics of the merged model: averaged (the paper's; higher validation HM in "
                        "benchmarks/results/btm_sweep.md), or re-estimated on the subsets' images")
    g = p.add_argument_group("classifier")
    g.add_argument("--classifier", default="gml", choices=("none",) + METHODS,
                   help="retrain or adjust the merged model's classifier on cached features")
    g.add_argument("--ensemble", action=argparse.BooleanOptionalAction, default=None,
                   help="ensemble the retrained head with the merged one (temperatures chosen on validation); "
                        f"unset: on for --classifier {' and '.join(ENSEMBLED)}, which alone it applies to")
    g.add_argument("--shift-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="BN statistics re-estimated on class-balanced batches first (MiSLAS); unset: on for --classifier las")
    g.add_argument("--head-epochs", type=positive_int, default=30, help="epochs of gml, crt, lws, wb and las over the cached features")
    g.add_argument("--head-lr", type=positive_float, default=None, help="unset: 0.05 for gml, 0.1 for crt/lws/las, 0.01 for wb")
    p.add_check(needs_init("--new-head"))
    p.add_check(_check_stage1)
    p.add_check(_check_head)
    return p


def stage1_args(args: argparse.Namespace, out: Path) -> argparse.Namespace:
    """The stage-1 recipe's arguments for BTM's own stage 1, trained into ``out``.

    Stage 1's defaults, overridden by every flag the two recipes share (data, model, optimisation, run
    folder), with --stage1-loss as its loss.
    """
    base = vars(pretrain.build_parser().parse_args([]))
    shared = {k: v for k, v in vars(args).items() if k in base and k not in ("config", "init", "new_head")}
    return argparse.Namespace(**{**base, **shared, "loss": args.stage1_loss, "output": str(out)})


def main(argv=None) -> dict:
    """Parse ``argv`` (default: the command line) and run BTM; returns results.json's content."""
    args = build_parser().parse_args(argv)
    with discard_unfinished_folders():  # bad input found after the run folder was made: no half-made folder
        return run(args)


def run(args: argparse.Namespace) -> dict:
    """Run BTM with parsed arguments (``build_parser().parse_args``); returns results.json's content."""
    args = argparse.Namespace(**vars(args))  # this run fills in --init and --ensemble: the caller's stay as given
    if args.ensemble is None:
        args.ensemble = args.classifier in ENSEMBLED
    args.shift_bn = uses_shifted_bn(args.shift_bn, args.classifier)
    setup_logging()
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(args.mixed_precision))
    configure_threads(accelerator, args.threads)
    start = time.perf_counter()
    ds = load_dataset(args.dataset, **dataset_kwargs(args))
    # the subsets first: a class with too few images for the shots stops the run before any work
    if args.shots is None:
        args.shots, shots_rule = choose_shots(ds.train_counts, args.subsets, args.disjoint)
    else:
        shots_rule = "given (--shots)"
        if not args.allow_fewer:
            check_shots(ds.train_counts, ds.class_names, args.shots, args.subsets, args.disjoint)
    subsets = balanced_subsets(ds.train.labels, ds.num_classes, args.shots, args.subsets, seed=args.seed,
                               disjoint=args.disjoint, allow_fewer=args.allow_fewer)
    many, few = ds.shot_thresholds
    logger.info(f"BTM: {args.subsets} subsets of K = {args.shots} images per class ({shots_rule}); many-shot "
                f"classes have more than {many} training images, few-shot fewer than {few} ({ds.info.get('shot_rule')})")
    out = default_output("btm", args) if args.init is None else None
    if args.init is None:  # stage 1, into the run folder
        args.init = str(out / "stage1")
        pretrain.run(stage1_args(args, out / "stage1"), end_training=False)
    t_stage1 = time.perf_counter() - start
    set_seed(args.seed)
    base = create_model(ds, args.model, init=args.init, new_head=args.new_head)
    args.model = base.pretrained_cfg.get("architecture") or args.model  # --init's architecture names the run
    channels_last = apply_channels_last(base, args.channels_last)  # the members are copies of it
    out = out or default_output("btm", args)
    if accelerator.is_main_process:
        remove_stale_temporaries(out)  # what an interrupted run left (stage 1 removed its own when it resumed)
    out = create_run_folder(out, accelerator)
    config = write_run_config(out, {**vars(args), "recipe": "btm", "output": str(out)}) \
        if accelerator.is_main_process else vars(args)
    prep = BatchPreprocess(ds.mean, ds.std, crop_padding=ds.input_size[-1] // 8,
                           channels_last=channels_last).to(accelerator.device)
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
            logger.info(f"member {m + 1}/{args.subsets}: already trained, skipped", main_process_only=False)
            continue
        fine_tune_member(accelerator, base, ds, subsets[m], prep, args, m, members[m], settings)
        logger.info(f"member {m + 1}/{args.subsets} fine-tuned on {len(subsets[m])} images "
                    f"(process {accelerator.process_index})", main_process_only=False)
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
    if args.shift_bn:  # BN statistics of class-balanced batches, for the classifier stage and the export
        shift_batchnorm(net, ds, args.seed, channels_last, args.workers)
    head_info = {}
    if args.classifier != "none":
        feats = {s: Features(*predict(accelerator, model, prepared[s], prep, features=True, progress=False))
                 for s in ("train", "val") if s in prepared}
        orig = Head.from_module(net.get_classifier())
        new, head_info = retrain(args.classifier, orig, feats["train"], feats.get("val"), ds.train_counts,
                                 epochs=args.head_epochs, lr=args.head_lr, seed=args.seed)
        if args.ensemble:
            new, head_info["ensemble"] = ensemble(orig, new, feats.get("val"), ds.train_counts)
        new.write_to(net.get_classifier())
    t_head = time.perf_counter() - t0
    name = "BTM" + (f"+{args.classifier}{'+ens' if 'ensemble' in head_info else ''}" if args.classifier != "none" else "")
    btm_seconds = t_members + t_merge + t_head
    results = finish_run(accelerator, model, ds, out, {"val": prepared.get("val"), "test": prepared["test"]}, prep, {
        "recipe": "btm", "method": name.lower(), "model": net.pretrained_cfg.get("architecture", args.model), "parents": [args.init],
        "members": len(members), "merged_members": chosen, "shots": args.shots, "shots_rule": shots_rule,
        "classifier": head_info,
        "selection": "all choices on the validation split", "config": config,
        "speed": describe(accelerator.mixed_precision, channels_last, False),
        "seconds": {"stage1": t_stage1, "members": t_members, "merge": t_merge, "classifier": t_head,
                    "btm_total": btm_seconds, "member_train_seconds": member_seconds,
                    # the whole BTM stage on one device, whatever this run reused: every member's training
                    "btm_total_one_device": sum(member_seconds) + t_merge + t_head},
        "wall_seconds": time.perf_counter() - start,
    }, title=name)
    table[name] = results["metrics"]
    results["table"] = {k: {s: brief(v) for s, v in d.items()} for k, d in table.items()}
    if accelerator.is_main_process:
        write_json(out / "results.json", results)
    accelerator.print(summary_table(table))
    accelerator.print(f"BTM stage: {btm_seconds:.0f} s" + (f" ({btm_seconds / t_stage1:.0%} of stage 1's {t_stage1:.0f} s)"
                                                         if args.init == str(out / "stage1") else ""))
    accelerator.print(f"run folder: {out}")
    accelerator.end_training()
    return results


if __name__ == "__main__":
    run_main(main, __file__)
