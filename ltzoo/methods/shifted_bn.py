"""Shifted batch normalisation: MiSLAS's BN re-estimation for the classifier stage.

Zhong et al., 2021, "Improving Calibration for Long-Tailed Recognition", CVPR 2021 (dvlab-research/MiSLAS).
Stage 1 sees images drawn instance-balanced; a decoupled classifier stage draws them class-balanced, and the
backbone's BatchNorm statistics no longer match what it is fed. MiSLAS lets the running mean and variance
follow the class-balanced batches of stage 2 "but fix[es] the learnable linear transformation parameters"
(the affine weight and bias): in its code the backbone runs in training mode under ``torch.no_grad()`` and the
optimiser holds only the classifier and the LWS scales. ltzoo does the same in one pass before the features
are cached: the running statistics become the exact mean and variance of each BN's inputs over one
class-balanced epoch of augmented training images (`ltzoo.methods.merge.reestimate_bn`), every other weight (the BN
affine included) unchanged. BN buffers are part of a timm state dict, so an exported model stays plain timm.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from tqdm.auto import tqdm

from ltzoo.data.loader import BatchPreprocess, make_loader
from ltzoo.data.samplers import create_sampler
from ltzoo.methods.heads import HEAD_METHODS
from ltzoo.methods.merge import reestimate_bn

_logger = logging.getLogger(__name__)
#: images per training-mode batch (MiSLAS's and the stage-1 recipes' batch size)
BATCH_SIZE = 128


def uses_shifted_bn(flag: bool | None, classifier: str) -> bool:
    """Whether a run shifts BN: ``--shift-bn`` as given, else what the exported ``classifier``'s paper does
    (`HeadMethod.shift_bn`: MiSLAS's `las`; no classifier stage, 'none': no)."""
    if flag is not None:
        return flag
    method = HEAD_METHODS.get(classifier)
    return bool(method and method.shift_bn)


def shift_batchnorm(
    model: nn.Module,
    ds,
    seed: int,
    channels_last: bool = False,
    workers: int = 0,
    batch_size: int = BATCH_SIZE,
    transform=None,
    progress: bool = False,
) -> nn.Module:
    """Re-estimate ``model``'s BN running statistics on one class-balanced epoch of ``ds``'s training split.

    Batches are drawn by the class-balanced sampler (seeded: every process draws the same) and augmented as
    stage 1 augments them (a random translation of up to 1/8 of the image and a flip, and for a file-backed
    dataset ``transform``, the recipe's timm training transform: ``ltzoo.runfolder.model_io.image_transform(ds, model,
    train=True)``; None for in-memory data). Only the running mean and variance (and the batch counter) change.
    ``progress``: a bar over the batches (the caller shows it on one process only). Returns the model, in eval
    mode.
    """
    sampler = create_sampler("balanced", ds.train.labels, ds.num_classes, seed=seed)
    loader = make_loader(ds.train, batch_size, sampler, transform, workers, drop_last=len(sampler) >= batch_size)
    device = next(model.parameters()).device
    aug = {"crop_padding": ds.input_size[-1] // 8} if ds.train.in_memory else {"crop_padding": 0, "flip": False}
    # files: augmented by `transform`, uint8 out, normalised with its (the model's) mean and std
    mean, std = getattr(transform, "mean", ds.mean), getattr(transform, "std", ds.std)
    prep = BatchPreprocess(mean, std, channels_last=channels_last, **aug)
    prep, gen = prep.to(device), torch.Generator().manual_seed(seed)
    batches = tqdm(loader, desc="shifted BN", leave=False, dynamic_ncols=True, disable=not progress)
    reestimate_bn(model, (prep(x.to(device), train=True, generator=gen) for x, _ in batches))
    _logger.info("shifted BN: statistics re-estimated on one class-balanced epoch (%d draws)", len(sampler))
    return model
