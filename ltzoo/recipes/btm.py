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
3. Merge the members by weight averaging (uniform, greedy soup by validation HM, or LT-Soups' sequential
   merge into the stage-1 model); BN statistics
   averaged or re-estimated on the subsets' images.
4. Fine-tune the merged model's classifier on cached features: GML (default), cRT, LWS, tau-norm,
   logit adjustment, weight balancing (wb), MiSLAS's label-aware smoothing (las: BN statistics shifted to
   class-balanced batches first, --shift-bn) or nearest class mean (ncm, ncm_l2); GML and cRT heads ensembled
   with the merged head (--no-ensemble: not).
Every choice is made on the balanced validation split; each reported model is tested once.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from accelerate.logging import get_logger
from accelerate.utils import set_seed

from ltzoo.config.argtypes import positive_float, positive_int
from ltzoo.data import balanced_subsets, imbalanced_subsets
from ltzoo.errors import UserError, run_main
from ltzoo.files import write_json
from ltzoo.methods import adapters
from ltzoo.methods.heads import HEAD_METHODS, METHODS, Features, Head, ensemble, retrain
from ltzoo.methods.losses import list_losses
from ltzoo.methods.merge import average_checkpoints, greedy_soup, sequential_weights
from ltzoo.methods.shifted_bn import shift_batchnorm, uses_shifted_bn
from ltzoo.metrics import brief, summary_table
from ltzoo.recipes.defaults import FROM_WEIGHTS, SCRATCH, member_lr, optimiser_defaults, start_kind
from ltzoo.recipes.flags import (
    RecipeParser,
    add_data_group,
    add_ensemble_arg,
    add_finetune_flags,
    add_head_args,
    add_model_args,
    add_optimizer_args,
    add_output_args,
    add_schedule_args,
    add_system_args,
    check_start,
    default_output,
    needs_init,
    recipe_parser,
)
from ltzoo.recipes.members import (
    fine_tune_member,
    member_settings,
    member_train_seconds,
    reestimate_on_subsets,
    state_digest,
    trained_member,
)
from ltzoo.recipes.pretrain import Pretrain
from ltzoo.recipes.recipe import Recipe
from ltzoo.runfolder.folder import remove_stale_temporaries
from ltzoo.runfolder.layout import RESULTS
from ltzoo.runfolder.model_io import create_model, image_transform, save_model
from ltzoo.training.accelerator import apply_channels_last, describe
from ltzoo.training.baseline import baseline_record
from ltzoo.training.evaluation import metrics_from_logits, predict
from ltzoo.training.loop import phase

logger = get_logger(__name__)

#: The flags of the stage 1 BTM trains itself when no --init is given (--model aside: it also names the run).
#: --compile: BTM's own stage 1 only (members are too short to earn a compile back).
STAGE1_FLAGS = (
    "pretrained",
    "pretrained_file",
    "epochs",
    "steps",
    "batch_size",
    "lr",
    "warmup_epochs",
    "grad_accum",
    "save_every",
    "stage1_loss",
    "compile",
)
#: The classifiers whose retrained head is ensembled with the merged one (the others adjust the merged head itself).
ENSEMBLED = tuple(name for name, m in HEAD_METHODS.items() if m.ensembled)
#: The classifiers that train (and so take --head-epochs and --head-lr); the others adjust the head post hoc.
TRAINED_HEADS = tuple(name for name, m in HEAD_METHODS.items() if m.lr is not None)
#: Evaluation and feature batches (images; the backbone only runs forward).
EVAL_BATCH = 512
#: The usual length of BTM's own stage 1 from scratch (`ltzoo.recipes.defaults.choose_epochs` raises it on small data)
STAGE1_EPOCHS = 15
#: The most shots an unset --shots takes (the BTM paper's K on CIFAR-LT; tails below it set K instead).
MAX_DEFAULT_SHOTS = 50


