"""Inputs the Human3.6M reader cannot vouch for are refused with one line; its index cache never serves a wrong index.

Each case damages a private copy of the synthetic sample the way a broken or
hand-edited file would, and expects a DataError naming the file and the image,
annotation or camera id, where an unchecked reader would score one image with
another's box, count an image twice, or crop nothing. The cache tests rewrite
entries by hand (a changed array, a foreign key, an older format) and expect the
reader to rebuild rather than trust them.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convnextpose_eval.common.errors import DataError
from convnextpose_eval.data import h36m
from convnextpose_eval.data.h36m import TestIndex, load_test_index

TestIndex.__test__ = False  # a dataclass named Test*: not a test class

FIELDS = ("image_id", "file_name", "action", "subject", "bbox", "root_cam", "joint_cam", "focal", "center", "image_size")
BBOX_ROOT = Path("bbox_root") / "bbox_root_human36m_output.json"
P1_COUNT = 23  # the sample's documented protocol-1 size (sample/generator.py)


def _data_file(root: Path, subject: int, kind: str = "data") -> Path:
    return root / "annotations" / f"Human36M_subject{subject}_{kind}.json"


def _edit(path: Path, change: Callable[[Any], Any]) -> None:
    """Rewrite a JSON file through ``change`` (which edits in place or returns the new document)."""
    document = json.loads(path.read_text())
    changed = change(document)
    path.write_text(json.dumps(document if changed is None else changed))


def _test_pairs(root: Path, subject: int) -> list[tuple[dict, dict]]:
    """(image, annotation) of the subject's test frames (frame_idx % 64 == 0), in file order."""
    document = json.loads(_data_file(root, subject).read_text())
    images = {image["id"]: image for image in document["images"]}
    return [(images[a["image_id"]], a) for a in document["annotations"] if images[a["image_id"]]["frame_idx"] % 64 == 0]


def _one_line_naming(error: pytest.ExceptionInfo, path: Path, *ids: int) -> str:
    message = str(error.value)
    assert message and "\n" not in message, repr(message)
    assert str(path) in message, message
    for identifier in ids:
        assert re.search(rf"(?<![\d.]){identifier}(?![\d.])", message), f"{identifier} not named in: {message}"
    return message


@pytest.fixture()
def root(copy_sample_data, tmp_path: Path) -> Path:
    return copy_sample_data(tmp_path / "data")


# --------------------------------------------------------------------------- duplicates (one image scored twice or with another's file)


def test_two_images_with_one_id_in_a_file_are_refused(root: Path) -> None:
    path = _data_file(root, 11)
    (first, _), (second, second_ann) = _test_pairs(root, 11)[:2]

    def duplicate(document: dict) -> None:
        for image in document["images"]:
            if image["id"] == second["id"]:
                image["id"] = first["id"]
        for ann in document["annotations"]:
            if ann["id"] == second_ann["id"]:
                ann["image_id"] = first["id"]

    _edit(path, duplicate)
    with pytest.raises(DataError) as error:
        load_test_index(root, 1, True)
    _one_line_naming(error, path, first["id"])


def test_an_image_id_listed_by_two_subject_files_is_refused(root: Path) -> None:
    """The RootNet table is keyed by image id alone: a shared id would hand one image the other's box and root."""
    s9_id = _test_pairs(root, 9)[0][0]["id"]
    s11_image, s11_ann = _test_pairs(root, 11)[0]
    path = _data_file(root, 11)

    def collide(document: dict) -> None:
        for image in document["images"]:
            if image["id"] == s11_image["id"]:
                image["id"] = s9_id
        for ann in document["annotations"]:
            if ann["id"] == s11_ann["id"]:
                ann["image_id"] = s9_id

    _edit(path, collide)
    for use_gt_info in (False, True):
        with pytest.raises(DataError) as error:
            load_test_index(root, 2, use_gt_info)
        message = _one_line_naming(error, path, s9_id)
        assert str(_data_file(root, 9)) in message, "both files must be named"


def test_a_duplicated_annotation_is_refused(root: Path) -> None:
    path = _data_file(root, 11)
    image, ann = _test_pairs(root, 11)[3]
    _edit(path, lambda document: document["annotations"].append(dict(ann)))
    with pytest.raises(DataError) as error:
        load_test_index(root, 1, True)
    _one_line_naming(error, path, image["id"])


