"""ltzoo: a timm-compatible model zoo and fine-tuning recipes for long-tailed image classification.

Importing ltzoo registers its architectures (the CIFAR-style ResNets of the long-tail literature)
in timm's model registry, so ``timm.create_model('resnet32_cifar')`` works after ``import ltzoo``.
"""
__version__ = "0.1.0"

from ltzoo import models  # noqa: F401  (registers architectures with timm)
