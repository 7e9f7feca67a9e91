"""CSA: context-shift augmentation for re-sampling, any timm backbone (Shi et al., NeurIPS 2023).

    accelerate launch recipes/csa.py --help

The recipe is ltzoo.recipes.csa (ltzoo/recipes/csa.py); this file runs it from a checkout. With ltzoo
installed by pip, `accelerate launch -m ltzoo.recipes.csa` does the same from any directory.
"""

from ltzoo.errors import run_main
from ltzoo.recipes.csa import main

if __name__ == "__main__":
    run_main(main, __file__)
