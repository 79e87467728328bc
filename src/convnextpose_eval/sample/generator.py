"""A small synthetic Human3.6M sample in the 3DMPPE "parsed" format, with random-weight checkpoints.

Why: the demo and the tests must run offline, without the licensed data set or
the released weights, yet through exactly the code paths real data takes. The
sample is deterministic in ``seed``; numbers computed from it say nothing about
the real checkpoints.

Layout under ``root`` (the counts are the same for every seed):

- ``annotations/Human36M_subject{1,9,11}_{data,camera,joint_3d}.json``: COCO-style
  images/annotations (one annotation per image, ids unique across subjects),
  cameras ``{cam: {R, t (mm), f, c}}`` with X_cam = R X_world + t and world z up,
  and world joints ``{action_idx: {subaction_idx: {frame_idx: 17x3 mm}}}``.
- ``images/s_SS_act_AA_subact_BB_ca_CC/s_SS_act_AA_subact_BB_ca_CC_NNNNNN.jpg``:
  480x480 JPEGs showing the posed skeleton, f ~ 560 px, NNNNNN = frame_idx + 1.
- ``bbox_root/bbox_root_human36m_output.json``: a RootNet-like square box (x1.25)
  and root (GT pelvis plus tens of mm of error) for every S9/S11 test image.
- ``checkpoints/ConvNeXtPose_{XS,S,M,L}.tar``: random weights in the released
  on-disk form (``module.`` keys, ``cuda:0`` storages, inner folder
  ``snapshot_{epoch}.pth``, legacy head keys for M and L).
- ``SYNTHETIC_SAMPLE.json``: marker saying all of this is synthetic.

Contents: 97 images. Subject 1 (a training subject, to be ignored) has 4 images
at test-frame indices. Subjects 9 and 11 have all 15 actions, frames that must be
skipped (1, 32, 100) next to test frames (0, 64, 128), cameras 1 and 2 and
subactions 1 and 2. Three S9 test images belong to sequences with corrupt ground truth in the real
data set (s_09_act_05_subact_02 cam 2 frames 0 and 64, s_09_act_13_subact_01 cam 1 frame 0). Test images (frame_idx % 64 == 0): S11 23, S9 27, one of
whose annotations (S9, act 16, frame 0) has a zero-width bbox. So protocol 1
evaluates 23 images on both paths; protocol 2 evaluates 49 with GT boxes (the
empty box is skipped) and 50 with the RootNet file (which keeps it). The two
paths differ by that one image, so only one can be odd: the GT-box path, the
authors' default. Odd counts make a 2-process run pad its last batch.
About 112 MB, nearly all of it the four checkpoints; a few seconds to build.

Why one module of this length: the annotations, cameras, images, RootNet boxes and checkpoints are
drawn from one seeded stream in one order; drawn elsewhere, the whole sample would change.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping

import cv2
import numpy as np
import torch

from ..common.errors import DataError, EvalError
from ..common.human36m import (
    ACTION_NAMES,
    JOINT_NAMES,
    PROTOCOL_SUBJECTS,
    ROOT_INDEX,
    SKELETON,
    TEST_FRAME_STRIDE,
)
from ..config.compose import released_variants
from ..config.schema import SAMPLE_MARKER
from ..data.crops import BOX_SCALE
from ..network import ArchSpec, ConvNeXtPose
from .released_format import write_released_checkpoint

# Logit scale of the synthetic final layer: sharp enough that predictions vary with the image.
FINAL_LAYER_GAIN = 8.0
MARKER = SAMPLE_MARKER
GENERATOR = "convnextpose_eval.sample"  # not __name__, which is "__main__" under python -m
IMAGE_SIZE = 480
FOCAL = 560.0
BBOX_MARGIN = 15.0
ACTION_IDS = tuple(range(2, 2 + len(ACTION_NAMES)))
# The S9 test annotation given a zero-width box: (subject, action_idx, subaction_idx, cam_idx, frame_idx).
EMPTY_BOX = (9, 16, 1, 1, 0)

# (subject, action_idx, subaction_idx, cam_idx, frames). Frames not divisible by 64 are never evaluated.
CLIPS: tuple[tuple[int, int, int, int, tuple[int, ...]], ...] = (
    *((1, a, 1, 1, (0, 64)) for a in (2, 3)),
    *((9, a, 1, 1, (0, 1)) for a in ACTION_IDS),
    # Subaction 2 of act 05 (cam 2): with S9 act 13 subaction 1 (cam 1), two of the sequences with corrupt
    # ground truth that data.skip_corrupt_s9 leaves out.
    *((9, a, 2 if a == 5 else 1, 2, (0, 64, 100)) for a in range(2, 8)),
    *((11, a, 1, 1, (0, 1, 128) if a == 9 else (0, 1)) for a in ACTION_IDS),
    *((11, a, 1, 2, (0, 32)) for a in range(2, 5)),
    *((11, a, 2, 1, (64, 100)) for a in range(5, 9)),
)
SUBJECTS = tuple(sorted({clip[0] for clip in CLIPS}))
# Body size per subject, so subjects differ like real people do.
SUBJECT_SCALE = {1: 0.96, 9: 1.0, 11: 1.04}

# Standing pose, angles in degrees: spine lean and head pitch (forward), hip flexion, knee flexion,
# hip abduction, upper-arm and forearm elevation from hanging (0) to straight up (180) and the
# plane they swing in (0 forward, 90 sideways). Index 0 is the right side, 1 the left.
STANDING: dict[str, Any] = {
    "lean": 4.0, "head": 6.0, "hip": (0.0, 0.0), "knee": (6.0, 6.0), "abduct": (4.0, 4.0),
    "arm": ((12.0, 60.0), (12.0, 60.0)), "forearm": ((20.0, 30.0), (20.0, 30.0)), "gait": 0.0,
}  # fmt: skip
ACTION_POSES: dict[int, dict[str, Any]] = {
    2: {"arm": ((80.0, 30.0), (12.0, 60.0)), "forearm": ((88.0, 30.0), (20.0, 30.0))},  # Directions: pointing
    3: {"arm": ((25.0, 20.0), (25.0, 20.0)), "forearm": ((80.0, 10.0), (75.0, 15.0))},  # Discussion
    4: {"hip": (85.0, 85.0), "knee": (85.0, 85.0), "forearm": ((115.0, 0.0), (110.0, 0.0))},  # Eating, seated
    5: {"arm": ((150.0, 80.0), (12.0, 60.0)), "forearm": ((170.0, 60.0), (20.0, 30.0))},  # Greeting: waving
    6: {"arm": ((40.0, 20.0), (12.0, 60.0)), "forearm": ((165.0, 0.0), (20.0, 30.0))},  # Phoning
    7: {"abduct": (18.0, 18.0), "arm": ((90.0, 90.0), (90.0, 90.0)), "forearm": ((95.0, 90.0), (95.0, 90.0))},  # Posing
    8: {"lean": 15.0, "arm": ((40.0, 0.0), (40.0, 0.0)), "forearm": ((70.0, 0.0), (70.0, 0.0))},  # Purchases
    9: {"lean": 0.0, "hip": (90.0, 90.0), "knee": (90.0, 90.0), "forearm": ((60.0, 0.0), (60.0, 0.0))},  # Sitting
    10: {"lean": 35.0, "hip": (110.0, 110.0), "knee": (120.0, 120.0)},  # SittingDown: on the floor
    11: {"arm": ((30.0, 10.0), (15.0, 30.0)), "forearm": ((150.0, 0.0), (80.0, 10.0))},  # Smoking
    12: {"arm": ((60.0, 10.0), (60.0, 10.0)), "forearm": ((140.0, 0.0), (140.0, 0.0))},  # Photo
    13: {"lean": 0.0, "arm": ((5.0, 60.0), (5.0, 60.0))},  # Waiting
    14: {"gait": 25.0},  # Walking
    15: {"gait": 20.0, "arm": ((50.0, 0.0), (12.0, 60.0)), "forearm": ((50.0, 0.0), (20.0, 30.0))},  # WalkDog
    16: {"gait": 18.0},  # WalkTogether
}
# Actions whose right arm keeps its pose while walking (the dog's leash).
HOLDS_WITH_RIGHT = {15}
# Segment lengths in mm for a ~1.73 m person.
HIP_HALF_WIDTH, THIGH, SHIN, ANKLE_HEIGHT = 133.0, 450.0, 440.0, 95.0
SPINE, CHEST, SHOULDER_HALF_WIDTH, UPPER_ARM, FOREARM = 233.0, 257.0, 150.0, 280.0, 250.0


# --------------------------------------------------------------------------- poses and cameras


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent stream per (purpose, item): adding an image never changes another's data."""
    return np.random.default_rng([seed, *keys])


