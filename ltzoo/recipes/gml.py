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

from accelerate import Accelerator
from accelerate.utils import set_seed

from ltzoo.accel import apply_channels_last
from ltzoo.data import load_dataset
from ltzoo.data.args import dataset_kwargs
from ltzoo.data.loader import BatchPreprocess, make_loader
from ltzoo.engine import metrics_from_logits, predict
from ltzoo.heads import METHODS, Features, Head, ensemble, retrain
from ltzoo.metrics import brief, summary_table
from ltzoo.recipes.common import (add_data_group, add_init_args, add_output_args, add_system_args, configure_threads,
                                  default_output, recipe_parser, RecipeParser, setup_logging)
from ltzoo.argtypes import positive_float, positive_int
from ltzoo.errors import run_main
from ltzoo.recipes.runfolder import create_run_folder, discard_unfinished_folders, finish_run
from ltzoo.runs import create_model, image_transform, write_run_config
from ltzoo.shifted_bn import shift_batchnorm


def _check_init(args, given) -> str | None:
    if not args.init:
        return "gml retrains the classifier of a trained model: give --init RUN_DIR or a hub id"
    return None


def build_parser() -> RecipeParser:
    """The GML recipe's flags: data, the model to start from, and the heads' training."""
    p = recipe_parser(__doc__, __file__)
    add_data_group(p)
    g = p.add_argument_group("model")
    add_init_args(g, "the trained model whose classifier is retrained: a run folder or hub id (required)",
                  new_head=False)
    add_system_args(g, speed=False)  # the heads train on features extracted in fp32: no precision to choose
    g = p.add_argument_group("run folder")
    add_output_args(g)
    g = p.add_argument_group("GML")
    g.add_argument("--p", type=float, default=1.0, help="power of the per-class power mean in the loss (1: the paper's)")
    g.add_argument("--head-epochs", type=positive_int, default=30, help="epochs over the cached training features")
    g.add_argument("--head-lr", type=positive_float, default=None, help="unset: 0.05 for gml, 0.1 for crt/lws, 0.01 for wb")
    g.add_argument("--ensemble", action=argparse.BooleanOptionalAction, default=True,
                   help="export GML ensembled with the original head (temperatures chosen on validation)")
    g.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                   help="also report cRT, LWS, tau-norm and logit adjustment on the same features")
    g.add_argument("--shift-bn", action="store_true", help="first re-estimate BN statistics on class-balanced batches (MiSLAS)")
    p.add_check(_check_init)
    return p


def main(argv=None) -> dict:
    """Parse ``argv`` (default: the command line) and run GML; returns results.json's content."""
    args = build_parser().parse_args(argv)
    with discard_unfinished_folders():  # bad input found after the run folder was made: no half-made folder
        return run(args)


def run(args: argparse.Namespace) -> dict:
    """Run GML with parsed arguments (``build_parser().parse_args``); returns results.json's content."""
    setup_logging()
    accelerator = Accelerator()  # the features are extracted in fp32 whatever it says
    configure_threads(accelerator, args.threads)
    set_seed(args.seed)
    start = time.perf_counter()
    ds = load_dataset(args.dataset, **dataset_kwargs(args))
    model = create_model(ds, None, init=args.init)
    arch = model.pretrained_cfg.get("architecture") or type(model).__name__  # names the run
    out = create_run_folder(default_output("gml", args, model=arch), accelerator)
    config = write_run_config(out, {**vars(args), "recipe": "gml", "output": str(out)}) \
        if accelerator.is_main_process else vars(args)
    tf = image_transform(ds, model)
    splits = {"train": ds.train, "val": ds.val, "test": ds.test}
    names = [k for k, v in splits.items() if v is not None]
    loaders = accelerator.prepare(*[make_loader(splits[k], 512, transform=tf, num_workers=args.workers) for k in names])
    loaders = dict(zip(names, loaders))
    prep = BatchPreprocess(ds.mean, ds.std, channels_last=apply_channels_last(model)).to(accelerator.device)
    model = accelerator.prepare(model)

    t0 = time.perf_counter()
    if args.shift_bn:  # the backbone every head (and the export) sees
        shift_batchnorm(accelerator.unwrap_model(model), ds, args.seed, prep.channels_last, args.workers)
    feats = {k: Features(*predict(accelerator, model, dl, prep, features=True, progress=not args.no_progress,
                                  desc=f"features {k}")) for k, dl in loaders.items()}
    t_features = time.perf_counter() - t0
    net = accelerator.unwrap_model(model)
    orig = Head.from_module(net.get_classifier())
    counts, val = ds.train_counts, feats.get("val")
    heads, infos = {"original": orig}, {}
    t0 = time.perf_counter()
    for method in (METHODS if args.baselines else ("gml",)):
        heads[method], infos[method] = retrain(method, orig, feats["train"], val, counts, epochs=args.head_epochs,
                                               lr=args.head_lr, seed=args.seed, p=args.p)
    heads["gml+ens"], infos["gml+ens"] = ensemble(orig, heads["gml"], val, counts)
    t_heads = time.perf_counter() - t0

    table = {name: {s: metrics_from_logits(head(feats[s].x), feats[s].y, counts, ds.shot_thresholds, s)
                    for s in ("val", "test") if s in feats} for name, head in heads.items()}
    chosen = "gml+ens" if args.ensemble else "gml"
    heads[chosen].write_to(net.get_classifier())
    results = finish_run(accelerator, model, ds, out, {"val": loaders.get("val"), "test": loaders["test"]}, prep, {
        "recipe": "gml", "method": chosen, "model": arch, "parents": [args.init],
        "classifier": infos.get("gml"), "ensemble": infos["gml+ens"] if args.ensemble else None,
        "heads": infos,  # what every head chose (its tau, weight decay, ...) and on which split
        "selection": "temperatures, taus and wb's weight decay on the validation split", "config": config,
        "seconds": {"features": t_features, "heads": t_heads}, "wall_seconds": time.perf_counter() - start,
        "table": {k: {s: brief(v) for s, v in d.items()} for k, d in table.items()},
    }, title=f"{arch} {chosen}")
    accelerator.print(summary_table(table))
    accelerator.print(f"exported: {chosen}; features {t_features:.1f} s, all heads {t_heads:.1f} s; run folder: {out}")
    accelerator.end_training()
    return results


if __name__ == "__main__":
    run_main(main, __file__)
