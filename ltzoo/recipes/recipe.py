"""What a recipe is: one class with named steps over a run context.

    class Pretrain(TrainingRecipe):          # ltzoo/recipes/pretrain.py
        name = "pretrain"
        ...
    main = Pretrain.main                     # `accelerate launch -m ltzoo.recipes.pretrain` runs it

`Recipe.run` is ``setup`` (the run context, the data, the model, the run folder), ``train``, ``evaluate``
(the chosen model, once, on each split: `RunContext.final_evaluation`, which also keeps its predictions in the
run folder) and ``finish`` (results.json, the export, the closing table). A recipe that needs another
composes it in-process and hands it its context (BTM's stage 1: ``Pretrain(stage1_args, ctx).run()``).

`TrainingRecipe` is the epoch loop stage 1 and CSA share: the model, its loaders, the optimiser and the
schedule prepared once, resume from the run folder's last checkpoint, an epoch of training (the recipe's
`TrainingRecipe.train_epoch`), validation (every ``--eval-every`` epochs and the last; unset, decided from the
validation and training image counts by `choose_eval_every`), the epoch chosen among the validated ones,
checkpoints.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from accelerate.logging import get_logger
from accelerate.utils import set_seed

from ltzoo.config.resolution import Resolution, RunConfig
from ltzoo.errors import UserError
from ltzoo.methods import adapters
from ltzoo.metrics import brief, summary_table
from ltzoo.recipes.defaults import (
    MIN_STEPS,
    MIN_STEPS_FROM_WEIGHTS,
    USUAL_EPOCHS,
    USUAL_EPOCHS_FROM_WEIGHTS,
    choose_batch_size,
    choose_epochs,
    choose_on_validation,
    choose_steps_epochs,
    choose_warmup,
    optimiser_defaults,
    start_kind,
)
from ltzoo.recipes.flags import SPACED_AFTER_EPOCHS, VALIDATION_SHARE, RecipeParser, default_output
from ltzoo.recipes.run_context import RunContext
from ltzoo.runfolder.folder import (
    SAME_RUN_IGNORES,
    BestEpoch,
    RunFolder,
    aside_path,
    config_differences,
    discard_unfinished_folders,
)
from ltzoo.runfolder.model_io import create_model, image_transform
from ltzoo.runfolder.provenance import hardware, peak_memory_mb
from ltzoo.training.accelerator import apply_channels_last, compile_model, describe
from ltzoo.training.baseline import baseline_record, below_baseline_line, linear_baseline
from ltzoo.training.evaluation import evaluate
from ltzoo.training.loop import phase
from ltzoo.training.optim import create_optimizer, create_scheduler

logger = get_logger(__name__)

#: the decisions `TrainingRecipe.decide_schedule` prints
SCHEDULE_DECISIONS = ("optimizer", "lr", "weight_decay", "layer_decay", "batch_size", "epochs", "warmup_epochs")


def choose_eval_every(
    val_images: int,
    train_images: int,
    epochs: int,
    share: float = VALIDATION_SHARE,
    spaced_after: int = SPACED_AFTER_EPOCHS,
) -> tuple[int, str]:
    """How often an unset --eval-every validates, and the rule that chose it.

    A validation pass costs about what training on as many images costs (both are bound by reading and
    decoding images at scale; validation runs forward only, so this over-estimates it where compute binds).
    Every epoch is validated when that pass is at most ``share`` of an epoch's ``train_images``, or when the run
    has at most ``spaced_after`` epochs (each epoch's choice then matters); otherwise every k-th epoch, k the
    smallest that keeps validation within ``share`` of the images trained on. The last epoch is always validated.

        choose_eval_every(1_000, 14_592, 15)[0]      # Fashion-MNIST-LT: 1 (7% of an epoch)
        choose_eval_every(20_000, 115_712, 90)[0]    # ImageNet-LT, 90 epochs: 2 (17% of an epoch)
    """
    if not val_images:
        return 1, "no validation split (the last epoch is kept)"
    ratio = val_images / max(train_images, 1)
    cost = f"a validation pass is {val_images:,} images, {ratio:.1%} of an epoch's {train_images:,} training images"
    if ratio <= share:
        return 1, f"every epoch: {cost}, at most {share:.0%}"
    if epochs <= spaced_after:
        return 1, f"every epoch: {cost}, but the run has {epochs} epoch{'s' * (epochs != 1)}, at most {spaced_after}"
    every = max(2, math.ceil(ratio / share - 1e-9))
    return every, (
        f"every {every} epochs and the last: {cost}, more than {share:.0%}, over {epochs} epochs (more than "
        f"{spaced_after}); every {every} keeps validation at {ratio / every:.1%} of the images trained on"
    )


class Recipe:
    """A recipe's steps over one run context.

    ``flags`` is the parsed command line, never changed; ``args`` is the run's config: those flags with what the run
    decided from its data and starting point laid over them (`decide`, recorded with its rule in ``resolution``
    and in run_config.yaml), the single source of truth.
    """

    #: the recipe's name (``ltzoo.recipes.<name>``, run_config.yaml's ``recipe``)
    name: str = ""

    def __init__(self, args: argparse.Namespace, ctx: RunContext | None = None):
        self.flags = RunConfig.of(args)  # as parsed: read-only, and the caller's own namespace stays untouched
        self.resolution = Resolution()
        self.args = self.flags
        self.ctx, self.own_context = ctx, ctx is None
        self.folder: RunFolder | None = None
        self.calibration: dict | None = None  # what the final evaluation's calibration did (results.json)
        self.timings: dict[str, float] = {}  # the final evaluation's phases: seconds by name (results.json)
        self.start = time.perf_counter()

    @classmethod
    def build_parser(cls) -> RecipeParser:
        """The recipe's flags (each declared once) and the combinations it refuses."""
        raise NotImplementedError

    @classmethod
    def main(cls, argv=None) -> dict:
        """Parse ``argv`` (default: the command line) and run the recipe; returns results.json's content."""
        args = cls.build_parser().parse_args(argv)
        with discard_unfinished_folders():  # bad input found after the run folder was made: no half-made folder
            return cls(args).run()

    def run(self) -> dict:
        """setup, train, evaluate, finish; returns results.json's content."""
        try:
            self.setup()
            self.train()
            metrics = self.evaluate()
            results = self.finish(metrics)
        finally:
            if self.folder is not None:
                self.folder.close()
        if self.own_context:
            self.ctx.end()
        return results

    # the steps
    def setup(self) -> None:
        raise NotImplementedError

    def train(self) -> None:
        raise NotImplementedError

    def evaluate(self) -> dict:
        raise NotImplementedError

    def finish(self, metrics: dict) -> dict:
        raise NotImplementedError

    # what the steps share
    def final_evaluation(self, model, loaders: dict, prep, ds) -> dict:
        """`RunContext.final_evaluation` of the chosen ``model`` with the run's calibration; the metrics by split."""
        metrics, self.calibration = self.ctx.final_evaluation(
            model,
            loaders,
            prep,
            ds,
            self.folder,
            calibration=self.args.calibration,
            min_images=self.args.calibration_min_images,
            progress=not getattr(self.args, "no_progress", False),
            timings=self.timings,
        )
        return metrics

    def linear_baseline(self, start_model, prep, transform) -> dict | None:
        """The class-balanced linear baseline (`ltzoo.training.baseline`) on ``start_model``'s frozen features (None:
        the pixels), once per start in a run context (BTM's own stage 1 and BTM share it); None with
        --no-linear-baseline."""
        args = self.args
        if not getattr(args, "linear_baseline", True):
            return None
        key = self.baseline_key()
        if key not in self.ctx.baselines:
            what = "pixels" if start_model is None else "the start model's frozen features"
            with phase(self.accelerator, f"linear baseline (logistic regression on {what})", logger):
                self.ctx.baselines[key] = linear_baseline(
                    self.accelerator,
                    self.ds,
                    start_model,
                    prep,
                    batch_size=512,
                    workers=args.workers,
                    seed=args.seed,
                    transform=transform,
                    progress=not getattr(args, "no_progress", False),
                )
        return self.ctx.baselines[key]

    def baseline_key(self) -> str:
        """What the baseline of this run's start is keyed by in the run context: the pixels from scratch, else the
        start as the flags name it (BTM's own stage 1 and BTM share it)."""
        flags = self.flags
        if start_kind(flags) == "scratch":
            return "pixels"
        return str(getattr(flags, "init", None) or getattr(flags, "pretrained_file", None) or flags.model)

    def report_baseline(self, table: dict, metrics: dict, baseline: dict | None, what: str) -> None:
        """The baseline's row in ``table`` and, where the model ends below it, one line saying so."""
        if baseline is None:
            return
        table["linear baseline"] = {s: baseline[s] for s in ("val", "test") if s in baseline}
        line = below_baseline_line(metrics, baseline, what)
        if line:
            logger.warning(line, main_process_only=True)

    def decide(self, name: str, value, rule: str):
        """Record the run's choice of ``value`` for flag ``name`` and the ``rule`` that chose it; ``self.args`` then
        reads it (a new read-only config: the parsed flags are never changed). Returns ``value``."""
        self.resolution.decide(name, value, rule)
        self.args = self.resolution.apply(self.flags)
        return value

    def load_dataset(self, ctx: RunContext):
        """The dataset of the data flags (loaded once per context); the profile it applied is the run's (none for
        data used as is). Also decides whether validation is large enough to choose on (`choose_on_validation`)."""
        ds = ctx.dataset(self.args)
        self.decide("profile", ds.info.get("profile"), "the profile the data applied (none: data used as it is)")
        val_counts = ds.val.counts(ds.num_classes) if ds.val is not None else None
        self.choose, self.choose_rule = choose_on_validation(val_counts, getattr(self.args, "min_val_per_class", 5))
        if ds.val is not None and self.own_context:  # composed (BTM's stage 1): the caller said it
            logger.info(f"model choices: {self.choose_rule}", main_process_only=True)
        return ds

    def open_context(self, project_dir: Path | None = None) -> RunContext:
        """The run context: the caller's, or one built now (once per process)."""
        if self.ctx is None:
            self.ctx = RunContext.create(self.args, project_dir)
        return self.ctx

    @property
    def accelerator(self):
        return self.ctx.accelerator

    def open_folder(self, path: Path, lock: bool = True) -> RunFolder:
        """Make and lock the run folder (`ltzoo.runfolder.folder.RunFolder`). A folder holds one run: one that
        holds a run with other flags is refused in one line naming them, or, with --replace, moved aside first."""
        self.folder = RunFolder(path, self.accelerator, lock=lock)
        if lock:
            self.folder = self.one_run_per_folder(self.folder)
        return self.folder

    def one_run_per_folder(self, folder: RunFolder) -> RunFolder:
        """``folder`` if it is new or holds this run (it resumes); else refuse, or move that run aside (--replace)."""
        recorded = folder.recorded_config()
        if recorded is None:
            return folder
        differ = config_differences(recorded, vars(self.flags))
        if recorded.get("recipe") not in (None, self.name):
            differ.insert(0, f"a {recorded['recipe']} run, this one {self.name}")
        if not differ:
            return folder
        aside = aside_path(folder.path)
        # --replace, or --no-resume (start over, not in this run's folder): the other run is moved aside, kept whole
        if not (getattr(self.flags, "replace", False) or getattr(self.flags, "resume", True) is False):
            folder.close()
            raise UserError(
                f"run folder {folder.path} holds another run ({'; '.join(differ[:4])}"
                f"{'; ...' if len(differ) > 4 else ''})",
                f"pass --output DIR to keep both, or --replace to move that run aside (to {aside.name}) and start "
                "this one",
            )
        folder.move_aside(aside)
        logger.warning(
            f"{folder.path} held another run ({'; '.join(differ)}): moved to {aside}", main_process_only=True
        )
        return RunFolder(folder.path, self.accelerator)

    def write_config(self) -> dict:
        """run_config.yaml: the resolved flags, the recipe, the folder, the git commit, and the recipe's flags
        (option, kind, default: a card renders the reproduce command from the run's config alone)."""
        return self.folder.write_config(
            {
                **vars(self.args),
                "resolved": self.resolution.rules(),
                "parsed": {k: v for k, v in vars(self.flags).items() if k not in SAME_RUN_IGNORES},
                "recipe": self.name,
                "output": str(self.folder.path),
                "flags": self.build_parser().flag_table(),
            }
        )

    def results(self, fields: dict, metrics: dict, ds) -> dict:
        """results.json's content: the recipe's ``fields``, the data, the metrics by split, the machine."""
        return {
            **fields,
            "dataset": ds.summary(),
            "train_counts": ds.train_counts,
            "class_names": ds.class_names,
            "metrics": metrics,
            "calibration": self.calibration,
            "hardware": hardware(),
            "peak_memory_mb": peak_memory_mb(),
            "num_processes": self.accelerator.num_processes,
        }


class TrainingRecipe(Recipe):
    """The epoch loop of a recipe that trains a model from a timm architecture or ``--init`` (stage 1, CSA)."""

    def run_name(self) -> str:
        """The default run folder's prefix (``pretrain-ce`` gives runs/pretrain-ce-<dataset>-<model>-s<seed>)."""
        raise NotImplementedError

    def setup(self) -> None:
        args = self.args
        out = default_output(self.run_name(), args)
        ctx = self.open_context(out)
        self.open_folder(out)
        self.ds = ds = self.load_dataset(ctx)
        set_seed(args.seed)  # the initialisation draws the same whoever made the context
        net = create_model(
            ds,
            args.model,
            init=args.init,
            new_head=args.new_head,
            pretrained=args.pretrained,
            pretrained_file=args.pretrained_file,
        )
        self.arch = net.pretrained_cfg.get("architecture") or args.model  # --init's, whatever --model says
        if self.arch != args.model:  # the config names the model the run trains
            self.decide("model", self.arch, "the architecture of the starting weights (--init), not --model")
            args = self.args
        self.spec = adapters.spec_from_args(args)  # --peft: the adapter and the classifier train, the rest is frozen
        net = adapters.wrap(net, self.spec)
        self.decide_schedule(ds)
        args = self.args
        self.accelerator.print(adapters.describe(args, net))
        self.channels_last = apply_channels_last(net, args.channels_last)
        self.net, self.model = net, self.training_model(net)
        self.batch_size = ctx.train_batch_size(args.batch_size, ds)
        train_loaders = self.train_loaders(ds, image_transform(ds, net, train=True))
        loaders = ctx.eval_loaders(ds, net, args.batch_size * 2, args.workers)
        self.decide_eval_every(len(train_loaders[0]) * self.batch_size)
        args = self.args
        self.prep = ctx.batch_preprocess(ds, net, self.channels_last, args.crop_padding)
        self.build_loss(ds)
        optimizer = create_optimizer(
            self.model, args.optimizer, args.lr, args.weight_decay, getattr(args, "layer_decay", None)
        )
        # optimiser steps per epoch as the prepared scheduler counts them: each process gets len // num_processes
        # batches (drop_last), and accelerate steps the scheduler num_processes times per optimiser step
        per_process = len(train_loaders[0]) // self.accelerator.num_processes
        steps_per_epoch = -(-per_process // args.grad_accum) * self.accelerator.num_processes
        scheduler = create_scheduler(
            optimizer,
            args.epochs * steps_per_epoch,
            int(args.warmup_epochs * steps_per_epoch),
            [e * steps_per_epoch for e in args.lr_steps or []],
            args.lr_gamma,
        )
        model = compile_model(self.model) if getattr(args, "compile", False) else self.model
        self.model, self.optimizer, *prepared, self.val_dl, self.test_dl, self.scheduler = ctx.prepare(
            model, optimizer, *train_loaders, loaders["val"], loaders["test"], scheduler
        )
        self.train_dls = prepared
        self.after_prepare()
        if not args.resume:
            self.folder.reset()
        state = self.folder.resume() or {}  # before anything is written: a run folder it refuses stays as it was
        self.config = self.write_config()
        self.accelerator.init_trackers(
            self.name, config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        )
        self.first_epoch = state["epoch"] + 1 if state else 0
        self.best = BestEpoch(self.folder.path, self.accelerator, args.select, state.get("best"))
        self.state = {k: v for k, v in state.items() if k not in ("epoch", "best")}
        self.state.setdefault("train_seconds", 0.0)
        self.state.setdefault("validation_seconds", 0.0)

    def usual_epochs(self) -> int:
        """The schedule's usual length in epochs, before the step budget (`ltzoo.recipes.defaults.choose_epochs`)."""
        return USUAL_EPOCHS if start_kind(self.args) == "scratch" else USUAL_EPOCHS_FROM_WEIGHTS

    def decide_schedule(self, ds) -> None:
        """The optimiser, batch, length and warm-up the flags leave unset, from the data and the start
        (`ltzoo.recipes.defaults`); each decision is printed with its rule."""
        flags, n = self.flags, self.accelerator.num_processes
        values, rule = optimiser_defaults(self.args)
        for name in ("optimizer", "lr", "weight_decay", "layer_decay"):
            if getattr(flags, name, None) is None and values[name] is not None:
                self.decide(name, values[name], rule)
        if flags.batch_size is None:
            self.decide("batch_size", *choose_batch_size(len(ds.train), n))
        args = self.args
        batch = min(args.batch_size, max(len(ds.train) // n, 1))
        steps_per_epoch = max(len(ds.train) // (batch * n) // args.grad_accum, 1)
        if flags.steps is not None:
            self.decide("epochs", *choose_steps_epochs(flags.steps, steps_per_epoch))
        elif flags.epochs is None:
            start = start_kind(args)
            self.decide(
                "epochs",
                *choose_epochs(
                    steps_per_epoch, self.usual_epochs(), MIN_STEPS if start == "scratch" else MIN_STEPS_FROM_WEIGHTS
                ),
            )
        if flags.warmup_epochs is None:
            self.decide("warmup_epochs", *choose_warmup(self.args.epochs))
        by_rule: dict[str, list[str]] = {}  # one line per rule: the optimiser's values share theirs
        for name, decision in self.resolution.decisions.items():
            if name in SCHEDULE_DECISIONS:
                by_rule.setdefault(decision.rule, []).append(f"{name.replace('_', ' ')} {decision.value}")
        for rule, values in by_rule.items():
            logger.info(f"{', '.join(values)}: {rule}", main_process_only=True)

    def decide_eval_every(self, train_images: int) -> None:
        """--eval-every, unset: decided from the validation and training image counts (`choose_eval_every`); the
        cadence is printed either way."""
        args, val = self.args, self.ds.val
        if args.eval_every is None:
            every, rule = choose_eval_every(0 if val is None else len(val), train_images, args.epochs)
            self.decide("eval_every", every, rule)
        else:
            every = args.eval_every
            rule = f"every {'epoch' if every == 1 else f'{every} epochs and the last'} (--eval-every {every})"
        if val is not None:
            logger.info(f"validation: {rule}", main_process_only=True)

    def validates(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) is validated: every --eval-every-th and the last, given a validation split."""
        args = self.args
        return self.val_dl is not None and ((epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs)

    # the recipe's parts
    def training_model(self, net):
        """The module trained (stage 1: the timm model; CSA: its two-branch wrapper)."""
        return net

    def train_loaders(self, ds, transform) -> list:
        """The training loaders (unprepared; the first sets the epoch's length)."""
        raise NotImplementedError

    def build_loss(self, ds) -> None:
        raise NotImplementedError

    def after_prepare(self) -> None:
        """What the recipe registers with the prepared accelerator (CSA: its bank's checkpointing)."""

    def train_epoch(self, epoch: int) -> dict:
        """One epoch; returns its statistics (``loss``, ``seconds``...)."""
        raise NotImplementedError

    def epoch_line(self, stats: dict) -> str:
        return f"loss {stats['loss']:.4f}"

    def exported_model(self):
        """The model to evaluate and export, the chosen epoch's weights loaded. With --peft, the adapter is
        saved alone (``adapter/``) and the export is the plain timm model it makes (`ltzoo.methods.adapters.merged`)."""
        if not self.spec.enabled:
            return self.model
        net = self.accelerator.unwrap_model(self.model)
        if self.accelerator.is_main_process:
            adapters.save_adapter(net, self.spec, self.folder.path / "adapter")
        return adapters.merged(net)

    def result_fields(self) -> dict:
        """What the recipe adds to results.json."""
        raise NotImplementedError

    # the steps
    def train(self) -> None:
        args, acc = self.args, self.accelerator
        for epoch in range(self.first_epoch, args.epochs):
            set_seed(args.seed + epoch)
            for dl in self.train_dls:
                dl.set_epoch(epoch)
            stats = self.train_epoch(epoch)
            self.state["train_seconds"] += stats["seconds"]
            record = {"epoch": epoch, "lr": self.scheduler.get_last_lr()[0], **stats}
            if self.validates(epoch):
                t0 = time.perf_counter()
                val = evaluate(
                    acc,
                    self.model,
                    self.val_dl,
                    self.prep,
                    self.ds.train_counts,
                    self.ds.shot_thresholds,
                    "val",
                    progress=not args.no_progress,
                )
                record["val"] = brief(val)
                if self.choose:  # else the last epoch is kept (validation too small to choose on)
                    self.best.update(epoch, val, self.model)
                self.state["validation_seconds"] += time.perf_counter() - t0
            self.folder.log(record)
            acc.log(
                {
                    **{f"train/{k}": v for k, v in stats.items() if k.startswith("loss")},
                    **{f"val/{k}": v for k, v in record.get("val", {}).items() if v is not None},
                },
                step=epoch,
            )
            logger.info(
                f"epoch {epoch}: {self.epoch_line(stats)}"
                + (f", val acc {record['val']['acc']:.4f} hm {record['val']['hm']:.4f}" if "val" in record else ""),
                main_process_only=True,
            )
            if (epoch + 1) % args.save_every == 0 or epoch + 1 == args.epochs:
                self.folder.save(epoch, {"best": self.best.best, **self.state})

    def evaluate(self) -> dict:
        self.best.restore(self.model)  # the epoch chosen on the validation split
        self.exported = self.exported_model()
        metrics = self.final_evaluation(self.exported, {"val": self.val_dl, "test": self.test_dl}, self.prep, self.ds)
        self.baseline = self.start_baseline()
        return metrics

    def start_baseline(self) -> dict | None:
        """The linear baseline of this run's start: the pixels from scratch, else the frozen features of a fresh
        copy of the start model (`Recipe.linear_baseline`)."""
        flags = self.flags
        if start_kind(flags) == "scratch":
            return self.linear_baseline(None, self.prep, image_transform(self.ds, self.net))
        set_seed(flags.seed)
        start = create_model(
            self.ds,
            self.args.model,
            init=flags.init,
            new_head=flags.new_head,
            pretrained=flags.pretrained,
            pretrained_file=flags.pretrained_file,
        ).to(self.accelerator.device)
        prep = self.ctx.batch_preprocess(self.ds, start, False, crop_padding=0)
        return self.linear_baseline(start, prep, image_transform(self.ds, start))

    def finish(self, metrics: dict) -> dict:
        args = self.args
        results = self.results(
            {
                **self.result_fields(),
                "model": self.arch,
                "parents": [args.init] if args.init else [],
                **self.selection(),
                "train_seconds": self.state["train_seconds"],
                # train and validation: the epoch loop's (kept through checkpoints, as train_seconds);
                # final_evaluation and calibration: this run's clock (`Recipe.final_evaluation`)
                "seconds": {
                    "train": self.state["train_seconds"],
                    "validation": self.state["validation_seconds"],
                    **self.timings,
                },
                "wall_seconds": time.perf_counter() - self.start,
                "config": self.config,
                "speed": describe(self.ctx.precision, self.channels_last, getattr(args, "compile", False)),
            },
            metrics,
            self.ds,
        )
        results["baseline"] = baseline_record(self.baseline)
        self.folder.export(self.exported, self.ds, results, title=self.title())
        table = {f"{self.arch} {results['method']}": results["metrics"]}
        self.report_baseline(table, results["metrics"], self.baseline, f"{self.arch} {results['method']}")
        if self.own_context:  # composed (BTM's stage 1), the caller's table has its row
            self.accelerator.print(summary_table(table, calibration=True))
        self.accelerator.print(f"run folder: {self.folder.path}")
        return results

    def selection(self) -> dict:
        """results.json's record of the epoch chosen (`BestEpoch.fields`), naming the cadence when it skipped
        epochs."""
        fields = self.best.fields(self.args.epochs)
        if self.ds.val is not None and not self.choose:
            return {"selected_epoch": self.args.epochs - 1, "selection": f"the last epoch: {self.choose_rule}"}
        if self.best.best is not None and self.args.eval_every > 1:
            fields["selection"] += f" (validated every {self.args.eval_every} epochs and the last)"
        return fields

    def title(self) -> str:
        return f"{self.arch} {self.name}"
