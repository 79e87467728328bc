"""Typed records of one evaluation, and their JSON form (``results.json``, docs/results-format.md)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .contract import schema_version
from .files import RESULTS_FILE
from .paper import compare_to_paper

TOOL_NAME = "convnextpose-eval"


@dataclass(frozen=True)
class RunSettings:
    """What was asked for: the settings a result is only meaningful with."""

    variant: str
    protocol: int
    flip_test: bool
    use_gt_info: bool
    synthetic: bool
    oracle: bool
    data_root: str
    paper: dict[str, Any] | None
    bands: tuple[tuple[float, str], ...]
    skip_corrupt_s9: bool = False
    dropped_sequences: tuple[str, ...] = ()
    # Digest of the composed settings that can change a figure (sweep.resume compares it).
    config_sha256: str | None = None


@dataclass(frozen=True)
class InferenceSettings:
    """The numeric settings of the forward pass: anything but float32 without TF32 is not exact."""

    precision: str
    tf32: bool
    channels_last: bool
    fold_batchnorm: bool
    backend: str = "pytorch"
    onnx: dict[str, Any] | None = None


@dataclass(frozen=True)
class CheckpointInfo:
    """Where the weights came from."""

    path: str
    sha256: str
    epoch: int | None
    detected_variant: str | None
    key_style: str
    dtype_note: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """The network that ran: its architecture, parameters and multiply-accumulates."""

    arch: dict[str, Any]
    heatmap_size: int
    params: int
    gflops: float


@dataclass
class Scores:
    """Errors in mm (PCK and AUC in percent), overall and broken down; NaN where a group is empty."""

    metrics: dict[str, float | None]
    per_action: dict[str, dict[str, Any]]
    per_subject: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_joint: dict[str, dict[str, float | None]] = field(default_factory=dict)
    action_average: dict[str, float | None] = field(default_factory=dict)
    num_samples: int = 0


@dataclass
class RunResults:
    """Everything ``results.json`` holds."""

    settings: RunSettings
    inference: InferenceSettings
    scores: Scores
    checkpoint: CheckpointInfo | None
    model: ModelInfo
    throughput: dict[str, Any]
    crop_cache: dict[str, int]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        """The ``results.json`` object (key names are the contract in docs/results-format.md)."""
        s = self.settings
        comparison = compare_to_paper(self.scores.metrics, s.paper, s.protocol, s.bands)
        return {
            "tool": TOOL_NAME,
            "schema_version": schema_version(RESULTS_FILE),
            "variant": s.variant,
            "protocol": s.protocol,
            "num_samples": self.scores.num_samples,
            "flip_test": s.flip_test,
            "use_gt_info": s.use_gt_info,
            "synthetic": s.synthetic,
            "oracle": s.oracle,
            "skip_corrupt_s9": s.skip_corrupt_s9,
            "dropped_sequences": list(s.dropped_sequences),
            "metrics": self.scores.metrics,
            "action_average": self.scores.action_average,
            "per_action": self.scores.per_action,
            "per_subject": self.scores.per_subject,
            "per_joint": self.scores.per_joint,
            "checkpoint": dataclasses.asdict(self.checkpoint) if self.checkpoint else None,
            "model": {**self.model.arch, "heatmap_size": self.model.heatmap_size, "params": self.model.params,
                      "gflops": self.model.gflops},  # fmt: skip
            "inference": dataclasses.asdict(self.inference),
            "paper": s.paper,
            "comparison": comparison,
            "throughput": self.throughput,
            "crop_cache": self.crop_cache,
            "data_root": s.data_root,
            "created": self.created,
            "config_sha256": s.config_sha256,
        }


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an empty group's mean is written as null."""
    number = float(value)
    return None if math.isnan(number) else number
