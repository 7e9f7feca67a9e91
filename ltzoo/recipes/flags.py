"""What every recipe's command line shares: its parser (YAML defaults from ``-c``, the command line wins,
values and combinations a recipe cannot honour refused at parse time, in one line), the flag groups, the
packaged configs and the run folder's default name. A recipe runs as a script through
`ltzoo.errors.run_main`.

    parser = recipe_parser(__doc__, __file__)
    add_data_group(parser)
    parser.add_check(lambda args, given: "--x needs --y" if args.x and not args.y else None)
    args = parser.parse_args(argv)
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import yaml

from ltzoo.config.argtypes import check_config_values, nonneg_float, nonneg_int, positive_float, positive_int
from ltzoo.data.args import add_data_args
from ltzoo.errors import ArgumentParser, DefaultsHelpFormatter, one_line, user_error
from ltzoo.methods import adapters
from ltzoo.methods.calibration import METHODS as CALIBRATIONS
from ltzoo.methods.calibration import MIN_IMAGES as CALIBRATION_MIN_IMAGES
from ltzoo.training.accelerator import add_speed_arguments

_logger = logging.getLogger(__name__)

#: A parse-time check: (parsed arguments, the flags given on the command line) -> an error message or None.
Check = Callable[[argparse.Namespace, set], "str | None"]

#: An unset --eval-every validates every epoch unless a validation pass is more than this share of an epoch's
#: training images and the run is longer than SPACED_AFTER_EPOCHS epochs (`ltzoo.recipes.recipe.choose_eval_every`)
VALIDATION_SHARE = 0.1
SPACED_AFTER_EPOCHS = 30


# ------------------------------------------------------------------------------------ packaged configs
def configs_dir():
    """The folder of the YAML configs shipped inside the package (``<dataset>/<name>.yaml``)."""
    return resources.files("ltzoo.recipes") / "configs"


def list_configs() -> list[str]:
    """The packaged configs by name, e.g. ``fmnist_lt/ce`` (what ``-c`` takes besides a path)."""
    root = configs_dir()
    return sorted(
        f"{d.name}/{f.name[:-5]}" for d in root.iterdir() if d.is_dir() for f in d.iterdir() if f.name.endswith(".yaml")
    )


def config_recipe(name: str) -> str:
    """The recipe a packaged config is for: ``<dataset>/btm``, ``/gml`` and ``/csa`` (or ``btm_<variant>``...) are
    theirs, the others stage 1's."""
    stem = Path(name).stem.split("_")[0]
    return stem if stem in ("btm", "gml", "csa") else "pretrain"


