"""Compare runs: how two evaluations of the same test set differ, and whether the difference is more than noise.

    convnextpose-eval compare RUN_A RUN_B [RUN_C ...] [--json] [--md]   (the command: cli/compare.py)

Each later run is compared with the first, over the images both scored (runs of different test sets are
refused). Every figure's difference is B - A; where both runs scored exactly the same images the figures are
read from the two results.json files, otherwise they are the means over the common images. The 95% interval
of a difference is a paired bootstrap over images: the per-image figures each run wrote to predictions.json
are resampled together (seeded), so the spread of the images common to both runs cancels.

Each run folder is re-proven first (docs/results-contract.md): both files are read through the guarded
reader and checked against their schemas, and results.json's figures must be the means of predictions.json's
per-image figures; anything else is refused in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import EvalError, one_line
from ..results.contract import ContractError, load_checked
from ..results.files import PREDICTIONS_FILE, RESULTS_FILE
from ..results.paper import ORACLE_WARNING, SYNTHETIC_WARNING
from ..results.proof import totals_disagreement
from .labels import METRIC_LABELS

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0
DEFAULT_TOP = 5
# The figures a bootstrap interval is given for.
INTERVAL_METRICS = ("mpjpe", "pa_mpjpe")
# What the actions and joints are ranked by (the one figure results.json has per joint).
CHANGE_METRIC = "mpjpe"
LABELS = {**METRIC_LABELS, "n_mpjpe": "N-MPJPE", "pck3d_150": "3DPCK@150mm (%)", "auc3d": "AUC (%)"}
# Boxes and roots of one image must agree between runs of the same test data (they come from its files).
_INPUT_TOLERANCE = 1e-3
_CHUNK = 64


class CompareError(EvalError):
    """A run folder cannot be read, or two runs are not of the same test set."""


@dataclass(frozen=True)
class Run:
    """One run folder: its results.json and its per-image figures, by image id."""

    folder: Path
    results: dict[str, Any]
    images: dict[int, dict[str, Any]]

    @property
    def label(self) -> str:
        """Variant and weights, to say in one line which run is which."""
        results = self.results
        onnx = (results.get("inference") or {}).get("onnx")
        checkpoint = results.get("checkpoint")
        if onnx:
            weights = f"ONNX {Path(onnx['path']).name} sha256 {str(onnx['sha256'])[:12]}"
        elif checkpoint:
            weights = f"{Path(checkpoint['path']).name} sha256 {str(checkpoint['sha256'])[:12]}"
        else:
            weights = "no checkpoint"
        return f"ConvNeXtPose-{results.get('variant')}, {weights}, {(results.get('inference') or {}).get('backend', 'pytorch')}"


def _read_checked(path: Path, file_name: str) -> Any:
    try:
        return load_checked(path, file_name)
    except ContractError as exc:
        if not path.exists() and not path.is_symlink():
            raise CompareError(f"{path}: no such file; give a run folder (one holding {RESULTS_FILE} and {PREDICTIONS_FILE})") from None
        raise CompareError(one_line(exc)) from None


def read_run(path: Path) -> Run:
    """A run folder (or its results.json), re-proven: both files regular, bounded and of their schemas, and
    results.json's figures the means of predictions.json's per-image figures (``results/proof.py``)."""
    folder = path.parent if path.name == RESULTS_FILE and not path.is_dir() else path
    if not folder.is_dir():
        raise CompareError(f"{path}: no such run folder")
    results_path, predictions_path = folder / RESULTS_FILE, folder / PREDICTIONS_FILE
    results = _read_checked(results_path, RESULTS_FILE)
    entries = _read_checked(predictions_path, PREDICTIONS_FILE)
    if not entries:
        raise CompareError(f"{predictions_path}: no images; a run that scored none cannot be compared")
    images: dict[int, dict[str, Any]] = {}
    for position, entry in enumerate(entries):
        if entry["image_id"] in images:
            raise CompareError(f"{predictions_path}: entry {position}: image {entry['image_id']} appears twice")
        images[entry["image_id"]] = entry
    problem = totals_disagreement(results, entries)
    if problem:
        raise CompareError(f"{results_path}: {problem}; its figures are not those of its own images, so it is not compared")
    return Run(folder, results, images)


def evaluated_set(results: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs' figures comparable: protocol, test subjects, which boxes, which data."""
    subjects = sorted((name for name, block in (results.get("per_subject") or {}).items() if block.get("num_samples")),
                      key=lambda name: (len(name), name))  # S9 before S11
    return {
        "protocol": results.get("protocol"),
        "subjects": " ".join(subjects),
        "boxes": "ground-truth boxes" if results.get("use_gt_info", True) else "RootNet boxes",
        "data": "the synthetic sample" if results.get("synthetic") else "Human3.6M",
    }


