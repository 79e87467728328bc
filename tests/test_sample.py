"""The bundled synthetic sample: format, geometry, drawing, counts, checkpoints, determinism, atomicity.

Facts are recomputed here from the written files (plain numpy, plain JSON) and
from docs/protocol.md, not from the generator's own helpers.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from convnextpose_eval.checkpoint.architecture import (
    infer_arch,
    load_weights,
    match_variant,
)
from convnextpose_eval.checkpoint.reader import read_checkpoint
from convnextpose_eval.common.errors import DataError
from convnextpose_eval.common.human36m import ACTION_NAMES, SKELETON
from convnextpose_eval.config.compose import released_variants
from convnextpose_eval.network import ConvNeXtPose
from convnextpose_eval.network.spec import specs_of
from convnextpose_eval.sample import generator as sample

FILE_NAME = re.compile(r"^(s_(\d{2})_act_(\d{2})_subact_(\d{2})_ca_(\d{2}))/\1_(\d{6})\.jpg$")
SUBJECTS = (1, 9, 11)
PROTOCOLS = {1: {11}, 2: {9, 11}}
# docs/protocol.md, "The four architectures" and "Checkpoints": epoch stored in each released file; M and L name head layers 0/1/2.
EPOCHS = {"XS": 68, "S": 67, "M": 70, "L": 83}
LEGACY = {"M", "L"}
BONE_PAIRS = [(0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (11, 12), (12, 13), (14, 15), (15, 16)]


@pytest.fixture(scope="module")
def root(synthetic_sample: Path) -> Path:
    """The session's sample (conftest.py: ``generate_sample`` with seed 0, the default). Read-only."""
    return synthetic_sample


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same seed again, written over a stale earlier sample (marker plus a leftover file)."""
    target = tmp_path_factory.mktemp("second") / "sample"
    target.mkdir()
    (target / "SYNTHETIC_SAMPLE.json").write_text('{"synthetic": true, "seed": 99}')
    (target / "stale.txt").write_text("from an older sample")
    return sample.generate_sample(target, seed=0)


@pytest.fixture(scope="module")
def other_seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Seed 1 through the CLI, without checkpoints (they are covered by ``root``); returns root and printed line."""
    target = tmp_path_factory.mktemp("third") / "seed1"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(sample, "_write_checkpoints", lambda folder, seed, variants: None)
        sample.main([str(target), "--seed", "1"])
    return target, out.getvalue()


@pytest.fixture(scope="module")
def rows(root: Path) -> list[dict[str, Any]]:
    return records(root)


def load(root: Path, subject: int, kind: str) -> Any:
    return json.loads((root / "annotations" / f"Human36M_subject{subject}_{kind}.json").read_text())


def records(root: Path) -> list[dict[str, Any]]:
    """One record per image: its image entry, annotation, camera and world joints (17x3)."""
    result = []
    for subject in SUBJECTS:
        data, cameras, joints = (load(root, subject, kind) for kind in ("data", "camera", "joint_3d"))
        annotations = {a["image_id"]: a for a in data["annotations"]}
        for image in data["images"]:
            world = np.array(joints[str(image["action_idx"])][str(image["subaction_idx"])][str(image["frame_idx"])])
            camera = cameras[str(image["cam_idx"])]
            result.append({"image": image, "ann": annotations[image["id"]], "camera": camera, "world": world})
    return result


