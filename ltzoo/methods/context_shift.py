"""Context-shift augmentation (CSA): Shi et al., "How Re-sampling Helps for Long-Tail Learning?",
NeurIPS 2023, arXiv 2310.18236.

Class-balanced re-sampling repeats the few tail images until the model ties their irrelevant context
(a background) to their label. CSA trains one shared backbone with two linear heads:

- branch 1 on instance-sampled batches (CE or logit-adjusted CE), which learns the objects;
- branch 2 on class-balanced batches whose images carry a *context shift*: backgrounds cut from
  instance-sampled images that branch 1 already classifies well are pasted on,
  ``x = lam * m * x_bank + (1 - lam * m) * x``, ``lam ~ U(0, 1)`` per batch, labels unchanged.

The backgrounds come from Grad-CAM of branch 1 for the true class at the last feature map, min-max
normalised per image and upsampled to the input: ``m = (1 - cam) ** 2`` weighs the background
(`gradcam_masks`). Only images whose true-class probability under branch 1 reaches a threshold (0.8)
enter a FIFO bank of (image, mask) pairs (`ContextBank`, 128 by default). The loss is branch 1's plus
branch 2's. Evaluation averages the two heads' logits, which is one linear layer (`fold_heads`), so
the exported model is plain timm.

As in the authors' code: Grad-CAM runs with the network in eval mode, on the backbone's map computed
without gradients; the bank is updated from each instance batch before the balanced batch is shifted;
shifting starts after ``warmup_epochs`` and once the bank holds a batch's worth of images; until then
branch 2 does not train (``branch2_before_shift=True`` trains it on unshifted batches instead).
The training loop (the CSA step over an instance and a balanced batch, and the epoch) is the recipe's,
`ltzoo.recipes.csa`: this module is the method and imports no loop.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn

_logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- Grad-CAM
def _as_map(t: torch.Tensor, net: nn.Module) -> torch.Tensor:
    """A backbone output as an NCHW map: CNN maps pass through; ViT-style tokens drop their prefix and fold."""
    if t.ndim == 4:
        return t
    grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
    if t.ndim == 3 and grid is not None:
        tokens = t[:, getattr(net, "num_prefix_tokens", 0) :]
        return tokens.transpose(1, 2).reshape(t.shape[0], t.shape[2], *grid)
    raise ValueError(
        f"Grad-CAM needs forward_features to return an NCHW map (or ViT tokens with patch_embed.grid_size); "
        f"{type(net).__name__} returned shape {tuple(t.shape)}"
    )


def gradcam_masks(
    model: nn.Module, head: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Background masks of ``x`` from Grad-CAM of ``head`` for the true classes ``y`` (Shi et al., 2023).

    The map is timm's ``forward_features``; the logits are ``head(forward_head(map, pre_logits=True))``.
    Grad-CAM weighs the map's channels by the spatial mean of the true-class logit's gradient, keeps the
    positive part, min-max normalises it per image and upsamples it (bicubic) to the input size; the
    mask is ``(1 - cam) ** 2``, near 1 on the background. The network runs in eval mode (restored
    after) and only ``torch.autograd.grad`` of the map is taken, so no gradient reaches any parameter.

    Args:
        model: a timm model (its own classifier is not used).
        head: the classifier to explain (branch 1's), applied to the pooled pre-logit features.
        x: input batch (N, C, H, W), normalised as the model expects.
        y: true labels (N,).

    Returns:
        (masks (N, 1, H, W) float in [0, 1], detached logits (N, num_classes) of the eval-mode pass).
    """
    was_training, head_training = model.training, head.training
    model.eval()
    head.eval()
    try:
        with torch.no_grad():
            fmap = model.forward_features(x)
        fmap = fmap.detach().float().requires_grad_(True)
        with torch.enable_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            logits = head(model.forward_head(fmap, pre_logits=True))
            (grad,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), fmap)
    finally:
        model.train(was_training)
        head.train(head_training)
    with torch.no_grad():
        fmap, grad = _as_map(fmap.detach(), model), _as_map(grad, model)
        cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * fmap).sum(1, keepdim=True))
        lo, hi = cam.amin(dim=(2, 3), keepdim=True), cam.amax(dim=(2, 3), keepdim=True)
        cam = (cam - lo) / (hi - lo).clamp_min(1e-12)  # an all-zero cam gives mask 1: all background
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp_(0, 1)
        return (1 - cam) ** 2, logits.detach()


# ------------------------------------------------------------------------------------- two-head model
def fold_heads(head1: nn.Linear, head2: nn.Linear) -> nn.Linear:
    """One linear layer whose logits are the mean of the two heads': W = (W1 + W2) / 2, b = (b1 + b2) / 2."""
    if head1.weight.shape != head2.weight.shape:
        raise ValueError(f"heads differ in shape: {tuple(head1.weight.shape)} vs {tuple(head2.weight.shape)}")
    has_bias = head1.bias is not None or head2.bias is not None
    fc = nn.Linear(
        head1.in_features, head1.out_features, bias=has_bias, device=head1.weight.device, dtype=head1.weight.dtype
    )
    with torch.no_grad():
        fc.weight.copy_((head1.weight + head2.weight.to(head1.weight)) / 2)
        if has_bias:
            b1 = head1.bias if head1.bias is not None else torch.zeros_like(fc.bias)
            b2 = head2.bias if head2.bias is not None else torch.zeros_like(fc.bias)
            fc.bias.copy_((b1 + b2.to(b1)) / 2)
    return fc


