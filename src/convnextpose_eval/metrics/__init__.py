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
    "Alignment",
    "GroupScores",
    "METRIC_NAMES",
    "MetricInputError",
    "PoseMetrics",
    "PoseScores",
    "align",
    "auc3d",
    "joint_errors",
    "pck3d",
    "per_sample_mpjpe",
]
