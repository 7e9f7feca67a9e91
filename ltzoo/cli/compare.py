"""``ltzoo compare A B``: two models on the same test images, each metric's difference with a paired-bootstrap
interval and p-value.

    ltzoo compare zoo/resnet20-ce-fmnistlt zoo/resnet20-bsce-fmnistlt --dataset fmnist_lt
    ltzoo compare a/predictions.safetensors b/predictions.safetensors

A and B are run folders, hub ids or timm names (evaluated on ``--dataset``), or predictions files
(`ltzoo.runfolder.predictions`, written by ``ltzoo eval --save-predictions`` and by every recipe). Two predictions
files of different test sets are refused; so is a predictions file that is not of ``--dataset``'s split.
"""

from __future__ import annotations

from pathlib import Path

from ltzoo.cli.data import _load, add_bootstrap_args, add_data_args, add_split_args, predict_split
from ltzoo.cli.output import emit
from ltzoo.errors import UserError

#: metrics compared with an interval: the long-tail ones (per class) and the per-image means
COMPARED = ("acc", "mean_class_acc", "hm", "gm", "min_recall", "many", "medium", "few", "top5", "nll", "brier")


def _add_compare(p) -> None:
    p.add_argument("a", help="model A: a run folder, hub id, timm name, or predictions file")
    p.add_argument("b", help="model B: the same kinds")
    p.add_argument(
        "--dataset", default=None, help="the dataset to evaluate models on (not needed for two predictions files)"
    )
    add_split_args(p)
    add_bootstrap_args(p)  # flags shared with ltzoo eval, declared once in ltzoo.cli.data
    add_data_args(p, seed=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _is_predictions(ref: str) -> bool:
    return Path(ref).is_file() and ref.endswith(".safetensors")


def per_image(logits, labels) -> dict:
    """The per-image numbers whose test-set means are metrics: correct, top-5 hit, NLL, Brier."""
    import torch

    log_p = logits.double().log_softmax(-1)
    onehot = torch.nn.functional.one_hot(labels, logits.shape[1]).double()
    out = {
        "correct": (logits.argmax(-1) == labels).double(),
        "nll": -log_p.gather(1, labels[:, None]).squeeze(1),
        "brier": ((log_p.exp() - onehot) ** 2).sum(-1),
    }
    if logits.shape[1] > 5:
        out["top5"] = (logits.topk(5, -1).indices == labels[:, None]).any(-1).double()
    return out


def _inputs(args):
    """(logits A, logits B, labels, train counts, shot cuts, what was compared on)."""
    from ltzoo.runfolder.predictions import check_predictions_match, check_same_test_set, load_predictions

    preds = {r: load_predictions(r) for r in (args.a, args.b) if _is_predictions(r)}
    models = [r for r in (args.a, args.b) if r not in preds]
    if models and not args.dataset:
        raise UserError(
            f"{models[0]} is a model, which needs --dataset to be evaluated on",
            "pass --dataset NAME (and the data flags it was trained with)",
        )
    if len(preds) == 2:
        check_same_test_set(preds[args.a], preds[args.b], args.split)
    ds = _load(args) if args.dataset else None
    if ds is not None:
        for p in preds.values():
            check_predictions_match(p, ds, args.split)
    out, labels = {}, None
    for ref in (args.a, args.b):
        if ref in preds:
            z, y = preds[ref].split(args.split)
        else:
            split = ds.val if args.split == "val" else ds.test
            if split is None:
                raise UserError(f"{ds.name} has no {args.split} split", "compare on --split test")
            z, y = predict_split(ref, ds, split, args.batch_size, args.workers)
        if labels is not None and not bool((y == labels).all()):
            raise UserError(
                "the two models were evaluated on differently ordered images",
                "compare predictions of the same split, or evaluate both models here",
            )
        out[ref], labels = z, y
    if ds is not None:
        counts, cuts, where = ds.train_counts, ds.shot_thresholds, f"{ds.name} {args.split}"
    else:
        p = preds[args.a]
        counts, cuts, where = p.train_counts, p.shot_thresholds, f"{p.meta['dataset']} {args.split}"
    return out[args.a], out[args.b], labels, counts, cuts, where


def cmd_compare(args) -> int:
    """Compare two models on the same images: each metric's difference and its p-value.

    The difference B - A of each metric, its paired-bootstrap 95% interval and p-value."""
    from accelerate import PartialState

    from ltzoo.metrics import paired_bootstrap, probability_metrics

    if args.bootstrap < 1:
        raise UserError(
            "ltzoo compare needs --bootstrap of 1 or more (its intervals and p-values are the bootstrap's)",
            "pass --bootstrap 1000, or leave it out",
        )
    za, zb, labels, counts, cuts, where = _inputs(args)
    if not PartialState().is_main_process:  # every process predicted its share; the main one reports
        return 0
    many, few = cuts
    res = paired_bootstrap(
        labels,
        per_image(za, labels),
        per_image(zb, labels),
        len(counts),
        counts,
        many,
        few,
        args.bootstrap,
        args.bootstrap_seed,
    )
    ece = {k: probability_metrics(z, labels)["ece"] for k, z in (("a", za), ("b", zb))}
    res["ece"] = {"a": ece["a"], "b": ece["b"], "difference": ece["b"] - ece["a"], "interval": None, "p_value": None}
    result = {"a": args.a, "b": args.b, "split": where, "images": int(labels.numel()), "metrics": res}
    emit(result, args.json, compare_table(result))
    return 0


def compare_table(result: dict) -> str:
    """The comparison as Markdown."""
    m = result["metrics"]
    lines = [
        f"A = {result['a']}, B = {result['b']}, on {result['split']} ({result['images']} images); "
        f"{m['bootstrap']['method']}, {m['bootstrap']['resamples']} resamples, seed {m['bootstrap']['seed']}.",
        "",
        "| metric | A | B | B - A | 95% interval | p |",
        "|---|---|---|---|---|---|",
    ]
    for k in (*COMPARED, "ece"):
        if k not in m:
            continue
        r = m[k]
        scale, fmt = (1, "{:.4f}") if k in ("nll", "brier") else (100, "{:.2f}")
        f = lambda v, fmt=fmt, scale=scale: "-" if v is None else fmt.format(scale * v)  # noqa: E731
        iv = "-" if r["interval"] is None else f"{f(r['interval'][0])} to {f(r['interval'][1])}"
        p = "-" if r["p_value"] is None else f"{r['p_value']:.3f}"
        lines.append(
            f"| {k}{'' if k in ('nll', 'brier') else ' %'} | {f(r['a'])} | {f(r['b'])} | "
            f"{'+' if r['difference'] >= 0 else ''}{f(r['difference'])} | {iv} | {p} |"
        )
    lines.append("")
    lines.append(
        "p: the paired bootstrap's two-sided p-value of no difference; its floor is 1 / (resamples + 1) "
        f"({1 / (m['bootstrap']['resamples'] + 1):.4f}: smaller p-values need more --bootstrap). ECE is binned, "
        "so it has no interval here (its difference is the plain one)."
    )
    return "\n".join(lines)


COMMANDS = {"compare": (cmd_compare, _add_compare)}
