"""Training defaults that follow the data and the starting point.

A flag the user leaves unset is decided here from what the run knows before it trains: how many training images
it has, and where its weights come from. Each decision comes back with the rule that chose it; the recipe records
both (`ltzoo.recipes.recipe.Recipe.decide`: the opening lines, run_config.yaml's ``resolved``, results.json and the
card), and any flag given on the command line or in a config wins.

- **Where the weights come from** (`start_kind`): ``scratch`` (a timm architecture's random initialisation),
  ``transfer`` (weights trained on other data or classes: ``--pretrained``, ``--pretrained-file``, ``--init X
  --new-head``) or ``resume`` (``--init X``: a model of these classes, trained further).
- **The optimiser** (`optimiser_defaults`): from scratch, SGD with Nesterov momentum at lr 0.1 and weight decay
  5e-4 (the CIFAR-LT recipes'); from weights, AdamW with weight decay 0.05 at a rate that suits what trains:
  every weight 1e-3 with timm's layer-wise decay 0.75, LoRA/LoHa/IA3 adapters 3e-3, biases or the classifier alone
  1e-2 (measured on the transfer benchmark, benchmarks/results/transfer_*.md; no combination diverged there or on
  the size benchmark, benchmarks/results/size.md).
- **The batch** (`choose_batch_size`): the usual 128, or on a small training set the largest power of two that
  leaves at least `BATCHES_PER_EPOCH` batches per epoch (never below `MIN_BATCH`).
- **The budget in optimiser steps** (`choose_epochs`): the usual number of epochs, or on a small training set as
  many as give at least `MIN_STEPS` optimiser steps (from weights: `MIN_STEPS_FROM_WEIGHTS`; at most `MAX_EPOCHS`):
  a folder of 600 images trains for as many updates as the 15 epochs of Fashion-MNIST-LT's 14,600 images give,
  which a budget in epochs (90 steps there) does not.
- **The warm-up**: the usual epoch, or `WARMUP_SHARE` of a longer schedule.
- **What validation chooses** (`choose_on_validation`): the epoch and the ensemble ratio are chosen on the
  validation split when its smallest class has at least `MIN_VAL_PER_CLASS` images (--min-val-per-class); with
  fewer, a class's recall moves in steps of 25% or more and a choice made on it is noise, so fixed rules choose
  instead: the last epoch (the cosine schedule has decayed to 0 there) and the ensemble ratio 1.
"""

from __future__ import annotations

import math

#: what trains from where: SGD from scratch; AdamW (decoupled weight decay 0.05) from weights, its rate by --peft
SCRATCH = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4, "layer_decay": None}
FROM_WEIGHTS = {
    "none": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "layer_decay": 0.75},
    "lora": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05, "layer_decay": None},
    "loha": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05, "layer_decay": None},
    "ia3": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05, "layer_decay": None},
    "bias": {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.05, "layer_decay": None},
    "head": {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.05, "layer_decay": None},
}
#: BTM's member rate (--member-lr) by optimiser and --peft: members fine-tune a trained model, at a rate below its own
MEMBER_LR = {"sgd": 0.01, "momentum": 0.01, "adamw": {"none": 5e-4, "bias": 5e-3, "head": 5e-3}}
MEMBER_LR_ADAPTERS = 2e-3

USUAL_BATCH = 128
MIN_BATCH = 16
BATCHES_PER_EPOCH = 16
#: the fewest optimiser steps an unset --epochs gives stage 1: from scratch, about the 15 epochs x 114 steps of the
#: README's Fashion-MNIST-LT run (which it leaves unchanged); from weights, a third of that
MIN_STEPS = 1500
MIN_STEPS_FROM_WEIGHTS = 500
MAX_EPOCHS = 400
#: the usual stage-1 length in epochs: from scratch (ltzoo.recipes.pretrain's; BTM's own stage 1 takes 15), from
#: weights (LIFT's 10 epochs on ImageNet-LT and Places-LT)
USUAL_EPOCHS = 30
USUAL_EPOCHS_FROM_WEIGHTS = 10
WARMUP_SHARE = 0.03


