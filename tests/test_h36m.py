"""The Human3.6M test index on the synthetic sample, checked against the JSON files by the rules of docs/protocol.md.

Expected values are computed here from the annotation files with the rules of
docs/protocol.md, "The test set" and "From image to network input" (test subjects per protocol, frame_idx % 64 == 0,
non-empty GT boxes, R X + t, Thorax = mean of the shoulders, action = act digits - 2),
never read back from the loader.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from convnextpose_eval.common.errors import DataError
from convnextpose_eval.data import h36m
from convnextpose_eval.data.h36m import TestIndex, check_images, load_test_index

TestIndex.__test__ = False  # a dataclass named Test*: not a test class

SUBJECTS = {1: (11,), 2: (9, 11)}  # docs/protocol.md, "The test set"
L_SHOULDER, R_SHOULDER, THORAX = 11, 14, 17
# data/sample.py's documented counts: P1 23 images on both paths; P2 49 with GT boxes, 50 with RootNet's.
DOCUMENTED_COUNTS = {(1, True): 23, (1, False): 23, (2, True): 49, (2, False): 50}


def _read(path: Path):
    with open(path) as handle:
        return json.load(handle)


def _annotation(root: Path, subject: int, kind: str):
    return _read(root / "annotations" / f"Human36M_subject{subject}_{kind}.json")


def expected_rows(root: Path, protocol: int, use_gt_info: bool) -> list[tuple[int, dict, dict]]:
    """(subject, image record, annotation) of every test image, in annotation order, subject by subject."""
    rows = []
    for subject in SUBJECTS[protocol]:
        data = _annotation(root, subject, "data")
        images = {image["id"]: image for image in data["images"]}
        for ann in data["annotations"]:
            image = images[ann["image_id"]]
            if image["subject"] != subject or image["frame_idx"] % 64 != 0:
                continue
            if use_gt_info and not ann["bbox"][2] * ann["bbox"][3] > 0:
                continue
            rows.append((subject, image, ann))
    return rows


def _square_box(bbox: list[float], width: int, height: int) -> list[float]:
    """docs/protocol.md, "From image to network input", for float boxes: clamp, square about the centre, x1.25."""
    x, y, w, h = bbox
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(width - 1.0, x1 + max(0.0, w - 1)), min(height - 1.0, y1 + max(0.0, h - 1))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * 1.25
    return [cx - side / 2, cy - side / 2, side, side]


@pytest.fixture(scope="module")
def indexes(synthetic_sample: Path) -> dict[tuple[int, bool], TestIndex]:
    return {(p, gt): load_test_index(synthetic_sample, p, gt) for p in (1, 2) for gt in (True, False)}


# --------------------------------------------------------------------------- selection and order


@pytest.mark.parametrize(("protocol", "use_gt_info"), sorted(DOCUMENTED_COUNTS))
def test_counts_and_order_follow_the_protocol_rules(synthetic_sample, indexes, protocol: int, use_gt_info: bool) -> None:
    index = indexes[(protocol, use_gt_info)]
    rows = expected_rows(synthetic_sample, protocol, use_gt_info)
    assert len(rows) == DOCUMENTED_COUNTS[(protocol, use_gt_info)], "the sample no longer has its documented counts"
    assert len(index) == len(rows)
    assert index.image_id.tolist() == [image["id"] for _, image, _ in rows]
    assert index.subject.tolist() == [subject for subject, _, _ in rows]
    assert index.file_name.tolist() == [image["file_name"] for _, image, _ in rows]
    assert set(index.subject.tolist()) == set(SUBJECTS[protocol])


def test_gt_path_skips_only_the_empty_box(synthetic_sample, indexes) -> None:
    gt, rootnet = set(indexes[(2, True)].image_id.tolist()), set(indexes[(2, False)].image_id.tolist())
    (only_rootnet,) = rootnet - gt
    assert gt < rootnet
    (_, image, ann), = [row for row in expected_rows(synthetic_sample, 2, False) if row[1]["id"] == only_rootnet]
    assert ann["bbox"][2] * ann["bbox"][3] == 0


def test_annotation_order_is_preserved_not_sorted(copy_sample_data, tmp_path: Path) -> None:
    root = copy_sample_data(tmp_path / "data")
    path = root / "annotations" / "Human36M_subject11_data.json"
    data = _read(path)
    rng = np.random.default_rng(3)
    data["annotations"] = [data["annotations"][i] for i in rng.permutation(len(data["annotations"]))]
    path.write_text(json.dumps(data))
    index = load_test_index(root, 1, True)
    expected = [image["id"] for _, image, _ in expected_rows(root, 1, True)]
    assert expected != sorted(expected), "the shuffle must change the order"
    assert index.image_id.tolist() == expected


# --------------------------------------------------------------------------- ground truth, cameras, actions


def _row_of(index: TestIndex, image_id: int) -> int:
    (position,) = np.flatnonzero(index.image_id == image_id)
    return int(position)


@pytest.mark.parametrize("pick", ["first_s11", "camera2_s9"])
def test_joint_cam_is_r_x_plus_t_with_thorax_by_hand(synthetic_sample, indexes, pick: str) -> None:
    rows = expected_rows(synthetic_sample, 2, True)
    if pick == "first_s11":
        subject, image, _ = next(row for row in rows if row[0] == 11)
    else:
        subject, image, _ = next(row for row in rows if row[0] == 9 and row[1]["cam_idx"] == 2)
    camera = _annotation(synthetic_sample, subject, "camera")[str(image["cam_idx"])]
    world = np.array(_annotation(synthetic_sample, subject, "joint_3d")[str(image["action_idx"])][str(image["subaction_idx"])][str(image["frame_idx"])])
    assert world.shape == (17, 3)
    rotation, translation = np.array(camera["R"]), np.array(camera["t"])
    expected = [rotation @ joint + translation for joint in world]
    thorax_world = (world[L_SHOULDER] + world[R_SHOULDER]) / 2
    expected.append(rotation @ thorax_world + translation)

    index = indexes[(2, True)]
    i = _row_of(index, image["id"])
    assert index.joint_cam.shape[1:] == (18, 3)
    np.testing.assert_allclose(index.joint_cam[i], np.array(expected), rtol=0, atol=0.01)
    np.testing.assert_allclose(index.joint_cam[i, THORAX], (index.joint_cam[i, L_SHOULDER] + index.joint_cam[i, R_SHOULDER]) / 2, atol=1e-3)
    np.testing.assert_allclose(index.focal[i], camera["f"], rtol=1e-6)
    np.testing.assert_allclose(index.center[i], camera["c"], rtol=1e-6)
    assert index.image_size[i].tolist() == [image["width"], image["height"]]
    # The GT path's root is the pelvis (joint 0) in camera space.
    np.testing.assert_allclose(index.root_cam[i], expected[0], atol=0.01)


def test_thorax_is_the_shoulders_midpoint_everywhere(indexes) -> None:
    for index in indexes.values():
        np.testing.assert_allclose(index.joint_cam[:, THORAX], (index.joint_cam[:, L_SHOULDER] + index.joint_cam[:, R_SHOULDER]) / 2, atol=1e-3)


def test_action_index_is_the_act_digits_minus_two(synthetic_sample, indexes) -> None:
    index = indexes[(2, False)]
    by_id = {image["id"]: image for _, image, _ in expected_rows(synthetic_sample, 2, False)}
    for image_id, file_name, action in zip(index.image_id, index.file_name, index.action):
        digits = re.search(r"act_(\d\d)", str(file_name)).group(1)
        assert action == int(digits) - 2
        assert action == by_id[int(image_id)]["action_idx"] - 2
    assert set(index.action.tolist()) == set(range(15)), "the sample covers all 15 actions"


def test_gt_boxes_are_square_enlarged_annotation_boxes(synthetic_sample, indexes) -> None:
    index = indexes[(2, True)]
    for _, image, ann in expected_rows(synthetic_sample, 2, True):
        i = _row_of(index, image["id"])
        np.testing.assert_allclose(index.bbox[i], _square_box(ann["bbox"], image["width"], image["height"]), atol=1e-6)
    np.testing.assert_allclose(index.root_cam, index.joint_cam[:, 0])


def test_rootnet_boxes_and_roots_are_used_as_they_are(synthetic_sample, indexes) -> None:
    entries = {e["image_id"]: e for e in _read(synthetic_sample / "bbox_root" / "bbox_root_human36m_output.json")}
    for protocol in (1, 2):
        index = indexes[(protocol, False)]
        for i, image_id in enumerate(index.image_id.tolist()):
            np.testing.assert_array_equal(index.bbox[i], entries[image_id]["bbox"])
            np.testing.assert_array_equal(index.root_cam[i], entries[image_id]["root_cam"])
        # ground truth is the same whichever path supplies boxes and roots
        gt = indexes[(protocol, True)]
        common = np.isin(index.image_id, gt.image_id)
        np.testing.assert_array_equal(index.joint_cam[common], gt.joint_cam[np.isin(gt.image_id, index.image_id)])


# --------------------------------------------------------------------------- images


def test_a_missing_image_is_named(copy_sample_data, tmp_path: Path) -> None:
    root = copy_sample_data(tmp_path / "data")
    index = load_test_index(root, 1, True)
    victim = root / "images" / str(index.file_name[5])
    victim.unlink()
    with pytest.raises(DataError, match=re.escape(str(victim)) + r".*missing"):
        check_images(root, index)
    with pytest.raises(DataError, match=re.escape(victim.name)):
        load_test_index(root, 1, True)


# --------------------------------------------------------------------------- the index cache


class _CountingParser:
    """Stands in for the loader's JSON file parser (``h36m._read_json``): counts calls, or refuses to parse at all."""

    def __init__(self, real, refuse: bool = False) -> None:
        self.real, self.refuse, self.calls = real, refuse, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.refuse:
            raise AssertionError("the annotation JSON was parsed although the index cache should have served it")
        return self.real(*args, **kwargs)


