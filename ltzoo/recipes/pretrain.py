"""Stage 1: train any timm backbone on long-tailed data with the classic losses and samplers.

    accelerate launch -m ltzoo.recipes.pretrain -c fmnist_lt/ce
    accelerate launch -m ltzoo.recipes.pretrain --dataset fmnist_lt --model resnet32_cifar --loss bsce --epochs 30
    (from a checkout, `accelerate launch recipes/pretrain.py ...` is the same recipe)

Writes a run folder (see ltzoo.runfolder.model_io): timm's config.json + model.safetensors, results.json, the
per-class recall plot, log.jsonl and run_config.yaml. The best epoch is chosen on the balanced
validation split (by HM); the test split is evaluated once, on the chosen model. Restarted with the
same --output, a run continues from its last complete checkpoint.
"""

from __future__ import annotations

import argparse

from ltzoo.config.argtypes import nonneg_float, nonneg_int, unit_interval
from ltzoo.data import create_sampler
from ltzoo.data.loader import make_loader
from ltzoo.errors import run_main
from ltzoo.methods.losses import create_loss, list_losses
from ltzoo.methods.losses.factory import soft_target_losses
from ltzoo.recipes.defaults import USUAL_EPOCHS
from ltzoo.recipes.flags import RecipeParser, add_finetune_flags, add_tau, add_training_flags, recipe_parser
from ltzoo.recipes.recipe import TrainingRecipe
from ltzoo.training.loop import train_one_epoch


def _check_losses(args, given) -> str | None:
    mixing = bool(args.mixup or args.cutmix)
    if mixing and args.loss not in soft_target_losses():
        *others, last = soft_target_losses()
        return (
            f"--mixup/--cutmix make soft targets, which --loss {args.loss} cannot take: use --loss "
            f"{', '.join(others)} or {last}, or drop --mixup/--cutmix"
        )
    if args.label_smoothing and args.loss != "ce" and not mixing:
        return (
            f"--label-smoothing smooths the targets of --loss ce (or, with --mixup/--cutmix, the mixed targets), "
            f"not those of --loss {args.loss}: drop --label-smoothing, or use --loss ce"
        )
    if args.tau != 1.0 and args.loss != "la":
        return f"--tau is the strength of --loss la, not of --loss {args.loss}: drop --tau, or use --loss la"
    if args.drw_epoch is not None and args.loss != "ldam_drw":
        return "--drw-epoch is the re-weighting epoch of --loss ldam_drw: drop it, or use --loss ldam_drw"
    return None


def build_parser() -> RecipeParser:
    """The stage-1 recipe's flags, and the combinations it refuses."""
    p = recipe_parser(__doc__, __file__)
    add_training_flags(p)
    add_finetune_flags(p)
    g = p.add_argument_group("stage 1")
    g.add_argument("--loss", default="ce", choices=list_losses(), help="the training loss (ltzoo.methods.losses)")
    g.add_argument(
        "--sampler",
        default="instance",
        choices=("instance", "balanced", "sqrt", "progressive"),
        help="how training images are drawn (ltzoo.data.samplers)",
    )
    g.add_argument(
        "--label-smoothing",
        type=unit_interval,
        default=0.0,
        help="for --loss ce; with --mixup/--cutmix, applied once, by timm's Mixup, to any loss",
    )
    add_tau(g)
    g.add_argument(
        "--drw-epoch",
        type=nonneg_int,
        default=None,
        help="LDAM-DRW re-weighting start epoch (--loss ldam_drw); unset: 80%% of --epochs",
    )
    g.add_argument(
        "--mixup", type=nonneg_float, default=0.0, help="timm mixup alpha (0: off; losses that take soft targets)"
    )
    g.add_argument(
        "--cutmix", type=nonneg_float, default=0.0, help="timm cutmix alpha (0: off; losses that take soft targets)"
    )
    p.add_check(_check_losses)
    return p


def loss_kwargs(args: argparse.Namespace) -> dict:
    """The loss's hyper-parameters from the flags (label smoothing: the loss's only without mixup)."""
    smoothing = 0.0 if (args.mixup or args.cutmix) else args.label_smoothing  # timm's Mixup smooths instead
    if args.loss == "ldam_drw":  # the re-weighting epoch: 80% of the run's epochs (decided by then if unset)
        drw = args.drw_epoch if args.drw_epoch is not None else int(0.8 * args.epochs)
        return {"s": 1.0, "drw_epoch": drw}
    return {
        "ce": {"smoothing": smoothing},
        "la": {"tau": args.tau},
        # s = 30 is the paper's scale for a cosine classifier; timm's heads are plain linear layers,
        # whose logits already carry their scale: s = 1 keeps training stable
        "ldam": {"s": 1.0},
    }.get(args.loss, {})


class Pretrain(TrainingRecipe):
    """Stage 1: one model, one loss, one sampler; the epoch chosen on validation."""

    name = "pretrain"
    build_parser = staticmethod(build_parser)

    def __init__(self, args: argparse.Namespace, ctx=None, usual_epochs: int | None = None):
        """``usual_epochs``: the usual length from scratch, for a composing recipe (BTM's stage 1: 15)."""
        super().__init__(args, ctx)
        self._usual_epochs = usual_epochs

    def usual_epochs(self) -> int:
        usual = super().usual_epochs()
        return self._usual_epochs if self._usual_epochs and usual == USUAL_EPOCHS else usual

    def run_name(self) -> str:
        return f"pretrain-{self.args.loss}"

    def train_loaders(self, ds, transform) -> list:
        args = self.args
        sampler = create_sampler(
            args.sampler, ds.train.labels, ds.num_classes, seed=args.seed, total_epochs=args.epochs
        )
        return [make_loader(ds.train, self.batch_size, sampler, transform, args.workers, drop_last=True)]

    def build_loss(self, ds) -> None:
        args = self.args
        self.loss_fn = create_loss(args.loss, ds.train_counts, **loss_kwargs(args)).to(self.accelerator.device)
        self.mixup = None
        if args.mixup or args.cutmix:
            from timm.data import Mixup

            self.mixup = Mixup(
                mixup_alpha=args.mixup,
                cutmix_alpha=args.cutmix,
                label_smoothing=args.label_smoothing,
                num_classes=ds.num_classes,
            )

    def train_epoch(self, epoch: int) -> dict:
        args = self.args
        return train_one_epoch(
            self.accelerator,
            self.model,
            self.train_dls[0],
            self.loss_fn,
            self.optimizer,
            self.prep,
            self.scheduler,
            epoch=epoch,
            seed=args.seed,
            mixup=self.mixup,
            progress=not args.no_progress,
        )

    def result_fields(self) -> dict:
        args = self.args
        return {
            "recipe": "pretrain",
            "method": args.loss if args.sampler == "instance" else f"{args.loss}+{args.sampler}",
        }

    def title(self) -> str:
        return f"{self.arch} {self.args.loss}"


main = Pretrain.main


if __name__ == "__main__":
    run_main(main, __file__)