def start_kind(args) -> str:
    """``scratch``, ``transfer`` (weights trained on other data or classes) or ``resume`` (``--init`` of these
    classes)."""
    if getattr(args, "pretrained", False) or getattr(args, "pretrained_file", None):
        return "transfer"
    if getattr(args, "init", None):
        return "transfer" if getattr(args, "new_head", False) else "resume"
    return "scratch"


def recorded_optimiser(init: str | None) -> str | None:
    """The optimiser the run folder ``init`` was trained with (its run_config.yaml), or None (a hub id, a folder
    without a readable record)."""
    from pathlib import Path

    import yaml

    path = Path(init or "") / "run_config.yaml"
    try:
        config = yaml.safe_load(path.read_text()) if init and path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None
    value = config.get("optimizer") if isinstance(config, dict) else None
    return value if value in ("sgd", "momentum", "adamw") else None


def describe_start(args) -> str:
    kind = start_kind(args)
    if kind == "scratch":
        return f"{args.model} from its random initialisation"
    source = (
        "timm's pretrained weights"
        if getattr(args, "pretrained", False)
        else (getattr(args, "pretrained_file", None) or args.init)
    )
    return f"{'a new classifier on ' if getattr(args, 'new_head', False) else ''}{source}"


def optimiser_defaults(args) -> tuple[dict, str]:
    """The optimiser, rate, weight decay and layer decay for this start and --peft, and the rule that chose them.

    An --optimizer given by hand keeps its family's values: SGD's rate and decay, or AdamW's (with the layer decay
    only when fine-tuning every weight of a model that starts from weights)."""
    kind, peft = start_kind(args), getattr(args, "peft", "none")
    # an --lr or --weight-decay given without --optimizer was SGD's before these defaults: it stays SGD's
    by_hand = [f for f in ("lr", "weight_decay") if getattr(args, f, None) is not None]
    optimizer = getattr(args, "optimizer", None)
    recorded = recorded_optimiser(args.init) if kind == "resume" and optimizer is None and not by_hand else None
    if optimizer is None:
        # --init RUN (a model of these classes): RUN's own optimiser; a hub model records none: SGD, as before
        optimizer = recorded or (
            "sgd" if kind == "resume" or by_hand or (kind == "scratch" and peft == "none") else "adamw"
        )
    if optimizer in ("sgd", "momentum"):
        values = {**SCRATCH, "optimizer": optimizer}
        name = "SGD, Nesterov momentum 0.9" if optimizer == "sgd" else "SGD, momentum 0.9"
        given = getattr(args, "optimizer", None)
        why = (
            f"--optimizer {optimizer}"
            if given
            else f"{' and '.join('--' + f.replace('_', '-') for f in by_hand)} given without --optimizer"
            if by_hand
            else f"the optimiser --init {args.init} was trained with"
            if recorded
            else f"--init {args.init}, a model of these classes that records no optimiser"
            if kind == "resume"
            else "from scratch"
        )
        return values, f"{why}: {name}, lr 0.1, weight decay 5e-4 unless given (the CIFAR-LT recipes')"
    values = dict(FROM_WEIGHTS.get(peft, FROM_WEIGHTS["none"]))
    what = {"none": "every weight trains", "head": "the classifier alone", "bias": "biases and the classifier"}.get(
        peft, f"{peft} adapters and the classifier"
    )
    if kind == "scratch":
        values["layer_decay"] = None  # a random initialisation has no lower layers to keep
        why = f"AdamW from scratch ({what})"
    elif recorded:
        why = f"the optimiser --init {args.init} was trained with ({what})"
    else:
        why = f"fine-tuning ({describe_start(args)}; {what})"
    decay = f", layer-wise decay {values['layer_decay']:g}" if values["layer_decay"] else ""
    return values, f"{why}: AdamW, lr {values['lr']:g}, weight decay {values['weight_decay']:g}{decay} unless given"


