"""Images are decoded only when whole, undamaged and of the annotated size; otherwise one line says why.

Expected pixels come from ``cv2.imread`` on the file (OpenCV's own file reader,
as the authors' loader calls it); damaged files are made here by cutting,
patching and resizing encoded images.
"""

from __future__ import annotations

import re
import struct
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from convnextpose_eval.common.errors import DataError
from convnextpose_eval.data import images
from convnextpose_eval.data.images import read_image

IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
WIDTH, HEIGHT = 160, 120


def _picture(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> np.ndarray:
    """Smooth colour blobs plus noise: enough detail that the compressed data spans most of the file."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(image.astype(np.int16) + rng.integers(-20, 21, size=image.shape), 0, 255).astype(np.uint8)


def _encode(extension: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(extension, image, params or [])
    assert ok
    return buffer.tobytes()


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _refused(path: Path, width: int, height: int, pattern: str) -> str:
    with pytest.raises(DataError) as caught:
        read_image(path, width, height)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(str(path)), message
    assert re.search(pattern, message, flags=re.IGNORECASE), message
    return message


# --------------------------------------------------------------------------- good files: same pixels as cv2.imread


@pytest.mark.parametrize(
    ("name", "extension", "params", "grey"),
    [
        ("baseline.jpg", ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90], False),
        ("progressive.jpg", ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], False),
        ("restarts.jpg", ".jpg", [cv2.IMWRITE_JPEG_RST_INTERVAL, 2], False),
        ("grey.jpg", ".jpg", [], True),
        ("colour.png", ".png", [], False),
        ("grey.png", ".png", [], True),
    ],
)
def test_whole_file_decodes_exactly_as_cv2_imread(tmp_path: Path, name: str, extension: str, params: list[int], grey: bool) -> None:
    picture = _picture()
    path = _write(tmp_path, name, _encode(extension, picture[..., 1] if grey else picture, params))
    expected = cv2.imread(str(path), IMREAD_FLAGS)
    got = read_image(path, WIDTH, HEIGHT)
    assert got.dtype == np.uint8 and got.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(got, expected)


def test_bgr_channel_order_of_a_lossless_file(tmp_path: Path) -> None:
    picture = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    picture[:, :40] = (255, 0, 0)  # blue in BGR
    path = _write(tmp_path, "blue.png", _encode(".png", picture))
    assert read_image(path, WIDTH, HEIGHT)[10, 10].tolist() == [255, 0, 0]


# --------------------------------------------------------------------------- truncated and damaged files


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.3, 0.6, 0.9, 0.99])
def test_truncated_jpeg_is_refused(tmp_path: Path, fraction: float) -> None:
    data = _encode(".jpg", _picture(), [cv2.IMWRITE_JPEG_QUALITY, 90])
    path = _write(tmp_path, f"cut_{fraction}.jpg", data[: int(len(data) * fraction)])
    _refused(path, WIDTH, HEIGHT, r"truncated")


@pytest.mark.parametrize("missing", [1, 2])
def test_jpeg_without_its_end_marker_is_refused(tmp_path: Path, missing: int) -> None:
    data = _encode(".jpg", _picture())
    assert data.endswith(b"\xff\xd9")
    path = _write(tmp_path, "no_eoi.jpg", data[:-missing])
    _refused(path, WIDTH, HEIGHT, r"truncated.*end-of-image")


def test_progressive_jpeg_cut_between_scans_is_refused(tmp_path: Path) -> None:
    data = _encode(".jpg", _picture(), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    second_scan = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    path = _write(tmp_path, "two_scans_missing.jpg", data[:second_scan])
    _refused(path, WIDTH, HEIGHT, r"truncated")


def test_cut_jpeg_with_an_end_marker_appended_is_refused_by_the_decoders_warning(tmp_path: Path) -> None:
    # The structure is whole again, so only libjpeg notices ("Corrupt JPEG data: premature end of data
    # segment", printed on stderr while OpenCV returns a partly grey image).
    data = _encode(".jpg", _picture())
    path = _write(tmp_path, "patched.jpg", data[: int(len(data) * 0.6)] + b"\xff\xd9")
    assert cv2.imread(str(path), IMREAD_FLAGS) is not None, "OpenCV alone accepts this file"
    _refused(path, WIDTH, HEIGHT, r"corrupt.*premature end")


def test_the_same_damage_is_caught_after_a_clean_decode(tmp_path: Path) -> None:
    """One decode's messages must not leak into or hide from the next one."""
    data = _encode(".jpg", _picture())
    good = _write(tmp_path, "good.jpg", data)
    bad = _write(tmp_path, "bad.jpg", data[: len(data) // 2] + b"\xff\xd9")
    for _ in range(2):
        read_image(good, WIDTH, HEIGHT)
        _refused(bad, WIDTH, HEIGHT, r"corrupt")
    read_image(good, WIDTH, HEIGHT)


class _Reads(Dataset):
    """Reads one file per item, as the test set's workers do."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(read_image(self.paths[i], WIDTH, HEIGHT))


def test_decoder_warnings_are_caught_inside_dataloader_workers(tmp_path: Path) -> None:
    data = _encode(".jpg", _picture())
    good = _write(tmp_path, "good.jpg", data)
    bad = _write(tmp_path, "bad.jpg", data[: int(len(data) * 0.6)] + b"\xff\xd9")
    read_image(good, WIDTH, HEIGHT)  # the parent has decoded (and set up its capture) before forking
    loaded = list(DataLoader(_Reads([good, good]), batch_size=1, num_workers=1))
    np.testing.assert_array_equal(loaded[0][0].numpy(), cv2.imread(str(good), IMREAD_FLAGS))
    with pytest.raises(Exception, match=r"bad\.jpg.*corrupt"):
        list(DataLoader(_Reads([good, bad]), batch_size=1, num_workers=1))
    _refused(bad, WIDTH, HEIGHT, r"corrupt")  # and the parent still catches it afterwards


CLOSED_STDERR_SCRIPT = """
import os, sys
from pathlib import Path
from convnextpose_eval.data.images import read_image
from convnextpose_eval.common.errors import DataError
os.close(2)
good, bad = Path(sys.argv[1]), Path(sys.argv[2])
print(read_image(good, {width}, {height}).shape)
try:
    read_image(bad, {width}, {height})
except DataError as exc:
    print("refused:", exc)
print(read_image(good, {width}, {height}).shape)
"""


def test_decoder_warnings_are_caught_in_a_process_without_stderr(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = _encode(".jpg", _picture())
    good = _write(tmp_path, "good.jpg", data)
    bad = _write(tmp_path, "bad.jpg", data[: int(len(data) * 0.6)] + b"\xff\xd9")
    script = CLOSED_STDERR_SCRIPT.format(width=WIDTH, height=HEIGHT)
    done = subprocess.run([sys.executable, "-c", script, str(good), str(bad)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == lines[2] == f"({HEIGHT}, {WIDTH}, 3)"
    assert lines[1].startswith(f"refused: {bad}: corrupt"), lines
    assert done.stderr == "", "stderr was closed: nothing may appear there, not even the decoder's message"


def test_truncated_png_is_refused(tmp_path: Path) -> None:
    data = _encode(".png", _picture())
    for fraction in (0.3, 0.6, 0.95):
        path = _write(tmp_path, f"cut_{fraction}.png", data[: int(len(data) * fraction)])
        _refused(path, WIDTH, HEIGHT, r"truncated PNG")
    no_iend = _write(tmp_path, "no_iend.png", data[:-12])
    _refused(no_iend, WIDTH, HEIGHT, r"truncated PNG.*IEND")


def test_png_with_a_damaged_byte_is_refused(tmp_path: Path) -> None:
    data = bytearray(_encode(".png", _picture()))
    data[len(data) // 2] ^= 0x40
    path = _write(tmp_path, "flipped.png", bytes(data))
    _refused(path, WIDTH, HEIGHT, r"corrupt PNG.*CRC")


def test_garbage_after_the_jpeg_signature_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "garbage.jpg", b"\xff\xd8 this is not a JPEG " + bytes(range(256)) * 4)
    _refused(path, WIDTH, HEIGHT, r"corrupt JPEG")


# --------------------------------------------------------------------------- size against the annotation


def test_image_downscaled_to_half_size_is_refused(tmp_path: Path) -> None:
    half = cv2.resize(_picture(), (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_AREA)
    for extension in (".jpg", ".png"):
        path = _write(tmp_path, f"half{extension}", _encode(extension, half))
        message = _refused(path, WIDTH, HEIGHT, r"is 80x60 but its annotation says 160x120")
        assert "80x60" in message


def test_one_pixel_image_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "dot.jpg", _encode(".jpg", np.full((1, 1, 3), 128, dtype=np.uint8)))
    _refused(path, 1000, 1000, r"is 1x1 but its annotation says 1000x1000")


def test_width_and_height_are_not_swapped(tmp_path: Path) -> None:
    path = _write(tmp_path, "landscape.jpg", _encode(".jpg", _picture()))
    _refused(path, HEIGHT, WIDTH, r"is 160x120 but its annotation says 120x160")


def _bomb() -> bytes:
    """A small valid JPEG whose frame header is patched to claim 20000 x 20000 pixels (1.2 GB decoded)."""
    data = bytearray(_encode(".jpg", np.full((16, 16, 3), 90, dtype=np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50]))
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", 20000, 20000)
    return bytes(data)


@pytest.mark.parametrize("annotated", [(1000, 1000), (20000, 20000)], ids=["annotation_1000", "annotation_agrees"])
def test_tiny_file_claiming_20000_squared_is_refused_before_any_allocation(tmp_path: Path, monkeypatch, annotated) -> None:
    data = _bomb()
    assert len(data) < 1000
    path = _write(tmp_path, "bomb.jpg", data)
    decodes = []
    monkeypatch.setattr(images.cv2, "imdecode", lambda *args: decodes.append(args))
    tracemalloc.start()
    try:
        message = _refused(path, *annotated, r"20000x20000")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not decodes, "the decoder must never see the file"
    assert peak < 1_000_000, f"{peak} bytes allocated while refusing a {len(data)}-byte file"
    assert "20000x20000" in message


# --------------------------------------------------------------------------- not images at all


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.jpg", b"plain text, not pixels\n"),
        ("empty.jpg", b""),
        ("picture.bmp", None),
        ("animation.gif", b"GIF89a\x10\x00\x10\x00\x80\x00\x00" + bytes(40)),
    ],
)
def test_files_that_are_not_jpeg_or_png_are_refused(tmp_path: Path, name: str, content: bytes | None) -> None:
    data = content if content is not None else _encode(".bmp", _picture())
    path = _write(tmp_path, name, data)
    _refused(path, WIDTH, HEIGHT, r"not an image in a supported format")


def test_missing_file_and_folder_are_refused(tmp_path: Path) -> None:
    _refused(tmp_path / "absent.jpg", WIDTH, HEIGHT, r"image missing")
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    _refused(folder, WIDTH, HEIGHT, r"unreadable")