def config_path(name: str) -> Path:
    """A ``-c`` value as a file: a path to a YAML file, or the name of a packaged config (``fmnist_lt/ce``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    packaged = configs_dir() / (name if name.endswith(".yaml") else f"{name}.yaml")
    if packaged.is_file():
        return Path(str(packaged))
    raise FileNotFoundError(
        f"no config file {name}, and no packaged config of that name (packaged: {', '.join(list_configs())})"
    )


def config_arg(value: str) -> str:
    """``-c``'s type: a YAML file that exists or a packaged config's name (returned as given)."""
    try:
        config_path(value)
    except FileNotFoundError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


# ----------------------------------------------------------------------------------------- the parser
class RecipeParser(ArgumentParser):
    """argparse with ``-c CONFIG`` (YAML defaults, the command line wins) and parse-time checks.

    ``parse_args`` reads the config named by ``-c`` (unknown keys, invalid choices and values a flag's
    ``type=`` refuses are errors), parses the command line, then runs every check added with
    `add_check`: a combination of flags the recipe cannot honour ends the parse with ``parser.error``
    and a message naming the fix. Every usage error is one line (`ltzoo.errors.ArgumentParser`).
    """

    def __init__(self, description: str, **kwargs):
        super().__init__(description=description, formatter_class=DefaultsHelpFormatter, **kwargs)
        self.checks: list[Check] = []
        self.add_argument(
            "-c",
            "--config",
            type=config_arg,
            help="YAML file of defaults (keys are flag names with _), or a packaged "
            "config by name (e.g. fmnist_lt/ce; `ltzoo configs` lists them); the command line wins",
        )

    def add_check(self, check: Check) -> None:
        """Run ``check(args, given)`` after parsing; a returned message is a usage error."""
        self.checks.append(check)

    def parse_args(self, args: Sequence[str] | None = None, namespace=None) -> argparse.Namespace:
        argv = sys.argv[1:] if args is None else list(args)
        pre, _ = self.parse_known_args(argv)
        if pre.config:
            self._set_config_defaults(pre.config)
        ns = super().parse_args(argv, namespace)
        given = self.given(argv)
        for check in self.checks:
            message = check(ns, given)
            if message:
                self.error(message)
        return ns

    def flag_table(self) -> dict[str, list]:
        """Each flag's destination -> ``[option, kind, default]`` (kind: ``bool`` for --x/--no-x, ``switch``
        for a store_true flag, ``value`` otherwise): what run_config.yaml records so that a card renders the
        run's command line from the run's config alone (`ltzoo.hub.card.render_command`)."""
        table = {}
        for a in self._actions:
            if not a.option_strings or a.dest in ("help", "config"):
                continue
            flag = next(
                (o for o in a.option_strings if o.startswith("--") and not o.startswith("--no-")), a.option_strings[-1]
            )
            kind = (
                "bool"
                if isinstance(a, argparse.BooleanOptionalAction)
                else "switch"
                if isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction))
                else "value"
            )
            table[a.dest] = [flag, kind, a.default]
        return table

    def given(self, argv: Sequence[str]) -> set[str]:
        """The destinations of the flags on the command line ``argv`` (not the defaults, not the config's)."""
        unset = object()
        ns = argparse.Namespace(**{a.dest: unset for a in self._actions if a.dest != argparse.SUPPRESS})
        ns, _ = self.parse_known_args(list(argv), ns)
        return {k for k, v in vars(ns).items() if v is not unset}

    def _set_config_defaults(self, name: str) -> None:
        try:
            with open(config_path(name), encoding="utf-8") as f:  # YAML errors then name the file
                cfg = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:  # names the file, line and column
            self.error(str(user_error(exc)))
        except OSError as exc:
            self.error(f"cannot read the config file {name}: {user_error(exc) or one_line(exc)}")
        if not isinstance(cfg, dict):
            self.error(
                f"{name}: a config is a mapping of flag names to values (like `epochs: 15`), not a {type(cfg).__name__}"
            )
        known = {a.dest for a in self._actions}
        cfg = {str(k).replace("-", "_"): v for k, v in cfg.items()}
        unknown = sorted(set(cfg) - known)
        if unknown:
            hints = [f"{k} -> {m[0]}" for k in unknown if (m := difflib.get_close_matches(k, known, n=1))]
            self.error(
                f"{name}: unknown keys {unknown}"
                + (f" (did you mean {', '.join(hints)}?)" if hints else "")
                + f"; {self.prog} takes the flags of its --help"
            )
        for a in self._actions:  # argparse checks choices on the command line only, not on defaults
            if a.choices is not None and a.dest in cfg and cfg[a.dest] not in a.choices:
                self.error(
                    f"{name}: {a.dest}: invalid choice {cfg[a.dest]!r} (choose from {', '.join(map(str, a.choices))})"
                )
        self.set_defaults(**check_config_values(self, cfg, source=name))


def recipe_parser(doc: str, script: str) -> RecipeParser:
    """A recipe's parser, described by the first line of its module docstring, its usage named ``script``."""
    return RecipeParser(doc.strip().split("\n")[0], prog=Path(script).name)


# ----------------------------------------------------------------------------------------- flag groups
def add_data_group(p: argparse.ArgumentParser) -> None:
    """--dataset, the data flags (`ltzoo.data.args`) and --workers."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="fmnist_lt", help="dataset name (see `ltzoo data --help`) or hf:<name>")
    add_data_args(g)
    g.add_argument("--workers", type=nonneg_int, default=4, help="loader workers for file-backed datasets")


def add_model_args(g, init_help: str = "start from this run folder or hub id") -> None:
    """--model and --pretrained (a fresh timm model), --init and --new-head (a trained one)."""
    g.add_argument(
        "--model",
        default="resnet32_cifar",
        help="any timm architecture name (with --init, the architecture is --init's)",
    )
    g.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="start --model from timm's pretrained weights (from the Hugging Face cache; ltzoo.models.pretrained)",
    )
    g.add_argument(
        "--pretrained-file",
        default=None,
        metavar="PATH",
        help="start --model from this weights file: safetensors, or a .pth/.bin state dict (read with "
        "torch.load(weights_only=True)); loaded as timm's pretrained_cfg_overlay=dict(file=...)",
    )
    add_init_args(g, init_help)


def add_init_args(g, init_help: str, new_head: bool = True) -> None:
    """--init (a run folder or hub id) and, where the recipe can give it a new classifier, --new-head."""
    g.add_argument("--init", default=None, help=init_help)
    if new_head:
        g.add_argument(
            "--new-head", action="store_true", help="give --init's model a new classifier for this dataset's classes"
        )


def check_start(args, given) -> str | None:
    """A check: one start for the model (--init, --pretrained or --pretrained-file)."""
    if args.init and args.pretrained_file:
        return "--pretrained-file starts --model from a weights file and --init from a trained model: give one"
    if args.init and "pretrained" in given and args.pretrained:
        return "--pretrained starts from timm's weights and --init from a trained model: give one of them"
    # a config's `pretrained: true` (the LoRA configs') gives way to a --pretrained-file on the command line
    if args.pretrained and args.pretrained_file and ("pretrained" in given or "pretrained_file" not in given):
        return "--pretrained takes timm's Hub weights and --pretrained-file a local file: give one of them"
    return None


def add_finetune_flags(p: RecipeParser, title: str = "fine-tuning (pretrained weights, adapters)") -> None:
    """--layer-decay and the adapter flags (--peft, --lora-rank, --lora-alpha, --peft-targets:
    `ltzoo.methods.adapters`), in a group named ``title``, and the combinations they refuse (`check_finetune`)."""
    g = p.add_argument_group(title)
    g.add_argument(
        "--layer-decay",
        type=positive_float,
        default=None,
        help="layer-wise learning-rate decay (timm's create_optimizer_v2 layer_decay): each block's rate "
        "is this times the next one's, the head's is the peak rate; unset: 0.75 when every weight fine-tunes from "
        "weights trained elsewhere, else one rate",
    )
    g.add_argument(
        "--peft",
        default="none",
        choices=adapters.METHODS,
        help="parameter-efficient fine-tuning (ltzoo.methods.adapters, through peft): lora, loha or ia3 on the "
        "target modules, bias (biases only) or head (a linear probe); the classifier always trains; "
        "none: every weight trains",
    )
    g.add_argument("--lora-rank", type=positive_int, default=8, help="rank r of --peft lora/loha")
    g.add_argument(
        "--lora-alpha", type=positive_float, default=16.0, help="scale alpha of --peft lora/loha (update s = alpha / r)"
    )
    g.add_argument(
        "--peft-targets",
        nargs="+",
        default=None,
        metavar="NAME",
        help="module names (or name suffixes) --peft lora/loha/ia3 adapts; unset: the architecture "
        "family's (a ViT's attention and MLP linears, a ResNet's convolutions, a ConvNeXt's MLP)",
    )
    p.add_check(check_finetune)


def check_finetune(args, given) -> str | None:
    """A check: the LoRA flags and --peft-targets mean something for their --peft methods only, and --peft
    chooses what trains (not with --train-params, nor --compile)."""
    method, peft_methods = args.peft, adapters.PEFT_METHODS
    if method != "none" and getattr(args, "train_params", "all") != "all":
        return (
            f"--peft {method} chooses what trains (the adapter and the classifier), and so does --train-params "
            f"{args.train_params}: drop --train-params, or use --peft head for the classifier alone"
        )
    if method != "none" and getattr(args, "compile", False):
        return f"--compile does not apply to --peft {method} models: drop --compile"
    lora = [f for f in ("lora_rank", "lora_alpha") if f in given]
    if lora and method not in ("lora", "loha"):
        flag = "--" + lora[0].replace("_", "-")
        return f"{flag} sets --peft lora or loha, and --peft is {method}: drop {flag} or use --peft lora"
    if "peft_targets" in given and method not in peft_methods:
        return (
            f"--peft-targets names the modules --peft {'/'.join(peft_methods)} adapts, and --peft is {method}: "
            "drop --peft-targets or use --peft lora"
        )
    return None


def add_schedule_args(g) -> None:
    """The flags of one training run: length (in epochs or optimiser steps), batch, peak rate, warm-up, gradient
    accumulation. Unset, the length, batch, rate and warm-up follow the data and the start
    (`ltzoo.recipes.defaults`)."""
    g.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="passes over the training images; unset: the usual length (30, BTM's stage 1 15; from weights 10), "
        "or on a small training set as many as give 1,500 optimiser steps (from weights 500)",
    )
    g.add_argument(
        "--steps", type=positive_int, default=None, help="the budget in optimiser steps instead (rounded up to epochs)"
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="images per step, per process; unset: 128, or on a small training set the largest power of two that "
        "leaves 16 batches per epoch (at least 16)",
    )
    g.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="peak learning rate; unset: 0.1 from scratch (SGD); from weights (AdamW) 1e-3, adapters 3e-3, "
        "--peft head or bias 1e-2",
    )
    g.add_argument(
        "--warmup-epochs",
        type=nonneg_float,
        default=None,
        help="linear warm-up, then cosine decay to 0 (stage 1: or --lr-steps); unset: 1 epoch, or 3%% of a longer "
        "schedule",
    )
    g.add_argument("--grad-accum", type=positive_int, default=1, help="gradient accumulation steps")


def add_optimizer_args(g) -> None:
    g.add_argument(
        "--weight-decay",
        type=nonneg_float,
        default=None,
        help="on weights, not on biases and norm layers; unset: 5e-4 from scratch, 0.05 from weights",
    )
    g.add_argument(
        "--optimizer",
        default=None,
        choices=("sgd", "momentum", "adamw"),
        help="sgd: Nesterov momentum 0.9; momentum: plain momentum 0.9 (LDAM-DRW's, MiSLAS's); unset: sgd from "
        "scratch (or with --lr/--weight-decay given), adamw from weights trained elsewhere (--pretrained, "
        "--pretrained-file, --init X --new-head) or with --peft; --init RUN: RUN's own optimiser (sgd if it records "
        "none)",
    )


#: the flags an unset value of which a training recipe decides from its data and start (`ltzoo.recipes.defaults`),
#: and the values CSA keeps (its own recipe's, not tuned by these rules)
CLASSIC_SCHEDULE = {
    "epochs": 30,
    "batch_size": 128,
    "lr": 0.1,
    "warmup_epochs": 1.0,
    "weight_decay": 5e-4,
    "optimizer": "sgd",
}


def add_system_args(g, speed: bool = True) -> None:
    """--seed and --threads; with ``speed``, --mixed-precision, --channels-last and --compile
    (`ltzoo.training.accelerator`)."""
    g.add_argument(
        "--seed", type=nonneg_int, default=0, help="seed of the data draw, the initialisation and the training"
    )
    if speed:
        add_speed_arguments(g)
    g.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads per process; unset: the machine's cores shared among its processes "
        "(accelerate launch alone would pin one)",
    )


def add_ensemble_arg(g) -> None:
    """--ensemble, declared once for the recipes that retrain a classifier (btm, gml): unset, the head's own default
    (`HeadMethod.ensembled` in `ltzoo.methods.heads`), recorded as the run's decision."""
    from ltzoo.methods.heads import HEAD_METHODS

    ensembled = " and ".join(name for name, m in HEAD_METHODS.items() if m.ensembled)
    g.add_argument(
        "--ensemble",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ensemble the retrained head with the original one (temperatures chosen on validation); unset: on for "
        f"{ensembled}, the heads it applies to",
    )


def add_calibration_args(g) -> None:
    """--calibration and --calibration-min-images (`ltzoo.methods.calibration`): every recipe's export."""
    g.add_argument(
        "--calibration",
        default="temperature",
        choices=CALIBRATIONS,
        help="calibrate the exported model's probabilities: temperature (fitted on the validation split after "
        "the model is chosen, folded into the classifier: the same predictions, trustworthy confidences) or none",
    )
    g.add_argument(
        "--calibration-min-images",
        type=nonneg_int,
        default=CALIBRATION_MIN_IMAGES,
        help="fit no temperature on a validation split with fewer images than this (too few to fit one reliably)",
    )


def add_output_args(g, resume: str | None = None, checkpoints: bool = False) -> None:
    """--output and --no-progress; --resume (its meaning for the recipe) and --save-every where they apply;
    the calibration of the exported model."""
    g.add_argument(
        "--output",
        default=None,
        help="the run folder; unset: runs/<recipe>-<dataset>-<model>-s<seed>, or "
        "runs/<recipe>-<dataset>-s<seed>-on-<start> with --init",
    )
    if resume:
        g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True, help=resume)
    if checkpoints:
        g.add_argument("--save-every", type=positive_int, default=1, help="checkpoint every N epochs")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument(
        "--replace",
        action="store_true",
        help="if --output holds a run with other flags, move it aside (renamed, nothing deleted) and start this one; "
        "without it such a run is refused (the same flags resume)",
    )
    add_calibration_args(g)
    g.add_argument(
        "--min-val-per-class",
        type=positive_int,
        default=5,
        help="choose the epoch (and BTM's and GML's ensemble ratio) on validation only when its smallest class has "
        "at least this many images; with fewer, fixed rules choose (the last epoch, ratio 1) and the run says so",
    )
    g.add_argument(
        "--linear-baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fit a class-balanced logistic regression on the same data (the start model's frozen features, or the "
        "pixels from scratch) and report it beside the model (ltzoo.training.baseline)",
    )