def member_lr(optimizer: str, peft: str) -> tuple[float, str]:
    """BTM's member rate for an unset --member-lr, and its rule."""
    if optimizer in ("sgd", "momentum"):
        return MEMBER_LR[optimizer], f"{optimizer} members fine-tune a trained model at a tenth of stage 1's 0.1"
    lr = MEMBER_LR["adamw"].get(peft, MEMBER_LR_ADAPTERS)
    what = "every weight" if peft == "none" else peft
    return lr, f"AdamW members ({what}): {lr:g}, below the fine-tuning rate of their start (the transfer benchmark's)"


def choose_batch_size(train_images: int, processes: int = 1, usual: int = USUAL_BATCH) -> tuple[int, str]:
    """The batch per process for an unset --batch-size, and its rule."""
    per_process = train_images // max(processes, 1)
    if per_process >= usual * BATCHES_PER_EPOCH:
        return usual, f"the usual {usual} ({per_process:,} training images per process)"
    fit = 2 ** int(math.log2(max(per_process // BATCHES_PER_EPOCH, 1)))
    batch = max(MIN_BATCH, min(usual, fit))
    batch = min(batch, max(per_process, 1))
    return batch, (
        f"{per_process:,} training images per process, at least {BATCHES_PER_EPOCH} batches per epoch "
        f"(a power of two, {MIN_BATCH} to {usual})"
    )


def choose_epochs(steps_per_epoch: int, usual: int, min_steps: int, max_epochs: int = MAX_EPOCHS) -> tuple[int, str]:
    """The epochs for an unset --epochs: ``usual``, or the fewest that give ``min_steps`` optimiser steps (at most
    ``max_epochs``), and its rule."""
    steps_per_epoch = max(steps_per_epoch, 1)
    if usual * steps_per_epoch >= min_steps:
        return usual, (
            f"the usual {usual} epochs ({usual * steps_per_epoch:,} optimiser steps of {steps_per_epoch:,}, at least "
            f"the {min_steps:,} a run needs)"
        )
    epochs = min(max_epochs, math.ceil(min_steps / steps_per_epoch))
    capped = f", capped at {max_epochs} epochs" if epochs == max_epochs else ""
    return epochs, (
        f"{epochs * steps_per_epoch:,} optimiser steps: a budget of at least {min_steps:,} steps "
        f"(the usual {usual} epochs give {usual * steps_per_epoch:,} at {steps_per_epoch} steps per epoch){capped}"
    )


def choose_steps_epochs(steps: int, steps_per_epoch: int) -> tuple[int, str]:
    """The epochs of ``--steps``: the fewest that hold that many optimiser steps."""
    epochs = max(1, math.ceil(steps / max(steps_per_epoch, 1)))
    return epochs, f"--steps {steps}: {epochs} epochs of {steps_per_epoch} optimiser steps"


def choose_warmup(epochs: int, usual: float = 1.0) -> tuple[float, str]:
    """The warm-up epochs for an unset --warmup-epochs: the usual one, or `WARMUP_SHARE` of a longer schedule."""
    share = round(WARMUP_SHARE * epochs, 2)
    if share <= usual:
        return usual, f"the usual {usual:g} epoch{'s' * (usual != 1)} of linear warm-up"
    return share, f"{WARMUP_SHARE:.0%} of the {epochs} epochs"


#: the fewest validation images in a class for the run to choose on validation (--min-val-per-class)
MIN_VAL_PER_CLASS = 5


def choose_on_validation(val_counts: list[int] | None, minimum: int = MIN_VAL_PER_CLASS) -> tuple[bool, str]:
    """Whether the run chooses its epoch and ensemble ratio on validation, and the rule that said so."""
    if not val_counts:
        return False, "no validation split: fixed rules (the last epoch, ensemble ratio 1)"
    fewest = min(val_counts)
    if fewest >= minimum:
        return True, f"on validation: its smallest class has {fewest} images, at least {minimum}"
    return False, (
        f"fixed rules (the last epoch, ensemble ratio 1), not validation: its smallest class has {fewest} image"
        f"{'s' * (fewest != 1)}, fewer than {minimum} (--min-val-per-class), so its recall moves in steps of "
        f"{1 / max(fewest, 1):.0%} and a choice made on it would be noise"
    )
