"""The full-size synthetic test set: the sample's test images repeated under new names, read by the real reader.

Each new image is checked against the sample image it was made from (found by
its file's content): same pixels, same ground truth, same boxes and roots.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from convnextpose_eval.common.errors import DataError
from convnextpose_eval.data.h36m import load_test_index
from convnextpose_eval.sample import fullsize
from convnextpose_eval.sample.generator import MARKER

COUNT = 120
# docs/protocol.md, "The test set": the real protocol-2 test set.
REAL_PROTOCOL_2_IMAGES = 8695


@pytest.fixture(scope="module")
def built(synthetic_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fullsize") / "set"
    fullsize.main([str(out), "--images", str(COUNT), "--sample", str(synthetic_sample)])
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("use_gt_info", [True, False], ids=["gt", "rootnet"])
def test_both_box_sources_select_every_image_of_subjects_9_and_11(built: Path, use_gt_info: bool) -> None:
    index = load_test_index(built, 2, use_gt_info)
    assert len(index) == COUNT
    assert set(index.subject.tolist()) == {9, 11}
    assert len(set(index.image_id.tolist())) == COUNT
    assert len(set(index.file_name.tolist())) == COUNT, "every test image is its own file"
    assert len(load_test_index(built, 1, use_gt_info)) == int((index.subject == 11).sum())


def test_annotations_are_test_frames_with_unique_ids(built: Path) -> None:
    ids = []
    for subject in (9, 11):
        doc = json.loads((built / "annotations" / f"Human36M_subject{subject}_data.json").read_text())
        assert all(image["frame_idx"] % 64 == 0 and image["subject"] == subject for image in doc["images"])
        assert [a["image_id"] for a in doc["annotations"]] == [image["id"] for image in doc["images"]]
        names = [image["file_name"] for image in doc["images"]]
        assert all(f"s_{subject:02d}_act_{image['action_idx']:02d}_" in image["file_name"] for image in doc["images"])
        assert all(name.endswith(f"_{image['frame_idx'] + 1:06d}.jpg") for name, image in zip(names, doc["images"]))
        ids += [image["id"] for image in doc["images"]]
    assert sorted(ids) == list(range(COUNT))


def test_every_image_is_a_sample_image_with_that_images_ground_truth(built: Path, synthetic_sample: Path) -> None:
    sample = {}
    for use_gt_info in (True, False):
        source_index = load_test_index(synthetic_sample, 2, use_gt_info)
        for row, name in enumerate(source_index.file_name):
            sample.setdefault(_digest(synthetic_sample / "images" / name), {})[use_gt_info] = (source_index, row, name)
    for use_gt_info in (True, False):
        index = load_test_index(built, 2, use_gt_info)
        for row, name in enumerate(index.file_name):
            path = built / "images" / name
            source_index, source_row, source_name = sample[_digest(path)][use_gt_info]
            source_path = synthetic_sample / "images" / source_name
            assert os.path.samefile(path, source_path) or path.read_bytes() == source_path.read_bytes()
            for field in ("joint_cam", "bbox", "root_cam", "focal", "center", "image_size", "action", "subject"):
                np.testing.assert_array_equal(getattr(index, field)[row], getattr(source_index, field)[source_row], err_msg=f"{name}: {field}")


def test_sample_images_are_reused_evenly(built: Path) -> None:
    counts: dict[int, int] = {}
    for path in (built / "images").rglob("*.jpg"):
        counts[path.stat().st_ino] = counts.get(path.stat().st_ino, 0) + 1
    # 49 sample images usable with both box sources: 120 = 2 x 49 + 22
    assert sorted(set(counts.values())) == [2, 3] and len(counts) == 49


def test_marker_labels_the_set_synthetic_and_checkpoints_come_along(built: Path, synthetic_sample: Path) -> None:
    marker = json.loads((built / MARKER).read_text())
    assert marker["synthetic"] is True and marker["test_images"] == COUNT
    linked = sorted(p.name for p in (built / "checkpoints").iterdir())
    assert linked == sorted(p.name for p in (synthetic_sample / "checkpoints").iterdir())


def test_default_size_is_the_real_protocol_2_test_set(synthetic_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "full"
    fullsize.main([str(out), "--sample", str(synthetic_sample)])
    index = load_test_index(out, 2, False)
    assert len(index) == REAL_PROTOCOL_2_IMAGES
    assert len(set(index.file_name.tolist())) == REAL_PROTOCOL_2_IMAGES


def test_refuses_to_replace_a_folder_that_is_not_synthetic(synthetic_sample: Path, tmp_path: Path, capsys) -> None:
    real = tmp_path / "real_data"
    (real / "annotations").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        fullsize.main([str(real), "--images", "5", "--sample", str(synthetic_sample)])
    assert "not a synthetic sample" in str(exit_info.value.code)
    assert sorted(p.name for p in real.iterdir()) == ["annotations"]
    with pytest.raises(DataError):
        fullsize.build_fullsize(real, 5, synthetic_sample)


def test_rejects_a_non_positive_count(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        fullsize.main([str(tmp_path / "none"), "--images", "0"])
    assert "--images must be positive" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
