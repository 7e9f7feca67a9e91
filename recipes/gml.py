"""GML: retrain the classifier of a trained model with the geometric mean loss (+ the decoupling baselines).

    accelerate launch recipes/gml.py --help

The recipe is ltzoo.recipes.gml (ltzoo/recipes/gml.py); this file runs it from a checkout. With ltzoo
installed by pip, `accelerate launch -m ltzoo.recipes.gml` does the same from any directory.
"""

from ltzoo.errors import run_main
from ltzoo.recipes.gml import main

if __name__ == "__main__":
    run_main(main, __file__)
