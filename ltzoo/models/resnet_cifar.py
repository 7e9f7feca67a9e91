"""CIFAR-style ResNets (ResNet-20/32/56) for timm.

The small residual networks of Section 4.2 of `Deep Residual Learning for Image Recognition`
(He et al., CVPR 2016, https://arxiv.org/abs/1512.03385), the backbone of most long-tailed CIFAR
work since `Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss` (LDAM,
Cao et al., NeurIPS 2019, https://arxiv.org/abs/1906.07413):

* a 3x3 convolution stem (16 channels, stride 1) + BN + ReLU, no stem pooling,
* three stages of ``n`` BasicBlocks at widths 16/32/64, stride 2 at the start of stages 2 and 3
  (depth ``6n + 2``: n=3, 5, 9 for ResNet-20, -32, -56),
* global average pooling and a linear classifier ``fc``.

The block, its projection shortcut and the head are timm's own (``timm.models.resnet.BasicBlock``,
``downsample_conv``, ``timm.layers.create_classifier``), so parameter names match timm's ``ResNet``
(``layerN.M.conv1``, ``.downsample.0``, ``fc``) and checkpoints are plain timm state dicts.

Shortcut: this implementation uses the paper's **option B**, a 1x1 convolution + BN projection
wherever the shape changes (the first block of stages 2 and 3), identity elsewhere. The paper's
CIFAR experiments (and LDAM's code) use option A, a parameter-free zero-padded strided identity;
option B adds 2,752 parameters to every depth (~0.6% of ResNet-32) and is otherwise the same net.

All convolutions are Kaiming-normal initialised and pooling is global, so every model accepts any
``in_chans`` (e.g. 1 for 28x28 Fashion-MNIST) and any input size; the feature map is 1/4 of the
input (rounded up) and ``num_features`` is 64.

Importing this module registers ``resnet20_cifar``, ``resnet32_cifar`` and ``resnet56_cifar`` in
timm's model registry (pretrained tag ``untrained``: no weights are distributed).
"""

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d, create_classifier
from timm.models._builder import build_model_with_cfg
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from timm.models._registry import generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, downsample_conv

