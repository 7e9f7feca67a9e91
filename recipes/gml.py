"""GML: retrain the classifier of a trained model with the geometric mean loss (+ the decoupling baselines).

    accelerate launch recipes/gml.py --help

The recipe is ltzoo.recipes.gml (ltzoo/recipes/gml.py); this file runs it from a checkout. With ltzoo
installed by pip, `accelerate launch -m ltzoo.recipes.gml` does the same from any directory.
"""
from ltzoo.recipes.gml import main
from ltzoo.recipes.common import run_cli

if __name__ == "__main__":
    run_cli(main)
