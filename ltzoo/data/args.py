"""The data flags, declared once for every command that loads a dataset (the recipes, ``ltzoo data``,
``ltzoo eval``), and the `load_dataset` keyword arguments they stand for.

    add_data_args(parser)                      # --data-dir, --imbalance, --profile, --val-per-class, lists
    ds = load_dataset(args.dataset, **dataset_kwargs(args))
"""

from __future__ import annotations

import argparse

from ltzoo.config.argtypes import file_of, imbalance_ratio, nonneg_int, positive_int

SEED_HELP = "seed of the long-tail subsampling and the validation draw"


def profile_arg(value: str) -> str:
    """--profile's type: exp, step or step:ETA (`ltzoo.data.profiles.parse_profile`)."""
    from ltzoo.data.profiles import parse_profile

    try:
        parse_profile(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_data_args(parser, seed: bool = False, check_files: bool = True) -> None:
    """Add the flags of `load_dataset`'s keyword arguments (the dataset's name is the caller's own flag).

    Args:
        parser: an ``ArgumentParser`` or argument group.
        seed: also add ``--seed`` (commands whose only seed is the data's; the recipes declare their own).
        check_files: the image files are checked (exist, decode) by default; False: only on ``--check-files``
            or ``--skip-bad-files`` (commands that describe a split list without needing its images, like
            ``ltzoo data``). ``--skip-bad-files`` is there either way: the fix every bad-file error names.
    """
    parser.add_argument("--data-dir", default=None, help="where the dataset's files are")
    parser.add_argument(
        "--imbalance",
        type=imbalance_ratio,
        default=None,
        help="imbalance ratio rho (largest / smallest class); unset: 100 for fmnist_lt and cifar*_lt, "
        "the data as it is for the others",
    )
    parser.add_argument(
        "--profile",
        default=None,
        type=profile_arg,
        metavar="{exp,step,step:ETA}",
        help="long-tail profile of a dataset made long-tailed (--imbalance, or fmnist_lt and "
        "cifar*_lt by default): exponential, or two-level with half the classes (step) or a share ETA of them "
        "(step:0.2, tail-heavy; step:0.8, head-heavy) at the most images; unset: exp there, none for data used "
        "as it is",
    )
    parser.add_argument(
        "--n-max",
        type=positive_int,
        default=None,
        help="training images kept in the largest class (subsampled datasets); unset: as many as the "
        "validation draw leaves (5900 for fmnist_lt). With --imbalance 1: a class-balanced subset "
        "of n-max per class (the size-matched balanced reference of relative accuracy)",
    )
    parser.add_argument(
        "--val-per-class",
        type=nonneg_int,
        default=None,
        help="balanced validation images per class to hold out when the dataset has no val split; unset: 100 "
        "for fmnist_lt, fmnist_ctx_lt, fmnist_target5_lt and cifar10_lt, 0 (none) for the list datasets, 20 for "
        "the others; data used as it is (an image folder without val/ or --imbalance) holds out 20 only where "
        "every class has more than 20 training images, else a quarter of the smallest class's count (rounded "
        "down; none when it has fewer than 4). `ltzoo data` and the recipes print the rule applied (validation: ...)",
    )
    parser.add_argument(
        "--split-protocol",
        default=None,
        choices=("ltzoo", "cao2019"),
        help="how a profile picks the images: ltzoo (a seeded draw after holding out a balanced "
        "validation split) or cao2019 (Cao et al.'s CIFAR-LT, the literature's images whatever "
        "--seed; validation from the images it leaves out, none for the head class; docs/cifar-lt.md); "
        "unset: cao2019 for cifar10_lt and cifar100_lt, ltzoo for the others",
    )
    parser.add_argument(
        "--class-order",
        default=None,
        help="which class keeps the most images under the profile: own (the dataset's order), reverse, "
        "random:<seed>, hard_tail (Fashion-MNIST's classes, worst-recalled get the fewest; "
        "benchmarks/results/hard_tail_order.md), or every class by name or index, comma-separated, "
        "most images first",
    )
    parser.add_argument(
        "--shot-cuts",
        type=nonneg_int,
        nargs=2,
        metavar=("MANY", "FEW"),
        default=None,
        help="many-shot: more than MANY training images, few-shot: fewer than FEW; unset: the "
        "literature's 100 / 20 where they fit the counts, else thirds of the log-count range",
    )
    parser.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="drop image files that are missing or do not decode (the run reports how many) "
        "instead of stopping before training"
        + ("" if check_files else "; checks every image file, as --check-files does"),
    )
    if not check_files:
        parser.add_argument(
            "--check-files", action="store_true", help="also check that every image file exists and decodes"
        )
    if seed:
        parser.add_argument("--seed", type=nonneg_int, default=0, help=SEED_HELP)
    for split, what in (("train", "training"), ("val", "validation"), ("test", "test")):
        parser.add_argument(
            f"--{split}-list",
            type=file_of(
                f"pass the `path label` list of the {what} images, a text file (the published lists: docs/data.md)"
            ),
            default=None,
            help=f"`path label` list of the {what} images (list datasets)",
        )


def dataset_kwargs(args: argparse.Namespace) -> dict:
    """The `load_dataset` keyword arguments of the data flags (and ``--seed``)."""
    return dict(
        data_dir=args.data_dir,
        imbalance=args.imbalance,
        profile=args.profile or "exp",
        seed=args.seed,
        val_per_class=args.val_per_class,
        n_max=getattr(args, "n_max", None),
        train_list=args.train_list,
        val_list=args.val_list,
        test_list=args.test_list,
        class_order=args.class_order,
        shot_cuts=args.shot_cuts,
        check_files=getattr(args, "check_files", True) or getattr(args, "skip_bad_files", False),
        skip_bad=getattr(args, "skip_bad_files", False),
        split_protocol=getattr(args, "split_protocol", None),
    )