def test_a_duplicated_rootnet_entry_is_refused(root: Path) -> None:
    path = root / BBOX_ROOT
    image_id = _test_pairs(root, 11)[2][0]["id"]

    def duplicate(entries: list) -> None:
        entry = next(e for e in entries if e["image_id"] == image_id)
        entries.append({**entry, "bbox": [v + 7.0 for v in entry["bbox"]]})

    _edit(path, duplicate)
    with pytest.raises(DataError) as error:
        load_test_index(root, 1, False)
    _one_line_naming(error, path, image_id)


# --------------------------------------------------------------------------- boxes and roots


@pytest.mark.parametrize("sizes", [(-1.0, -1.0), (-30.0, 120.0), (80.0, -2.5)], ids=["both", "width", "height"])
def test_a_gt_box_of_negative_size_is_refused(root: Path, sizes: tuple[float, float]) -> None:
    path = _data_file(root, 11)
    image, ann = _test_pairs(root, 11)[4]

    def shrink(document: dict) -> None:
        for entry in document["annotations"]:
            if entry["id"] == ann["id"]:
                entry["bbox"][2:] = list(sizes)

    _edit(path, shrink)
    with pytest.raises(DataError) as error:
        load_test_index(root, 1, True)
    message = _one_line_naming(error, path, image["id"])
    assert "negative" in message


def test_a_gt_box_of_zero_width_is_still_skipped(root: Path) -> None:
    """docs/protocol.md, "From image to network input" (an empty box drops the image): the authors' loader drops such a sample, it is not an error."""
    image, ann = _test_pairs(root, 11)[5]

    def empty(document: dict) -> None:
        for entry in document["annotations"]:
            if entry["id"] == ann["id"]:
                entry["bbox"][2] = 0.0

    _edit(_data_file(root, 11), empty)
    index = load_test_index(root, 1, True)
    assert len(index) == P1_COUNT - 1 and image["id"] not in index.image_id.tolist()


@pytest.mark.parametrize(
    "bbox_change", [(2, 0.0), (3, 0.0), (2, -40.0), (3, -1.0)], ids=["zero_width", "zero_height", "negative_width", "negative_height"]
)
def test_a_rootnet_box_without_positive_size_is_refused(root: Path, bbox_change: tuple[int, float]) -> None:
    path = root / BBOX_ROOT
    image_id = _test_pairs(root, 11)[1][0]["id"]
    where, value = bbox_change

    def degrade(entries: list) -> None:
        next(e for e in entries if e["image_id"] == image_id)["bbox"][where] = value

    _edit(path, degrade)
    with pytest.raises(DataError) as error:
        load_test_index(root, 1, False)
    _one_line_naming(error, path, image_id)


@pytest.mark.parametrize("depth", [0.0, -4200.0])
def test_a_rootnet_root_not_in_front_of_the_camera_is_refused(root: Path, depth: float) -> None:
    path = root / BBOX_ROOT
    image_id = _test_pairs(root, 11)[6][0]["id"]

    def move(entries: list) -> None:
        next(e for e in entries if e["image_id"] == image_id)["root_cam"][2] = depth

    _edit(path, move)
    with pytest.raises(DataError) as error:
        load_test_index(root, 1, False)
    message = _one_line_naming(error, path, image_id)
    assert "depth" in message


# --------------------------------------------------------------------------- cameras


CAMERA_DAMAGE = {
    "focal_zero": ("f", lambda camera: [0.0, 0.0]),
    "focal_one_zero": ("f", lambda camera: [camera["f"][0], 0.0]),
    "focal_negative": ("f", lambda camera: [-camera["f"][0], camera["f"][1]]),
    # 1e39 is a finite JSON number but overflows the float32 the cameras are computed in
    "rotation_overflow": ("R", lambda camera: [[1e39, *camera["R"][0][1:]], *camera["R"][1:]]),
    "translation_overflow": ("t", lambda camera: [camera["t"][0], -1e39, camera["t"][2]]),
    "centre_overflow": ("c", lambda camera: [1e39, camera["c"][1]]),
    "rotation_not_3x3": ("R", lambda camera: [row[:2] for row in camera["R"][:2]]),
    "focal_not_numbers": ("f", lambda camera: ["near", None]),
}


