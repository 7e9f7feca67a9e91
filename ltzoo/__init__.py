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
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a moved module's old path as its new module, with a DeprecationWarning naming the new path."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {MOVED[spec.name]} in ltzoo 0.2.0; the old path goes in 0.3.0",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())

from ltzoo import models  # noqa: E402, F401  (registers architectures with timm)
