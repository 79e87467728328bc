"""Decoded test crops kept on disk as one memory-mapped array per (data set, box source, input size).

Decoding a full-size JPEG costs far more than copying its 192 KiB crop, and a
sweep evaluates the same crops once per variant, so crops are kept between
runs. One array per test set (not one file per crop) lets a batch be read with
a single fancy index from the page cache.

Layout: ``<crop_cache_dir>/<key>/patches.u8`` holds N patches of S x S x 3
uint8 in test-index order; ``rows.u8`` holds one ROW_DTYPE record per patch;
``key.json`` says, for people, what the folder was made from (the code never
reads it). The folder's key covers CROP_FORMAT_VERSION, the source code of the
functions that make a crop (so an edit without a version bump still misses),
the OpenCV version, the data root, the protocol and box source, the input size
and the test index's file names. Each row is keyed on its image file's identity
(size, mtime_ns, ctime_ns, inode, taken once, before the file is read: a file
replaced while it is read can only make the row miss later, never stand for the
new file), on the annotated width and height (which the cold path checks against
the file's header, so a warm row must match them too) and on its box's exact
bytes. A row is served only if its flag says valid, the identity of the file now,
the annotated size and the box equal the stored ones, and the CRC-32 of the patch
bytes plus that key matches: anything else, including any damaged byte in these
files, is a miss, and the crop is made again and stored.

Writers: rows written by one run are disjoint per process (DataLoader workers,
DDP ranks); several runs writing the same row each write the same bytes in the
order pixels, then checksum and key, then the valid flag, so a reader sees a
consistent row or a miss.

What the key cannot see: the kernel sets ctime_ns on every write and metadata
change, and no tool can set it back, so an image edited in place is a miss even
with its size and mtime restored (``touch -r``); only a change made beneath the
file system (a raw disk write, a clock set back) or a change to OpenCV's decoding
that keeps its version string would go unseen. Anyone who can write these files
can forge rows: the checksum detects damage, not tampering. To clear the store,
delete ``paths.cache_dir`` (or its ``crops`` folder) while no run is using it.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..common.atomic import atomic_write_json
from . import crops, images
from .h36m import TestIndex

# Bump whenever process_bbox, crop_transform, crop_patch or read_image change what a crop holds.
CROP_FORMAT_VERSION = 3
PATCHES_FILE = "patches.u8"
ROWS_FILE = "rows.u8"
KEY_FILE = "key.json"
# Four random bytes equal this with probability 2**-32; zero-filled (never written) rows are not valid.
ROW_VALID = 0x4C41_5644
ROW_DTYPE = np.dtype(
    [("checksum", "<u4"), ("valid", "<u4"), ("size", "<i8"), ("mtime_ns", "<i8"), ("ctime_ns", "<i8"), ("inode", "<u8"),
     ("width", "<i8"), ("height", "<i8"), ("bbox", "<f8", (4,))]
)  # fmt: skip
IDENTITY_DTYPE = np.dtype([("size", "<i8"), ("mtime_ns", "<i8"), ("ctime_ns", "<i8"), ("inode", "<u8")])
Identity = tuple[int, int, int, int]  # (size, mtime_ns, ctime_ns, inode)
# The identity of a file that could not be stat'ed: never equal to a stored identity of a real file.
_NO_FILE: Identity = (-1, -1, -1, 0)

log = logging.getLogger(__name__)


def crop_code_digest() -> str:
    """A hash of everything that decides a crop's bytes besides the image and the box."""
    digest = hashlib.sha256(f"v{CROP_FORMAT_VERSION}|opencv {cv2.__version__}".encode())
    for source in (crops.process_bbox, crops.crop_transform, crops.crop_patch, images):
        try:
            digest.update(inspect.getsource(source).encode())
        except (OSError, TypeError):  # no source shipped: the version constant alone decides
            digest.update(getattr(source, "__qualname__", getattr(source, "__name__", "")).encode())
    return digest.hexdigest()