__all__ = ["ResNetCifar"]  # model_registry will add each entrypoint fn to this

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _make_stage(
    in_chs: int,
    out_chs: int,
    depth: int,
    stride: int,
    act_layer: type[nn.Module] = nn.ReLU,
    norm_layer: type[nn.Module] = nn.BatchNorm2d,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """Build one stage of ``depth`` timm ``BasicBlock``s, the first one strided.

    The first block gets a 1x1 conv + BN projection shortcut (``downsample_conv``, option B) when
    the stride or the width changes; every other shortcut is the identity.

    Args:
        in_chs: Input channels of the stage.
        out_chs: Output channels of every block.
        depth: Number of blocks.
        stride: Stride of the first block.
        act_layer: Activation layer class.
        norm_layer: Normalization layer class.
        device: Parameter device.
        dtype: Parameter dtype.

    Returns:
        The stage.
    """
    dd = {"device": device, "dtype": dtype}
    blocks = []
    for i in range(depth):
        block_in, block_stride = (in_chs, stride) if i == 0 else (out_chs, 1)
        downsample = None
        if block_stride != 1 or block_in != out_chs:
            downsample = downsample_conv(block_in, out_chs, 1, stride=block_stride, norm_layer=norm_layer, **dd)
        blocks.append(
            BasicBlock(
                block_in,
                out_chs,
                stride=block_stride,
                downsample=downsample,
                act_layer=act_layer,
                norm_layer=norm_layer,
                **dd,
            )
        )
    return nn.Sequential(*blocks)


class ResNetCifar(nn.Module):
    """CIFAR-style ResNet of He et al. 2016, Section 4.2 (ResNet-20/32/56/110 family).

    Attributes ``conv1``/``bn1``/``act1`` (stem), ``layer1``..``layer3`` (stages), ``global_pool``
    and ``fc`` (head) follow the naming of timm's ``ResNet``.
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (5, 5, 5),
        channels: tuple[int, ...] = (16, 32, 64),
        num_classes: int = 10,
        in_chans: int = 3,
        global_pool: str = "avg",
        stem_width: int = 16,
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        drop_rate: float = 0.0,
        zero_init_last: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        """
        Args:
            layers: Number of BasicBlocks per stage (n, n, n) for depth 6n + 2.
            channels: Output width of each stage.
            num_classes: Number of classes, 0 for no classifier (``fc`` is then an identity).
            in_chans: Number of input image channels.
            global_pool: Global pooling type ('avg', 'max', 'avgmax', 'catavgmax', '' for none).
            stem_width: Width of the 3x3 stem convolution.
            act_layer: Activation layer class.
            norm_layer: Normalization layer class.
            drop_rate: Dropout probability before the classifier.
            zero_init_last: Zero-init the last BN of each block (off in the paper).
            device: Parameter device.
            dtype: Parameter dtype.
        """
        super().__init__()
        assert len(layers) == len(channels), "one depth per stage width"
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        self.conv1 = nn.Conv2d(in_chans, stem_width, 3, stride=1, padding=1, bias=False, **dd)
        self.bn1 = norm_layer(stem_width, **dd)
        self.act1 = act_layer(inplace=True)
        self.feature_info = [dict(num_chs=stem_width, reduction=1, module="act1")]

        prev_chs, reduction = stem_width, 1
        for i, (depth, chs) in enumerate(zip(layers, channels)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            stage = _make_stage(prev_chs, chs, depth, stride, act_layer=act_layer, norm_layer=norm_layer, **dd)
            self.add_module(f"layer{i + 1}", stage)
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"layer{i + 1}"))
            prev_chs = chs
        self.stage_names = tuple(f"layer{i + 1}" for i in range(len(layers)))

        self.num_features = prev_chs
        self.global_pool, self.fc = self._create_head(num_classes, global_pool, **dd)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()

        self.init_weights(zero_init_last=zero_init_last)

    def _create_head(
        self,
        num_classes: int,
        global_pool: str,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[SelectAdaptivePool2d, nn.Module]:
        """Create the global pool and the linear classifier (identity if ``num_classes`` is 0)."""
        return create_classifier(self.num_features, num_classes, pool_type=global_pool, device=device, dtype=dtype)

    @torch.jit.ignore
    def init_weights(self, zero_init_last: bool = False) -> None:
        """Kaiming-normal (fan-in, ReLU gain) init for convs and the classifier, as in LDAM's code; BN to identity.

        Args:
            zero_init_last: Zero-initialize the last BN in each residual branch.
        """
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Create regex patterns for parameter grouping (layer-wise LR decay etc.).

        Args:
            coarse: Group per stage if True, per block otherwise.

        Returns:
            Dictionary mapping group names to regex patterns.
        """
        return dict(stem=r"^conv1|bn1", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Enable or disable gradient checkpointing.

        Args:
            enable: Whether to enable gradient checkpointing.
        """
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> str | nn.Module:
        """Get the classifier module.

        Args:
            name_only: Return the classifier's attribute name instead of the module.

        Returns:
            Classifier module or name.
        """
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier head.

        Args:
            num_classes: Number of classes for the new classifier, 0 for none.
            global_pool: Global pooling type, the current pooling is kept if None.
        """
        ref = next(self.parameters())
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.num_classes = num_classes
        self.global_pool, self.fc = self._create_head(num_classes, global_pool, device=ref.device, dtype=ref.dtype)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.global_pool.train(self.training)
        self.fc.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward features that returns intermediates (index 0 is the stem, 1..3 the stages).

        Args:
            x: Input image tensor.
            indices: Take last n features if int, all if None, select matching indices if sequence.
            norm: Unused, there is no final norm layer.
            stop_early: Stop iterating over stages when the last desired intermediate is hit.
            output_fmt: Shape of intermediate feature outputs, only 'NCHW'.
            intermediates_only: Only return intermediate features.

        Returns:
            Intermediate features, or a tuple of (final features, intermediate features).
        """
        assert output_fmt in ("NCHW",), "Output shape must be NCHW."
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)

        x = self.act1(self.bn1(self.conv1(x)))
        if 0 in take_indices:
            intermediates.append(x)
        stage_names = self.stage_names[:max_index] if stop_early else self.stage_names
        for feat_idx, name in enumerate(stage_names, start=1):
            x = getattr(self, name)(x)
            if feat_idx in take_indices:
                intermediates.append(x)

        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Prune the stages (and head) not required for the given intermediates.

        Args:
            indices: Indices of intermediate features to keep.
            prune_norm: Unused, there is no final norm layer.
            prune_head: Whether to remove the classifier head.

        Returns:
            List of kept indices.
        """
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        for name in self.stage_names[max_index:]:
            setattr(self, name, nn.Sequential())
        if max_index < len(self.stage_names):
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            prune_head = True
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and stages: (B, in_chans, H, W) -> (B, num_features, H/4, W/4)."""
        x = self.act1(self.bn1(self.conv1(x)))
        stages = [getattr(self, name) for name in self.stage_names]
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(stages, x, flatten=True)
        else:
            for stage in stages:
                x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pool, dropout and classifier.

        Args:
            x: Feature map from ``forward_features``.
            pre_logits: Return the pooled features (B, head_hidden_size) instead of logits.

        Returns:
            Logits or pooled features.
        """
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        return self.forward_head(self.forward_features(x))


def _create_resnet_cifar(variant: str, pretrained: bool = False, **kwargs: Any) -> ResNetCifar:
    """Build a ResNetCifar through timm's builder (pretrained cfg, weights, features_only).

    Args:
        variant: Registered model name.
        pretrained: Load weights named by the pretrained cfg (e.g. a ``local-dir:`` export).
        **kwargs: ResNetCifar and builder arguments.

    Returns:
        The model, or a FeatureListNet over stem + 3 stages when ``features_only=True``.
    """
    return build_model_with_cfg(
        ResNetCifar,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3)),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs: Any) -> dict[str, Any]:
    """Default pretrained cfg: CIFAR-10 preprocessing at 32x32."""
    return {
        "url": url,
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "apache-2.0",
        "paper_ids": "arXiv:1512.03385",
        "paper_name": "Deep Residual Learning for Image Recognition",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "resnet20_cifar.untrained": _cfg(),
        "resnet32_cifar.untrained": _cfg(),
        "resnet56_cifar.untrained": _cfg(),
    }
)


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetCifar:
    """ResNet-20 for CIFAR (3 blocks per stage, ~0.27M params)."""
    model_args = dict(layers=(3, 3, 3))
    return _create_resnet_cifar("resnet20_cifar", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet32_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetCifar:
    """ResNet-32 for CIFAR (5 blocks per stage, ~0.47M params), the LDAM long-tail backbone."""
    model_args = dict(layers=(5, 5, 5))
    return _create_resnet_cifar("resnet32_cifar", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet56_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetCifar:
    """ResNet-56 for CIFAR (9 blocks per stage, ~0.86M params)."""
    model_args = dict(layers=(9, 9, 9))
    return _create_resnet_cifar("resnet56_cifar", pretrained, **dict(model_args, **kwargs))
