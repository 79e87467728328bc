"""Read the Human3.6M test set in the 3DMPPE "parsed" format into flat arrays.

The annotation files are large (hundreds of MB of JSON per subject for the
full data set), so the result is cached as a compressed ``.npz`` keyed by the
files' paths, sizes and modification times: a sweep over four variants parses
the JSON once.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import orjson

from ..atomic import atomic_write_bytes
from ..errors import DataError
from ..human36m import (
    JOINT_NUM,
    L_SHOULDER,
    PROTOCOL_SUBJECTS,
    R_SHOULDER,
    ROOT_INDEX,
    TEST_FRAME_STRIDE,
)
from .crops import process_bbox

INDEX_FORMAT_VERSION = 1
BBOX_ROOT_FILE = Path("bbox_root") / "bbox_root_human36m_output.json"


@dataclass
class TestIndex:
    """One row per test image, in the annotation order the authors' evaluation uses."""

    image_id: np.ndarray  # (N,) int64
    file_name: np.ndarray  # (N,) str, relative to images/
    action: np.ndarray  # (N,) int64, 0..14
    subject: np.ndarray  # (N,) int64
    bbox: np.ndarray  # (N, 4) float64, x, y, w, h of the square crop box in the image
    root_cam: np.ndarray  # (N, 3) float64, root joint in camera space (GT or RootNet)
    joint_cam: np.ndarray  # (N, 18, 3) float64, ground truth in camera space, mm
    focal: np.ndarray  # (N, 2) float64
    center: np.ndarray  # (N, 2) float64
    image_size: np.ndarray  # (N, 2) int64, width, height

    def __len__(self) -> int:
        return int(self.image_id.shape[0])


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: missing")
    try:
        # orjson parses the multi-hundred-MB annotation files about 1.6x faster than json.
        return orjson.loads(path.read_bytes())
    except json.JSONDecodeError as exc:  # orjson's error is a subclass
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); truncated or corrupt") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None


def _field(path: Path, record: dict[str, Any], name: str, what: str) -> Any:
    try:
        return record[name]
    except (KeyError, TypeError):
        raise DataError(f"{path}: {what} lacks field '{name}'") from None


def _annotation_files(root: Path, subject: int) -> dict[str, Path]:
    folder = root / "annotations"
    return {kind: folder / f"Human36M_subject{subject}_{kind}.json" for kind in ("data", "camera", "joint_3d")}


