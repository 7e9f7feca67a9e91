"""Vision Transformers for small images ("An Image is Worth 16x16 Words", Dosovitskiy et al., ICLR 2021).

timm's `VisionTransformer` at 28x28 px with 4-px patches (7x7 = 49 tokens and a class token), small
enough to train on a CPU: the ViT of ltzoo's transfer benchmark on Fashion-MNIST (benchmarks/transfer.py).
"""

from __future__ import annotations

from typing import Any

from timm.models._builder import build_model_with_cfg
from timm.models._registry import generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn


def _create_vit_small_images(variant: str, pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Build a VisionTransformer through timm's builder (its checkpoint filter resizes position embeddings)."""
    return build_model_with_cfg(
        VisionTransformer, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **kwargs
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    """Default pretrained cfg: 28x28 one-channel images, normalised to [-1, 1]."""
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (1, 28, 28),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "fixed_input_size": True,
        "mean": (0.5,),
        "std": (0.5,),
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "apache-2.0",
        "paper_ids": "arXiv:2010.11929",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "vit_pico_patch4_28.untrained": _cfg(),
    }
)


@register_model
def vit_pico_patch4_28(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Pico/4 at 28 px: width 64, depth 4, 4 heads, MLP ratio 2 (~0.14M params)."""
    model_args = dict(img_size=28, patch_size=4, in_chans=1, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0)
    return _create_vit_small_images("vit_pico_patch4_28", pretrained, **dict(model_args, **kwargs))
