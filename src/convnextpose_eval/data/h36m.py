"""Read the Human3.6M test set in the 3DMPPE "parsed" format into flat arrays, checking every value on the way.

An evaluation's number is only as good as its inputs, so anything the reader
cannot vouch for is a one-line DataError naming the file and the id, never a
quietly different index: image ids unique across the subject files read, one
annotation per image and one RootNet entry per image id (else one image is
scored with another's box or counted twice), boxes of positive size, cameras
finite with positive focal lengths, RootNet roots in front of the camera. A GT
box of exactly zero width or height is skipped, as the authors' loader does.

The annotation files are large (hundreds of MB of JSON per subject for the full
data set), so the result is cached as an ``.npz``: a sweep over four variants
parses the JSON once. The entry is keyed on the format version, the data root,
protocol and box source, and each source file's path, size and SHA-256 of its
content (hashing 400 MB takes under a second, parsing it ten seconds or
more). A cache miss parses exactly the bytes that were hashed: a file that
changes between the two is an error, so an entry can never stand for content it
was not built from, whatever happened to the file's modification time or inode.
The entry carries its key and a SHA-256 of its arrays in the zip comment,
checked on every read: a damaged, foreign or outdated entry is a miss, rebuilt
and replaced. A cache folder that cannot be written only costs speed.

Why one module of this length: reading, checking and caching the index share one notion of what a
valid record is; the cache key, the checks and the parse must change together.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import stat
import struct
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..common.atomic import atomic_write_bytes
from ..common.errors import DataError
from ..common.human36m import (
    ACTION_NAMES,
    JOINT_NUM,
    L_SHOULDER,
    PROTOCOL_SUBJECTS,
    R_SHOULDER,
    ROOT_INDEX,
    TEST_FRAME_STRIDE,
)
from .crops import process_bbox

INDEX_FORMAT_VERSION = 3
_INDEX_FORMAT_NAME = "convnextpose_eval-h36m-test-index"
BBOX_ROOT_FILE = Path("bbox_root") / "bbox_root_human36m_output.json"
# How far a camera's R may be from orthonormal with det +1: the float32 rounding of a real rotation is
# about 1e-7, while a scaled or mirrored matrix (which would quietly change every joint) is off by far more.
ROTATION_TOLERANCE = 1e-4
# The action of an image: the two digits after the first 'act_' in its file name, 02..16.
_ACTION_DIGITS = re.compile(r"[0-9]{2}")
ACTION_OFFSET = 2


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


@dataclass(frozen=True)
class _Camera:
    """One camera's parameters in float32, as the authors' loader computes with them."""

    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    focal: np.ndarray  # (2,)
    center: np.ndarray  # (2,)


def _open_regular(path: Path) -> io.BufferedReader:
    """``path`` opened for reading if it is a regular file; a FIFO or device is refused, not waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from None
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise DataError(f"{path}: not a regular file")
    return handle


def _read_json(path: Path, sha256: str | None = None) -> Any:
    """The parsed file; with ``sha256``, only if the bytes read are the ones the cache key was made from."""
    try:
        with _open_regular(path) as handle:
            data = handle.read()
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DataError(f"{path}: changed while it was being read; run again once nothing writes to it")
    try:
        # orjson parses the multi-hundred-MB annotation files about 1.6x faster than json.
        return orjson.loads(data)
    except json.JSONDecodeError as exc:  # orjson's error is a subclass
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); truncated or corrupt") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None


def _field(path: Path, record: dict[str, Any], name: str, what: str) -> Any:
    try:
        return record[name]
    except (KeyError, TypeError, IndexError):
        raise DataError(f"{path}: {what} lacks field '{name}'") from None


def _integer(path: Path, record: dict[str, Any], name: str, what: str) -> int:
    """A 64-bit integer field; 3, 3.0 and "3" are read as 3, anything else (3.7, "x", a list, 10**30) is an error."""
    value = _field(path, record, name, what)
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or isinstance(value, bool) or (number != value and str(number) != value) or not -(2**63) <= number < 2**63:
        raise DataError(f"{path}: {what} has {name} {str(value)[:40]!r}, not a 64-bit integer")
    return number


