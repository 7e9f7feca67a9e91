"""BTM: Balanced Training and Merging (stage 1 if no --init, balanced members, merge, classifier).

    accelerate launch recipes/btm.py --help

The recipe is ltzoo.recipes.btm (ltzoo/recipes/btm.py); this file runs it from a checkout. With ltzoo
installed by pip, `accelerate launch -m ltzoo.recipes.btm` does the same from any directory.
"""

from ltzoo.errors import run_main
from ltzoo.recipes.btm import main

if __name__ == "__main__":
    run_main(main, __file__)
