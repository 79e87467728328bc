"""All reported pose figures as one torchmetrics Metric whose states are sums only.

Sums of per-sample values, per action and subject, plus sample counts: the states
of several processes add up exactly (``dist_reduce_fx="sum"``), so one pass over a
sharded test set gives the same figures as one process would, and every mean
(overall, per action, per subject, action average) is recovered at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from .functional import (
    MetricInputError,
    auc3d,
    check_joints,
    check_poses,
    joint_errors,
    pck3d,
)

# The names results.json uses, in the order the state's first axis holds them.
METRIC_NAMES: tuple[str, ...] = ("mpjpe", "pa_mpjpe", "pa_mpjpe_scaled", "n_mpjpe", "pck3d_150", "auc3d")
PCK_THRESHOLD_MM = 150.0


# NamedTuples rather than frozen dataclasses: torchmetrics rebuilds compute()'s output
# with apply_to_collection, which refuses frozen dataclasses but rebuilds NamedTuples.
class GroupScores(NamedTuple):
    """The figures of one action or one subject: every metric (NaN without samples) and the sample count."""

    metrics: dict[str, float]
    num_samples: int


class PoseScores(NamedTuple):
    """What PoseMetrics.compute returns; all errors in mm, PCK and AUC in percent.

    ``per_action`` and ``per_subject`` are indexed like the action and subject
    indices given to ``update``; ``per_joint`` follows ``eval_joints``.
    """

    overall: dict[str, float]
    per_action: tuple[GroupScores, ...]
    per_subject: tuple[GroupScores, ...]
    per_joint: tuple[float, ...]
    action_average: dict[str, float]
    num_samples: int


def _check_groups(groups: Tensor, batch: int, size: int, name: str) -> None:
    integer = not (groups.dtype.is_floating_point or groups.dtype.is_complex or groups.dtype == torch.bool)
    if groups.shape != (batch,) or not integer:
        raise MetricInputError(
            f"{name} must be an integer tensor of shape ({batch},), got {groups.dtype} {tuple(groups.shape)}"
        )
    if batch and (int(groups.min()) < 0 or int(groups.max()) >= size):
        raise MetricInputError(
            f"{name} must lie in [0, {size}), got values from {int(groups.min())} to {int(groups.max())}"
        )


def _means(sums: Tensor, counts: Tensor) -> dict[str, float]:
    """{metric: sum / count}; 0 / 0 is NaN, so a group without samples reads NaN instead of failing."""
    return {name: float(value) for name, value in zip(METRIC_NAMES, sums / counts)}


class PoseMetrics(Metric):
    """MPJPE, both PA-MPJPEs, N-MPJPE, 3DPCK and AUC; overall, per action, per subject and per joint.

    Fits follow the protocols the figures are compared with: ``pa_mpjpe`` is fitted on
    all J joints given (the authors' 3DMPPE code fits on 18, Thorax included);
    ``pa_mpjpe_scaled`` and ``n_mpjpe`` on ``fit_joints`` (default: ``eval_joints``, as
    VideoPose3D and MMPose do). Errors are then measured on ``eval_joints`` only.
    """

    is_differentiable = False
    higher_is_better = None  # errors fall, PCK and AUC rise
    full_state_update = False

    error_sum: Tensor
    count: Tensor
    joint_error_sum: Tensor

    def __init__(
        self,
        num_actions: int,
        num_subjects: int,
        eval_joints: Sequence[int],
        fit_joints: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_actions < 1 or num_subjects < 1:
            raise MetricInputError(
                f"num_actions and num_subjects must be at least 1, got {num_actions} and {num_subjects}"
            )
        self.num_actions = num_actions
        self.num_subjects = num_subjects
        self.eval_joints = tuple(int(j) for j in eval_joints)
        self.fit_joints = self.eval_joints if fit_joints is None else tuple(int(j) for j in fit_joints)
        for name, joints in (("eval_joints", self.eval_joints), ("fit_joints", self.fit_joints)):
            if not joints or min(joints) < 0:
                raise MetricInputError(f"{name} must be a non-empty list of non-negative indices, got {list(joints)}")
        groups = (len(METRIC_NAMES), num_actions, num_subjects)
        self.add_state("error_sum", torch.zeros(groups, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(groups[1:], dtype=torch.int64), dist_reduce_fx="sum")
        per_joint = torch.zeros(len(self.eval_joints), dtype=torch.float64)
        self.add_state("joint_error_sum", per_joint, dist_reduce_fx="sum")

    def update(self, pred_rel: Tensor, gt_rel: Tensor, action: Tensor, subject: Tensor) -> None:
        """Add root-relative poses (B, J, 3) in mm; action and subject (B,) are integer slot indices."""
        check_poses(pred_rel, gt_rel)
        batch, num_joints = pred_rel.shape[:2]
        for name, joints in (("eval_joints", self.eval_joints), ("fit_joints", self.fit_joints)):
            check_joints(joints, num_joints, name)
        _check_groups(action, batch, self.num_actions, "action")
        _check_groups(subject, batch, self.num_subjects, "subject")

        per_sample, unaligned = self.per_sample(pred_rel, gt_rel)
        # One-hot products instead of index_add_: deterministic on GPUs as well.
        group = action.long() * self.num_subjects + subject.long()
        one_hot = F.one_hot(group, self.num_actions * self.num_subjects)
        self.error_sum += (per_sample @ one_hot.to(torch.float64)).view_as(self.error_sum)
        self.count += one_hot.sum(dim=0).view_as(self.count)
        self.joint_error_sum += unaligned.sum(dim=0)

    def per_sample(self, pred_rel: Tensor, gt_rel: Tensor) -> tuple[Tensor, Tensor]:
        """Each sample's figures, the terms the totals are means of: (len(METRIC_NAMES), B) in METRIC_NAMES
        order, and the unaligned error of each evaluated joint (B, len(eval_joints)). Float64, in mm (PCK, AUC: %)."""
        check_poses(pred_rel, gt_rel)
        unaligned = joint_errors(pred_rel, gt_rel, "none", eval_joints=self.eval_joints)
        per_sample = torch.stack(
            (
                unaligned.mean(dim=-1),
                joint_errors(pred_rel, gt_rel, "rigid", None, self.eval_joints).mean(dim=-1),
                joint_errors(pred_rel, gt_rel, "similarity", self.fit_joints, self.eval_joints).mean(dim=-1),
                joint_errors(pred_rel, gt_rel, "scale", self.fit_joints, self.eval_joints).mean(dim=-1),
                pck3d(unaligned, PCK_THRESHOLD_MM),
                auc3d(unaligned, PCK_THRESHOLD_MM),
            )
        )
        return per_sample, unaligned

    def compute(self) -> PoseScores:
        """Sample-weighted means; any group (or the whole metric) without samples reads NaN."""
        error_sum = self.error_sum.cpu()
        count = self.count.cpu().to(torch.float64)
        per_action_sum, per_action_count = error_sum.sum(dim=2), count.sum(dim=1)
        per_subject_sum, per_subject_count = error_sum.sum(dim=1), count.sum(dim=0)
        total = count.sum()
        action_means = per_action_sum / per_action_count
        present = per_action_count > 0
        return PoseScores(
            overall=_means(error_sum.sum(dim=(1, 2)), total),
            per_action=tuple(
                GroupScores(_means(per_action_sum[:, a], per_action_count[a]), int(per_action_count[a]))
                for a in range(self.num_actions)
            ),
            per_subject=tuple(
                GroupScores(_means(per_subject_sum[:, s], per_subject_count[s]), int(per_subject_count[s]))
                for s in range(self.num_subjects)
            ),
            per_joint=tuple(float(v) for v in self.joint_error_sum.cpu() / total),
            action_average={
                name: float(action_means[m, present].mean()) if bool(present.any()) else math.nan
                for m, name in enumerate(METRIC_NAMES)
            },
            num_samples=int(total),
        )