def _numbers(path: Path, value: Any, shape: tuple[int, ...], what: str, dtype: type = np.float64, any_layout: bool = False) -> np.ndarray:
    """``value`` as a finite array of ``shape`` in ``dtype``; ``any_layout`` accepts any nesting of as many numbers."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):  # ragged nesting
        array = np.asarray(None)
    count = int(np.prod(shape))
    if array.dtype.kind not in "iuf" or array.size != count or (not any_layout and array.shape != shape):
        wanted = f"{count} numbers" if len(shape) == 1 or any_layout else f"a {'x'.join(map(str, shape))} array of numbers"
        raise DataError(f"{path}: {what} must be {wanted}, not {str(value)[:80]}")
    with np.errstate(over="ignore"):  # an overflow to inf is reported just below, by name
        converted = array.astype(dtype).reshape(shape)
    if not np.isfinite(converted).all():
        raise DataError(f"{path}: {what} is {str(value)[:80]}, which is not finite in {np.dtype(dtype).name}")
    return converted


def _annotation_files(root: Path, subject: int) -> dict[str, Path]:
    folder = root / "annotations"
    return {kind: folder / f"Human36M_subject{subject}_{kind}.json" for kind in ("data", "camera", "joint_3d")}


def _load_bbox_root(path: Path, sha256: str | None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """RootNet's box and root per image id, used as they are; each checked, each image id once."""
    entries = _read_json(path, sha256)
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a list of {{image_id, bbox, root_cam}} entries")
    table = {}
    for entry in entries:
        image_id = _integer(path, entry, "image_id", "an entry")
        what = f"the entry for image {image_id}"
        if image_id in table:
            raise DataError(f"{path}: image {image_id} has two entries; each test image needs exactly one box and root")
        bbox = _numbers(path, _field(path, entry, "bbox", what), (4,), f"{what}: bbox")
        root = _numbers(path, _field(path, entry, "root_cam", what), (3,), f"{what}: root_cam")
        if not (bbox[2] > 0 and bbox[3] > 0):
            raise DataError(f"{path}: {what} has a box of width {bbox[2]:g} and height {bbox[3]:g}; both must be positive")
        if not root[2] > 0:
            raise DataError(f"{path}: {what} has root depth {root[2]:g} mm; the root must be in front of the camera (depth > 0)")
        table[image_id] = (bbox, root)
    return table


def _read_camera(path: Path, cameras: Any, cam_idx: str, needed_by: str) -> _Camera:
    camera = cameras.get(cam_idx) if isinstance(cameras, dict) else None
    if camera is None:
        raise DataError(f"{path}: no camera '{cam_idx}' (needed by {needed_by})")
    what = f"camera '{cam_idx}'"

    def read(name: str, shape: tuple[int, ...], any_layout: bool) -> np.ndarray:
        return _numbers(path, _field(path, camera, name, what), shape, f"{what} field '{name}'", np.float32, any_layout)

    # The authors' loader reshapes t, f and c, so any nesting of the right count is theirs too.
    parsed = _Camera(
        rotation=read("R", (3, 3), False), translation=read("t", (3,), True), focal=read("f", (2,), True), center=read("c", (2,), True)
    )
    if not (parsed.focal > 0).all():
        raise DataError(f"{path}: {what} field 'f' is {parsed.focal.tolist()}; focal lengths must be positive")
    rotation = parsed.rotation.astype(np.float64)
    deviation = float(np.abs(rotation @ rotation.T - np.eye(3)).max())
    determinant = float(np.linalg.det(rotation))
    if not (deviation <= ROTATION_TOLERANCE and abs(determinant - 1) <= ROTATION_TOLERANCE):
        raise DataError(
            f"{path}: {what} field 'R' is not a rotation: R R^T differs from the identity by up to {deviation:.3g} "
            f"and det R = {determinant:.6g} (a rotation has both within {ROTATION_TOLERANCE:g} of the identity and +1)"
        )
    return parsed