def store_key(root: Path, box_source: str, input_size: int, file_names: Sequence[str]) -> str:
    """The folder name of the store for one test set, box source and input size."""
    digest = hashlib.sha256(f"{crop_code_digest()}|{Path(root).resolve()}|{box_source}|{input_size}|{len(file_names)}".encode())
    for name in file_names:
        digest.update(b"\0" + str(name).encode())
    return digest.hexdigest()[:32]


def identity_of(status: os.stat_result) -> Identity:
    """What a row knows of its image file: size, mtime_ns, ctime_ns (changed by every write) and inode."""
    return status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino


def _identity(path: str) -> Identity:
    try:
        return identity_of(os.stat(path))
    except OSError:
        return _NO_FILE


def _checksum(patch: np.ndarray, identity: Identity, size: tuple[int, int], bbox: np.ndarray, row: int) -> int:
    """CRC-32 of the patch bytes followed by the row's key: a row moved, re-keyed or damaged fails it."""
    key = struct.pack("<qqqQqqq", *identity, *size, row) + np.ascontiguousarray(bbox, dtype="<f8").tobytes()
    return zlib.crc32(key, zlib.crc32(patch))


def fresh_crop(path: Path, bbox: np.ndarray, width: int, height: int, size: int) -> tuple[np.ndarray, Identity]:
    """Decode and crop one image; also the file's identity as it was before its bytes were read."""
    image, status = images.read_image_with_stat(path, width, height)
    return crops.crop_patch(image, bbox, size), identity_of(status)


