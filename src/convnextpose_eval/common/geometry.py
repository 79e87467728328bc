"""Camera geometry and the mapping between heatmap coordinates and camera space (millimetres)."""

from __future__ import annotations

import torch


def camera_to_pixel(cam: torch.Tensor, focal: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Pinhole projection; keeps camera depth as the third coordinate."""
    z = cam[..., 2]
    x = cam[..., 0] / (z + 1e-8) * focal[..., 0, None] + center[..., 0, None]
    y = cam[..., 1] / (z + 1e-8) * focal[..., 1, None] + center[..., 1, None]
    return torch.stack((x, y, z), dim=-1)


def pixel_to_camera(pixel: torch.Tensor, focal: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Inverse of camera_to_pixel for points (..., J, 3) holding (u, v, camera depth)."""
    z = pixel[..., 2]
    x = (pixel[..., 0] - center[..., 0, None]) / focal[..., 0, None] * z
    y = (pixel[..., 1] - center[..., 1, None]) / focal[..., 1, None] * z
    return torch.stack((x, y, z), dim=-1)


def heatmap_to_camera(
    coords: torch.Tensor,
    bbox: torch.Tensor,
    root_depth: torch.Tensor,
    focal: torch.Tensor,
    center: torch.Tensor,
    heatmap_size: int,
    depth_dim: int,
    depth_range: float,
) -> torch.Tensor:
    """Back-project soft-argmax output (B, J, 3) in heatmap units to camera space in mm.

    x, y scale from the heatmap to the crop's bbox in the image; depth bins span
    ``depth_range`` mm centred on the root depth; then the pinhole model inverts.
    """
    u = coords[..., 0] / heatmap_size * bbox[:, 2, None] + bbox[:, 0, None]
    v = coords[..., 1] / heatmap_size * bbox[:, 3, None] + bbox[:, 1, None]
    z = (coords[..., 2] / depth_dim * 2 - 1) * (depth_range / 2) + root_depth[:, None]
    return pixel_to_camera(torch.stack((u, v, z), dim=-1), focal, center)


def camera_to_heatmap(
    cam: torch.Tensor,
    bbox: torch.Tensor,
    root_depth: torch.Tensor,
    focal: torch.Tensor,
    center: torch.Tensor,
    heatmap_size: int,
    depth_dim: int,
    depth_range: float,
) -> torch.Tensor:
    """Exact inverse of heatmap_to_camera: where a perfect network would put each joint."""
    pixel = camera_to_pixel(cam, focal, center)
    x = (pixel[..., 0] - bbox[:, 0, None]) / bbox[:, 2, None] * heatmap_size
    y = (pixel[..., 1] - bbox[:, 1, None]) / bbox[:, 3, None] * heatmap_size
    z = ((pixel[..., 2] - root_depth[:, None]) / (depth_range / 2) + 1) / 2 * depth_dim
    return torch.stack((x, y, z), dim=-1)
