"""Pose metrics: pure functions (functional) and the summable torchmetrics Metric built on them (pose)."""

from .functional import (
    ALIGNMENTS,
    Alignment,
    MetricInputError,
    align,
    auc3d,
    joint_errors,
    pck3d,
    per_sample_mpjpe,
)
from .pose import METRIC_NAMES, GroupScores, PoseMetrics, PoseScores

__all__ = [
    "ALIGNMENTS",
    "METRIC_NAMES",
    "Alignment",
    "GroupScores",
    "MetricInputError",
    "PoseMetrics",
    "PoseScores",
    "align",
    "auc3d",
    "joint_errors",
    "pck3d",
    "per_sample_mpjpe",
]