def choose_shots(
    train_counts: list[int], subsets: int = 1, disjoint: bool = False, cap: int = MAX_DEFAULT_SHOTS
) -> tuple[int, str]:
    """K for an unset --shots, and the rule that chose it: the smallest class's training count (divided
    among the subsets with --disjoint), capped at ``cap``.

    Raises:
        UserError: a disjoint draw leaves less than one image per class and subset.
    """
    smallest = min(train_counts)
    share = smallest // subsets if disjoint else smallest
    if share < 1:
        raise UserError(
            f"--disjoint splits each class among --subsets {subsets}, and the smallest class has "
            f"{smallest} training images",
            "lower --subsets or drop --disjoint",
        )
    per = f" // {subsets} disjoint subsets" if disjoint else ""
    return min(share, cap), f"the smallest class's {smallest} training images{per}, at most {cap}"


def check_shots(train_counts: list[int], class_names: list[str], shots: int, subsets: int, disjoint: bool) -> None:
    """Refuse a --shots that a class has too few training images for (before any work)."""
    need = shots * subsets if disjoint else shots
    short = [(c, n) for c, n in enumerate(train_counts) if n < need]
    if not short:
        return
    listed = ", ".join(f"{class_names[c]!r} ({n})" for c, n in short[:5]) + (
        f" and {len(short) - 5} more" if len(short) > 5 else ""
    )
    draw = f"{subsets} disjoint subsets of {shots}" if disjoint else f"{shots}"
    fewest = min(train_counts) // (subsets if disjoint else 1)
    verb = "has" if len(short) == 1 else "have"
    raise UserError(
        f"--shots {shots} draws {draw} training images per class, and {len(short)} of "
        f"{len(train_counts)} classes {verb} fewer: {listed}",
        f"lower --shots (at most {fewest}){', drop --disjoint' if disjoint else ''}, leave it unset "
        f"(the smallest class's count, capped at {MAX_DEFAULT_SHOTS}), or let those classes give all they have "
        "(--allow-fewer)",
    )


def _check_stage1(args, given) -> str | None:
    ignored = [f for f in STAGE1_FLAGS if f in given]
    if args.init and not args.new_head and ignored:
        flags = ", ".join("--" + f.replace("_", "-") for f in ignored)
        return (
            f"{flags}: settings of the stage 1 btm trains when there is no --init (or --init X --new-head: X "
            f"fine-tuned on this data); --init {args.init} is the stage 1 here: drop {flags}"
        )
    return None


def _check_soup(args, given) -> str | None:
    if not args.soup_ratios:
        return None
    if "subsets" in given and args.subsets != len(args.soup_ratios):
        return (
            f"--soup-ratios gives {len(args.soup_ratios)} members and --subsets {args.subsets}: drop --subsets (one "
            "member per ratio)"
        )
    clash = [f for f in ("disjoint", "allow_fewer") if getattr(args, f)]
    if clash:
        flag = "--" + clash[0].replace("_", "-")
        return f"{flag} shapes BTM's balanced subsets; --soup-ratios draws LT-Soups' imbalanced ones: drop {flag}"
    return None


def _check_merge(args, given) -> str | None:
    if args.merge == "sequential" and not args.soup_ratios:
        return (
            "--merge sequential weighs the members by their order (the last the most); BTM's balanced members have "
            "none: use it with LT-Soups' --soup-ratios, or --merge uniform"
        )
    if "merge_lm" in given and args.merge != "sequential":
        return f"--merge-lm sets --merge sequential's rate; --merge is {args.merge}: add --merge sequential or drop it"
    if not 0.0 < args.merge_lm <= 1.0:
        return f"--merge-lm {args.merge_lm}: each member's share as it is mixed in, in (0, 1] (the authors': 0.7)"
    return None


def _check_length(args, given) -> str | None:
    if args.steps is not None and "epochs" in given:
        return f"--steps {args.steps} and --epochs {args.epochs} both set stage 1's length: give one of them"
    return None


