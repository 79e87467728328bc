"""What a tracked run logged, read back with each library's own reader, and what it should have logged.

The expected names are built here by walking results.json's blocks (INTERFACE.md "Tracking": every figure
under a name that contains its results.json key), not with the project's own naming code.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

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
