"""Re-proving a finished run from its own files: results.json's totals against predictions.json, and
predictions.json against the ground truth.

``compare`` checks that results.json's figures are the means of the per-image figures it will resample;
``sweep.resume`` goes further and rescores every image's predicted joints against the test set's ground
truth, read through the project's Human3.6M reader, with the same metric code a run uses. A results.json
edited by hand, a predictions.json from another run, or an edited joint then cannot be passed on as this
tool's numbers. See docs/results-contract.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..common.human36m import (
    ACTION_NAMES,
    EVAL_JOINT_NAMES,
    EVAL_JOINTS,
    JOINT_NAMES,
    ROOT_INDEX,
    TEST_SUBJECTS,
)
from ..data.h36m import TestIndex
from ..metrics import METRIC_NAMES, PoseMetrics

# Two computations of one figure from the same float64 inputs differ only by summation order.
ABSOLUTE_TOLERANCE = 1e-6
RELATIVE_TOLERANCE = 1e-9
THORAX_INDEX = JOINT_NAMES.index("Thorax")


def _agree(recorded: Any, recomputed: float | None) -> bool:
    if recomputed is None or (isinstance(recomputed, float) and math.isnan(recomputed)):
        return recorded is None
    if isinstance(recorded, bool) or not isinstance(recorded, (int, float)):
        return False
    return abs(float(recorded) - recomputed) <= ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * abs(recomputed)


def _shown(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def totals_disagreement(results: dict[str, Any], entries: list[dict[str, Any]]) -> str | None:
    """Where results.json's figures are not the means of predictions.json's per-image figures (overall, per
    action, per subject, per joint, the action average, the image count), as one phrase; None if they all are."""
    if results["num_samples"] != len(entries):
        return f"num_samples is {results['num_samples']} but predictions.json holds {len(entries)} images"
    checks: list[tuple[str, Any, float | None]] = []
    for name in METRIC_NAMES:
        checks.append((f"metrics.{name}", results["metrics"][name], _mean([e[name] for e in entries])))
    action_means: dict[str, list[float | None]] = {name: [] for name in METRIC_NAMES}
    for group, key, names in (("per_action", "action", ACTION_NAMES), ("per_subject", "subject", [f"S{s}" for s in TEST_SUBJECTS])):
        for label in names:
            members = [e for e in entries if e[key] == label]
            block = results[group][label]
            if block["num_samples"] != len(members):
                return f"{group}.{label}.num_samples is {block['num_samples']} but predictions.json holds {len(members)} such images"
            for name in METRIC_NAMES:
                value = _mean([e[name] for e in members])
                checks.append((f"{group}.{label}.{name}", block[name], value))
                if group == "per_action" and value is not None:
                    action_means[name].append(value)
    for name in METRIC_NAMES:
        present = [value for value in action_means[name] if value is not None]
        checks.append((f"action_average.{name}", results["action_average"][name], _mean(present)))  # type: ignore[arg-type]
    joints = np.mean([e["joint_mpjpe"] for e in entries], axis=0) if entries else [None] * len(EVAL_JOINT_NAMES)
    for joint, value in zip(EVAL_JOINT_NAMES, joints):
        checks.append((f"per_joint.{joint}.mpjpe", results["per_joint"][joint]["mpjpe"], None if value is None else float(value)))
    for where, recorded, recomputed in checks:
        if not _agree(recorded, recomputed):
            return f"{where} is {_shown(recorded)} but the mean of predictions.json's images is {_shown(recomputed)}"
    return None


def rescoring_disagreement(entries: list[dict[str, Any]], index: TestIndex) -> str | None:
    """Where predictions.json's per-image figures are not those of its predicted joints scored against the
    ground truth of ``index`` (the test set the run scored), or its images are not that test set's; None if none."""
    ids = [int(e["image_id"]) for e in entries]
    expected = [int(i) for i in index.image_id]
    if sorted(ids) != sorted(expected):
        missing, extra = set(expected) - set(ids), set(ids) - set(expected)
        return (f"predictions.json's images are not the test set's ({len(missing)} of its images missing, "
                f"{len(extra)} not in it)")  # fmt: skip
    if not entries:
        return None
    row_of = {image_id: row for row, image_id in enumerate(expected)}
    rows = np.array([row_of[i] for i in ids])
    pred = np.zeros((len(entries), len(JOINT_NAMES), 3), dtype=np.float64)
    pred[:, list(EVAL_JOINTS)] = np.array([e["joint_cam"] for e in entries], dtype=np.float64)
    pred[:, THORAX_INDEX] = np.array([e["thorax_cam"] for e in entries], dtype=np.float64)
    gt = index.joint_cam[rows].astype(np.float64)
    gt_rel = gt - gt[:, ROOT_INDEX : ROOT_INDEX + 1]
    metric = PoseMetrics(len(ACTION_NAMES), len(TEST_SUBJECTS), EVAL_JOINTS)
    per_image, joint_errors = (values.numpy() for values in metric.per_sample(torch.from_numpy(pred), torch.from_numpy(gt_rel)))
    for position, entry in enumerate(entries):
        row = rows[position]
        truth = {"action": ACTION_NAMES[int(index.action[row])], "subject": f"S{int(index.subject[row])}"}
        for key, value in truth.items():
            if entry[key] != value:
                return f"image {entry['image_id']}: {key} {entry[key]} in predictions.json, {value} in the test set"
        for column, name in enumerate(METRIC_NAMES):
            if not _agree(entry[name], float(per_image[column, position])):
                return (f"image {entry['image_id']}: {name} {_shown(entry[name])} in predictions.json, "
                        f"{float(per_image[column, position]):.4f} from its joints against the ground truth")  # fmt: skip
        for joint, value in zip(EVAL_JOINT_NAMES, joint_errors[position]):
            if not _agree(entry["joint_mpjpe"][EVAL_JOINT_NAMES.index(joint)], float(value)):
                return f"image {entry['image_id']}: the {joint} error in predictions.json is not that of its joints against the ground truth"
    return None