def _cache_key(root: Path, protocol: int, use_gt_info: bool, files: Iterable[Path]) -> str:
    digest = hashlib.sha256(f"v{INDEX_FORMAT_VERSION}|{root.resolve()}|{protocol}|{use_gt_info}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def _load_bbox_root(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    entries = _read_json(path)
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a list of {{image_id, bbox, root_cam}} entries")
    table = {}
    for entry in entries:
        image_id = int(_field(path, entry, "image_id", "an entry"))
        bbox = np.asarray(_field(path, entry, "bbox", f"entry for image {image_id}"), dtype=np.float64)
        root = np.asarray(_field(path, entry, "root_cam", f"entry for image {image_id}"), dtype=np.float64)
        if bbox.shape != (4,) or root.shape != (3,):
            raise DataError(f"{path}: entry for image {image_id} has a bbox of shape {bbox.shape} or root_cam of shape {root.shape}")
        table[image_id] = (bbox, root)
    return table


def _subject_rows(
    subject: int, files: dict[str, Path], bbox_root: dict[int, tuple[np.ndarray, np.ndarray]] | None, missing: list[int]
) -> list[dict[str, Any]]:
    """One subject's test rows in annotation order; test images the RootNet table lacks go to ``missing``."""
    data_path, camera_path, joint_path = files["data"], files["camera"], files["joint_3d"]
    data = _read_json(data_path)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DataError(f"{data_path}: expected a COCO-style object with 'images' and 'annotations'")
    images = {}
    for image in data["images"]:
        images[_field(data_path, image, "id", "an image")] = image
    cameras = joints = None
    rows = []
    for ann in data["annotations"]:
        image_id = _field(data_path, ann, "image_id", "an annotation")
        image = images.get(image_id)
        if image is None:
            raise DataError(f"{data_path}: annotation {ann.get('id')} points to image {image_id}, which is not listed")
        what = f"image {image_id}"
        if int(_field(data_path, image, "subject", what)) != subject:
            continue
        frame = int(_field(data_path, image, "frame_idx", what))
        if frame % TEST_FRAME_STRIDE:
            continue
        if cameras is None:
            cameras, joints = _read_json(camera_path), _read_json(joint_path)
        cam_idx = str(_field(data_path, image, "cam_idx", what))
        camera = cameras.get(cam_idx) if isinstance(cameras, dict) else None
        if camera is None:
            raise DataError(f"{camera_path}: no camera '{cam_idx}' (needed by {what})")
        rotation = np.asarray(_field(camera_path, camera, "R", f"camera {cam_idx}"), dtype=np.float32)
        translation = np.asarray(_field(camera_path, camera, "t", f"camera {cam_idx}"), dtype=np.float32).reshape(3)
        focal = np.asarray(_field(camera_path, camera, "f", f"camera {cam_idx}"), dtype=np.float32).reshape(2)
        center = np.asarray(_field(camera_path, camera, "c", f"camera {cam_idx}"), dtype=np.float32).reshape(2)
        action_idx = str(_field(data_path, image, "action_idx", what))
        subaction_idx = str(_field(data_path, image, "subaction_idx", what))
        try:
            world = np.asarray(joints[action_idx][subaction_idx][str(frame)], dtype=np.float32)
        except (KeyError, TypeError):
            raise DataError(f"{joint_path}: no joints for action {action_idx}, subaction {subaction_idx}, frame {frame} ({what})") from None
        if world.shape != (JOINT_NUM - 1, 3):
            raise DataError(f"{joint_path}: joints for {what} have shape {world.shape}, expected ({JOINT_NUM - 1}, 3)")
        # Thorax is not annotated: the checkpoints were trained with the shoulders' midpoint.
        world = np.concatenate([world, (world[L_SHOULDER] + world[R_SHOULDER])[None] * np.float32(0.5)])
        # float32 like the authors' loader, so ground truth matches theirs to the last bit that matters.
        joint_cam = (rotation @ world.T).T + translation[None]
        file_name = str(_field(data_path, image, "file_name", what))
        width, height = int(_field(data_path, image, "width", what)), int(_field(data_path, image, "height", what))
        if bbox_root is not None:
            if image_id not in bbox_root:
                missing.append(int(image_id))
                continue
            bbox, root_cam = bbox_root[image_id]
        else:
            bbox = process_bbox(np.array(_field(data_path, ann, "bbox", f"annotation {ann.get('id')}")), width, height)
            if bbox is None:
                continue
            root_cam = joint_cam[ROOT_INDEX]
        try:
            action = int(file_name[file_name.index("act_") + 4 : file_name.index("act_") + 6]) - 2
        except ValueError:
            raise DataError(f"{data_path}: file name '{file_name}' of {what} has no 'act_NN' part") from None
        rows.append(
            {
                "image_id": int(image_id), "file_name": file_name, "action": action, "subject": subject,
                "bbox": np.asarray(bbox, dtype=np.float64), "root_cam": np.asarray(root_cam, dtype=np.float64),
                "joint_cam": joint_cam.astype(np.float64), "focal": focal.astype(np.float64),
                "center": center.astype(np.float64), "image_size": (width, height),
            }
        )  # fmt: skip
    return rows


def _build_index(root: Path, protocol: int, use_gt_info: bool) -> TestIndex:
    subjects = PROTOCOL_SUBJECTS[protocol]
    bbox_root = None if use_gt_info else _load_bbox_root(root / BBOX_ROOT_FILE)
    rows: list[dict[str, Any]] = []
    missing: list[int] = []  # test images the RootNet file has no entry for
    for subject in subjects:
        rows.extend(_subject_rows(subject, _annotation_files(root, subject), bbox_root, missing))
    if missing:
        raise DataError(
            f"{root / BBOX_ROOT_FILE}: has no entry for {len(missing)} test images (first image_id: {missing[0]}); "
            "it must come from RootNet run on the same protocol's test set"
        )
    if not rows:
        names = ", ".join(str(_annotation_files(root, s)["data"]) for s in subjects)
        raise DataError(f"{names}: protocol {protocol} selects no test images (subjects {subjects}, frame_idx % {TEST_FRAME_STRIDE} == 0)")
    return TestIndex(
        image_id=np.array([r["image_id"] for r in rows], dtype=np.int64),
        file_name=np.array([r["file_name"] for r in rows]),
        action=np.array([r["action"] for r in rows], dtype=np.int64),
        subject=np.array([r["subject"] for r in rows], dtype=np.int64),
        bbox=np.stack([r["bbox"] for r in rows]),
        root_cam=np.stack([r["root_cam"] for r in rows]),
        joint_cam=np.stack([r["joint_cam"] for r in rows]),
        focal=np.stack([r["focal"] for r in rows]),
        center=np.stack([r["center"] for r in rows]),
        image_size=np.array([r["image_size"] for r in rows], dtype=np.int64),
    )


def _save_index(index: TestIndex, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{f.name: getattr(index, f.name) for f in fields(TestIndex)})
    atomic_write_bytes(path, buffer.getvalue())


def _load_cached_index(path: Path) -> TestIndex | None:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return TestIndex(**{f.name: archive[f.name] for f in fields(TestIndex)})
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):  # a damaged cache is rebuilt
        return None


def load_test_index(root: str | os.PathLike[str], protocol: int, use_gt_info: bool, cache_dir: str | os.PathLike[str] | None = None) -> TestIndex:
    """The test images of ``protocol`` with their boxes, roots, cameras and ground truth, checked."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root does not exist (data.root must hold annotations/ and images/)")
    if protocol not in PROTOCOL_SUBJECTS:
        raise DataError(f"data.protocol={protocol}: must be one of {sorted(PROTOCOL_SUBJECTS)}")
    sources = [path for s in PROTOCOL_SUBJECTS[protocol] for path in _annotation_files(root, s).values()]
    if not use_gt_info:
        sources.append(root / BBOX_ROOT_FILE)
    for path in sources:
        if not path.is_file():
            raise DataError(f"{path}: missing")
    index = None
    cache_path = Path(cache_dir) / f"h36m_test_{_cache_key(root, protocol, use_gt_info, sources)}.npz" if cache_dir else None
    if cache_path is not None and cache_path.is_file():
        index = _load_cached_index(cache_path)
    if index is None:
        index = _build_index(root, protocol, use_gt_info)
        if cache_path is not None:
            _save_index(index, cache_path)
    check_images(root, index)
    return index


def check_images(root: Path, index: TestIndex) -> None:
    """Every test image must exist before any compute is spent."""
    missing = [name for name in index.file_name if not (root / "images" / name).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{root / 'images' / missing[0]}: image missing{more}")
