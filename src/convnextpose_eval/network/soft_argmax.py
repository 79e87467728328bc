"""Integral (soft-argmax) regression from a 3D heatmap volume to joint coordinates."""

from __future__ import annotations

import torch


def soft_argmax_3d(heatmaps: torch.Tensor, joint_num: int, depth_dim: int) -> torch.Tensor:
    """Expected (x, y, z) under a softmax over each joint's whole D x H x W volume.

    ``heatmaps`` is (B, joint_num * depth_dim, H, W); returns (B, joint_num, 3) in
    heatmap units (x, y in pixels of the heatmap, z in depth bins).
    """
    batch, _, height, width = heatmaps.shape
    volume = heatmaps.reshape(batch, joint_num, depth_dim * height * width).float()
    prob = torch.softmax(volume, dim=2).reshape(batch, joint_num, depth_dim, height, width)
    device = heatmaps.device
    x = (prob.sum(dim=(2, 3)) * torch.arange(width, device=device, dtype=prob.dtype)).sum(dim=2)
    y = (prob.sum(dim=(2, 4)) * torch.arange(height, device=device, dtype=prob.dtype)).sum(dim=2)
    z = (prob.sum(dim=(3, 4)) * torch.arange(depth_dim, device=device, dtype=prob.dtype)).sum(dim=2)
    return torch.stack((x, y, z), dim=2)