def common_images(a: Run, b: Run) -> list[int]:
    """The image ids both runs scored, in order; refuses runs of different test sets in one line."""
    set_a, set_b = evaluated_set(a.results), evaluated_set(b.results)
    differences = [f"{key} {set_a[key]} vs {set_b[key]}" for key in set_a if set_a[key] != set_b[key]]
    if differences:
        raise CompareError(f"{a.folder} and {b.folder} are runs of different test sets ({'; '.join(differences)}); "
                           "compare runs of the same protocol, subjects and boxes")  # fmt: skip
    common = sorted(a.images.keys() & b.images.keys())
    if not common:
        raise CompareError(f"{a.folder} and {b.folder} share no test image")
    for image_id in common:
        for key in ("bbox", "root_cam"):
            here, there = a.images[image_id].get(key), b.images[image_id].get(key)
            if here is not None and there is not None and not np.allclose(here, there, rtol=0, atol=_INPUT_TOLERANCE):
                raise CompareError(f"{a.folder} and {b.folder} are runs of different test data: image {image_id} has "
                                   f"{key} {here} in A and {there} in B")  # fmt: skip
    return common


def paired_bootstrap(differences: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """95% percentile intervals (M, 2) of the mean of each column of per-image differences (N, M), the images
    resampled with replacement ``resamples`` times, the same draw for every column."""
    rng = np.random.default_rng(seed)
    count = differences.shape[0]
    means = np.empty((resamples, differences.shape[1]))
    for start in range(0, resamples, _CHUNK):
        stop = min(start + _CHUNK, resamples)
        draw = rng.integers(0, count, size=(stop - start, count))
        means[start:stop] = differences[draw].mean(axis=1)
    return np.percentile(means, [2.5, 97.5], axis=0).T


def _pair(a: float | None, b: float | None) -> dict[str, float | None]:
    return {"a": a, "b": b, "difference": None if a is None or b is None else b - a}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def compare_runs(a: Run, b: Run, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """B against A over their common images: every figure, bootstrap intervals, every action and joint."""
    common = common_images(a, b)
    same_images = len(common) == len(a.images) == len(b.images)
    names = [name for name in a.results["metrics"] if name in b.results["metrics"]]
    per_image = {side: np.array([[run.images[i][name] for name in names] for i in common], dtype=np.float64)
                 for side, run in (("a", a), ("b", b))}  # fmt: skip
    metrics: dict[str, dict[str, Any]] = {}
    for column, name in enumerate(names):
        if same_images:
            metrics[name] = _pair(a.results["metrics"][name], b.results["metrics"][name])
        else:
            metrics[name] = _pair(float(per_image["a"][:, column].mean()), float(per_image["b"][:, column].mean()))
    interval_columns = [names.index(name) for name in INTERVAL_METRICS if name in names]
    if interval_columns:
        differences = per_image["b"][:, interval_columns] - per_image["a"][:, interval_columns]
        for column, (low, high) in zip(interval_columns, paired_bootstrap(differences, resamples, seed)):
            metrics[names[column]]["ci95"] = [float(low), float(high)]

    per_action: dict[str, dict[str, Any]] = {}
    for action in a.results.get("per_action") or {}:
        if same_images:
            block_a, block_b = a.results["per_action"][action], (b.results.get("per_action") or {}).get(action, {})
            pair = _pair(block_a.get(CHANGE_METRIC), block_b.get(CHANGE_METRIC))
            num = block_a.get("num_samples", 0)
        else:
            ids = [i for i in common if a.images[i]["action"] == action]
            pair = _pair(_mean([a.images[i][CHANGE_METRIC] for i in ids]), _mean([b.images[i][CHANGE_METRIC] for i in ids]))
            num = len(ids)
        per_action[action] = {**pair, "num_common": num}
    per_joint: dict[str, dict[str, Any]] = {}
    joints_a = np.array([a.images[i]["joint_mpjpe"] for i in common], dtype=np.float64).mean(axis=0)
    joints_b = np.array([b.images[i]["joint_mpjpe"] for i in common], dtype=np.float64).mean(axis=0)
    for position, joint in enumerate(a.results.get("per_joint") or {}):
        if same_images:
            per_joint[joint] = _pair(a.results["per_joint"][joint]["mpjpe"], (b.results.get("per_joint") or {}).get(joint, {}).get("mpjpe"))
        else:
            per_joint[joint] = _pair(float(joints_a[position]), float(joints_b[position]))
    return {
        "a": str(a.folder),
        "b": str(b.folder),
        "num_common": len(common),
        "num_a": len(a.images),
        "num_b": len(b.images),
        "test_set": evaluated_set(a.results),
        "bootstrap": {"resamples": resamples, "seed": seed, "interval": "percentile, 95%", "paired_over": "images"},
        "metrics": metrics,
        "per_action": per_action,
        "per_joint": per_joint,
    }


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _most_changed(block: dict[str, dict[str, Any]], top: int) -> list[tuple[str, dict[str, Any]]]:
    known = [(key, entry) for key, entry in block.items() if entry["difference"] is not None]
    return sorted(known, key=lambda item: -abs(item[1]["difference"]))[:top]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        return lines + ["| " + " | ".join(row) + " |" for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()
    return [line(header), "  ".join("-" * width for width in widths), *(line(row) for row in rows)]


def format_comparison(comparison: dict[str, Any], a: Run, b: Run, top: int = DEFAULT_TOP, markdown: bool = False) -> str:
    """The comparison as text tables, or Markdown with ``markdown``."""
    test = comparison["test_set"]
    boot = comparison["bootstrap"]
    heading = "## " if markdown else ""
    lines = [
        f"{heading}B - A over the {comparison['num_common']} test images both runs scored (A scored {comparison['num_a']}, B {comparison['num_b']})",
        "",
        f"- A: {a.folder} ({a.label})" if markdown else f"A: {a.folder} ({a.label})",
        f"- B: {b.folder} ({b.label})" if markdown else f"B: {b.folder} ({b.label})",
        f"- test set: protocol {test['protocol']}, subjects {test['subjects']}, {test['boxes']}, {test['data']}" if markdown
        else f"test set: protocol {test['protocol']}, subjects {test['subjects']}, {test['boxes']}, {test['data']}",
        f"- 95% intervals: paired bootstrap over images, {boot['resamples']} resamples, seed {boot['seed']}" if markdown
        else f"95% intervals: paired bootstrap over images, {boot['resamples']} resamples, seed {boot['seed']}",
    ]  # fmt: skip
    for key, warning in (("synthetic", SYNTHETIC_WARNING), ("oracle", ORACLE_WARNING)):
        if a.results.get(key) or b.results.get(key):
            lines.append(f"**{warning}**" if markdown else warning)
    rows = []
    for name, entry in comparison["metrics"].items():
        interval = entry.get("ci95")
        rows.append([LABELS.get(name, name), _number(entry["a"]), _number(entry["b"]), _number(entry["difference"], signed=True),
                     f"[{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else ""])  # fmt: skip
    lines += ["", *_table(["metric (mm)", "A", "B", "B - A", "95% interval"], rows, markdown)]
    label = LABELS[CHANGE_METRIC]
    actions = _most_changed(comparison["per_action"], top)
    if actions:
        lines += ["", f"{heading}Actions that changed most ({label}, mm)\n" if markdown else f"actions that changed most ({label}, mm):"]
        lines += _table(["action", "A", "B", "B - A", "images"],
                        [[key, _number(e["a"]), _number(e["b"]), _number(e["difference"], True), str(e["num_common"])] for key, e in actions],
                        markdown)  # fmt: skip
    joints = _most_changed(comparison["per_joint"], top)
    if joints:
        lines += ["", f"{heading}Joints that changed most ({label}, mm)\n" if markdown else f"joints that changed most ({label}, mm):"]
        lines += _table(["joint", "A", "B", "B - A"],
                        [[key, _number(e["a"]), _number(e["b"]), _number(e["difference"], True)] for key, e in joints], markdown)  # fmt: skip
    return "\n".join(lines)


def group_intervals(a: Run, b: Run, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> dict[str, dict[str, list[float]]]:
    """Paired bootstrap 95% intervals of B - A (MPJPE, mm) per action and per joint over the common images:
    each action's images resampled on their own, every joint's column with the same draw of images. A group of
    one image has no spread to resample, so no interval."""
    common = common_images(a, b)
    per_action: dict[str, list[float]] = {}
    for action in sorted({a.images[i]["action"] for i in common}):
        ids = [i for i in common if a.images[i]["action"] == action]
        if len(ids) < 2:
            continue
        differences = np.array([[b.images[i][CHANGE_METRIC] - a.images[i][CHANGE_METRIC]] for i in ids], dtype=np.float64)
        (low, high), = paired_bootstrap(differences, resamples, seed)
        per_action[action] = [float(low), float(high)]
    joints = np.array([b.images[i]["joint_mpjpe"] for i in common], dtype=np.float64) - np.array(
        [a.images[i]["joint_mpjpe"] for i in common], dtype=np.float64)  # fmt: skip
    names = list(a.results.get("per_joint") or {})
    intervals = paired_bootstrap(joints, resamples, seed) if len(names) == joints.shape[1] and len(common) > 1 else np.empty((0, 2))
    return {"per_action": per_action, "per_joint": {name: [float(lo), float(hi)] for name, (lo, hi) in zip(names, intervals)}}


def most_changed_images(a: Run, b: Run, top: int) -> list[int]:
    """The ``top`` common images whose MPJPE changed most between the runs (either way), largest first."""
    common = common_images(a, b)
    return sorted(common, key=lambda i: -abs(b.images[i][CHANGE_METRIC] - a.images[i][CHANGE_METRIC]))[:top]