def build_parser() -> RecipeParser:
    """The BTM recipe's flags, and the combinations it refuses."""
    p = recipe_parser(__doc__, __file__)
    add_data_group(p)
    g = p.add_argument_group("start")
    add_model_args(
        g,
        "the stage-1 model: a run folder or hub id (unset: BTM trains its own stage 1, from --model, "
        "or timm's pretrained weights of it with --pretrained; with --new-head, BTM's stage 1 fine-tunes it "
        "on this data first)",
    )
    add_optimizer_args(g)  # of stage 1 and the members
    add_system_args(g)
    g = p.add_argument_group("stage 1 (trained without --init, or from --init X --new-head)")
    g.add_argument("--stage1-loss", default="ce", choices=list_losses(), help="the stage-1 loss")
    add_schedule_args(g)
    p.set_defaults(model="resnet20_cifar")
    g = p.add_argument_group("run folder")
    add_output_args(
        g,
        resume="continue: stage 1 from its last checkpoint, and skip the members already "
        "fine-tuned with the same settings",
        checkpoints=True,
    )
    g = p.add_argument_group("BTM")
    g.add_argument("--subsets", type=positive_int, default=4, help="M, balanced subsets (= merged members)")
    g.add_argument(
        "--shots",
        type=positive_int,
        default=None,
        help=f"K, images per class in each subset; unset: the smallest class's training images "
        f"(with --disjoint, divided by --subsets), capped at {MAX_DEFAULT_SHOTS}",
    )
    g.add_argument("--disjoint", action="store_true", help="subsets share no image")
    g.add_argument(
        "--soup-ratios",
        type=positive_float,
        nargs="+",
        default=None,
        metavar="R",
        help="LT-Soups (Aminbeidokhti et al., 2025): one member per imbalance ratio R, trained on a subset that keeps "
        "min(n_c, R x K) images of each class (K: --shots); the paper's schedule is 1 2 4 8 16 32 64 (the "
        "*/btm_ltsoups configs); unset: BTM's balanced subsets",
    )
    g.add_argument(
        "--member-loss",
        default="ce",
        choices=("ce", "la"),
        help="the members' loss: ce (BTM's) or la, logit-adjusted by each subset's class counts (LT-Soups')",
    )
    g.add_argument("--allow-fewer", action="store_true", help="a class with fewer than K images gives all it has")
    g.add_argument("--member-epochs", type=positive_int, default=10, help="fine-tuning epochs over each subset")
    g.add_argument(
        "--member-lr",
        type=positive_float,
        default=None,
        help="peak learning rate of member fine-tuning; unset: 0.01 for SGD members, for AdamW members 5e-4 "
        "(adapters 2e-3, --peft head or bias 5e-3)",
    )
    g.add_argument(
        "--member-batch-size",
        type=positive_int,
        default=64,
        help="images per step of member fine-tuning (a subset smaller than that is one batch)",
    )
    g.add_argument(
        "--train-params",
        default="all",
        choices=("all", "backbone", "classifier"),
        help="what the members fine-tune: the whole network, all but the classifier, or the classifier",
    )
    g.add_argument(
        "--member-bn",
        default="train",
        choices=("train", "frozen"),
        help="train: BN statistics follow the balanced subset; frozen: keep stage 1's (needs a lower "
        "--member-lr: at 0.01 it diverged on Fashion-MNIST-LT, benchmarks/results/btm_sweep.md)",
    )
    g.add_argument(
        "--merge",
        default="uniform",
        choices=("uniform", "greedy", "sequential"),
        help="uniform: average every member; greedy: a greedy soup, members added while validation HM does not drop; "
        "sequential: LT-Soups' merge, the members mixed in one by one (in --soup-ratios order) into the stage-1 model, "
        "new = (1 - lm) * new + lm * member, lm = --merge-lm",
    )
    g.add_argument(
        "--merge-lm",
        type=float,
        default=0.7,
        help="--merge sequential: each member's share as it is mixed in (the authors' script: 0.7)",
    )
    g.add_argument(
        "--bn-merge",
        default="average",
        choices=("average", "reestimate"),
        help="BN statistics of the merged model: averaged (the paper's; higher validation HM in "
        "benchmarks/results/btm_sweep.md), or re-estimated on the subsets' images",
    )
    add_finetune_flags(p, "fine-tuning: the members' (and stage 1's, when btm trains it)")
    g = p.add_argument_group("classifier")
    g.add_argument(
        "--classifier",
        default="gml",
        choices=("none",) + METHODS,
        help="retrain or adjust the merged model's classifier on cached features",
    )
    add_ensemble_arg(g)
    add_head_args(g, f"--classifier {', '.join(TRAINED_HEADS)}")
    p.add_check(needs_init("--new-head"))
    p.add_check(_check_stage1)
    p.add_check(_check_length)
    p.add_check(_check_soup)
    p.add_check(_check_merge)
    p.add_check(check_start)
    p.add_check(_check_head)
    return p