@pytest.mark.parametrize("damage", sorted(CAMERA_DAMAGE))
def test_a_bad_camera_is_refused_with_one_line(root: Path, damage: str) -> None:
    field, change = CAMERA_DAMAGE[damage]
    path = _data_file(root, 11, "camera")
    camera_id = str(_test_pairs(root, 11)[0][0]["cam_idx"])

    def spoil(cameras: dict) -> None:
        cameras[camera_id][field] = change(cameras[camera_id])

    _edit(path, spoil)
    with pytest.raises(DataError) as error:
        load_test_index(root, 1, True)
    message = _one_line_naming(error, path)
    assert re.search(rf"camera '?{camera_id}'?", message), message
    assert re.search(rf"\b{field}\b", message), message


# --------------------------------------------------------------------------- malformed fields


IMAGE_DAMAGE = {
    "width_beyond_64_bits": ("width", 10**30),
    "frame_not_whole": ("frame_idx", 64.5),
    "height_a_word": ("height", "tall"),
    "subject_a_list": ("subject", [11]),
}


@pytest.mark.parametrize("damage", sorted(IMAGE_DAMAGE))
def test_a_malformed_image_field_is_one_line(root: Path, damage: str) -> None:
    field, value = IMAGE_DAMAGE[damage]
    path = _data_file(root, 11)
    image_id = _test_pairs(root, 11)[0][0]["id"]

    def spoil(document: dict) -> None:
        next(image for image in document["images"] if image["id"] == image_id)[field] = value

    _edit(path, spoil)
    with pytest.raises(DataError) as error:
        load_test_index(root, 1, True)
    assert field in _one_line_naming(error, path, image_id)


# --------------------------------------------------------------------------- truncated files


@pytest.fixture()
def pristine(root: Path) -> dict[Path, bytes]:
    """The files a protocol-2 RootNet run reads, with their original bytes."""
    paths = [_data_file(root, s, kind) for s in (9, 11) for kind in ("data", "camera", "joint_3d")] + [root / BBOX_ROOT]
    return {path: path.read_bytes() for path in paths}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, 6), where=st.floats(0, 1, exclude_max=True))
def test_a_truncated_json_file_gives_one_line_never_a_result(root: Path, pristine: dict[Path, bytes], pick: int, where: float) -> None:
    path, content = list(pristine.items())[pick]
    document_end = len(content.rstrip())  # cut at least the closing bracket: a shorter file is never valid JSON
    path.write_bytes(content[: int(where * document_end)])
    try:
        with pytest.raises(DataError) as error:
            load_test_index(root, 2, False)
        _one_line_naming(error, path)
    finally:
        path.write_bytes(content)


# --------------------------------------------------------------------------- the index cache


class _CountingParser:
    """Stands in for the reader's JSON parser: counts the files it is asked to parse."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real, self.calls = real, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.real(*args, **kwargs)


def _same(a: TestIndex, b: TestIndex) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert getattr(a, name).dtype == getattr(b, name).dtype, name


def _load_counting(monkeypatch: pytest.MonkeyPatch, *args: Any) -> tuple[TestIndex, int]:
    counting = _CountingParser(h36m._read_json)
    with monkeypatch.context() as patch:
        patch.setattr(h36m, "_read_json", counting)
        index = load_test_index(*args)
    return index, counting.calls


def _entry(cache: Path) -> Path:
    (entry,) = cache.glob("*.npz")
    return entry


@pytest.mark.parametrize("blocker", ["file_as_cache_dir", "file_above_cache_dir"])
def test_a_cache_folder_that_cannot_be_made_costs_only_speed(root: Path, tmp_path: Path, blocker: str) -> None:
    """Tests run as root, where permission bits do not stop writes; a regular file in the way always does."""
    wall = tmp_path / "not_a_folder"
    wall.write_text("a regular file\n")
    cache = wall if blocker == "file_as_cache_dir" else wall / "cache"
    uncached = load_test_index(root, 1, False)
    _same(uncached, load_test_index(root, 1, False, cache))
    assert wall.read_text() == "a regular file\n"


def test_an_entry_whose_arrays_were_changed_is_rebuilt_and_replaced(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = load_test_index(root, 1, True, cache)
    entry = _entry(cache)
    # A well-formed zip with a valid CRC, the same names and the same comment: only the content says it is wrong.
    with zipfile.ZipFile(entry) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
        comment = archive.comment
    shifted = io.BytesIO()
    np.lib.format.write_array(shifted, first.bbox + 5.0, allow_pickle=False)
    with zipfile.ZipFile(entry, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.comment = comment
        for info, data in members:
            archive.writestr(info, shifted.getvalue() if info.filename == "bbox.npy" else data)
    with np.load(entry) as readable:
        assert np.array_equal(readable["bbox"], first.bbox + 5.0), "the rewrite must be readable as an .npz"

    rebuilt, parsed = _load_counting(monkeypatch, root, 1, True, cache)
    assert parsed > 0
    _same(first, rebuilt)
    served, parsed = _load_counting(monkeypatch, root, 1, True, cache)
    assert parsed == 0, "the damaged entry must have been replaced by a good one"
    _same(first, served)


def test_an_entry_without_version_and_checksum_is_not_trusted(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain .npz of the right arrays under the right name, as an older release wrote it, is rebuilt."""
    cache = tmp_path / "cache"
    first = load_test_index(root, 1, False, cache)
    entry = _entry(cache)
    arrays = {name: getattr(first, name) for name in FIELDS}
    np.savez_compressed(entry, **{**arrays, "action": arrays["action"] + 1})
    loaded, parsed = _load_counting(monkeypatch, root, 1, False, cache)
    assert parsed > 0
    _same(first, loaded)


