"""Examples of fmnist_ctx_lt: the first images of every class in each split, as one PNG.

    python benchmarks/ctx_examples.py [--seed 0] [--per-class 8] [--data-dir DIR]

Writes benchmarks/results/fmnist_ctx_lt_examples.png. In the train block each tail-half class (the
lower rows) shows one context throughout; head-half classes and every val/test image vary.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ltzoo.data import load_dataset
from ltzoo.data.fmnist_ctx_lt import save_example_grid

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.add_argument("--per-class", type=int, default=8, help="images per class and split")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files (default: Debian's copy)")
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "fmnist_ctx_lt_examples.png"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ds = load_dataset("fmnist_ctx_lt", data_dir=args.data_dir, seed=args.seed)
    save_example_grid(ds, args.output, per_class=args.per_class)


if __name__ == "__main__":
    main()