def _arm_direction(elevation: float, plane: float, side: float) -> np.ndarray:
    """Unit arm-segment direction in the body frame (x right, y forward, z up); side +1 right, -1 left."""
    el, pl = math.radians(elevation), math.radians(plane)
    return np.array([side * math.sin(el) * math.sin(pl), math.sin(el) * math.cos(pl), -math.cos(el)])


def _leg_direction(flexion: float, abduction: float, side: float) -> np.ndarray:
    """Unit leg-segment direction: swung forward by ``flexion`` and outward by ``abduction``."""
    fl, ab = math.radians(flexion), math.radians(abduction)
    return np.array([side * math.sin(ab), math.cos(ab) * math.sin(fl), -math.cos(ab) * math.cos(fl)])


def _pitch(vector: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the body's x axis, tipping up (z) towards forward (y)."""
    a = math.radians(degrees)
    x, y, z = vector
    return np.array([x, y * math.cos(a) + z * math.sin(a), -y * math.sin(a) + z * math.cos(a)])


def _pose_angles(seed: int, subject: int, action: int, subaction: int, frame: int) -> dict[str, Any]:
    """The action's pose, offset per clip and moving smoothly with the frame number."""
    clip = _rng(seed, 2, subject, action, subaction)
    offsets = clip.normal(0.0, 5.0, size=14)
    phase = 2 * math.pi * frame / 120.0 + clip.uniform(0, 2 * math.pi)
    pose = {**STANDING, **ACTION_POSES[action]}
    # One deviation per angle: a fixed offset for the clip plus a slow wobble over the frames.
    d = offsets + [6.0 * math.sin(phase + k) for k in range(14)]
    swing = pose["gait"] * math.sin(phase)
    hip = (pose["hip"][0] + swing + d[0], pose["hip"][1] - swing + d[1])
    knee = (
        max(0.0, pose["knee"][0] + 1.2 * pose["gait"] * max(0.0, -math.sin(phase + 0.6)) + d[2]),
        max(0.0, pose["knee"][1] + 1.2 * pose["gait"] * max(0.0, math.sin(phase + 0.6)) + d[3]),
    )
    arm = [pose["arm"][0], pose["arm"][1]]
    if pose["gait"]:  # arms swing against the legs, in the forward plane
        if action not in HOLDS_WITH_RIGHT:
            arm[0] = (arm[0][0] - 0.8 * swing, 0.0)
        arm[1] = (arm[1][0] + 0.8 * swing, 0.0)
    return {
        "lean": pose["lean"] + 0.5 * d[4],
        "head": pose["head"] + 0.5 * d[5],
        "hip": hip,
        "knee": knee,
        "abduct": (pose["abduct"][0] + 0.4 * d[6], pose["abduct"][1] + 0.4 * d[7]),
        "arm": ((arm[0][0] + d[8], arm[0][1] + d[9]), (arm[1][0] + d[10], arm[1][1] + d[11])),
        "forearm": (
            (pose["forearm"][0][0] + d[12], pose["forearm"][0][1]),
            (pose["forearm"][1][0] + d[13], pose["forearm"][1][1]),
        ),
        "yaw": clip.uniform(0, 360) + 20.0 * math.sin(phase / 2),
        "shift": clip.uniform(-250, 250, size=2) + (pose["gait"] * 12.0 * math.sin(phase / 3), 0.0),
    }


def _body_joints(angles: dict[str, Any]) -> np.ndarray:
    """17 joints in the body frame (x right, y forward, z up), pelvis at the origin, mm."""
    joints = np.zeros((17, 3))
    index = {name: i for i, name in enumerate(JOINT_NAMES)}
    up = _pitch(np.array([0.0, 0.0, 1.0]), angles["lean"])
    joints[index["Torso"]] = SPINE * up
    neck = joints[index["Neck"]] = joints[index["Torso"]] + CHEST * up
    head_up = _pitch(np.array([0.0, 0.0, 1.0]), angles["lean"] + angles["head"])
    head_forward = _pitch(np.array([0.0, 1.0, 0.0]), angles["lean"] + angles["head"])
    joints[index["Nose"]] = neck + 95.0 * head_up + 80.0 * head_forward
    joints[index["Head"]] = neck + 215.0 * head_up + 25.0 * head_forward
    for k, (prefix, side) in enumerate((("R_", 1.0), ("L_", -1.0))):
        hip = joints[index[prefix + "Hip"]] = np.array([side * HIP_HALF_WIDTH, 0.0, 0.0])
        flex, bend, abduct = angles["hip"][k], angles["knee"][k], angles["abduct"][k]
        knee = joints[index[prefix + "Knee"]] = hip + THIGH * _leg_direction(flex, abduct, side)
        joints[index[prefix + "Ankle"]] = knee + SHIN * _leg_direction(flex - bend, 0.5 * abduct, side)
        collar = _pitch(np.array([side * SHOULDER_HALF_WIDTH, 0.0, -25.0]), angles["lean"])
        shoulder = joints[index[prefix + "Shoulder"]] = neck + collar
        elbow = joints[index[prefix + "Elbow"]] = shoulder + UPPER_ARM * _arm_direction(*angles["arm"][k], side)
        joints[index[prefix + "Wrist"]] = elbow + FOREARM * _arm_direction(*angles["forearm"][k], side)
    return joints


def _world_joints(seed: int, subject: int, action: int, subaction: int, frame: int) -> np.ndarray:
    """The posed skeleton in world mm: scaled to the subject, turned, moved, standing on the floor (z = 0)."""
    angles = _pose_angles(seed, subject, action, subaction, frame)
    joints = _body_joints(angles) * SUBJECT_SCALE[subject]
    yaw = math.radians(angles["yaw"])
    turn = np.array([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    joints = joints @ turn.T
    lowest_foot = min(joints[JOINT_NAMES.index("R_Ankle"), 2], joints[JOINT_NAMES.index("L_Ankle"), 2])
    joints += np.array([*angles["shift"], ANKLE_HEIGHT * SUBJECT_SCALE[subject] - lowest_foot])
    return np.round(joints, 3)


def _camera(seed: int, subject: int, cam: int) -> dict[str, list[Any]]:
    """A studio camera on a corner of the capture area, 4-4.6 m away and ~1.5 m high, aimed at the subject."""
    rng = _rng(seed, 4, subject, cam)
    azimuth = math.radians(45.0 + 90.0 * (cam - 1) + rng.uniform(-8, 8))
    distance, height = rng.uniform(4000, 4600), rng.uniform(1400, 1600)
    centre = np.array([distance * math.cos(azimuth), distance * math.sin(azimuth), height])
    forward = np.array([0.0, 0.0, 950.0]) + rng.uniform(-60, 60, size=3) - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.round(np.stack([right, down, forward]), 8)
    return {
        "R": rotation.tolist(),
        "t": np.round(-rotation @ centre, 4).tolist(),
        "f": np.round(FOCAL + rng.uniform(-3, 3, size=2), 4).tolist(),
        "c": np.round(IMAGE_SIZE / 2 + rng.uniform(-2, 2, size=2), 4).tolist(),
    }


def _project(world: np.ndarray, camera: dict[str, list[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (J, 2) and camera-space points (J, 3) of world joints."""
    cam = world @ np.asarray(camera["R"]).T + np.asarray(camera["t"])
    pixels = cam[:, :2] / cam[:, 2:] * np.asarray(camera["f"]) + np.asarray(camera["c"])
    return pixels, cam


# --------------------------------------------------------------------------- images and boxes


def _render(pixels: np.ndarray, depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grey, softly mottled backdrop with the skeleton drawn in saturated colours, far bones first."""
    grey = rng.uniform(95, 145, size=(6, 6, 1)) + rng.normal(0, 6, size=(6, 6, 3))
    image = cv2.resize(grey.astype(np.float32), (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
    image += 4.0 * rng.standard_normal(size=image.shape, dtype=np.float32)
    canvas = np.clip(image, 0, 255).astype(np.uint8)
    left = {JOINT_NAMES.index(n) for n in JOINT_NAMES if n.startswith("L_")}
    right = {JOINT_NAMES.index(n) for n in JOINT_NAMES if n.startswith("R_")}
    points = np.round(pixels * 16).astype(np.int32)  # 4 fractional bits for sub-pixel drawing
    for a, b in sorted(SKELETON, key=lambda bone: -(depth[bone[0]] + depth[bone[1]])):
        colour = (230, 110, 20) if b in left else (30, 40, 220) if b in right else (40, 190, 40)
        cv2.line(canvas, tuple(points[a]), tuple(points[b]), colour, 7, cv2.LINE_AA, shift=4)
    for point in points:
        cv2.circle(canvas, tuple(point), 5 * 16, (0, 220, 255), -1, cv2.LINE_AA, shift=4)
    return canvas


def _tight_box(pixels: np.ndarray) -> tuple[float, float, float, float]:
    """The joints' extent plus a margin for the drawn limbs, clamped to the image, as x, y, w, h."""
    x1, y1 = np.maximum(pixels.min(axis=0) - BBOX_MARGIN, 0.0)
    x2, y2 = np.minimum(pixels.max(axis=0) + BBOX_MARGIN, IMAGE_SIZE - 1.0)
    return round(float(x1), 3), round(float(y1), 3), round(float(x2 - x1), 3), round(float(y2 - y1), 3)


def _rootnet_box(box: tuple[float, float, float, float], rng: np.random.Generator) -> list[float]:
    """What RootNet's detector hands over: square, x1.25, centred a little off and sized a little wrong."""
    x, y, w, h = box
    side = max(w, h) * BOX_SCALE * (1.0 + rng.normal(0, 0.03))
    cx, cy = np.array([x + w / 2, y + h / 2]) + rng.normal(0, 0.02 * side, size=2)
    return [round(float(v), 3) for v in (cx - side / 2, cy - side / 2, side, side)]


def _clip_name(subject: int, action: int, subaction: int, cam: int) -> str:
    return f"s_{subject:02d}_act_{action:02d}_subact_{subaction:02d}_ca_{cam:02d}"


def _frames() -> Iterator[tuple[int, int, int, int, int]]:
    """Every (subject, action, subaction, camera, frame) of the sample, in file order (fixed for every seed)."""
    for subject, action, subaction, cam, frames in CLIPS:
        for frame in frames:
            yield subject, action, subaction, cam, frame


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n", encoding="utf-8")


def _write_annotations_and_images(folder: Path, seed: int) -> None:
    """Annotation JSONs, JPEGs and the RootNet file."""
    data: dict[int, dict[str, list[dict[str, Any]]]] = {s: {"images": [], "annotations": []} for s in SUBJECTS}
    joints: dict[int, dict[str, dict[str, dict[str, list[list[float]]]]]] = {s: {} for s in SUBJECTS}
    cameras = {s: {} for s in SUBJECTS}
    rootnet = []
    for image_id, (subject, action, subaction, cam, frame) in enumerate(_frames()):
        camera = cameras[subject].setdefault(str(cam), _camera(seed, subject, cam))
        per_frame = joints[subject].setdefault(str(action), {}).setdefault(str(subaction), {})
        world = np.asarray(per_frame.setdefault(str(frame), _world_joints(seed, subject, action, subaction, frame).tolist()))
        pixels, cam_points = _project(world, camera)
        clip = _clip_name(subject, action, subaction, cam)
        file_name = f"{clip}/{clip}_{frame + 1:06d}.jpg"
        image = _render(pixels, cam_points[:, 2], _rng(seed, 1, subject, action, subaction, cam, frame))
        (folder / "images" / clip).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "images" / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        box = _tight_box(pixels)
        data[subject]["images"].append(
            {
                "id": image_id, "file_name": file_name, "width": IMAGE_SIZE, "height": IMAGE_SIZE,
                "subject": subject, "action_name": ACTION_NAMES[action - 2], "action_idx": action,
                "subaction_idx": subaction, "cam_idx": cam, "frame_idx": frame,
            }
        )  # fmt: skip
        stored = [box[0], box[1], 0.0, box[3]] if (subject, action, subaction, cam, frame) == EMPTY_BOX else list(box)
        data[subject]["annotations"].append({"id": image_id, "image_id": image_id, "bbox": stored, "iscrowd": 0})
        if subject in PROTOCOL_SUBJECTS[2] and frame % TEST_FRAME_STRIDE == 0:
            rng = _rng(seed, 5, image_id)
            root = cam_points[ROOT_INDEX] + rng.normal(0, (15.0, 15.0, 45.0))
            rootnet.append({"image_id": image_id, "bbox": _rootnet_box(box, rng), "root_cam": np.round(root, 3).tolist()})
    for subject in SUBJECTS:
        prefix = folder / "annotations" / f"Human36M_subject{subject}"
        _write_json(prefix.with_name(prefix.name + "_data.json"), data[subject])
        _write_json(prefix.with_name(prefix.name + "_camera.json"), cameras[subject])
        _write_json(prefix.with_name(prefix.name + "_joint_3d.json"), joints[subject])
    _write_json(folder / "bbox_root" / "bbox_root_human36m_output.json", rootnet)


# --------------------------------------------------------------------------- checkpoints


def synthetic_state_dict(variant: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Random weights for a variant: PyTorch's default init (which keeps activations at a usable scale
    through the residual stages), with a sharpened final layer so the soft-argmax leaves the volume's
    centre and each variant predicts something different. Deterministic for a seed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvNeXtPose(ArchSpec.from_variant(variant))
        with torch.no_grad():
            model.head.final_layer.weight.mul_(FINAL_LAYER_GAIN)
    return model.state_dict()


def _write_checkpoints(folder: Path, seed: int, variants: Mapping[str, Mapping[str, Any]]) -> None:
    """Each variant as ``snapshot_{epoch}.pth.tar`` (as the authors saved it), renamed as released."""
    target = folder / "checkpoints"
    target.mkdir(parents=True, exist_ok=True)
    for number, name in enumerate(sorted(variants)):
        config = variants[name]
        epoch = int(config["checkpoint"]["epoch"])
        snapshot = target / f"snapshot_{epoch}.pth.tar"
        state = synthetic_state_dict(config, seed * len(variants) + number)
        write_released_checkpoint(state, snapshot, epoch, config["key_style"], "cuda:0")
        os.replace(snapshot, target / config["checkpoint"]["file"])


# --------------------------------------------------------------------------- assembling


def _check_replaceable(root: Path) -> None:
    """Only an earlier sample or an empty folder may be replaced: never a user's real data."""
    if root.is_dir() and not (root / MARKER).is_file() and any(root.iterdir()):
        raise DataError(f"{root}: exists and is not a synthetic sample (no {MARKER}); refusing to replace it")
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder; refusing to replace it")


def _install(built: Path, root: Path, replace: bool) -> None:
    """Move the finished sample to ``root``; an older one is moved aside first and deleted last.

    Without ``replace``, a complete sample that another process installed meanwhile wins and ours is dropped.
    """
    if not root.exists() or not replace:
        try:
            os.rename(built, root)
        except OSError:
            if replace or not (root / MARKER).is_file():
                raise
            shutil.rmtree(built, ignore_errors=True)
        return
    aside = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(root, aside)
    try:
        os.rename(built, root)
    except BaseException:
        os.rename(aside, root)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def generate_sample(
    root: Path, seed: int = 0, replace: bool = True, variants: Mapping[str, Mapping[str, Any]] | None = None
) -> Path:
    """Build the whole sample in a hidden sibling folder, then move it to ``root``.

    A crash or interrupt leaves ``root`` as it was (absent, or the previous sample). ``variants`` is the
    released-variant table (from the run's config; composed from the shipped configs when not given).
    """
    root = Path(root).absolute()
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".building", dir=root.parent))
    building.chmod(0o755)  # mkdtemp's private 0700 would carry over to root
    try:
        _write_annotations_and_images(building, seed)
        _write_checkpoints(building, seed, variants if variants is not None else released_variants())
        marker = {
            "synthetic": True, "seed": seed, "generator": GENERATOR,
            "note": "synthetic data and random weights: numbers from it say nothing about the real checkpoints",
        }  # fmt: skip
        _write_json(building / MARKER, marker)
        _install(building, root, replace)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return root


def ensure_sample(root: Path, variants: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0) -> Path:
    """The sample at ``root``, generated only if no complete one (with its marker) is there."""
    root = Path(root)
    return root if (root / MARKER).is_file() else generate_sample(root, seed, replace=False, variants=variants)


def _folder_size(folder: Path) -> int:
    """Bytes under ``folder``, for the CLI's report."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    """``python -m convnextpose_eval.sample OUT_DIR [--seed N]``: build the sample, say what was written."""
    parser = argparse.ArgumentParser(description="Write the synthetic Human3.6M sample and random-weight checkpoints.")
    parser.add_argument("out_dir", type=Path, help="folder to create (an earlier sample there is replaced)")
    parser.add_argument("--seed", type=int, default=0, help="non-negative seed (default 0)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error("--seed must be non-negative")
    try:
        root = generate_sample(args.out_dir, args.seed)
    except EvalError as exc:
        sys.exit(f"error: {exc}")  # one line on stderr, exit status 1
    images = sum(1 for _ in (root / "images").rglob("*.jpg"))
    print(
        f"{root}: synthetic Human3.6M sample, seed {args.seed}: {images} images of subjects "
        f"{', '.join(map(str, SUBJECTS))}, checkpoints {', '.join(sorted(released_variants()))}, {_folder_size(root) / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()


def is_sample_checkpoint(path: Path) -> bool:
    """Whether ``path`` is one of a generated sample's synthetic-weight checkpoints (``<sample>/checkpoints/``)."""
    folder = Path(path).resolve().parent
    return folder.name == "checkpoints" and (folder.parent / MARKER).is_file()