def _gt_box(path: Path, ann: dict[str, Any], image_id: int, width: int, height: int) -> np.ndarray | None:
    """The square, enlarged crop box of an annotation (docs/protocol.md, "From image to network input"), or None for an empty box, which is skipped."""
    what = f"annotation {ann.get('id')} (image {image_id})"
    raw = _field(path, ann, "bbox", what)
    box = _numbers(path, raw, (4,), f"{what}: bbox")
    if box[2] < 0 or box[3] < 0:
        raise DataError(f"{path}: {what} has a box of negative size (width {box[2]:g}, height {box[3]:g})")
    square = process_bbox(np.array(raw), width, height)  # the annotation's own dtype, as the authors' code keeps it
    if square is not None and not (square[2] > 0 and square[3] > 0):
        raise DataError(f"{path}: {what} has a box {raw} that covers less than a pixel of the {width}x{height} image")
    return square


def _image_file_name(path: Path, image: dict[str, Any], what: str) -> str:
    """The image's path relative to images/; one that leads out of images/ is refused (links inside it are followed)."""
    file_name = str(_field(path, image, "file_name", what))
    normalized = posixpath.normpath(file_name)
    if not file_name or posixpath.isabs(file_name) or normalized == ".." or normalized.startswith("../"):
        raise DataError(f"{path}: {what} has file_name '{file_name}', which leads outside the data set's images/ folder")
    return file_name


def _action(path: Path, file_name: str, what: str) -> int:
    """The action index 0..14 from the 'act_NN' part of the file name, as the authors' loader takes it."""
    start = file_name.find("act_") + len("act_")
    digits = file_name[start : start + 2] if start >= len("act_") else ""
    if not _ACTION_DIGITS.fullmatch(digits):
        raise DataError(f"{path}: file name '{file_name}' of {what} has no 'act_NN' part")
    action = int(digits) - ACTION_OFFSET
    if not 0 <= action < len(ACTION_NAMES):
        raise DataError(
            f"{path}: file name '{file_name}' of {what} says act_{digits}; Human3.6M's actions are "
            f"act_{ACTION_OFFSET:02d} to act_{ACTION_OFFSET + len(ACTION_NAMES) - 1:02d}"
        )
    return action


