"""int8 calibration crops: only from the protocol's training subjects, never from an image it tests on.

Static int8 quantization fixes every activation's range from the images it is shown. Ranges tuned on
the test set would make the int8 figures a little too good, so the reader takes annotated images of
the training subjects only (Human3.6M protocol 2 trains on S1, S5, S6, S7, S8; protocol 1 also on S9;
see docs/deployment.md), crops them exactly as the test images are cropped, and refuses, in one line,
any image that belongs to a test subject of the evaluated protocol, whichever file lists it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import DataError
from ..common.human36m import PROTOCOL_SUBJECTS
from ..data.crops import crop_patch, process_bbox
from ..data.images import read_image

# Human3.6M's training subjects per protocol (3DMPPE's Human36M.py): the only ones calibration may read.
TRAINING_SUBJECTS: dict[int, tuple[int, ...]] = {2: (1, 5, 6, 7, 8), 1: (1, 5, 6, 7, 8, 9)}
_SUBJECT_IN_NAME = re.compile(r"(?:^|/)s_(\d+)_act_")


@dataclass(frozen=True)
class CalibrationSet:
    """Calibration crops (N, 3, S, S) uint8 RGB, and what they are: subjects and image ids, in order."""

    crops: np.ndarray
    subjects: tuple[int, ...]
    image_ids: tuple[int, ...]
    file_names: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """What deploy_results.json says of the calibration."""
        return {"num_images": len(self.image_ids), "subjects": [f"S{s}" for s in sorted(set(self.subjects))],
                "image_ids": list(self.image_ids), "file_names": list(self.file_names)}  # fmt: skip


def _subject_of_name(file_name: str) -> int | None:
    match = _SUBJECT_IN_NAME.search(file_name)
    return int(match.group(1)) if match else None


def refuse_test_subject(path: Path, image: dict[str, Any], protocol: int) -> None:
    """One line, naming the file and the image, when ``image`` is of a test subject of ``protocol`` (by its
    ``subject`` field or by the ``s_NN_`` of its file name) or says nothing of its subject."""
    tested = PROTOCOL_SUBJECTS[protocol]
    listed = image.get("subject")
    named = _subject_of_name(str(image.get("file_name", "")))
    for subject in (listed, named):
        if isinstance(subject, int) and subject in tested:
            raise DataError(f"{path}: image {image.get('id')} ({image.get('file_name')}) is of S{subject}, a test subject of "
                            f"protocol {protocol}; int8 calibration reads only training subjects "
                            f"({', '.join(f'S{s}' for s in TRAINING_SUBJECTS[protocol])})")  # fmt: skip
    if not isinstance(listed, int):
        raise DataError(f"{path}: image {image.get('id')} does not say its subject; calibration cannot vouch it is not a test image")


def _annotated_images(path: Path, subject: int, protocol: int) -> list[tuple[dict[str, Any], list[float]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = {int(image["id"]): image for image in data["images"]}
        boxes = {int(ann["image_id"]): ann["bbox"] for ann in data["annotations"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a Human3.6M annotation file ({type(exc).__name__}: {exc})") from None
    listed = []
    for image_id in sorted(images):
        image = images[image_id]
        refuse_test_subject(path, image, protocol)
        if image.get("subject") != subject:
            raise DataError(f"{path}: image {image_id} says subject {image.get('subject')}, but this is the file of S{subject}")
        if image_id in boxes:
            listed.append((image, boxes[image_id]))
    return listed


def read_calibration_set(root: Path, protocol: int, count: int, input_size: int) -> CalibrationSet:
    """``count`` crops spread evenly over the training subjects' annotated images found under ``root``.

    Every listed image of every training-subject file is checked first (a test-subject image anywhere is
    refused), then the picks are read and cropped with their ground-truth boxes, as the test images are.
    """
    candidates: list[tuple[int, dict[str, Any], list[float]]] = []
    for subject in TRAINING_SUBJECTS[protocol]:
        path = root / "annotations" / f"Human36M_subject{subject}_data.json"
        if path.is_file():
            candidates += [(subject, image, box) for image, box in _annotated_images(path, subject, protocol)]
    if not candidates:
        names = ", ".join(f"S{s}" for s in TRAINING_SUBJECTS[protocol])
        raise DataError(f"{root / 'annotations'}: no annotation file of a training subject ({names}); int8 calibration needs one")
    picks = np.unique(np.linspace(0, len(candidates) - 1, num=min(count, len(candidates))).round().astype(int))
    crops, subjects, ids, names_read = [], [], [], []
    for pick in picks:
        subject, image, box = candidates[int(pick)]
        width, height = int(image["width"]), int(image["height"])
        bbox = process_bbox(np.asarray(box, dtype=np.float64), width, height)
        if bbox is None:
            continue
        pixels = read_image(root / "images" / str(image["file_name"]), width, height)
        crops.append(crop_patch(pixels, bbox, input_size).transpose(2, 0, 1))
        subjects.append(subject)
        ids.append(int(image["id"]))
        names_read.append(str(image["file_name"]))
    if not crops:
        raise DataError(f"{root / 'annotations'}: the training subjects' images have no usable box; int8 calibration needs one")
    return CalibrationSet(np.stack(crops), tuple(subjects), tuple(ids), tuple(names_read))