def add_training_flags(p: RecipeParser) -> None:
    """The flags of a recipe that trains a model epoch by epoch (stage 1, CSA): data, model, schedule,
    optimiser, system, augmentation padding, the validation metric, the run folder."""
    add_data_group(p)
    g = p.add_argument_group("model and training")
    add_model_args(g)
    add_schedule_args(g)
    g.add_argument(
        "--lr-steps",
        type=positive_int,
        nargs="+",
        default=None,
        metavar="EPOCH",
        help="step decay instead of cosine: the rate times --lr-gamma at each of these epochs",
    )
    g.add_argument("--lr-gamma", type=positive_float, default=0.1, help="the factor of each --lr-steps decay")
    add_optimizer_args(g)
    add_system_args(g)
    g.add_argument(
        "--crop-padding", type=nonneg_int, default=None, help="random-translation pixels; unset: image size / 8"
    )
    g.add_argument(
        "--select",
        default="hm",
        choices=("hm", "gm", "acc", "mean_class_acc"),
        help="validation metric that picks the best epoch",
    )
    g.add_argument(
        "--eval-every",
        type=positive_int,
        default=None,
        metavar="N",
        help="validate every N epochs and the last; the epoch is chosen among the validated ones (checkpoints "
        f"follow --save-every). Unset: every epoch, unless the run has more than {SPACED_AFTER_EPOCHS} epochs and "
        f"a validation pass is more than {VALIDATION_SHARE:.0%}% of an epoch's training images: then every k "
        f"epochs, the fewest that keep validation within {VALIDATION_SHARE:.0%}% of the images trained on",
    )
    g = p.add_argument_group("run folder")
    add_output_args(g, resume="continue from the run folder's last checkpoint if it has one", checkpoints=True)
    p.add_check(needs_init("--new-head"))
    p.add_check(check_start)
    p.add_check(_check_lr_steps)


