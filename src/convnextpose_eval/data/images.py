"""Read a test image only if it is whole, undamaged and the size its annotation says.

OpenCV decodes damaged files without failing: a JPEG cut short comes back with
its missing part grey and only a line on stderr ("Premature end of JPEG file",
"Corrupt JPEG data: ..."), and a file of another size is cropped with boxes
meant for the annotated size. Both give wrong numbers with exit status 0. So
before decoding, the header's dimensions are compared with the annotation's
(which also stops a tiny file claiming 20000x20000 pixels before any memory is
allocated) and the file's structure is walked to its end marker; during
decoding, anything the decoder prints counts as a failure.

The decoder's messages are written by C code to file descriptor 2, so they are
captured there: descriptor 2 points at an anonymous in-memory file while
OpenCV decodes. Each process (DataLoader workers included) makes its own
capture file, and a lock keeps threads of one process from decoding at the
same time, so one decode's messages are never attributed to another.
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np

from ..common.errors import DataError

# Flags as the authors' loader reads images: BGR, EXIF orientation ignored.
DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
# Far above any Human3.6M frame (1000x1002), far below what would exhaust memory (3 bytes per pixel).
MAX_PIXELS = 1 << 26
# No compressed file of MAX_PIXELS pixels is larger than its raw pixels plus headers.
MAX_FILE_BYTES = 4 * MAX_PIXELS

JPEG_SIGNATURE = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers of every JPEG coding process; 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) are not frames.
_JPEG_FRAME_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_SCAN_MARKER = 0xDA
_JPEG_END_MARKER = 0xD9
# Markers without a length field: TEM and the restart markers RST0..RST7.
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
# Inside compressed data 0xFF is followed by 0x00 (a stuffed byte) or a restart marker; anything else
# (after optional 0xFF fill bytes) is the marker that ends the scan.
_JPEG_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_size(data: bytes, path: Path) -> tuple[int, int]:
    """(width, height) from the frame header, after checking that the marker structure reaches an EOI marker."""
    size: tuple[int, int] | None = None
    pos, end = len(JPEG_SIGNATURE), len(data)
    while True:
        if pos >= end:
            raise DataError(f"{path}: truncated JPEG: the file ends before its end-of-image marker ({end} bytes)")
        if data[pos] != 0xFF:
            raise DataError(f"{path}: corrupt JPEG: no marker at byte {pos} where one must start")
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos >= end:
            raise DataError(f"{path}: truncated JPEG: the file ends inside a marker ({end} bytes)")
        marker = data[pos]
        pos += 1
        if marker == _JPEG_END_MARKER:
            break
        if marker in _JPEG_STANDALONE_MARKERS:
            continue
        if pos + 2 > end:
            raise DataError(f"{path}: truncated JPEG: the file ends inside the header of marker 0x{marker:02X}")
        length = int.from_bytes(data[pos : pos + 2], "big")
        segment_end = pos + length
        if length < 2:
            raise DataError(f"{path}: corrupt JPEG: marker 0x{marker:02X} at byte {pos - 2} has length {length}")
        if segment_end > end:
            raise DataError(f"{path}: truncated JPEG: the file ends inside the header of marker 0x{marker:02X}")
        if marker in _JPEG_FRAME_MARKERS:
            if size is not None:
                raise DataError(f"{path}: corrupt JPEG: more than one frame header")
            if length < 8:
                raise DataError(f"{path}: corrupt JPEG: frame header of {length} bytes")
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            size = (width, height)
        elif marker == _JPEG_SCAN_MARKER:
            if size is None:
                raise DataError(f"{path}: corrupt JPEG: compressed data before the frame header")
            found = _JPEG_MARKER_AFTER_SCAN.search(data, segment_end)
            if found is None:
                raise DataError(f"{path}: truncated JPEG: the file ends inside the compressed data, no end-of-image marker ({end} bytes)")
            segment_end = found.start()
        pos = segment_end
    if size is None:
        raise DataError(f"{path}: corrupt JPEG: no frame header before the end-of-image marker")
    return size


def _png_size(data: bytes, path: Path) -> tuple[int, int]:
    """(width, height) from IHDR, after checking every chunk's length and CRC up to IEND."""
    size: tuple[int, int] | None = None
    pos, end = len(PNG_SIGNATURE), len(data)
    while True:
        if pos + 8 > end:
            raise DataError(f"{path}: truncated PNG: the file ends before its IEND chunk ({end} bytes)")
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        body_end = pos + 8 + length
        if body_end + 4 > end:
            raise DataError(f"{path}: truncated PNG: the file ends inside chunk {kind!r} ({end} bytes)")
        if zlib.crc32(data[pos + 4 : body_end]) != int.from_bytes(data[body_end : body_end + 4], "big"):
            raise DataError(f"{path}: corrupt PNG: chunk {kind!r} at byte {pos} fails its CRC")
        if size is None:
            if kind != b"IHDR" or length != 13:
                raise DataError(f"{path}: corrupt PNG: the first chunk is {kind!r}, not a 13-byte IHDR")
            width, height = struct.unpack(">II", data[pos + 8 : pos + 16])
            size = (width, height)
        if kind == b"IEND":
            return size
        pos = body_end + 4


