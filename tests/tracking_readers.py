"""What a tracked run logged, read back with each library's own reader, and what it should have logged.

The expected names are built here by walking results.json's blocks (docs/tracking.md, "Tracking": every figure
under a name that contains its results.json key), not with the project's own naming code.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from convnextpose_eval.results.paper import SYNTHETIC_WARNING

# results.json blocks whose figures are tracked, and the name prefix each gets ("metrics" sits at the top).
TRACKED_BLOCKS = {"metrics": "test", "action_average": "test/action_average", "per_action": "test/per_action",
                  "per_subject": "test/per_subject", "per_joint": "test/per_joint"}  # fmt: skip


def read_results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def expected_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Every number of the tracked blocks under ``prefix/key/.../name``; empty groups (null) are not logged."""
    expected: dict[str, float] = {"test/num_samples": float(results["num_samples"])}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(f"{prefix}/{key}", value)
            elif value is not None:
                expected[f"{prefix}/{key}"] = float(value)

    for block, prefix in TRACKED_BLOCKS.items():
        walk(prefix, results[block])
    if results.get("comparison"):
        expected["test/comparison/diff"] = float(results["comparison"]["diff"])
    if results["throughput"]["images_per_s"] is not None:  # null when every rank's only batch was its warm-up
        expected["test/throughput/images_per_s"] = float(results["throughput"]["images_per_s"])
    return expected


def csv_logged(run_dir: Path) -> tuple[dict[str, float], Path]:
    """The one row of the run's one CSVLogger file, and its folder; fails unless there is exactly one of each."""
    files = sorted((run_dir / "csv").glob("version_*/metrics.csv"))
    assert len(files) == 1, files
    with open(files[0], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1, f"{files[0]}: {len(rows)} rows"
    return {name: float(value) for name, value in rows[0].items() if name != "step" and value != ""}, files[0].parent


def png_pixels(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def assert_tensorboard_matches(run_dir: Path) -> None:
    """A ``logger=tensorboard`` run read with TensorBoard's event reader: every figure of results.json as a
    scalar, the config under HParams, worst_cases.png as an image; the picture names the run it shows."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    results = read_results(run_dir)
    logs = run_dir / "tensorboard" / "version_0"
    assert f"tracking: tensorboard -> {logs}" in (run_dir / "run_eval.log").read_text()
    events = EventAccumulator(str(logs), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    expected = expected_metrics(results)
    assert sorted(events.Tags()["scalars"]) == sorted(expected)
    for name, value in expected.items():
        (scalar,) = events.Scalars(name)
        # TensorBoard stores scalars as float32.
        assert scalar.value == pytest.approx(value, rel=1e-6, abs=1e-6), name
    (picture,) = events.Images("worst_cases")
    assert np.array_equal(png_pixels(picture.encoded_image_string), png_pixels((run_dir / "worst_cases.png").read_bytes()))
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["variant/name"].string_value == results["variant"]
    assert hparams["data/protocol"].number_value == results["protocol"]
    assert hparams["run/checkpoint_sha256"].string_value == results["checkpoint"]["sha256"]
    description = Image.open(run_dir / "worst_cases.png").text["Description"]
    assert f"ConvNeXtPose-{results['variant']}" in description and Path(results["checkpoint"]["path"]).name in description
    assert results["checkpoint"]["sha256"][:12] in description and SYNTHETIC_WARNING in description