def _listed_images(path: Path, data: Any, listed: dict[int, Path]) -> dict[int, dict[str, Any]]:
    """The file's images by id; an id listed twice, here or by another subject file read, is an error."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: expected a COCO-style object with 'images' and 'annotations' lists")
    images = {}
    for image in data["images"]:
        image_id = _integer(path, image, "id", "an image")
        if image_id in listed:
            elsewhere = "twice" if listed[image_id] == path else f"also in {listed[image_id]}"
            raise DataError(f"{path}: image id {image_id} is listed {elsewhere}; ids must be unique across the subject files")
        listed[image_id] = path
        images[image_id] = image
    return images


def _subject_rows(
    subject: int,
    files: dict[str, Path],
    bbox_root: dict[int, tuple[np.ndarray, np.ndarray]] | None,
    missing: list[int],
    listed: dict[int, Path],
    digests: dict[Path, str],
) -> list[dict[str, Any]]:
    """One subject's test rows in annotation order; test images the RootNet table lacks go to ``missing``.

    ``listed`` maps every image id read so far to its file, across subjects; ``digests`` holds the
    SHA-256 each file's bytes must have (those the cache key was made from).
    """
    data_path, camera_path, joint_path = files["data"], files["camera"], files["joint_3d"]
    data = _read_json(data_path, digests.get(data_path))
    images = _listed_images(data_path, data, listed)
    annotated: dict[int, Any] = {}  # image id -> the id of its annotation
    cameras = joints = None
    parsed_cameras: dict[str, _Camera] = {}
    rows = []
    for ann in data["annotations"]:
        image_id = _integer(data_path, ann, "image_id", "an annotation")
        image = images.get(image_id)
        if image is None:
            raise DataError(f"{data_path}: annotation {ann.get('id')} points to image {image_id}, which is not listed")
        if image_id in annotated:
            raise DataError(
                f"{data_path}: image {image_id} has two annotations ({annotated[image_id]} and {ann.get('id')}); "
                "it would be evaluated twice"
            )
        annotated[image_id] = ann.get("id")
        what = f"image {image_id}"
        listed_subject = _integer(data_path, image, "subject", what)
        if listed_subject != subject:
            raise DataError(
                f"{data_path}: {what} says subject {listed_subject}, but this is the file of subject {subject}; "
                "the file is mixed up or edited"
            )
        frame = _integer(data_path, image, "frame_idx", what)
        if frame % TEST_FRAME_STRIDE:
            continue
        if cameras is None:
            cameras, joints = _read_json(camera_path, digests.get(camera_path)), _read_json(joint_path, digests.get(joint_path))
        cam_idx = str(_field(data_path, image, "cam_idx", what))
        if cam_idx not in parsed_cameras:
            parsed_cameras[cam_idx] = _read_camera(camera_path, cameras, cam_idx, what)
        camera = parsed_cameras[cam_idx]
        action_idx = str(_field(data_path, image, "action_idx", what))
        subaction_idx = str(_field(data_path, image, "subaction_idx", what))
        try:
            annotated_joints = joints[action_idx][subaction_idx][str(frame)]
        except (KeyError, TypeError, IndexError):
            raise DataError(f"{joint_path}: no joints for action {action_idx}, subaction {subaction_idx}, frame {frame} ({what})") from None
        world = _numbers(joint_path, annotated_joints, (JOINT_NUM - 1, 3), f"joints of {what}", np.float32)
        # Thorax is not annotated: the checkpoints were trained with the shoulders' midpoint.
        world = np.concatenate([world, (world[L_SHOULDER] + world[R_SHOULDER])[None] * np.float32(0.5)])
        # float32 like the authors' loader, so ground truth matches theirs to the last bit that matters.
        joint_cam = (camera.rotation @ world.T).T + camera.translation[None]
        file_name = _image_file_name(data_path, image, what)
        width, height = _integer(data_path, image, "width", what), _integer(data_path, image, "height", what)
        if width < 1 or height < 1:
            raise DataError(f"{data_path}: {what} has size {width}x{height}")
        if bbox_root is not None:
            if image_id not in bbox_root:
                missing.append(image_id)
                continue
            bbox, root_cam = bbox_root[image_id]
        else:
            bbox = _gt_box(data_path, ann, image_id, width, height)
            if bbox is None:
                continue
            root_cam = joint_cam[ROOT_INDEX]
        action = _action(data_path, file_name, what)
        rows.append(
            {
                "image_id": image_id, "file_name": file_name, "action": action, "subject": subject,
                "bbox": np.asarray(bbox, dtype=np.float64), "root_cam": np.asarray(root_cam, dtype=np.float64),
                "joint_cam": joint_cam.astype(np.float64), "focal": camera.focal.astype(np.float64),
                "center": camera.center.astype(np.float64), "image_size": (width, height),
            }
        )  # fmt: skip
    return rows


def _build_index(root: Path, protocol: int, use_gt_info: bool, digests: dict[Path, str] | None = None) -> TestIndex:
    """Parse and check the test set; with ``digests``, every file read must still have the content hashed."""
    digests = digests or {}
    subjects = PROTOCOL_SUBJECTS[protocol]
    bbox_root = None if use_gt_info else _load_bbox_root(root / BBOX_ROOT_FILE, digests.get(root / BBOX_ROOT_FILE))
    rows: list[dict[str, Any]] = []
    missing: list[int] = []  # test images the RootNet file has no entry for
    listed: dict[int, Path] = {}  # image id -> the data file listing it, across all subjects read
    for subject in subjects:
        rows.extend(_subject_rows(subject, _annotation_files(root, subject), bbox_root, missing, listed, digests))
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


_INDEX_MEMBERS = tuple(f"{f.name}.npy" for f in fields(TestIndex))


@dataclass(frozen=True)
class _SourceIdentity:
    """What the cache key knows of a source file: its size and the SHA-256 of its content."""

    path: Path
    size: int
    sha256: str


def _source_identities(paths: list[Path]) -> list[_SourceIdentity]:
    identities = []
    for path in paths:
        digest = hashlib.sha256()
        size = 0
        try:
            with _open_regular(path) as handle:
                for chunk in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from None
        identities.append(_SourceIdentity(path, size, digest.hexdigest()))
    return identities


def _cache_key(root: Path, protocol: int, use_gt_info: bool, sources: list[_SourceIdentity]) -> str:
    """The entry's name and identity: format version, root, protocol, box source, and each source file's path, size and SHA-256."""
    digest = hashlib.sha256(f"v{INDEX_FORMAT_VERSION}|{root.resolve()}|{protocol}|{use_gt_info}".encode())
    for source in sources:
        digest.update(f"|{source.path.resolve()}|{source.size}|{source.sha256}".encode())
    return digest.hexdigest()


def _checksum(members: list[tuple[str, bytes]]) -> str:
    """SHA-256 over the members' names, lengths and bytes, in order."""
    digest = hashlib.sha256()
    for name, data in members:
        digest.update(name.encode() + b"\0" + struct.pack("<Q", len(data)) + data)
    return digest.hexdigest()


