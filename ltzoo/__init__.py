"""ltzoo: a timm-compatible model zoo and fine-tuning recipes for long-tailed image classification.

Importing ltzoo registers its architectures (the CIFAR-style ResNets of the long-tail literature)
in timm's model registry, so ``timm.create_model('resnet32_cifar')`` works after ``import ltzoo``.

The package is built in floors, one folder each (docs/architecture.md): ``config`` (flag types, the resolution
record), ``data`` and ``metrics``, ``methods`` and ``models``, ``runfolder``, ``training``, ``recipes``, ``hub`` and
``cli``; ``errors`` (the one-line error contract) and ``files`` (atomic writes) stay at the top.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.2.0"

#: Modules that moved in 0.2.0 (old path -> new path). The old paths still import, with a DeprecationWarning,
#: until 0.3.0.
MOVED = {
    "ltzoo.accel": "ltzoo.training.accelerator",
    "ltzoo.adapters": "ltzoo.methods.adapters",
    "ltzoo.argtypes": "ltzoo.config.argtypes",
    "ltzoo.csa": "ltzoo.methods.context_shift",
    "ltzoo.engine": "ltzoo.training.loop",
    "ltzoo.evaluation": "ltzoo.training.evaluation",
    "ltzoo.heads": "ltzoo.methods.heads",
    "ltzoo.losses": "ltzoo.methods.losses",
    "ltzoo.merge": "ltzoo.methods.merge",
    "ltzoo.numerics": "ltzoo.training.numerics",
    "ltzoo.predictions": "ltzoo.runfolder.predictions",
    "ltzoo.runs": "ltzoo.runfolder.model_io",
    "ltzoo.shifted_bn": "ltzoo.methods.shifted_bn",
    "ltzoo.losses.base": "ltzoo.methods.losses.long_tail_loss",
    "ltzoo.losses.gml": "ltzoo.methods.losses.geometric_mean",
    "ltzoo.recipes.base": "ltzoo.recipes.recipe",
    "ltzoo.recipes.common": "ltzoo.recipes.flags",
    "ltzoo.recipes.context": "ltzoo.recipes.run_context",
    "ltzoo.recipes.optim": "ltzoo.training.optim",
    "ltzoo.data.cao2019": "ltzoo.data.cifar_lt",
    "ltzoo.data.context": "ltzoo.data.fmnist_ctx_lt",
}


def moved_to(name: str) -> str | None:
    """The new path of a module that moved (a module of a moved package too: ``ltzoo.losses.ce``), or None."""
    if name in MOVED:
        return MOVED[name]
    old = next((o for o in sorted(MOVED, key=len, reverse=True) if name.startswith(o + ".")), None)
    return MOVED[old] + name[len(old) :] if old else None


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a moved module's old path as its new module, with a DeprecationWarning naming the new path."""

    def __init__(self) -> None:
        self._specs: dict = {}

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if moved_to(name) else None

    def create_module(self, spec):
        new = moved_to(spec.name)
        warnings.warn(
            f"{spec.name} moved to {new} in ltzoo 0.2.0; the old path goes in 0.3.0", DeprecationWarning, stacklevel=2
        )
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__  # the import system sets the alias's spec on it: put it back
        return module

    def exec_module(self, module):
        module.__spec__ = self._specs.pop(module.__spec__.name, module.__spec__)


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())  # before the path finder, which would load a second copy

from ltzoo import models  # noqa: E402, F401  (registers architectures with timm)
