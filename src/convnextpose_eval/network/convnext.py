"""ConvNeXtPose: a ConvNeXt backbone with BatchNorm, a light upsampling head and soft-argmax.

Module names follow the released checkpoints' keys (after the ``module.``
prefix is stripped), so a state dict loads strictly without renaming.
"""

from __future__ import annotations

import torch
from torch import nn

from .soft_argmax import soft_argmax_3d
from .spec import ArchSpec


class ConvNeXtBNBlock(nn.Module):
    """Depthwise conv, BatchNorm, inverted 1x1 bottleneck with ReLU; residual add, no layer scale."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.norm = nn.BatchNorm2d(channels)
        self.pwconv1 = nn.Conv2d(channels, 4 * channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.pwconv2 = nn.Conv2d(4 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))


class ConvNeXtBNBackbone(nn.Module):
    """Four stages at strides 4, 8, 16, 32; a final BatchNorm on the stride-32 map."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...], block_kernel: int, in_channels: int = 3) -> None:
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(in_channels, dims[0], 4, stride=4), nn.BatchNorm2d(dims[0]))
        self.downsample_layers = nn.ModuleList([stem])
        for prev, nxt in zip(dims[:-1], dims[1:]):
            self.downsample_layers.append(nn.Sequential(nn.BatchNorm2d(prev), nn.Conv2d(prev, nxt, 2, stride=2)))
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBNBlock(dim, block_kernel) for _ in range(depth)))
            for depth, dim in zip(depths, dims)
        )
        self.norm = nn.BatchNorm2d(dims[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return self.norm(x)


class HeadLayer(nn.Module):
    """Depthwise conv, BatchNorm, 1x1 conv with ReLU, then optional bilinear x2 (align_corners=True)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, upsample: bool) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(in_channels, in_channels, kernel, padding=kernel // 2, groups=in_channels)
        self.norm = nn.BatchNorm2d(in_channels)
        self.pwconv = nn.Conv2d(in_channels, out_channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.upsample = nn.UpsamplingBilinear2d(scale_factor=2) if upsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.act(self.pwconv(self.norm(self.dwconv(x)))))


class PoseHead(nn.Module):
    """Three head layers then a 1x1 conv to joint_num * depth_dim heatmap channels."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        in_channels = spec.dims[-1]
        for index, (kernel, upsample) in enumerate(zip(spec.head_kernels, spec.head_upsample), start=1):
            self.add_module(f"deconv_layers_{index}", HeadLayer(in_channels, spec.head_channels, kernel, upsample))
            in_channels = spec.head_channels
        self.layer_count = len(spec.head_kernels)
        self.final_layer = nn.Conv2d(in_channels, spec.joint_num * spec.depth_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index in range(1, self.layer_count + 1):
            x = getattr(self, f"deconv_layers_{index}")(x)
        return self.final_layer(x)


class ConvNeXtPose(nn.Module):
    """Image batch (B, 3, S, S), normalized, to joint coordinates (B, J, 3) in heatmap units."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = ConvNeXtBNBackbone(spec.depths, spec.dims, spec.block_kernel)
        self.head = PoseHead(spec)

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """(B, joint_num * depth_dim, H, W) heatmap logits, before the soft-argmax."""
        return self.head(self.backbone(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return soft_argmax_3d(self.heatmaps(images), self.spec.joint_num, self.spec.depth_dim)


def count_parameters(model: nn.Module) -> int:
    """Learnable parameters (BatchNorm running statistics are buffers, not counted), as the paper counts."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: ConvNeXtPose) -> int:
    """Multiply-accumulates of one forward pass, from torch's own FLOP counter (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    size = model.spec.input_size
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size, device=device))
    model.train(was_training)
    return counter.get_total_flops() // 2