class CSAModel(nn.Module):
    """A timm model whose own classifier is branch 1's head, plus branch 2's linear head.

    ``model(x1, x2)`` returns (branch 1's logits of x1, branch 2's logits of x2), each batch through
    the shared backbone on its own (batch-norm statistics stay per batch); ``model(x)`` returns the
    averaged logits the folded head gives, for evaluation. `export` gives the plain timm model.

    Args:
        net: a timm model with an ``nn.Linear`` classifier (``get_classifier()``).
        head2: branch 2's head; default: a copy of ``net``'s classifier.
    """

    def __init__(self, net: nn.Module, head2: nn.Linear | None = None):
        super().__init__()
        fc = net.get_classifier()
        if not isinstance(fc, nn.Linear):
            raise TypeError(
                f"CSA needs a model with a plain nn.Linear classifier; {type(net).__name__} has {type(fc).__name__}"
            )
        self.net = net
        self.head2 = copy.deepcopy(fc) if head2 is None else head2

    @property
    def head1(self) -> nn.Linear:
        """Branch 1's head: the timm model's own classifier."""
        return self.net.get_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logit features of the shared backbone."""
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor, x2: torch.Tensor | None = None):
        if x2 is None:
            f = self.features(x)
            return (self.head1(f) + self.head2(f)) / 2
        return self.head1(self.features(x)), self.head2(self.features(x2))

    def export(self) -> nn.Module:
        """A copy of the timm model with the folded head as its classifier (plain timm, one linear head)."""
        net = copy.deepcopy(self.net)
        net.get_classifier().load_state_dict(fold_heads(self.head1, self.head2).state_dict())
        return net


# -------------------------------------------------------------------------------------- context bank
class ContextBank:
    """A FIFO bank of (image, background mask) pairs from well-classified instance-sampled images.

    Args:
        capacity: pairs kept; the oldest leave first (128 in the paper).
    """

    def __init__(self, capacity: int = 128):
        if capacity < 1:
            raise ValueError(f"context bank capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.images: torch.Tensor | None = None
        self.masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.images is None else len(self.images)

    def add(
        self, images: torch.Tensor, masks: torch.Tensor, probs_true_class: torch.Tensor, threshold: float = 0.8
    ) -> int:
        """Append the images whose true-class probability is >= ``threshold``; returns how many entered."""
        keep = probs_true_class.to(images.device) >= threshold
        n = int(keep.sum())
        if n:
            x, m = images[keep].detach(), masks[keep].detach()
            if self.images is not None:
                x = torch.cat([self.images.to(x), x])
                m = torch.cat([self.masks.to(m), m])
            self.images, self.masks = x[-self.capacity :], m[-self.capacity :]
        return n

    def ready(self, n: int) -> bool:
        """True when the bank holds at least ``n`` pairs (enough to shift a batch of ``n`` without repeats)."""
        return len(self) >= n

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` (images, masks): distinct pairs in a random order, or drawn with replacement if fewer are held."""
        if not len(self):
            raise RuntimeError("the context bank is empty; add images before sampling")
        if n <= len(self):
            idx = torch.randperm(len(self), generator=generator)[:n]
        else:
            idx = torch.randint(len(self), (n,), generator=generator)
        idx = idx.to(self.images.device)
        return self.images[idx], self.masks[idx]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (CPU), for `accelerate`'s ``register_for_checkpointing`` or safetensors."""
        empty = torch.zeros(0)
        return {
            "capacity": torch.tensor(self.capacity),
            # contiguous: batches may come in channels_last, which safetensors does not store
            "images": empty if self.images is None else self.images.detach().cpu().contiguous(),
            "masks": empty if self.masks is None else self.masks.detach().cpu().contiguous(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.capacity = int(state["capacity"])
        held = state["images"].numel() > 0
        self.images = state["images"].clone() if held else None
        self.masks = state["masks"].clone() if held else None


# ------------------------------------------------------------------------------------- context shift
def context_shift(x_bal: torch.Tensor, bank_x: torch.Tensor, bank_mask: torch.Tensor, lam: float) -> torch.Tensor:
    """Paste the bank's contexts on a batch: ``lam * m * x_bank + (1 - lam * m) * x_bal``."""
    m = lam * bank_mask.to(x_bal)
    return m * bank_x.to(x_bal) + (1 - m) * x_bal


def shift_batch(
    x: torch.Tensor, y: torch.Tensor, bank: ContextBank, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Context-shift a balanced batch with pairs drawn from ``bank`` and ``lam ~ U(0, 1)``.

    Returns (shifted images, the same labels, lam); draws pairs, then lam, from ``generator``.
    """
    bank_x, bank_mask = bank.sample(len(x), generator)
    lam = float(torch.rand((), generator=generator))
    return context_shift(x, bank_x, bank_mask, lam), y, lam
