"""``python -m convnextpose_eval.sample.fullsize OUT [--images 8695] [--sample DIR]``: a synthetic test set of real size.

Why: the data path's speed (crop store, workers, page cache) only shows at the
size of the real protocol-2 test set, 8,695 images (docs/protocol.md, "The test set"),
and the bundled sample has 50. This grows the sample to any size without
rendering anything: each test image of the sample (subjects 9 and 11, a box
both box sources keep) is used again and again under new file names, as hard
links (copies where links cannot be made), in new frames of its own sequence
(frame_idx = 0, 64, 128, ...), with its camera, joints and RootNet entry, and
a new unique image id. Ground truth and images stay consistent, so runs on it
give sensible (synthetic) numbers; the SYNTHETIC_SAMPLE.json marker labels
them as synthetic. The sample's checkpoints are linked into ``OUT/checkpoints``:

    python -m convnextpose_eval.bench experiment=demo variant=XS data.root=OUT \\
        data.synthetic=true paths.checkpoint_dir=OUT/checkpoints
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import EvalError
from ..common.human36m import PROTOCOL_SUBJECTS, TEST_FRAME_STRIDE
from ..data.crops import process_bbox
from .generator import (
    MARKER,
    _check_replaceable,
    _install,
    _write_json,
    ensure_sample,
    generate_sample,
)

# docs/protocol.md, "The test set": the real protocol-2 test set.
FULL_TEST_SET_IMAGES = 8695
SUBJECTS = PROTOCOL_SUBJECTS[2]
BBOX_ROOT_FILE = Path("bbox_root") / "bbox_root_human36m_output.json"


def _annotation_path(root: Path, subject: int, kind: str) -> Path:
    return root / "annotations" / f"Human36M_subject{subject}_{kind}.json"


def _source_frames(sample: Path) -> list[dict[str, Any]]:
    """The sample's protocol-2 test images that both box sources evaluate, in annotation order."""
    rootnet = {entry["image_id"]: entry for entry in json.loads((sample / BBOX_ROOT_FILE).read_text())}
    frames = []
    for subject in SUBJECTS:
        data = json.loads(_annotation_path(sample, subject, "data").read_text())
        joints = json.loads(_annotation_path(sample, subject, "joint_3d").read_text())
        images = {image["id"]: image for image in data["images"]}
        for ann in data["annotations"]:
            image = images[ann["image_id"]]
            usable = process_bbox(np.array(ann["bbox"], dtype=np.float64), image["width"], image["height"]) is not None
            if image["frame_idx"] % TEST_FRAME_STRIDE or not usable or image["id"] not in rootnet:
                continue
            world = joints[str(image["action_idx"])][str(image["subaction_idx"])][str(image["frame_idx"])]
            frames.append({"image": image, "bbox": ann["bbox"], "joints": world, "rootnet": rootnet[image["id"]]})
    return frames


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link costs no space; across file systems (or where links are refused) a copy does the same job."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_fullsize(folder: Path, sample: Path, count: int) -> None:
    """Annotations, cameras, joints, RootNet file, images and checkpoints of ``count`` test images."""
    sources = _source_frames(sample)
    data: dict[int, dict[str, list[dict[str, Any]]]] = {s: {"images": [], "annotations": []} for s in SUBJECTS}
    joints: dict[int, dict[str, dict[str, dict[str, Any]]]] = {s: {} for s in SUBJECTS}
    # World joints are stored per (subject, action, subaction, frame), shared by all cameras: frame numbers
    # are counted per subaction, so two cameras' images never claim the same frame with different poses.
    frames_used: dict[tuple[int, int, int], int] = defaultdict(int)
    rootnet = []
    for image_id in range(count):
        source = sources[image_id % len(sources)]
        image = source["image"]
        clip = Path(image["file_name"]).parent.name
        sequence = (image["subject"], image["action_idx"], image["subaction_idx"])
        frame = TEST_FRAME_STRIDE * frames_used[sequence]
        frames_used[sequence] += 1
        file_name = f"{clip}/{clip}_{frame + 1:06d}.jpg"
        (folder / "images" / clip).mkdir(parents=True, exist_ok=True)
        _link_or_copy(sample / "images" / image["file_name"], folder / "images" / file_name)
        subject = image["subject"]
        data[subject]["images"].append({**image, "id": image_id, "file_name": file_name, "frame_idx": frame})
        data[subject]["annotations"].append({"id": image_id, "image_id": image_id, "bbox": source["bbox"], "iscrowd": 0})
        per_frame = joints[subject].setdefault(str(image["action_idx"]), {}).setdefault(str(image["subaction_idx"]), {})
        per_frame[str(frame)] = source["joints"]
        rootnet.append({**source["rootnet"], "image_id": image_id})
    for subject in SUBJECTS:
        _write_json(_annotation_path(folder, subject, "data"), data[subject])
        _write_json(_annotation_path(folder, subject, "joint_3d"), joints[subject])
        shutil.copyfile(_annotation_path(sample, subject, "camera"), _annotation_path(folder, subject, "camera"))
    _write_json(folder / BBOX_ROOT_FILE, rootnet)
    (folder / "checkpoints").mkdir()
    for checkpoint in sorted((sample / "checkpoints").iterdir()):
        _link_or_copy(checkpoint, folder / "checkpoints" / checkpoint.name)
    seed = json.loads((sample / MARKER).read_text()).get("seed")
    marker = {
        "synthetic": True, "seed": seed, "generator": "convnextpose_eval.sample.fullsize", "test_images": count,
        "note": "the synthetic sample's test images repeated under new names: numbers from it say nothing about the real checkpoints",
    }  # fmt: skip
    _write_json(folder / MARKER, marker)


def build_fullsize(out: Path, count: int = FULL_TEST_SET_IMAGES, sample: Path | None = None) -> Path:
    """Build the set in a hidden sibling folder, then move it to ``out`` (an earlier synthetic set there is replaced).

    ``sample``: the synthetic sample to grow, generated there if absent; without it a
    temporary one is generated and removed afterwards (its files live on as links).
    """
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    out = Path(out).absolute()
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    building.chmod(0o755)
    try:
        source = ensure_sample(Path(sample)) if sample is not None else generate_sample(building / ".source")
        _write_fullsize(building / "set", source, count)
        _install(building / "set", out, replace=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, build the set, say what was written."""
    parser = argparse.ArgumentParser(description="Grow the synthetic Human3.6M sample to a full-size protocol-2 test set.")
    parser.add_argument("out_dir", type=Path, help="folder to create (an earlier synthetic set there is replaced)")
    parser.add_argument("--images", type=int, default=FULL_TEST_SET_IMAGES, help=f"test images (default {FULL_TEST_SET_IMAGES}, the real protocol-2 count)")
    parser.add_argument("--sample", type=Path, default=None, help="synthetic sample to grow (generated there if absent; default: a temporary one)")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be positive")
    try:
        root = build_fullsize(args.out_dir, args.images, args.sample)
    except EvalError as exc:
        sys.exit(f"error: {exc}")
    print(f"{root}: synthetic protocol-2 test set of {args.images} images (subjects {', '.join(map(str, SUBJECTS))}), checkpoints in {root / 'checkpoints'}")


if __name__ == "__main__":
    main()
