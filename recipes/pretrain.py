"""Stage 1: train any timm backbone on long-tailed data with the classic losses and samplers.

    accelerate launch recipes/pretrain.py --help

The recipe is ltzoo.recipes.pretrain (ltzoo/recipes/pretrain.py); this file runs it from a checkout. With ltzoo
installed by pip, `accelerate launch -m ltzoo.recipes.pretrain` does the same from any directory.
"""

from ltzoo.errors import run_main
from ltzoo.recipes.pretrain import main

if __name__ == "__main__":
    run_main(main, __file__)