def _check_head(args, given) -> str | None:
    if args.ensemble and args.classifier not in ENSEMBLED:
        return (
            f"--ensemble combines a retrained head (--classifier {' or '.join(ENSEMBLED)}) with the merged one; "
            f"--classifier {args.classifier} adjusts the merged head itself: drop --ensemble, or use --classifier gml"
        )
    trained = [f for f in ("head_lr", "head_epochs") if f in given or (f == "head_lr" and args.head_lr is not None)]
    if trained and args.classifier not in TRAINED_HEADS:
        flag = "--" + trained[0].replace("_", "-")
        return (
            f"{flag} sets the training of --classifier {', '.join(TRAINED_HEADS)}; --classifier {args.classifier} "
            f"trains nothing: drop {flag}"
        )
    return None


def stage1_args(args: argparse.Namespace, out: Path) -> argparse.Namespace:
    """The stage-1 recipe's arguments for BTM's own stage 1, trained into ``out``.

    Stage 1's defaults, overridden by every flag the two recipes share (data, model, optimisation, run
    folder), with --stage1-loss as its loss. ``args`` are the parsed flags: what they leave unset, stage 1 decides
    for itself (`ltzoo.recipes.defaults`).
    """
    base = vars(Pretrain.build_parser().parse_args([]))
    # --init X --new-head: stage 1 fine-tunes X on this data (a model trained on other classes is no stage 1)
    start = ("config",) if args.new_head else ("config", "init", "new_head")
    shared = {k: v for k, v in vars(args).items() if k in base and k not in start}
    return argparse.Namespace(**{**base, **shared, "loss": args.stage1_loss, "output": str(out)})


