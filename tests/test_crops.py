"""Boxes and crops (docs/protocol.md, "From image to network input"), checked against hand-computed cases.

Reading images is tested in test_data_images.py, the crop store in test_data_crop_store.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from convnextpose_eval.data.crops import crop_patch, crop_transform, process_bbox

# --------------------------------------------------------------------------- process_bbox


def test_wide_box_becomes_a_square_about_the_same_centre_enlarged_1_25() -> None:
    # [10, 20, 101, 51] in 640x480: x2 = 10 + 100 = 110, y2 = 20 + 50 = 70 -> clamped box [10, 20, 100, 50],
    # centre (60, 45); width wins: 100 x 100, x1.25 -> 125 x 125 about (60, 45) -> [-2.5, -17.5, 125, 125].
    box = process_bbox(np.array([10.0, 20.0, 101.0, 51.0]), 640, 480)
    np.testing.assert_allclose(box, [-2.5, -17.5, 125.0, 125.0], rtol=0, atol=1e-12)
    assert box[0] + box[2] / 2 == 60.0 and box[1] + box[3] / 2 == 45.0


def test_tall_box_becomes_a_square_about_the_same_centre_enlarged_1_25() -> None:
    # [100, 50, 41, 161] in 640x480: box [100, 50, 40, 160], centre (120, 130); height wins: 160 -> 200.
    box = process_bbox(np.array([100.0, 50.0, 41.0, 161.0]), 640, 480)
    np.testing.assert_allclose(box, [20.0, 30.0, 200.0, 200.0], rtol=0, atol=1e-12)


def test_square_box_is_only_enlarged() -> None:
    # [50, 60, 81, 81] -> [50, 60, 80, 80], centre (90, 100), 80 x 1.25 = 100 -> [40, 50, 100, 100].
    np.testing.assert_allclose(process_bbox(np.array([50.0, 60.0, 81.0, 81.0]), 640, 480), [40.0, 50.0, 100.0, 100.0])


def test_box_partly_outside_top_left_is_clamped_first() -> None:
    # [-30, -10, 100, 60] in 200x100: x1 = y1 = 0, x2 = min(199, 0 + 99) = 99, y2 = min(99, 0 + 59) = 59
    # -> [0, 0, 99, 59], centre (49.5, 29.5); square 99, x1.25 = 123.75 -> [-12.375, -32.375, 123.75, 123.75].
    box = process_bbox(np.array([-30.0, -10.0, 100.0, 60.0]), 200, 100)
    np.testing.assert_allclose(box, [-12.375, -32.375, 123.75, 123.75], rtol=0, atol=1e-12)


def test_box_partly_outside_bottom_right_is_clamped_first() -> None:
    # [150, 50, 100, 100] in 200x100: x2 = min(199, 249) = 199, y2 = min(99, 149) = 99 -> [150, 50, 49, 49],
    # centre (174.5, 74.5), 49 x 1.25 = 61.25 -> [143.875, 43.875, 61.25, 61.25].
    box = process_bbox(np.array([150.0, 50.0, 100.0, 100.0]), 200, 100)
    np.testing.assert_allclose(box, [143.875, 43.875, 61.25, 61.25], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "bbox",
    [
        [10.0, 20.0, 0.0, 50.0],  # zero width
        [10.0, 20.0, 50.0, 0.0],  # zero height
        [10.0, 20.0, -5.0, 50.0],  # negative width
        [300.0, 20.0, 50.0, 50.0],  # entirely right of a 200-wide image: x2 = 199 < x1 = 300
        [20.0, 150.0, 50.0, 50.0],  # entirely below a 100-high image
    ],
)
def test_empty_box_is_rejected(bbox: list[float]) -> None:
    assert process_bbox(np.array(bbox), 200, 100) is None


def test_integer_box_truncates_like_numpy_integer_assignment() -> None:
    # int64 [10, 20, 101, 51] in 640x480: box [10, 20, 100, 50], centre (60.0, 45.0), square 100.
    # Stores: w = int(125.0) = 125, h = 125, x = int(60 - 125/2) = int(-2.5) = -2 (towards zero), y = int(-17.5) = -17.
    box = process_bbox(np.array([10, 20, 101, 51]), 640, 480)
    assert box.dtype.kind == "i"
    assert box.tolist() == [-2, -17, 125, 125]


def test_integer_box_centre_uses_the_truncated_stored_size() -> None:
    # int64 [2, 2, 11, 7] in 100x100: box [2, 2, 10, 6], centre (7.0, 5.0), square 10 -> 12.5 stored as 12,
    # then x = int(7 - 12/2) = 1 (with the untruncated 12.5 it would be int(0.75) = 0) and y = int(5 - 6) = -1.
    box = process_bbox(np.array([2, 2, 11, 7]), 100, 100)
    assert box.tolist() == [1, -1, 12, 12]


# --------------------------------------------------------------------------- crop_transform


def _apply(matrix: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    """Apply a 2x3 affine matrix to (x, y) points by hand: [a b c; d e f] @ [x, y, 1]."""
    return np.array([[matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2], matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]] for x, y in points])


@pytest.mark.parametrize(
    ("bbox", "size"),
    [([40.0, 60.0, 100.0, 100.0], 256), ([-12.375, -32.375, 123.75, 123.75], 256), ([10.0, 20.0, 50.0, 80.0], 256), ([5.0, 7.0, 300.0, 300.0], 64)],
)
def test_crop_transform_maps_box_centre_and_corners_to_the_patch(bbox: list[float], size: int) -> None:
    x, y, w, h = bbox
    matrix = crop_transform(np.array(bbox), size)
    assert matrix.shape == (2, 3)
    corners = [(x, y), (x + w, y), (x, y + h), (x + w, y + h)]
    mapped = _apply(matrix, [(x + w / 2, y + h / 2), *corners])
    expected = [(size / 2, size / 2), (0, 0), (size, 0), (0, size), (size, size)]
    np.testing.assert_allclose(mapped, expected, rtol=0, atol=2e-3)


def test_crop_transform_has_no_rotation_or_shear() -> None:
    matrix = crop_transform(np.array([30.0, 40.0, 200.0, 100.0]), 256)
    np.testing.assert_allclose(matrix[:, :2], [[256 / 200, 0.0], [0.0, 256 / 100]], rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- crop_patch


def _image_with_squares() -> np.ndarray:
    """200x200 BGR image: grey 100, a pure blue square at x 40..79, y 80..119, a pure red one at x 120..159, y 20..59."""
    image = np.full((200, 200, 3), 100, dtype=np.uint8)
    image[80:120, 40:80] = (255, 0, 0)  # BGR blue
    image[20:60, 120:160] = (0, 0, 255)  # BGR red
    return image


def test_crop_patch_puts_the_square_where_expected_in_rgb() -> None:
    # bbox [20, 60, 80, 80] -> 160x160 patch: scale 2, patch = ((x - 20) * 2, (y - 60) * 2).
    # The blue square x 40..79, y 80..119 lands at patch x 40..118, y 40..118.
    patch = crop_patch(_image_with_squares(), np.array([20.0, 60.0, 80.0, 80.0]), 160)
    assert patch.shape == (160, 160, 3) and patch.dtype == np.uint8
    inside = patch[50:110, 50:110].reshape(-1, 3)
    assert (inside == (0, 0, 255)).all(), "blue must come out as RGB (0, 0, 255)"
    # grey around it: left of the square (image x 25) and below it (image y 130)
    assert (patch[80, 10] == 100).all() and (patch[150, 80] == 100).all()
    # the red square (image y < 60) is above the box: not in the patch
    assert not ((patch[..., 0] > 200) & (patch[..., 2] < 50)).any()


def test_crop_patch_channel_order_of_red() -> None:
    # bbox covering the whole image at scale 1: red at image x 120..159, y 20..59 stays there.
    patch = crop_patch(_image_with_squares(), np.array([0.0, 0.0, 200.0, 200.0]), 200)
    assert patch[40, 140].tolist() == [255, 0, 0]
    assert patch[100, 60].tolist() == [0, 0, 255]
    assert patch[180, 180].tolist() == [100, 100, 100]


def test_crop_patch_fills_outside_the_image_with_zero() -> None:
    # bbox [-50, -50, 100, 100] at size 100 (scale 1): patch (10, 10) is image (-40, -40), outside.
    patch = crop_patch(_image_with_squares(), np.array([-50.0, -50.0, 100.0, 100.0]), 100)
    assert patch[10, 10].tolist() == [0, 0, 0]
    assert patch[80, 80].tolist() == [100, 100, 100]  # image (30, 30): grey