def _same(a: TestIndex, b: TestIndex) -> None:
    for name in ("image_id", "file_name", "action", "subject", "bbox", "root_cam", "joint_cam", "focal", "center", "image_size"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_second_load_is_served_from_the_cache(copy_sample_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_sample_data(tmp_path / "data")
    cache = tmp_path / "cache"
    real = h36m._read_json
    counting = _CountingParser(real)
    monkeypatch.setattr(h36m, "_read_json", counting)
    first = load_test_index(root, 2, False, cache)
    assert counting.calls > 0
    assert len(list(cache.glob("*.npz"))) == 1

    monkeypatch.setattr(h36m, "_read_json", _CountingParser(real, refuse=True))
    second = load_test_index(root, 2, False, cache)
    _same(first, second)
    assert len(second) == DOCUMENTED_COUNTS[(2, False)]


def test_touching_an_annotation_file_keeps_its_cache_entry(copy_sample_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The key covers the content, not the modification time: a touched file holds the same bytes.
    root = copy_sample_data(tmp_path / "data")
    cache = tmp_path / "cache"
    first = load_test_index(root, 1, True, cache)
    target = root / "annotations" / "Human36M_subject11_joint_3d.json"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    monkeypatch.setattr(h36m, "_read_json", _CountingParser(h36m._read_json, refuse=True))
    _same(first, load_test_index(root, 1, True, cache))


def test_changed_annotation_content_is_seen_through_the_cache(copy_sample_data, tmp_path: Path) -> None:
    root = copy_sample_data(tmp_path / "data")
    cache = tmp_path / "cache"
    assert len(load_test_index(root, 1, True, cache)) == 23
    path = root / "annotations" / "Human36M_subject11_data.json"
    data = _read(path)
    dropped = next(image["id"] for _, image, _ in expected_rows(root, 1, True))
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != dropped]
    path.write_text(json.dumps(data))
    index = load_test_index(root, 1, True, cache)
    assert len(index) == 22 and dropped not in index.image_id.tolist()


def test_protocol_and_box_source_have_their_own_cache_entries(copy_sample_data, tmp_path: Path) -> None:
    root = copy_sample_data(tmp_path / "data")
    cache = tmp_path / "cache"
    for (protocol, use_gt_info), count in sorted(DOCUMENTED_COUNTS.items()):
        assert len(load_test_index(root, protocol, use_gt_info, cache)) == count
    assert len(list(cache.glob("*.npz"))) == 4
    for (protocol, use_gt_info), count in sorted(DOCUMENTED_COUNTS.items()):
        assert len(load_test_index(root, protocol, use_gt_info, cache)) == count


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "flipped_bytes"])
def test_a_corrupt_cache_file_is_rebuilt(copy_sample_data, tmp_path: Path, damage: str) -> None:
    root = copy_sample_data(tmp_path / "data")
    cache = tmp_path / "cache"
    first = load_test_index(root, 1, False, cache)
    (entry,) = cache.glob("*.npz")
    content = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(content[: len(content) // 2])
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "garbage":
        entry.write_bytes(os.urandom(len(content)))
    else:  # the zip directory intact, the compressed members damaged
        middle = bytearray(content)
        for k in range(200, len(content) - 400, 7):
            middle[k] ^= 0xFF
        entry.write_bytes(bytes(middle))
    _same(first, load_test_index(root, 1, False, cache))
    _same(first, load_test_index(root, 1, False, cache))


def test_images_are_checked_even_when_the_index_is_cached(copy_sample_data, tmp_path: Path) -> None:
    root = copy_sample_data(tmp_path / "data")
    cache = tmp_path / "cache"
    index = load_test_index(root, 1, True, cache)
    victim = root / "images" / str(index.file_name[-1])
    victim.unlink()
    with pytest.raises(DataError, match=re.escape(str(victim))):
        load_test_index(root, 1, True, cache)
