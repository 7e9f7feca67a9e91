"""The recipes, each a module holding one recipe class (named steps over a run context: `ltzoo.recipes.recipe`)
and its ``build_parser()`` and ``main(argv=None)``:

- `ltzoo.recipes.pretrain`: stage 1, any timm backbone with the long-tail losses and samplers;
- `ltzoo.recipes.btm`: Balanced Training and Merging (it runs stage 1 itself without --init);
- `ltzoo.recipes.gml`: classifier retraining with the geometric mean loss, and the decoupling baselines;
- `ltzoo.recipes.csa`: context-shift augmentation (two heads, instance and context-shifted balanced batches).

Run one with ``accelerate launch -m ltzoo.recipes.<name> [-c CONFIG] [flags]`` (or, from a checkout,
``accelerate launch recipes/<name>.py``). The configs under ``configs/<dataset>/<name>.yaml`` ship with
the package; ``-c fmnist_lt/ce`` names one, ``ltzoo configs`` lists them. The shared parts: the command
line and configs (`ltzoo.recipes.flags`), the run context (`ltzoo.recipes.run_context`: the Accelerator, the
data, the final evaluation), the recipe classes' steps (`ltzoo.recipes.recipe`), the optimiser and schedule
(`ltzoo.training.optim`) and BTM's member fine-tuning (`ltzoo.recipes.members`); the run folder is
`ltzoo.runfolder.folder`'s. docs/architecture.md describes the layout.
"""

RECIPES = ("pretrain", "btm", "gml", "csa")
