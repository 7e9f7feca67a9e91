"""GML: retrain the classifier with the geometric mean loss (Du & Wu, CVPR 2023, "No One Left Behind").

    accelerate launch -m ltzoo.recipes.gml --init runs/pretrain-ce-fmnist_lt-resnet32_cifar-s0
    accelerate launch -m ltzoo.recipes.gml --init ltzoo/resnet32-ce-fmnistlt --no-ensemble
    (from a checkout, `accelerate launch recipes/gml.py ...` is the same recipe)

The backbone stays frozen: its features are computed once and every head is trained on the cached
tensors. Beside GML (and GML ensembled with the original head, temperatures chosen on validation) the
recipe reports the decoupling baselines on the same features: cRT, LWS, tau-norm, post-hoc logit
adjustment and weight balancing's classifier stage (class-balanced loss, weight decay, MaxNorm). The
exported model is the GML head (ensembled unless --no-ensemble), folded into the
model's plain linear classifier. It takes seconds, so it always starts afresh (no --resume).
"""

from __future__ import annotations

import argparse
import time

from accelerate.logging import get_logger

from ltzoo.errors import run_main
from ltzoo.methods.heads import HEAD_METHODS, METHODS, Features, Head, ensemble, retrain
from ltzoo.methods.shifted_bn import shift_batchnorm
from ltzoo.metrics import brief, summary_table
from ltzoo.recipes.flags import (
    RecipeParser,
    add_data_group,
    add_ensemble_arg,
    add_head_args,
    add_init_args,
    add_output_args,
    add_system_args,
    default_output,
    recipe_parser,
)
from ltzoo.recipes.recipe import Recipe
from ltzoo.runfolder.model_io import create_model, image_transform
from ltzoo.training.accelerator import apply_channels_last
from ltzoo.training.baseline import baseline_from_features, baseline_record
from ltzoo.training.evaluation import metrics_from_logits, predict
from ltzoo.training.loop import phase

logger = get_logger(__name__)
#: evaluation and feature batches (images; the backbone only runs forward)
EVAL_BATCH = 512


def build_parser() -> RecipeParser:
    """The GML recipe's flags: data, the model to start from, and the heads' training."""
    p = recipe_parser(__doc__, __file__)
    add_data_group(p)
    g = p.add_argument_group("model")
    add_init_args(
        g, "the trained model whose classifier is retrained: a run folder or hub id (required)", new_head=False
    )
    add_system_args(g, speed=False)  # the heads train on features extracted in fp32: no precision to choose
    g = p.add_argument_group("run folder")
    add_output_args(g)
    g = p.add_argument_group("GML")
    g.add_argument(
        "--p", type=float, default=1.0, help="power of the per-class power mean in the loss (1: the paper's)"
    )
    add_head_args(g, "every head")
    add_ensemble_arg(g)
    g.add_argument(
        "--baselines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"also report every other head ({', '.join(m for m in METHODS if m != 'gml')}) on the same features",
    )
    p.set_defaults(shift_bn=False)  # the exported head (gml) is not MiSLAS's: BN shifted only when asked
    p.add_check(_check_init)
    return p


def _check_init(args, given) -> str | None:
    if not args.init:
        return "gml retrains the classifier of a trained model: give --init RUN_DIR or a hub id"
    return None


