"""Boxes and crops exactly as the checkpoints were trained: square box x1.25, affine warp to 256x256, RGB.

Images are read by ``images.read_image``; decoded crops are kept by ``crop_store.CropStore``.
"""

from __future__ import annotations

import cv2
import numpy as np

BOX_SCALE = 1.25


def process_bbox(bbox: np.ndarray, width: int, height: int, aspect_ratio: float = 1.0) -> np.ndarray | None:
    """Clamp a COCO [x, y, w, h] box to the image, make it ``aspect_ratio`` (w/h), enlarge it x1.25.

    Returns None for an empty box. The result keeps the input array's dtype, as
    the authors' code does (integer boxes are truncated when resized).
    """
    x, y, w, h = bbox
    x1, y1 = np.max((0, x)), np.max((0, y))
    x2 = np.min((width - 1, x1 + np.max((0, w - 1))))
    y2 = np.min((height - 1, y1 + np.max((0, h - 1))))
    if not (w * h > 0 and x2 >= x1 and y2 >= y1):
        return None
    box = np.array([x1, y1, x2 - x1, y2 - y1])
    centre_x, centre_y = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
    new_w, new_h = box[2], box[3]
    if new_w > aspect_ratio * new_h:
        new_h = new_w / aspect_ratio
    elif new_w < aspect_ratio * new_h:
        new_w = new_h * aspect_ratio
    # Element-wise stores, in this order, so the dtype behaviour matches the reference.
    box[2] = new_w * BOX_SCALE
    box[3] = new_h * BOX_SCALE
    box[0] = centre_x - box[2] / 2.0
    box[1] = centre_y - box[3] / 2.0
    return box


def crop_transform(bbox: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine map sending the box centre to the patch centre and the box's width/height to ``size``.

    Built from three float32 point pairs (centre, centre + half height down,
    centre + half width right), rounded to float32 at the same steps as the
    training code, so the warp is bit-identical.
    """
    centre = np.array([bbox[0] + 0.5 * bbox[2], bbox[1] + 0.5 * bbox[3]], dtype=np.float32).astype(np.float64)
    half_w, half_h = (np.float64(np.float32(float(side) * 0.5)) for side in (bbox[2], bbox[3]))
    src = np.array([centre, centre + (0.0, half_h), centre + (half_w, 0.0)], dtype=np.float32)
    dst = np.array([[size * 0.5, size * 0.5], [size * 0.5, size], [size, size * 0.5]], dtype=np.float32)
    return cv2.getAffineTransform(src, dst)


def crop_patch(image_bgr: np.ndarray, bbox: np.ndarray, size: int) -> np.ndarray:
    """The (size, size, 3) RGB uint8 patch the network sees (before normalization)."""
    patch = cv2.warpAffine(image_bgr, crop_transform(bbox, size), (size, size), flags=cv2.INTER_LINEAR)
    return np.ascontiguousarray(patch[:, :, ::-1])