def project(world: np.ndarray, camera: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    cam = world @ np.array(camera["R"]).T + np.array(camera["t"])
    return cam[:, :2] / cam[:, 2:3] * np.array(camera["f"]) + np.array(camera["c"]), cam


def is_test(image: dict[str, Any], protocol: int) -> bool:
    return image["subject"] in PROTOCOLS[protocol] and image["frame_idx"] % 64 == 0


# --------------------------------------------------------------------------- format


def test_layout_and_marker(root: Path) -> None:
    marker = json.loads((root / "SYNTHETIC_SAMPLE.json").read_text())
    assert marker["synthetic"] is True and marker["seed"] == 0
    assert marker["generator"] == "convnextpose_eval.sample" and "random weights" in marker["note"]
    for subject in SUBJECTS:
        for kind in ("data", "camera", "joint_3d"):
            assert (root / "annotations" / f"Human36M_subject{subject}_{kind}.json").is_file()
    assert isinstance(json.loads((root / "bbox_root" / "bbox_root_human36m_output.json").read_text()), list)
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == sorted(f"ConvNeXtPose_{v}.tar" for v in EPOCHS)
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_file_names_ids_and_actions(root: Path, rows: list[dict[str, Any]]) -> None:
    image_ids = [r["image"]["id"] for r in rows]
    ann_ids = [r["ann"]["id"] for r in rows]
    assert len(set(image_ids)) == len(image_ids) and len(set(ann_ids)) == len(ann_ids)
    for row in rows:
        image, ann = row["image"], row["ann"]
        match = FILE_NAME.match(image["file_name"])
        assert match, image["file_name"]
        subject, act, subact, cam, number = (int(g) for g in match.groups()[1:])
        assert (subject, act, subact, cam, number) == (
            image["subject"], image["action_idx"], image["subaction_idx"], image["cam_idx"], image["frame_idx"] + 1
        )  # fmt: skip
        assert ACTION_NAMES[act - 2] == image["action_name"]
        assert ann["iscrowd"] == 0 and len(ann["bbox"]) == 4 and all(isinstance(v, float) for v in ann["bbox"])
        decoded = cv2.imread(str(root / "images" / image["file_name"]))
        assert decoded is not None and decoded.shape == (image["height"], image["width"], 3)
    assert len(list((root / "images").rglob("*.jpg"))) == len(rows)


def test_coverage_of_actions_cameras_subactions_and_skipped_frames(root: Path, rows: list[dict[str, Any]]) -> None:
    images = [r["image"] for r in rows]
    for subject in (9, 11):
        mine = [i for i in images if i["subject"] == subject]
        assert {i["action_idx"] for i in mine if i["frame_idx"] % 64 == 0} == set(range(2, 17))
        assert {i["frame_idx"] % 64 != 0 for i in mine} == {True, False}
    assert len({i["cam_idx"] for i in images}) >= 2 and len({i["subaction_idx"] for i in images}) >= 2
    assert {i["frame_idx"] for i in images} >= {0, 1, 32, 64, 100, 128}
    assert any(i["subject"] == 1 and i["frame_idx"] % 64 == 0 for i in images)


# --------------------------------------------------------------------------- geometry


def test_cameras_are_studio_like(root: Path, rows: list[dict[str, Any]]) -> None:
    for subject in SUBJECTS:
        pelvis = np.mean([r["world"][0] for r in rows if r["image"]["subject"] == subject], axis=0)
        for camera in load(root, subject, "camera").values():
            rotation, translation = np.array(camera["R"]), np.array(camera["t"])
            assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
            assert np.linalg.det(rotation) == pytest.approx(1, abs=1e-6)
            centre = -rotation.T @ translation
            assert 1200 < centre[2] < 1800
            assert 3500 < np.linalg.norm((centre - pelvis)[:2]) < 5500
            assert rotation[1] @ [0, 0, 1] < -0.9  # image "down" is world "down": z is up
            assert 520 < camera["f"][0] < 600 and 200 < camera["c"][0] < 280 and 200 < camera["c"][1] < 280


def test_skeleton_is_rigid_human_sized_and_varied(rows: list[dict[str, Any]]) -> None:
    for subject in SUBJECTS:
        worlds = [r["world"] for r in rows if r["image"]["subject"] == subject]
        for a, b in BONE_PAIRS:
            lengths = [np.linalg.norm(w[a] - w[b]) for w in worlds]
            assert np.std(lengths) < 0.01 and 100 < np.mean(lengths) < 520, (subject, a, b)
        assert min(w[:, 2].min() for w in worlds) >= 0
        heights = [w[10, 2] - min(w[3, 2], w[6, 2]) for w in worlds]
        assert 1400 < np.median(heights) < 1900
    per_action = {}
    for row in rows:
        if row["image"]["subject"] == 11 and row["image"]["frame_idx"] == 0:
            per_action.setdefault(row["image"]["action_idx"], row["world"] - row["world"][0])
    poses = list(per_action.values())
    closest = min(np.linalg.norm(p - q, axis=1).mean() for i, p in enumerate(poses) for q in poses[i + 1 :])
    assert closest > 20


def test_projected_joints_inside_image_and_box(rows: list[dict[str, Any]]) -> None:
    empty = []
    for row in rows:
        image, (x, y, w, h) = row["image"], row["ann"]["bbox"]
        uv, cam = project(row["world"], row["camera"])
        assert (cam[:, 2] > 0).all()
        assert (uv >= 0).all() and (uv[:, 0] < image["width"]).all() and (uv[:, 1] < image["height"]).all(), image["file_name"]
        if w == 0:
            empty.append(image)
            continue
        assert (uv[:, 0] >= x).all() and (uv[:, 0] <= x + w).all() and (uv[:, 1] >= y).all() and (uv[:, 1] <= y + h).all()
        assert w < (np.ptp(uv[:, 0]) + 40) and h < (np.ptp(uv[:, 1]) + 40), "box is not tight"
    assert len(empty) == 1 and empty[0]["subject"] == 9 and empty[0]["frame_idx"] % 64 == 0


def test_drawn_skeleton_stands_out_from_background(root: Path, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        picture = cv2.imread(str(root / "images" / row["image"]["file_name"])).astype(np.float64)
        border = np.concatenate([picture[:20].reshape(-1, 3), picture[-20:].reshape(-1, 3), picture[:, :20].reshape(-1, 3)])
        mean = border.mean(axis=0)
        threshold = np.percentile(np.linalg.norm(border - mean, axis=1), 99.5) + 20
        uv, _ = project(row["world"], row["camera"])
        midpoints = np.round([(uv[a] + uv[b]) / 2 for a, b in SKELETON]).astype(int)
        far = np.linalg.norm(picture[midpoints[:, 1], midpoints[:, 0]] - mean, axis=1) > threshold
        assert far.mean() >= 0.9, row["image"]["file_name"]
        assert (np.linalg.norm(picture - mean, axis=2) > threshold).mean() < 0.15, "not a small figure on a background"


# --------------------------------------------------------------------------- evaluation sets


def test_test_set_counts_are_odd_and_small(root: Path, rows: list[dict[str, Any]]) -> None:
    rootnet = {e["image_id"] for e in json.loads((root / "bbox_root" / "bbox_root_human36m_output.json").read_text())}
    gt_counts, rootnet_counts = {}, {}
    for protocol in PROTOCOLS:
        tests = [r for r in rows if is_test(r["image"], protocol)]
        gt_counts[protocol] = sum(1 for r in tests if r["ann"]["bbox"][2] > 0 and r["ann"]["bbox"][3] > 0)
        rootnet_counts[protocol] = sum(1 for r in tests if r["image"]["id"] in rootnet)
        assert rootnet_counts[protocol] == len(tests)
    assert rootnet == {r["image"]["id"] for r in rows if is_test(r["image"], 2)}
    assert gt_counts[1] == rootnet_counts[1] and gt_counts[1] % 2 == 1 and 21 <= gt_counts[1] <= 25
    assert gt_counts[2] % 2 == 1 and 45 <= gt_counts[2] <= 55
    assert rootnet_counts[2] == gt_counts[2] + 1  # the zero-width box: skipped with GT boxes, kept by RootNet
    assert (gt_counts, rootnet_counts) == ({1: 23, 2: 49}, {1: 23, 2: 50})  # as the module docstring states


def test_rootnet_entries_look_like_rootnet(root: Path, rows: list[dict[str, Any]]) -> None:
    by_id = {r["image"]["id"]: r for r in rows}
    errors = []
    for entry in json.loads((root / "bbox_root" / "bbox_root_human36m_output.json").read_text()):
        row = by_id[entry["image_id"]]
        x, y, w, h = entry["bbox"]
        assert w == pytest.approx(h)
        uv, cam = project(row["world"], row["camera"])
        extent = max(np.ptp(uv[:, 0]), np.ptp(uv[:, 1]))
        assert 1.1 * extent < w < 1.9 * extent
        assert np.linalg.norm([x + w / 2, y + h / 2] - (uv.min(axis=0) + uv.max(axis=0)) / 2) < 0.1 * w
        errors.append(np.linalg.norm(np.array(entry["root_cam"]) - cam[0]))
    assert all(0 < e < 250 for e in errors) and 15 < np.mean(errors) < 100


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("variant", list(EPOCHS))
def test_checkpoint_is_released_form_of_its_variant(root: Path, rows: list[dict[str, Any]], variant: str) -> None:
    path = root / "checkpoints" / f"ConvNeXtPose_{variant}.tar"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickle_bytes = archive.read(f"snapshot_{EPOCHS[variant]}.pth/data.pkl")
    assert all(n.startswith(f"snapshot_{EPOCHS[variant]}.pth/") for n in names)
    assert b"cuda:0" in pickle_bytes and b"module.backbone.stages" in pickle_bytes
    ckpt = read_checkpoint(path)
    known = specs_of(released_variants())
    spec = infer_arch(ckpt, known)
    assert match_variant(spec, known) == variant
    assert ckpt.epoch == EPOCHS[variant]
    assert ckpt.key_style == ("legacy" if variant in LEGACY else "modern")
    # Finite coordinates inside the heatmap on a sample image normalized as trained (128x128 input keeps it quick).
    size = 128
    model = ConvNeXtPose(replace(spec, input_size=size)).eval()
    load_weights(model, ckpt)
    row = next(r for r in rows if r["image"]["subject"] == 11)
    x, y, w, h = (int(v) for v in row["ann"]["bbox"])
    crop = cv2.imread(str(root / "images" / row["image"]["file_name"]))[y : y + h, x : x + w, ::-1]
    patch = cv2.resize(np.ascontiguousarray(crop), (size, size)).astype(np.float32)
    patch = (patch - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    with torch.no_grad():
        coords = model(torch.from_numpy(patch).permute(2, 0, 1)[None])
    assert torch.isfinite(coords).all()
    assert (coords >= 0).all() and (coords[..., :2] <= model.spec.heatmap_size - 1).all()
    assert (coords[..., 2] <= spec.depth_dim - 1).all()


# --------------------------------------------------------------------------- determinism and robustness


def test_same_seed_gives_identical_sample(root: Path, regenerated: Path) -> None:
    assert not (regenerated / "stale.txt").exists()
    assert json.loads((regenerated / "SYNTHETIC_SAMPLE.json").read_text())["seed"] == 0
    for path in sorted(root.rglob("*")):
        if path.suffix in (".json", ".jpg"):
            assert path.read_bytes() == (regenerated / path.relative_to(root)).read_bytes(), path
    for variant in EPOCHS:
        first = read_checkpoint(root / "checkpoints" / f"ConvNeXtPose_{variant}.tar").state_dict
        second = read_checkpoint(regenerated / "checkpoints" / f"ConvNeXtPose_{variant}.tar").state_dict
        assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_other_seed_changes_data_not_counts(root: Path, other_seed: tuple[Path, str]) -> None:
    other, printed = other_seed
    assert printed.count("\n") == 1 and str(other) in printed and "97 images" in printed
    for subject in SUBJECTS:
        assert load(other, subject, "joint_3d") != load(root, subject, "joint_3d")
        ours = [(i["file_name"], i["frame_idx"]) for i in load(root, subject, "data")["images"]]
        assert [(i["file_name"], i["frame_idx"]) for i in load(other, subject, "data")["images"]] == ours
    for row in records(other):
        uv, _ = project(row["world"], row["camera"])
        assert (uv >= 0).all() and (uv < 480).all()


def test_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = []
    real_imwrite = cv2.imwrite

    def failing_imwrite(path: str, *args: Any) -> bool:
        if len(written) == 10:
            raise KeyboardInterrupt("simulated interrupt")
        written.append(path)
        return real_imwrite(path, *args)

    monkeypatch.setattr(sample.cv2, "imwrite", failing_imwrite)
    with pytest.raises(KeyboardInterrupt):
        sample.generate_sample(tmp_path / "fresh")
    assert len(written) == 10 and list(tmp_path.iterdir()) == []
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "SYNTHETIC_SAMPLE.json").write_text("{}")
    written.clear()
    with pytest.raises(KeyboardInterrupt):
        sample.generate_sample(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["previous"]
    assert sorted(p.name for p in previous.iterdir()) == ["SYNTHETIC_SAMPLE.json"]


def test_ensure_sample_keeps_a_complete_sample_and_refuses_foreign_folders(root: Path, tmp_path: Path) -> None:
    marker = root / "SYNTHETIC_SAMPLE.json"
    before = marker.stat().st_mtime_ns
    assert sample.ensure_sample(root) == root and marker.stat().st_mtime_ns == before
    foreign = tmp_path / "real_data"
    foreign.mkdir()
    (foreign / "Human36M_subject9_data.json").write_text("{}")
    with pytest.raises(DataError, match="refusing"):
        sample.ensure_sample(foreign)
    assert (foreign / "Human36M_subject9_data.json").read_text() == "{}"


def _ensure_in_subprocess(root: str) -> str:
    from convnextpose_eval.sample.generator import ensure_sample as ensure

    return str(ensure(Path(root)))


def test_concurrent_ensure_sample_installs_one_complete_sample(tmp_path):
    """Ranks started by torchrun or srun may all ask for the sample at once: each gets a complete one."""
    import multiprocessing

    root = tmp_path / "sample"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_ensure_in_subprocess, [str(root), str(root)])
    assert results == [str(root), str(root)]
    assert (root / "SYNTHETIC_SAMPLE.json").is_file()
    assert len(list((root / "checkpoints").glob("*.tar"))) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["sample"], "no half-built or set-aside folders left behind"
