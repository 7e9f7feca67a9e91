"""Architectures timm lacks, registered in timm's registry on import."""

from ltzoo.models import (
    resnet_cifar,  # noqa: F401
    vit_small_images,  # noqa: F401
)