class CropStore:
    """Patches of one test index, served from the memory-mapped store or made fresh and stored.

    Nothing touches the disk until the first ``fetch`` or ``is_warm``. A store
    that cannot be created or opened only costs speed: every crop is made fresh.
    Pickling (spawned DataLoader workers and DDP ranks) drops the mappings;
    each process maps the files itself.
    """

    def __init__(self, cache_dir: str | os.PathLike[str], root: Path, index: TestIndex, box_source: str, input_size: int) -> None:
        self.root = Path(root)
        self.index = index
        self.box_source = box_source
        self.input_size = int(input_size)
        self.image_paths = [str(self.root / "images" / str(name)) for name in index.file_name]
        self.folder = Path(cache_dir) / store_key(self.root, box_source, self.input_size, index.file_name.tolist())
        self._patches: np.ndarray | None = None
        self._rows: np.ndarray | None = None
        self._writable = False
        self._opened = False

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_patches=None, _rows=None, _writable=False, _opened=False)
        return state

    # ------------------------------------------------------------------ files

    def _map(self, name: str, nbytes: int) -> tuple[mmap.mmap, bool]:
        """Map ``name``, creating it with all its blocks allocated: a sparse file on a full disk would
        kill the process with SIGBUS on first write. Opened read-only when it cannot be written."""
        path = self.folder / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            writable = True
        except PermissionError:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            writable = False
        try:
            if os.fstat(fd).st_size < nbytes:
                if not writable:
                    raise OSError(f"{path}: shorter than {nbytes} bytes and read-only")
                os.posix_fallocate(fd, 0, nbytes)
            return mmap.mmap(fd, nbytes, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ), writable
        finally:
            os.close(fd)

    def _open(self) -> bool:
        """Map the store once per process; False (and a warning) when it cannot be used."""
        if self._opened:
            return self._patches is not None
        self._opened = True
        count, size = len(self.index), self.input_size
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            patches, patches_writable = self._map(PATCHES_FILE, count * size * size * 3)
            rows, rows_writable = self._map(ROWS_FILE, count * ROW_DTYPE.itemsize)
            if patches_writable and rows_writable and not (self.folder / KEY_FILE).exists():
                atomic_write_json(self.folder / KEY_FILE, self._description())
        except OSError as exc:
            log.warning("crop store %s unusable, every crop is decoded afresh: %s", self.folder, exc)
            return False
        self._patches = np.frombuffer(patches, dtype=np.uint8).reshape(count, size, size, 3)
        self._rows = np.frombuffer(rows, dtype=ROW_DTYPE)
        self._writable = patches_writable and rows_writable
        return True

    def _description(self) -> dict:
        return {
            "crop_format_version": CROP_FORMAT_VERSION, "crop_code": crop_code_digest(), "opencv": cv2.__version__,
            "data_root": str(self.root.resolve()), "box_source": self.box_source, "input_size": self.input_size,
            "rows": len(self.index), "files": {PATCHES_FILE: "uint8 (rows, size, size, 3) RGB", ROWS_FILE: str(ROW_DTYPE.descr)},
        }  # fmt: skip

    # ------------------------------------------------------------------ rows

    def _key_matches(self, rows: np.ndarray, meta: np.ndarray, identities: np.ndarray) -> np.ndarray:
        """Per row: stored flag valid, stored identity equal to the file's now, stored size and box equal to the index's."""
        sizes = self.index.image_size[rows]
        return (
            (meta["valid"] == ROW_VALID)
            & (meta["size"] == identities["size"])
            & (meta["mtime_ns"] == identities["mtime_ns"])
            & (meta["ctime_ns"] == identities["ctime_ns"])
            & (meta["inode"] == identities["inode"])
            & (meta["width"] == sizes[:, 0])
            & (meta["height"] == sizes[:, 1])
            & (meta["bbox"] == self.index.bbox[rows]).all(axis=1)
        )

    def _identities(self, rows: np.ndarray) -> np.ndarray:
        return np.array([_identity(self.image_paths[row]) for row in rows], dtype=IDENTITY_DTYPE)

    def is_warm(self, rows: Sequence[int]) -> bool:
        """Whether every row's key matches (checksums are checked when rows are read, not here)."""
        if not self._open():
            return False
        rows = np.asarray(rows, dtype=np.int64)
        assert self._rows is not None
        return bool(self._key_matches(rows, self._rows[rows], self._identities(rows)).all())

    def fetch(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(B, S, S, 3) uint8 patches of ``rows`` and, per row, whether it came from the store."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self._open():
            return np.stack([self._make(int(row))[0] for row in rows]), np.zeros(len(rows), dtype=bool)
        assert self._patches is not None and self._rows is not None
        identities = self._identities(rows)
        meta = self._rows[rows]
        served = self._key_matches(rows, meta, identities)
        if served.all():  # the warm path: one fancy index
            patches = self._patches[rows]
        else:  # rows that will be made afresh are not read
            patches = np.empty((len(rows), *self._patches.shape[1:]), dtype=np.uint8)
            candidates = np.flatnonzero(served)
            if candidates.size:
                patches[candidates] = self._patches[rows[candidates]]
        for j in np.flatnonzero(served):
            identity: Identity = tuple(int(v) for v in identities[j].item())  # type: ignore[assignment]
            row = int(rows[j])
            served[j] = _checksum(patches[j], identity, self._annotated_size(row), self.index.bbox[row], row) == int(meta["checksum"][j])
        for j in np.flatnonzero(~served):
            row = int(rows[j])
            patches[j], identity = self._make(row)
            self.put(row, patches[j], identity)
        return patches, served

    def _annotated_size(self, row: int) -> tuple[int, int]:
        width, height = (int(v) for v in self.index.image_size[row])
        return width, height

    def _make(self, row: int) -> tuple[np.ndarray, Identity]:
        width, height = self._annotated_size(row)
        return fresh_crop(Path(self.image_paths[row]), self.index.bbox[row], width, height, self.input_size)

    def put(self, row: int, patch: np.ndarray, identity: Identity) -> None:
        """Store ``patch`` as row ``row``, made from the file version ``identity`` (size, mtime_ns, ctime_ns, inode)
        at the annotated size the cold path checked it against.

        Flag cleared, pixels, then checksum and key, then the flag set: a reader
        never takes a half-written row. Ignored when the store is read-only.
        """
        if not self._open() or not self._writable:
            return
        assert self._patches is not None and self._rows is not None
        bbox = self.index.bbox[row]
        self._rows["valid"][row] = 0
        self._patches[row] = patch
        record = np.zeros((), dtype=ROW_DTYPE)
        annotated = self._annotated_size(row)
        record["checksum"] = _checksum(patch, identity, annotated, bbox, row)
        record["size"], record["mtime_ns"], record["ctime_ns"], record["inode"] = identity
        record["width"], record["height"] = annotated
        record["bbox"] = bbox
        self._rows[row] = record
        self._rows["valid"][row] = ROW_VALID