def _label(key: str, checksum: str) -> bytes:
    """The zip comment of an entry: format, version, key and content checksum, read before any array is parsed."""
    return f"{_INDEX_FORMAT_NAME} {INDEX_FORMAT_VERSION} {key} {checksum}".encode("ascii")


def _save_index(index: TestIndex, path: Path, key: str) -> None:
    """Write the entry (an uncompressed .npz); a cache that cannot be written only costs speed."""
    members = []
    for member in _INDEX_MEMBERS:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.ascontiguousarray(getattr(index, member.removesuffix(".npy"))), allow_pickle=False)
        members.append((member, buffer.getvalue()))
    archive_bytes = io.BytesIO()
    with zipfile.ZipFile(archive_bytes, "w", compression=zipfile.ZIP_STORED) as archive:
        for member, data in members:
            archive.writestr(member, data)
        archive.comment = _label(key, _checksum(members))
    try:
        atomic_write_bytes(path, archive_bytes.getvalue(), durable=False)
    except OSError:
        pass


def _load_cached_index(path: Path, key: str) -> TestIndex | None:
    """The cached index, or None (a miss) unless the entry is complete, of this format and key, and matches its checksum.

    Sizes are checked against the file before anything is read, so a damaged
    entry costs no more memory than its size; arrays are parsed only once their
    bytes match the checksum.
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            with zipfile.ZipFile(handle) as archive:
                label = archive.comment
                infos = archive.infolist()
                sound = (
                    tuple(info.filename for info in infos) == _INDEX_MEMBERS
                    and all(info.compress_type == zipfile.ZIP_STORED and info.compress_size == info.file_size for info in infos)
                    and sum(info.file_size for info in infos) <= size
                )
                members = [(info.filename, archive.read(info)) for info in infos] if sound else []
    except Exception:  # zipfile raises BadZipFile, NotImplementedError, struct.error, EOFError, ... for damage; a miss is always safe
        return None
    if not members or label != _label(key, _checksum(members)):
        return None
    arrays = {name.removesuffix(".npy"): np.lib.format.read_array(io.BytesIO(data), allow_pickle=False) for name, data in members}
    return TestIndex(**arrays)


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
    identities = _source_identities(sources)
    digests = {source.path: source.sha256 for source in identities}
    index = None
    entry: tuple[Path, str] | None = None  # the cache file and the key it must carry
    if cache_dir:
        key = _cache_key(root, protocol, use_gt_info, identities)
        entry = (Path(cache_dir) / f"h36m_test_{key[:32]}.npz", key)
        index = _load_cached_index(*entry)
    if index is None:
        index = _build_index(root, protocol, use_gt_info, digests)
        if entry is not None:
            _save_index(index, *entry)
    check_images(root, index)
    return index


def check_images(root: Path, index: TestIndex) -> None:
    """Every test image must exist before any compute is spent."""
    missing = [name for name in index.file_name if not (root / "images" / name).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{root / 'images' / missing[0]}: image missing{more}")
