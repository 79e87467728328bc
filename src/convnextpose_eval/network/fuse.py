"""Fold inference-mode BatchNorm into the neighbouring convolution where that is exact.

In eval mode a BatchNorm is a per-channel affine map, so it merges into the
convolution before it (conv -> BN) or, when that convolution pads nothing,
after it (BN -> conv). That removes a full pass over the activations per
layer. The backbone's final BN feeds a zero-padded conv, where folding would
change the border, so it stays.
"""

from __future__ import annotations

import torch
from torch import nn

from .convnext import ConvNeXtBNBackbone, ConvNeXtBNBlock, ConvNeXtPose, HeadLayer


def _affine(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias - norm.running_mean * scale


@torch.no_grad()
def fold_into_previous(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """conv -> BN becomes one conv."""
    scale, shift = _affine(norm)
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias.copy_(conv.bias * scale + shift)


@torch.no_grad()
def fold_into_next(norm: nn.BatchNorm2d, conv: nn.Conv2d) -> None:
    """BN -> conv becomes one conv; exact only for a conv without padding."""
    assert conv.padding in ((0, 0), 0) and conv.groups == 1
    scale, shift = _affine(norm)
    conv.bias.add_((conv.weight * shift.view(1, -1, 1, 1)).sum(dim=(1, 2, 3)))
    conv.weight.mul_(scale.view(1, -1, 1, 1))


def fold_batchnorm(model: ConvNeXtPose) -> ConvNeXtPose:
    """Fold every foldable BatchNorm in place (the model must be in eval mode); returns the model."""
    assert not model.training, "BatchNorm folds only with running statistics (eval mode)"
    backbone: ConvNeXtBNBackbone = model.backbone
    stem_conv, stem_norm = backbone.downsample_layers[0]
    fold_into_previous(stem_conv, stem_norm)
    backbone.downsample_layers[0][1] = nn.Identity()
    for layer in backbone.downsample_layers[1:]:
        fold_into_next(layer[0], layer[1])
        layer[0] = nn.Identity()
    blocks = [m for m in model.modules() if isinstance(m, (ConvNeXtBNBlock, HeadLayer))]
    for block in blocks:
        fold_into_previous(block.dwconv, block.norm)
        block.norm = nn.Identity()
    return model