def _check_lr_steps(args, given) -> str | None:
    steps = args.lr_steps or []
    if args.steps is not None and "epochs" in given:
        return f"--steps {args.steps} and --epochs {args.epochs} both set the length: give one of them"
    if steps and args.epochs is None:
        return "--lr-steps names epochs of a schedule whose length --epochs sets: give --epochs too"
    if not steps:
        return None
    warmup = args.warmup_epochs if args.warmup_epochs is not None else 1.0
    if steps != sorted(set(steps)) or any(e <= warmup or e >= args.epochs for e in steps):
        return (
            f"--lr-steps {' '.join(map(str, steps))}: give increasing epochs after the warm-up "
            f"(--warmup-epochs {warmup:g}) and before --epochs {args.epochs}"
        )
    return None


def add_tau(g) -> None:
    """--tau, the logit-adjustment strength of --loss la (stage 1's and CSA's branch 1)."""
    g.add_argument("--tau", type=nonneg_float, default=1.0, help="logit adjustment strength (--loss la)")


def add_head_args(g, what: str = "the retrained classifiers") -> None:
    """--head-epochs and --head-lr: the training of a classifier on cached features (`ltzoo.methods.heads`); --shift-bn:
    the backbone's BN statistics re-estimated on class-balanced batches before the features are cached
    (`ltzoo.methods.shifted_bn`)."""
    from ltzoo.methods.heads import HEAD_METHODS

    lrs = ", ".join(f"{m.lr:g} for {name}" for name, m in HEAD_METHODS.items() if m.lr is not None)
    shifted = " and ".join(name for name, m in HEAD_METHODS.items() if m.shift_bn)
    g.add_argument("--head-epochs", type=positive_int, default=30, help=f"epochs of {what} over the cached features")
    g.add_argument("--head-lr", type=positive_float, default=None, help=f"unset: each method's own ({lrs})")
    g.add_argument(
        "--shift-bn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="first re-estimate the BN statistics on class-balanced batches (MiSLAS's shifted BN); "
        f"unset: as the exported head's paper does (on for {shifted})",
    )


def needs_init(flag: str) -> Check:
    """A check: ``flag`` (a store_true flag) means nothing without --init."""
    dest = flag.lstrip("-").replace("-", "_")

    def check(args, given) -> str | None:
        if getattr(args, dest) and not args.init:
            return f"{flag} changes the model of --init, and there is no --init: give --init RUN_DIR, or drop {flag}"
        return None

    return check


# ------------------------------------------------------------------------------------------- the run
def default_output(recipe: str, args: argparse.Namespace, model: str | None = None) -> Path:
    """The run folder unless --output is given: runs/<recipe>-<dataset>-<model>-s<seed> for a run that trains a
    timm architecture, runs/<recipe>-<dataset>-s<seed>-on-<start> for one that starts from a run or hub model
    (``--init``: the folder's or the hub model's name), so that runs from different starting points never share a
    folder."""
    if args.output:
        return Path(args.output)
    dataset = args.dataset.replace("hf:", "hf-").replace("/", "-")
    init = getattr(args, "init", None)
    if init:
        start = str(init).rstrip("/").removeprefix("hf-hub:").removeprefix("local-dir:").split("/")[-1]
        return Path("runs") / f"{recipe}-{dataset}-s{args.seed}-on-{start}"
    return Path("runs") / f"{recipe}-{dataset}-{model or args.model}-s{args.seed}"