def test_an_entry_of_another_format_version_is_a_miss(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = load_test_index(root, 1, True, cache)
    old_entry = _entry(cache)
    monkeypatch.setattr(h36m, "INDEX_FORMAT_VERSION", h36m.INDEX_FORMAT_VERSION + 1)
    _, parsed = _load_counting(monkeypatch, root, 1, True, cache)
    assert parsed > 0
    (new_entry,) = set(cache.glob("*.npz")) - {old_entry}
    shutil.copyfile(old_entry, new_entry)  # the previous version's entry under the current version's name
    loaded, parsed = _load_counting(monkeypatch, root, 1, True, cache)
    assert parsed > 0, "an entry written by another format version must not be served"
    _same(first, loaded)


def test_an_entry_copied_under_another_key_is_a_miss(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    protocol_1 = load_test_index(root, 1, True, cache)
    p1_entry = _entry(cache)
    protocol_2 = load_test_index(root, 2, True, cache)
    (p2_entry,) = set(cache.glob("*.npz")) - {p1_entry}
    assert len(protocol_1) != len(protocol_2)
    shutil.copyfile(p1_entry, p2_entry)
    loaded, parsed = _load_counting(monkeypatch, root, 2, True, cache)
    assert parsed > 0
    _same(protocol_2, loaded)


def test_the_entry_is_keyed_on_the_files_as_they_were_before_parsing(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file edited while the index is being built must not be cached under its new identity."""
    cache = tmp_path / "cache"
    path = _data_file(root, 11)
    dropped = _test_pairs(root, 11)[0][0]["id"]
    real = h36m._read_json

    def edit_after_reading(source: Path, *args: Any) -> Any:
        document = real(source, *args)
        if Path(source) == path and not edit_after_reading.done:
            edit_after_reading.done = True
            _edit(path, lambda d: {**d, "annotations": [a for a in d["annotations"] if a["image_id"] != dropped]})
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 3_000_000_000))
        return document

    edit_after_reading.done = False
    monkeypatch.setattr(h36m, "_read_json", edit_after_reading)
    assert len(load_test_index(root, 1, True, cache)) == P1_COUNT  # built from what was read
    monkeypatch.setattr(h36m, "_read_json", real)
    index = load_test_index(root, 1, True, cache)
    assert len(index) == P1_COUNT - 1 and dropped not in index.image_id.tolist()


@pytest.fixture()
def cached(root: Path, tmp_path: Path) -> tuple[Path, Path, TestIndex, bytes]:
    cache = tmp_path / "cache"
    index = load_test_index(root, 2, False, cache)
    entry = _entry(cache)
    return root, cache, index, entry.read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=6))
def test_corrupting_a_cache_entry_never_changes_the_index(cached, monkeypatch: pytest.MonkeyPatch, flips: list[tuple[float, int]]) -> None:
    root, cache, index, pristine = cached
    damaged = bytearray(pristine)
    for where, mask in flips:
        damaged[int(where * len(damaged))] ^= mask
    entry = _entry(cache)
    entry.write_bytes(bytes(damaged))
    _same(index, load_test_index(root, 2, False, cache))
    served, parsed = _load_counting(monkeypatch, root, 2, False, cache)
    assert parsed == 0, "after a miss the entry is replaced, after a hit it was sound: either way it now serves"
    _same(index, served)