def image_size(data: bytes, path: Path) -> tuple[int, int]:
    """(width, height) a JPEG or PNG file declares, once its structure has been checked end to end.

    Any other format is refused: the test images are JPEGs, and every format
    accepted must get the same truncation checks.
    """
    if data.startswith(JPEG_SIGNATURE):
        return _jpeg_size(data, path)
    if data.startswith(PNG_SIGNATURE):
        return _png_size(data, path)
    what = "an empty file" if not data else f"starts with bytes {data[:8].hex()}"
    raise DataError(f"{path}: not an image in a supported format (JPEG or PNG): {what}")


class _DecoderMessages:
    """Descriptor 2 redirected to an anonymous file while the decoder runs; what it printed comes back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._fd = -1

    def _capture_fd(self) -> int:
        # After a fork the inherited file is shared with the parent (one file offset): make a new one.
        if self._pid != os.getpid():
            if hasattr(os, "memfd_create"):
                self._fd = os.memfd_create("decoder-messages", os.MFD_CLOEXEC)
            else:
                handle = tempfile.TemporaryFile()
                self._fd = os.dup(handle.fileno())
                handle.close()
            self._pid = os.getpid()
        return self._fd

    def decode(self, data: bytes) -> tuple[np.ndarray | None, str]:
        """cv2.imdecode of ``data`` and the text the decoder wrote to stderr meanwhile."""
        with self._lock:
            capture = self._capture_fd()
            os.ftruncate(capture, 0)
            os.lseek(capture, 0, os.SEEK_SET)
            try:
                saved: int | None = os.dup(2)
            except OSError:  # no stderr at all (a daemon): capture anyway, close it again after
                saved = None
            try:
                os.dup2(capture, 2)
                image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), DECODE_FLAGS)
            finally:
                if saved is None:
                    os.close(2)
                else:
                    os.dup2(saved, 2)
                    os.close(saved)
            os.lseek(capture, 0, os.SEEK_SET)
            printed = os.read(capture, 4096)
        return image, printed.decode("utf-8", "replace").strip()


_DECODER = _DecoderMessages()


def decode_image(data: bytes, path: Path, width: int, height: int) -> np.ndarray:
    """BGR uint8 (height, width, 3) from a file's bytes, exactly as ``cv2.imread`` decodes them, or DataError.

    ``path`` only names the file in errors; ``width`` and ``height`` are the annotation's.
    """
    declared = image_size(data, path)
    if declared[0] * declared[1] > MAX_PIXELS:
        raise DataError(f"{path}: header claims {declared[0]}x{declared[1]} pixels, more than any test image can have; refusing to decode")
    if declared != (width, height):
        raise DataError(f"{path}: image is {declared[0]}x{declared[1]} but its annotation says {width}x{height}")
    image, printed = _DECODER.decode(data)
    if printed:
        message = " / ".join(line.strip() for line in printed.splitlines() if line.strip())
        raise DataError(f"{path}: corrupt image data: the decoder reports '{message}'")
    if image is None:
        raise DataError(f"{path}: corrupt image data: the decoder could not decode it")
    if image.shape != (height, width, 3):
        raise DataError(f"{path}: decoded to shape {image.shape}, expected ({height}, {width}, 3) from its annotation")
    return image


def read_image_with_stat(path: Path, width: int, height: int) -> tuple[np.ndarray, os.stat_result]:
    """The decoded image and the file's stat taken before its bytes were read, from the same open file.

    The stat describes the bytes that were decoded or an older version of the
    file, never a newer one: a cache keyed on it can only miss, not serve a crop
    of a replaced image under the new file's identity.
    """
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            if stat.st_size > MAX_FILE_BYTES:
                raise DataError(f"{path}: {stat.st_size} bytes, more than any test image can have; refusing to read it")
            data = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: image missing") from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from None
    return decode_image(data, path, width, height), stat


def read_image(path: Path, width: int, height: int) -> np.ndarray:
    """BGR uint8 image of the annotated ``width`` x ``height``; a one-line DataError for anything else."""
    return read_image_with_stat(path, width, height)[0]
