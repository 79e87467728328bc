"""Pose errors as pure tensor functions: alignments, per-joint errors, 3DPCK and AUC.

Everything is computed in float64 so that a figure does not depend on the
precision the network ran in. Poses are (B, J, 3) in mm; the caller makes them
root-relative first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from ..common.errors import EvalError

Alignment = Literal["none", "rigid", "similarity", "scale"]
ALIGNMENTS: tuple[str, ...] = get_args(Alignment)


class MetricInputError(EvalError, ValueError):
    """Poses, indices or thresholds handed to a metric have the wrong shape, type or range."""


def check_poses(preds: Tensor, target: Tensor) -> None:
    """One line naming both shapes when preds and target are not the same (B, J, 3)."""
    if preds.ndim != 3 or preds.shape[-1] != 3 or preds.shape != target.shape:
        raise MetricInputError(
            f"preds and target must both have shape (B, J, 3), got {tuple(preds.shape)} and {tuple(target.shape)}"
        )


def check_joints(joints: Sequence[int] | None, num_joints: int, name: str) -> list[int] | None:
    """The joint indices as a list, or None for all; empty or out-of-range selections are refused."""
    if joints is None:
        return None
    selected = [int(j) for j in joints]
    if not selected or min(selected) < 0 or max(selected) >= num_joints:
        raise MetricInputError(f"{name} must be a non-empty list of indices in [0, {num_joints}), got {selected}")
    return selected


def _select(poses: Tensor, joints: list[int] | None) -> Tensor:
    return poses if joints is None else poses[:, joints]


def _procrustes(preds: Tensor, target: Tensor, fit_joints: list[int] | None, with_scale: bool) -> Tensor:
    """Least-squares rotation + translation (+ Umeyama's scale) of preds onto target, fitted on fit_joints.

    As 3DMPPE's ``rigid_transform_3D``: H = (A - cA)^T (B - cB), R = V U^T, and where
    det(R) < 0 the last row of V^T is negated, so R is always a proper rotation (a
    mirrored prediction is never "aligned away"). The transform is applied to all joints.
    """
    fit_preds = _select(preds, fit_joints)
    fit_target = _select(target, fit_joints)
    centroid_preds = fit_preds.mean(dim=-2, keepdim=True)
    centroid_target = fit_target.mean(dim=-2, keepdim=True)
    fit_preds0 = fit_preds - centroid_preds
    u, s, vt = torch.linalg.svd(fit_preds0.mT @ (fit_target - centroid_target))
    reflected = torch.linalg.det(vt.mT @ u.mT) < 0
    # Sign of the smallest singular direction: -1 where the unguarded R would reflect.
    sign = torch.ones_like(s)
    sign[..., -1] = 1.0 - 2.0 * reflected.to(s.dtype)
    rotation = (vt * sign.unsqueeze(-1)).mT @ u.mT
    aligned = (preds - centroid_preds) @ rotation.mT
    if with_scale:
        # Umeyama: c = tr(D S) / sum |A - cA|^2; the clamp makes a collapsed prediction
        # (all joints equal) map to the target centroid instead of NaN.
        variance = fit_preds0.square().sum(dim=(-2, -1))
        scale = (s * sign).sum(dim=-1) / variance.clamp_min(torch.finfo(torch.float64).tiny)
        aligned = aligned * scale[..., None, None]
    return aligned + centroid_target


def _scale_only(preds: Tensor, target: Tensor, fit_joints: list[int] | None) -> Tensor:
    """N-MPJPE's fit: preds times s = sum(p.g) / sum(p.p) over fit_joints, the least-squares scale about the root.

    The clamp makes an all-zero prediction stay at zero instead of becoming NaN.
    """
    fit_preds = _select(preds, fit_joints)
    fit_target = _select(target, fit_joints)
    scale = (fit_preds * fit_target).sum(dim=(-2, -1)) / fit_preds.square().sum(dim=(-2, -1)).clamp_min(
        torch.finfo(torch.float64).tiny
    )
    return preds * scale[:, None, None]


def align(preds: Tensor, target: Tensor, alignment: Alignment, fit_joints: Sequence[int] | None = None) -> Tensor:
    """preds (B, J, 3) moved onto target by the least-squares transform of one family, in float64.

    - "none": unchanged.
    - "rigid": rotation + translation, no scale (the paper's PA-MPJPE, 3DMPPE's rigid_align).
    - "similarity": rotation + translation + uniform scale (VideoPose3D / MMPose PA-MPJPE, Umeyama).
    - "scale": uniform scale about the origin only (N-MPJPE; poses must be root-relative).
    The transform is fitted on ``fit_joints`` (all joints when None) and applied to every joint.
    The protocols differ in what they fit on: the authors' rigid fit uses all 18 joints
    (Thorax included), VideoPose3D and MMPose fit on the 17 evaluated ones.
    """
    check_poses(preds, target)
    if alignment not in ALIGNMENTS:
        raise MetricInputError(f"alignment must be one of {', '.join(ALIGNMENTS)}, got {alignment!r}")
    fit = check_joints(fit_joints, preds.shape[1], "fit_joints")
    preds = preds.to(torch.float64)
    target = target.to(torch.float64)
    if alignment == "none":
        return preds
    if alignment == "scale":
        return _scale_only(preds, target, fit)
    return _procrustes(preds, target, fit, with_scale=alignment == "similarity")


def joint_errors(
    preds: Tensor,
    target: Tensor,
    alignment: Alignment = "none",
    fit_joints: Sequence[int] | None = None,
    eval_joints: Sequence[int] | None = None,
) -> Tensor:
    """Euclidean error in mm of each evaluated joint after the alignment: (B, len(eval_joints)), float64."""
    aligned = align(preds, target, alignment, fit_joints)
    evaluated = check_joints(eval_joints, preds.shape[1], "eval_joints")
    return torch.linalg.vector_norm(_select(aligned, evaluated) - _select(target.to(torch.float64), evaluated), dim=-1)


def per_sample_mpjpe(pred_rel: Tensor, gt_rel: Tensor, eval_joints: Sequence[int] | None = None) -> Tensor:
    """Unaligned MPJPE of each sample (B,), in mm: what worst-case images are ranked by."""
    return joint_errors(pred_rel, gt_rel, "none", eval_joints=eval_joints).mean(dim=-1)


def _check_errors(errors: Tensor) -> None:
    if errors.ndim != 2 or errors.shape[1] == 0:
        raise MetricInputError(f"errors must have shape (B, joints) with at least one joint, got {tuple(errors.shape)}")


def pck3d(errors: Tensor, threshold: float = 150.0) -> Tensor:
    """Percentage (B,) of joints whose error is strictly below threshold (MMPose keypoint_3d_pck)."""
    _check_errors(errors)
    return (errors < threshold).to(torch.float64).mean(dim=-1) * 100.0


def auc3d(errors: Tensor, max_threshold: float = 150.0, step: float = 5.0) -> Tensor:
    """Mean (B,) of the 3DPCK over thresholds 0, step, ..., max_threshold, in percent (MMPose keypoint_3d_auc).

    At threshold 0 no joint counts, not even an exact one, so a perfect pose scores
    100 * (n - 1) / n with n thresholds (96.77 for the default 31).
    """
    _check_errors(errors)
    intervals = round(max_threshold / step) if step > 0 else 0
    if intervals < 1 or abs(intervals * step - max_threshold) > 1e-9 * max_threshold:
        raise MetricInputError(
            f"max_threshold must be a positive whole multiple of step, got {max_threshold} and {step}"
        )
    thresholds = torch.linspace(0.0, max_threshold, intervals + 1, dtype=torch.float64, device=errors.device)
    below = errors.to(torch.float64).unsqueeze(-1) < thresholds
    return below.to(torch.float64).mean(dim=(-2, -1)) * 100.0