class GML(Recipe):
    """The classifier retrained on the cached features of a frozen backbone; the heads compared on validation."""

    name = "gml"
    build_parser = staticmethod(build_parser)

    def setup(self) -> None:
        if self.flags.ensemble is None:  # GML's own default: its head is ensembled with the original
            self.decide("ensemble", HEAD_METHODS["gml"].ensembled, "the gml head's default (HEAD_METHODS)")
        args = self.args
        ctx = self.open_context()
        self.ds = ds = self.load_dataset(ctx)
        model = create_model(ds, None, init=args.init)
        self.arch = model.pretrained_cfg.get("architecture") or type(model).__name__  # names the run
        self.open_folder(default_output("gml", args, model=self.arch))
        self.config = self.write_config()
        loaders = ctx.eval_loaders(ds, model, EVAL_BATCH, args.workers, splits=("train", "val", "test"))
        self.prep = ctx.batch_preprocess(ds, model, apply_channels_last(model), crop_padding=0)
        self.model, *prepared = ctx.prepare(model, *loaders.values())
        self.loaders = {k: dl for k, dl in zip(loaders, prepared) if dl is not None}

    def train(self) -> None:
        args, ds, acc = self.args, self.ds, self.accelerator
        net = acc.unwrap_model(self.model)
        t0 = time.perf_counter()
        if args.shift_bn:  # the backbone every head (and the export) sees
            with phase(acc, "shifting BN statistics (one class-balanced epoch of the training images)", logger):
                shift_batchnorm(
                    net,
                    ds,
                    args.seed,
                    self.prep.channels_last,
                    args.workers,
                    transform=image_transform(ds, net, train=True),
                    progress=not args.no_progress and acc.is_local_main_process,
                )
        with phase(acc, f"features ({', '.join(self.loaders)})", logger):
            self.feats = feats = {
                k: Features(
                    *predict(
                        acc,
                        self.model,
                        dl,
                        self.prep,
                        features=True,
                        progress=not args.no_progress,
                        desc=f"features {k}",
                    )
                )
                for k, dl in self.loaders.items()
            }
        self.t_features = time.perf_counter() - t0
        orig = Head.from_module(net.get_classifier())
        counts, val = ds.train_counts, feats.get("val")
        self.heads, self.infos = {"original": orig}, {}
        methods = METHODS if args.baselines else ("gml",)
        n = len(feats["train"].y)
        what = f"fitting {len(methods)} heads on {n:,} training features, {ds.num_classes:,} classes"
        with phase(acc, what, logger) as t:
            for method in methods:
                self.heads[method], self.infos[method] = retrain(
                    method,
                    orig,
                    feats["train"],
                    val,
                    counts,
                    epochs=args.head_epochs,
                    lr=args.head_lr,
                    seed=args.seed,
                    p=args.p,
                    progress=not args.no_progress and acc.is_local_main_process,
                )
            self.heads["gml+ens"], self.infos["gml+ens"] = ensemble(
                orig, self.heads["gml"], val if self.choose else None, counts
            )
            if val is not None and not self.choose:
                self.infos["gml+ens"]["chosen_on"] = self.choose_rule
        self.t_heads = t.seconds
        self.chosen = "gml+ens" if args.ensemble else "gml"
        self.heads[self.chosen].write_to(net.get_classifier())

    def evaluate(self) -> dict:
        ds, feats = self.ds, self.feats
        self.table = {
            name: {
                s: metrics_from_logits(head(feats[s].x), feats[s].y, ds.train_counts, ds.shot_thresholds, s)
                for s in ("val", "test")
                if s in feats
            }
            for name, head in self.heads.items()
        }
        return self.final_evaluation(
            self.model, {"val": self.loaders.get("val"), "test": self.loaders["test"]}, self.prep, ds
        )

    def finish(self, metrics: dict) -> dict:
        args, chosen = self.args, self.chosen
        results = self.results(
            {
                "recipe": "gml",
                "method": chosen,
                "model": self.arch,
                "parents": [args.init],
                "classifier": self.infos.get("gml"),
                "ensemble": self.infos["gml+ens"] if args.ensemble else None,
                "heads": self.infos,  # what every head chose (its tau, weight decay, ...) and on which split
                "selection": "temperatures, taus and wb's weight decay on the validation split",
                "config": self.config,
                # features: BN shifted (--shift-bn) and the feature pass; heads: every head fitted; then the final
                # evaluation and the calibration (`Recipe.final_evaluation`)
                "seconds": {"features": self.t_features, "heads": self.t_heads, **self.timings},
                "wall_seconds": time.perf_counter() - self.start,
                "table": {k: {s: brief(v) for s, v in d.items()} for k, d in self.table.items()},
            },
            metrics,
            self.ds,
        )
        baseline = (
            baseline_from_features(
                self.feats,
                self.ds,
                f"the --init model's frozen features{' (BN statistics shifted)' if args.shift_bn else ''}",
                args.seed,
            )
            if args.linear_baseline
            else None
        )
        results["baseline"] = baseline_record(baseline)
        self.folder.export(self.model, self.ds, results, title=f"{self.arch} {chosen}")
        self.table[f"exported ({chosen})"] = metrics  # the chosen head, calibrated
        self.report_baseline(self.table, metrics, baseline, f"the exported {chosen}")
        self.accelerator.print(summary_table(self.table, calibration=True))
        self.accelerator.print(
            f"exported: {chosen}; features {self.t_features:.1f} s, all heads {self.t_heads:.1f} s; "
            f"run folder: {self.folder.path}"
        )
        return results


main = GML.main


if __name__ == "__main__":
    run_main(main, __file__)
