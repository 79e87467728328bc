"""Camera geometry and the heatmap <-> camera mapping (docs/protocol.md, "From heatmap to millimetres"), checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convnextpose_eval.common.geometry import (
    camera_to_heatmap,
    camera_to_pixel,
    heatmap_to_camera,
    pixel_to_camera,
)

DEPTH_RANGE = 2000.0  # docs/protocol.md, "From heatmap to millimetres": the 3D box is 2000 mm deep, centred on the root


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation (det +1) from the QR decomposition of a Gaussian matrix."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _scene(seed: int, batch: int = 3, joints: int = 17):
    """World points of a person-sized cloud, per-sample cameras that see them 2.5-7 m away, in float64."""
    rng = np.random.default_rng(seed)
    rotations = np.stack([_rotation(rng) for _ in range(batch)])
    world = rng.uniform(-1000, 1000, size=(batch, joints, 3))
    # Place each camera so that the cloud's centre lands at a positive depth, with a lateral offset.
    target = np.stack([rng.uniform(-300, 300, batch), rng.uniform(-300, 300, batch), rng.uniform(4000, 5500, batch)], axis=1)
    translation = target - np.einsum("bij,bj->bi", rotations, world.mean(axis=1))
    focal = rng.uniform(400, 1200, size=(batch, 2))
    center = rng.uniform(200, 600, size=(batch, 2))
    return world, rotations, translation, focal, center


@pytest.mark.parametrize("seed", range(5))
def test_world_camera_pixel_round_trip(seed: int) -> None:
    world, rotations, translation, focal, center = _scene(seed)
    t = lambda a: torch.from_numpy(a)  # noqa: E731

    # X_cam = R X_world + t for every joint (the loader does this in numpy, as the authors' code).
    cam = np.stack([[rotations[b] @ world[b, j] + translation[b] for j in range(world.shape[1])] for b in range(world.shape[0])])
    assert (cam[..., 2] > 1000).all(), "scene construction: points must be in front of the camera"
    # Back to the world with the inverse rigid motion R^T (X_cam - t).
    np.testing.assert_allclose(np.einsum("bji,bkj->bki", rotations, cam - translation[:, None]), world, atol=1e-8)

    pixel = camera_to_pixel(t(cam), t(focal), t(center)).numpy()
    # Pinhole by hand: u = f_x X / Z + c_x, v = f_y Y / Z + c_y, depth kept.
    u = focal[:, None, 0] * cam[..., 0] / cam[..., 2] + center[:, None, 0]
    v = focal[:, None, 1] * cam[..., 1] / cam[..., 2] + center[:, None, 1]
    np.testing.assert_allclose(pixel[..., 0], u, atol=1e-6)
    np.testing.assert_allclose(pixel[..., 1], v, atol=1e-6)
    np.testing.assert_array_equal(pixel[..., 2], cam[..., 2])

    back = pixel_to_camera(t(pixel), t(focal), t(center)).numpy()
    np.testing.assert_allclose(back, cam, rtol=0, atol=1e-6)


def test_pixel_to_camera_of_principal_point_is_on_the_optical_axis() -> None:
    focal = torch.tensor([[1145.0, 1143.8]], dtype=torch.float64)
    center = torch.tensor([[512.5, 515.25]], dtype=torch.float64)
    depths = torch.tensor([1.0, 3500.0, 6123.25], dtype=torch.float64)
    pixel = torch.stack([center[0, 0].expand(3), center[0, 1].expand(3), depths], dim=-1)[None]
    cam = pixel_to_camera(pixel, focal, center)
    assert cam[0, :, :2].abs().max().item() == 0.0
    assert cam[0, :, 2].tolist() == depths.tolist()
    # and the optical axis projects to the principal point
    back = camera_to_pixel(cam, focal, center)
    torch.testing.assert_close(back[0, :, :2], center.expand(3, 2), rtol=0, atol=1e-9)


def test_heatmap_to_camera_one_joint_by_hand() -> None:
    # 32x32 heatmap, 32 depth bins; bbox x=100, y=50, w=h=200; root 5000 mm deep; f=(1000, 1100), c=(320, 240).
    # Joint at heatmap (16, 8, 24):
    #   u = 16/32 * 200 + 100 = 200 px,  v = 8/32 * 200 + 50 = 100 px
    #   z = (24/32 * 2 - 1) * 1000 + 5000 = 5500 mm
    #   X = (200 - 320) / 1000 * 5500 = -660 mm,  Y = (100 - 240) / 1100 * 5500 = -700 mm
    coords = torch.tensor([[[16.0, 8.0, 24.0]]], dtype=torch.float64)
    bbox = torch.tensor([[100.0, 50.0, 200.0, 200.0]], dtype=torch.float64)
    root_depth = torch.tensor([5000.0], dtype=torch.float64)
    focal = torch.tensor([[1000.0, 1100.0]], dtype=torch.float64)
    center = torch.tensor([[320.0, 240.0]], dtype=torch.float64)
    cam = heatmap_to_camera(coords, bbox, root_depth, focal, center, 32, 32, DEPTH_RANGE)
    torch.testing.assert_close(cam, torch.tensor([[[-660.0, -700.0, 5500.0]]], dtype=torch.float64), rtol=0, atol=1e-9)


def test_heatmap_to_camera_non_square_box_by_hand() -> None:
    # 64x64 heatmap, 64 bins; bbox x=10, y=20, w=128, h=256; root 4000 mm; f=(500, 500), c=(56, 34).
    # Joint at heatmap (48, 16, 8): u = 48/64*128 + 10 = 106, v = 16/64*256 + 20 = 84,
    # z = (8/64*2 - 1) * 1000 + 4000 = 3250, X = (106-56)/500*3250 = 325, Y = (84-34)/500*3250 = 325.
    # A second joint at the heatmap origin, bin 0: u = 10, v = 20, z = -1000 + 4000 = 3000,
    # X = (10-56)/500*3000 = -276, Y = (20-34)/500*3000 = -84.
    coords = torch.tensor([[[48.0, 16.0, 8.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    bbox = torch.tensor([[10.0, 20.0, 128.0, 256.0]], dtype=torch.float64)
    cam = heatmap_to_camera(
        coords, bbox, torch.tensor([4000.0], dtype=torch.float64), torch.tensor([[500.0, 500.0]], dtype=torch.float64),
        torch.tensor([[56.0, 34.0]], dtype=torch.float64), 64, 64, DEPTH_RANGE,
    )  # fmt: skip
    torch.testing.assert_close(cam, torch.tensor([[[325.0, 325.0, 3250.0], [-276.0, -84.0, 3000.0]]], dtype=torch.float64), rtol=0, atol=1e-9)


def test_heatmap_depth_range_is_centred_on_the_root() -> None:
    # The middle bin (depth_dim / 2) is the root depth; the ends are root -/+ 1000 mm.
    coords = torch.tensor([[[5.0, 5.0, 0.0], [5.0, 5.0, 32.0], [5.0, 5.0, 64.0]]], dtype=torch.float64)
    bbox = torch.tensor([[0.0, 0.0, 64.0, 64.0]], dtype=torch.float64)
    cam = heatmap_to_camera(
        coords, bbox, torch.tensor([4321.0], dtype=torch.float64), torch.tensor([[600.0, 600.0]], dtype=torch.float64),
        torch.tensor([[5.0, 5.0]], dtype=torch.float64), 64, 64, DEPTH_RANGE,
    )  # fmt: skip
    assert cam[0, :, 2].tolist() == [3321.0, 4321.0, 5321.0]


@pytest.mark.parametrize(("heatmap_size", "depth_dim"), [(32, 32), (64, 64)])
def test_camera_to_heatmap_is_the_exact_inverse(heatmap_size: int, depth_dim: int) -> None:
    rng = np.random.default_rng(heatmap_size)
    batch, joints = 4, 18
    coords = torch.from_numpy(rng.uniform(0, heatmap_size - 1, size=(batch, joints, 3)))
    coords[..., 2] = torch.from_numpy(rng.uniform(0, depth_dim - 1, size=(batch, joints)))
    side = rng.uniform(150, 600, size=batch)
    bbox = torch.from_numpy(np.stack([rng.uniform(-50, 400, batch), rng.uniform(-50, 300, batch), side, side * rng.uniform(0.8, 1.2, batch)], 1))
    root = torch.from_numpy(rng.uniform(3000, 7000, size=batch))
    focal = torch.from_numpy(rng.uniform(400, 1200, size=(batch, 2)))
    center = torch.from_numpy(rng.uniform(200, 600, size=(batch, 2)))
    args = (bbox, root, focal, center, heatmap_size, depth_dim, DEPTH_RANGE)

    cam = heatmap_to_camera(coords, *args)
    torch.testing.assert_close(camera_to_heatmap(cam, *args), coords, rtol=0, atol=1e-9)
    # and the other way round, from camera points
    torch.testing.assert_close(heatmap_to_camera(camera_to_heatmap(cam, *args), *args), cam, rtol=0, atol=1e-7)


def test_camera_to_heatmap_of_the_root_is_the_middle_depth_bin() -> None:
    # A point on the root's depth, projecting to the bbox centre, lands at the heatmap centre and bin D/2.
    focal = torch.tensor([[800.0, 800.0]], dtype=torch.float64)
    center = torch.tensor([[300.0, 200.0]], dtype=torch.float64)
    bbox = torch.tensor([[200.0, 100.0, 200.0, 200.0]], dtype=torch.float64)  # centre (300, 200) = principal point
    cam = torch.tensor([[[0.0, 0.0, 4500.0]]], dtype=torch.float64)
    hm = camera_to_heatmap(cam, bbox, torch.tensor([4500.0], dtype=torch.float64), focal, center, 64, 64, DEPTH_RANGE)
    torch.testing.assert_close(hm, torch.tensor([[[32.0, 32.0, 32.0]]], dtype=torch.float64), rtol=0, atol=1e-9)