class BTM(Recipe):
    """Balanced subsets, members fine-tuned on them, merged, the classifier retrained (the module docstring)."""

    name = "btm"
    build_parser = staticmethod(build_parser)

    def setup(self) -> None:
        flags = self.flags
        if flags.ensemble is None:
            ensembled = HEAD_METHODS[flags.classifier].ensembled if flags.classifier != "none" else False
            self.decide("ensemble", ensembled, f"the {flags.classifier} head's default (HEAD_METHODS)")
        if flags.shift_bn is None:
            shifted = uses_shifted_bn(flags.shift_bn, flags.classifier)
            self.decide("shift_bn", shifted, f"whether the {flags.classifier} head's paper shifts BN first")
        if flags.soup_ratios:
            self.decide("subsets", len(flags.soup_ratios), "one LT-Soups member per --soup-ratios value")
        own_stage1 = flags.init is None or flags.new_head
        self.decide_member_optimiser()
        ctx = self.open_context(default_output("btm", self.args) if own_stage1 else None)
        self.ds = ds = self.load_dataset(ctx)
        args = self.args
        # the subsets first: a class with too few images for the shots stops the run before any work
        if args.shots is None:
            shots, self.shots_rule = choose_shots(ds.train_counts, args.subsets, args.disjoint)
            self.decide("shots", shots, self.shots_rule)
            args = self.args
        else:
            self.shots_rule = "given (--shots)"
            if not args.allow_fewer and not args.soup_ratios:  # LT-Soups' subsets take what a class has
                check_shots(ds.train_counts, ds.class_names, args.shots, args.subsets, args.disjoint)
        if args.soup_ratios:  # LT-Soups: one subset per imbalance ratio, each class capped at ratio x K
            self.subsets = imbalanced_subsets(ds.train.labels, ds.num_classes, args.shots, args.soup_ratios, args.seed)
            sizes = ", ".join(f"{r:g}: {len(s):,}" for r, s in zip(args.soup_ratios, self.subsets))
            what = (
                f"LT-Soups: {args.subsets} subsets of imbalance ratios (images) {sizes}, each class capped at ratio x K"
            )
        else:
            self.subsets = balanced_subsets(
                ds.train.labels,
                ds.num_classes,
                args.shots,
                args.subsets,
                seed=args.seed,
                disjoint=args.disjoint,
                allow_fewer=args.allow_fewer,
            )
            what = f"BTM: {args.subsets} subsets"
        members = ("optimizer", "weight_decay", "member_lr")  # said once the data loaded (bad data: one line)
        for name, d in ((k, d) for k, d in self.resolution.decisions.items() if k in members):
            logger.info(f"members' {name.replace('_', ' ')} {d.value}: {d.rule}", main_process_only=True)
        many, few = ds.shot_thresholds
        logger.info(
            f"{what}, K = {args.shots} images per class ({self.shots_rule}); many-shot "
            f"classes have more than {many} training images, few-shot fewer than {few} "
            f"({ds.info.get('shot_rule')})"
        )
        self.stage1 = None
        if own_stage1:  # BTM's folder is locked before its stage 1 writes into it
            out = self.open_folder(default_output("btm", args)).path
            self.stage1 = Pretrain(stage1_args(self.flags, out / "stage1"), ctx, usual_epochs=STAGE1_EPOCHS)
            if flags.new_head:
                self.decide(
                    "init",
                    str(out / "stage1"),
                    f"BTM's own stage 1: {flags.init} with a new classifier, fine-tuned on this data first",
                )
                self.decide("new_head", False, "stage 1 trained the new classifier")
            else:
                self.decide("init", str(out / "stage1"), "BTM's own stage 1, trained first in this run's folder")

    @property
    def merged_name(self) -> str:
        """The merged model's name in the table and the method: LT-Soups with --soup-ratios, else BTM."""
        return "LT-Soups" if self.args.soup_ratios else "BTM"

    def decide_member_optimiser(self) -> None:
        """The members' optimiser, weight decay and rate the flags leave unset: those of the start
        (`ltzoo.recipes.defaults.optimiser_defaults`): SGD from scratch, AdamW from weights trained elsewhere; with
        --init RUN, the optimiser RUN was trained with (its run_config.yaml; SGD where it records none)."""
        flags = self.flags
        values, rule = optimiser_defaults(flags)
        if flags.optimizer is None:
            self.decide("optimizer", values["optimizer"], rule)
        optimizer = self.args.optimizer
        if flags.weight_decay is None:
            usual = SCRATCH if optimizer in ("sgd", "momentum") else FROM_WEIGHTS["none"]
            self.decide("weight_decay", usual["weight_decay"], f"the usual weight decay of {optimizer}")
        if flags.member_lr is None:
            self.decide("member_lr", *member_lr(optimizer, flags.peft))

    def train(self) -> None:
        self.train_stage1()
        self.prepare_base()
        self.train_members()
        self.merge()
        self.retrain_classifier()

    def train_stage1(self) -> None:
        """Stage 1, in-process with this run's context (only without --init)."""
        self.stage1_seconds = None
        if self.stage1 is not None:
            self.stage1_seconds = self.stage1.run()["train_seconds"]  # recorded: a resumed stage 1 keeps its own
        self.t_stage1 = time.perf_counter() - self.start

    def prepare_base(self) -> None:
        """The stage-1 model (members are copies of it), the run folder, loaders, and stage 1's row of the table."""
        args, ds, ctx = self.args, self.ds, self.ctx
        set_seed(args.seed)
        self.base = base = create_model(ds, args.model, init=args.init, new_head=args.new_head)
        arch = base.pretrained_cfg.get("architecture") or args.model
        self.decide("model", arch, "the architecture of --init's weights")  # it names the run
        args = self.args
        self.channels_last = apply_channels_last(base, args.channels_last)  # the members are copies of it
        if self.folder is None:
            self.open_folder(default_output("btm", args))
        if self.accelerator.is_main_process:
            remove_stale_temporaries(self.folder.path)  # an interrupted run's (stage 1 removed its own on resume)
        self.config = self.write_config()
        self.prep = ctx.batch_preprocess(ds, base, self.channels_last)
        loaders = ctx.eval_loaders(ds, base, EVAL_BATCH, args.workers, splits=("train", "val", "test"))
        self.model, *prepared = ctx.prepare(copy.deepcopy(base), *loaders.values())
        self.loaders = {k: dl for k, dl in zip(loaders, prepared) if dl is not None}
        with phase(self.accelerator, f"evaluating stage 1 ({self.report_splits()})", logger) as t:
            self.table = {"stage 1": {s: self.evaluate_split(s) for s in ("val", "test") if s in self.loaders}}
        self.t_stage1_eval = t.seconds

    def report_splits(self) -> str:
        """The splits of the table's rows, for a phase's line."""
        return ", ".join(s for s in ("val", "test") if s in self.loaders)

    def evaluate_split(self, split: str, desc: str | None = None) -> dict:
        logits, labels = predict(
            self.accelerator,
            self.model,
            self.loaders[split],
            self.prep,
            progress=not self.args.no_progress,
            desc=desc or f"eval {split}",
        )
        return metrics_from_logits(logits, labels, self.ds.train_counts, self.ds.shot_thresholds, split)

    def train_members(self) -> None:
        """Every N-th member on each of N processes, each saved before the next; a resumed run skips the saved."""
        args, acc = self.args, self.accelerator
        self.members = [self.folder.path / "members" / f"member_{m:02d}.safetensors" for m in range(args.subsets)]
        init_digest = state_digest(self.base)
        n = acc.num_processes
        epochs = f"{args.member_epochs} epoch{'s' * (args.member_epochs > 1)}"
        what = f"fine-tuning {args.subsets} members ({epochs} each, on {n} process{'es' * (n > 1)})"
        with phase(acc, what, logger) as t:
            for m in range(acc.process_index, args.subsets, acc.num_processes):
                settings = member_settings(args, self.subsets[m], init_digest)
                if args.resume and trained_member(self.members[m], settings):
                    logger.info(f"member {m + 1}/{args.subsets}: already trained, skipped", main_process_only=False)
                    continue
                fine_tune_member(
                    acc, self.base, self.ds, self.subsets[m], self.prep, args, m, self.members[m], settings
                )
                logger.info(
                    f"member {m + 1}/{args.subsets} fine-tuned on {len(self.subsets[m])} images "
                    f"(process {acc.process_index})",
                    main_process_only=False,
                )
            acc.wait_for_everyone()
        self.t_members = t.seconds
        self.member_seconds = [member_train_seconds(p) for p in self.members]  # also those a resumed run skipped

    def merge(self) -> None:
        """Average the members (each process merges the same files, so every model copy is identical)."""
        args, acc = self.args, self.accelerator
        self.net = net = acc.unwrap_model(self.model)

        def val_hm(sd) -> float:
            net.load_state_dict(sd)
            return self.evaluate_split("val", "greedy soup: eval val")["hm"] if "val" in self.loaders else 0.0

        with phase(acc, f"merging {args.subsets} members ({args.merge}; BN statistics: {args.bn_merge})", logger) as t:
            # --peft members hold their adapter alone: each is merged into the stage-1 model first
            # (ltzoo.methods.adapters)
            with adapters.merged_members(
                self.base, adapters.spec_from_args(args), self.members, self.folder.path / "members"
            ) as full:
                if args.merge == "greedy" and "val" in self.loaders:
                    merged, self.chosen = greedy_soup(full, [val_hm(average_checkpoints([p])) for p in full], val_hm)
                elif args.merge == "sequential":  # LT-Soups' merge, from the stage-1 model the members started from
                    weights = sequential_weights(len(full), args.merge_lm)
                    merged = average_checkpoints([self.base.state_dict(), *full], weights)
                    self.chosen = list(range(args.subsets))
                else:
                    merged, self.chosen = average_checkpoints(full), list(range(args.subsets))
            net.load_state_dict(merged)
            if args.bn_merge == "reestimate":
                reestimate_on_subsets(
                    net,
                    self.ds,
                    self.subsets,
                    self.prep,
                    image_transform(self.ds, self.base),
                    args.seed,
                    args.workers,
                    accelerator=acc,
                    progress=not args.no_progress,
                )
        self.t_merge = t.seconds
        # the merged model's row of the table: reporting, like stage 1's validation passes
        with phase(acc, f"evaluating the merged model ({self.report_splits()})", logger) as t:
            self.table[self.merged_name] = {s: self.evaluate_split(s) for s in ("val", "test") if s in self.loaders}
        self.t_report = t.seconds
        merged_dir = self.folder.path / "merged"
        if self.accelerator.is_main_process:
            save_model(net, merged_dir, self.ds)
            write_json(
                merged_dir / RESULTS,
                {
                    "recipe": "btm",
                    "method": "btm",
                    "metrics": self.table[self.merged_name],
                    "train_counts": self.ds.train_counts,
                    "parents": [args.init],
                },
            )

    def retrain_classifier(self) -> None:
        """The merged model's classifier retrained or adjusted on cached features (`ltzoo.methods.heads`)."""
        args, acc = self.args, self.accelerator
        progress = not args.no_progress
        t0 = time.perf_counter()
        self.t_shift_bn = self.t_features = self.t_head_fit = None
        if args.shift_bn:  # BN statistics of class-balanced batches, for the classifier stage and the export
            with phase(acc, "shifting BN statistics (one class-balanced epoch of the training images)", logger) as t:
                shift_batchnorm(
                    self.net,
                    self.ds,
                    args.seed,
                    self.channels_last,
                    args.workers,
                    transform=image_transform(self.ds, self.base, train=True),
                    progress=progress and acc.is_local_main_process,
                )
            self.t_shift_bn = t.seconds
        self.head_info = {}
        if args.classifier != "none":
            splits = [s for s in ("train", "val") if s in self.loaders]
            # features at the run's precision (bf16 where it trains in bf16: the heads' numbers barely move,
            # benchmarks/results/btm_ratio.md); the exported model is evaluated in fp32 all the same
            with phase(acc, f"features of the merged model ({', '.join(splits)})", logger) as t:
                feats = {
                    s: Features(
                        *predict(
                            acc,
                            self.model,
                            self.loaders[s],
                            self.prep,
                            features=True,
                            progress=progress,
                            desc=f"features {s}",
                            run_precision=True,
                        )
                    )
                    for s in splits
                }
            self.t_features = t.seconds
            trained = f", {args.head_epochs} epochs" if args.classifier in TRAINED_HEADS else ""
            what = (
                f"fitting the {args.classifier} head on {len(feats['train'].y):,} training features, "
                f"{self.ds.num_classes:,} classes{trained}{' (then ensembled)' if args.ensemble else ''}"
            )
            with phase(acc, what, logger) as t:
                orig = Head.from_module(self.net.get_classifier())
                new, self.head_info = retrain(
                    args.classifier,
                    orig,
                    feats["train"],
                    feats.get("val"),
                    self.ds.train_counts,
                    epochs=args.head_epochs,
                    lr=args.head_lr,
                    seed=args.seed,
                    progress=progress and acc.is_local_main_process,
                )
                if args.ensemble:
                    val = feats.get("val") if self.choose else None
                    new, self.head_info["ensemble"] = ensemble(orig, new, val, self.ds.train_counts)
                    if "val" in feats and not self.choose:
                        self.head_info["ensemble"]["chosen_on"] = self.choose_rule
            self.t_head_fit = t.seconds
            new.write_to(self.net.get_classifier())
        self.t_head = time.perf_counter() - t0

    def start_baseline(self) -> dict | None:
        """The linear baseline of BTM's start (`Recipe.linear_baseline`): the pixels from scratch; the frozen features
        of --init's model otherwise (its stage 1, or with --new-head the model trained on other classes: the
        baseline BTM's own stage 1 computed already)."""
        flags = self.flags
        kind = start_kind(flags)
        if kind == "scratch":
            return self.linear_baseline(None, self.prep, image_transform(self.ds, self.base))
        if kind == "resume":
            return self.linear_baseline(self.base, self.prep, image_transform(self.ds, self.base))
        return self.ctx.baselines.get(self.baseline_key()) if flags.linear_baseline else None

    def evaluate(self) -> dict:
        return self.final_evaluation(
            self.model, {"val": self.loaders.get("val"), "test": self.loaders["test"]}, self.prep, self.ds
        )

    def finish(self, metrics: dict) -> dict:
        args = self.args
        name = self.merged_name + (
            f"+{args.classifier}{'+ens' if 'ensemble' in self.head_info else ''}" if args.classifier != "none" else ""
        )
        # the members, the merge and the classifier, less the merged model's evaluation for the table
        # (`evaluation`), as stage 1's train_seconds leaves out its validation passes (greedy merging's and the
        # heads' own passes over the validation split stay in)
        btm_seconds = self.t_members + self.t_merge + self.t_head
        one_device = sum(self.member_seconds) + self.t_merge + self.t_head  # every member's recorded training
        self.table[name] = metrics
        results = self.results(
            {
                "recipe": "btm",
                "method": name.lower(),
                "model": self.net.pretrained_cfg.get("architecture", args.model),
                "parents": [args.init],
                "members": len(self.members),
                "merged_members": self.chosen,
                "shots": args.shots,
                "shots_rule": self.shots_rule,
                "classifier": self.head_info,
                "selection": "all choices on the validation split" if self.choose else self.choose_rule,
                "config": self.config,
                "speed": describe(self.ctx.precision, self.channels_last, False),
                # recorded training times (stage 1's and each member's, kept in their files): a re-run that trains
                # nothing again reports the same; the others are this run's own clock: stage1_wall (setup and
                # stage 1), stage1_evaluation (stage 1's row of the table), members, merge, evaluation (the merged
                # model's row), classifier (= shift_bn + features + head_fit, each None where it did not run),
                # final_evaluation and calibration (`Recipe.final_evaluation`)
                "seconds": {
                    "stage1": self.stage1_seconds,
                    "stage1_wall": self.t_stage1,
                    "stage1_evaluation": self.t_stage1_eval,
                    "members": self.t_members,
                    "merge": self.t_merge,
                    "classifier": self.t_head,
                    "shift_bn": self.t_shift_bn,
                    "features": self.t_features,
                    "head_fit": self.t_head_fit,
                    "evaluation": self.t_report,
                    **self.timings,
                    "btm_total": btm_seconds,
                    "member_train_seconds": self.member_seconds,
                    "btm_total_one_device": one_device,
                },
                "wall_seconds": time.perf_counter() - self.start,
                "table": {k: {s: brief(v) for s, v in d.items()} for k, d in self.table.items()},
            },
            metrics,
            self.ds,
        )
        baseline = self.start_baseline()
        results["baseline"] = baseline_record(baseline)
        self.folder.export(self.model, self.ds, results, title=name)
        self.report_baseline(self.table, metrics, baseline, name)
        self.accelerator.print(summary_table(self.table, calibration=True))
        if self.stage1_seconds:  # recorded times on both sides: a re-run that trains nothing keeps the ratio
            self.accelerator.print(
                f"BTM stage: {one_device:.0f} s of training on one device "
                f"({one_device / self.stage1_seconds:.0%} of stage 1's {self.stage1_seconds:.0f} s)"
            )
        self.accelerator.print(f"run folder: {self.folder.path}")
        return results


main = BTM.main


if __name__ == "__main__":
    run_main(main, __file__)
