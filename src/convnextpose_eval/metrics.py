"""MPJPE and Procrustes-aligned MPJPE as summable torchmetrics, grouped (e.g. per action).

Each metric keeps only per-group sums of per-sample errors and per-group sample
counts, so the states of several processes add up exactly ("sum" reduction) and the
mean over samples, overall and per group, is recovered at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

Alignment = Literal["none", "rigid", "similarity"]


def _procrustes_align(preds: Tensor, target: Tensor, with_scale: bool) -> Tensor:
    """Least-squares fit of preds onto target (Kabsch, optionally Umeyama's scale), batched.

    Follows 3DMPPE's ``rigid_transform_3D``: H = (A - cA)^T (B - cB), R = V U^T, and
    where det(R) < 0 the last row of V^T is negated, so R is always a proper rotation
    (a mirrored prediction is never "aligned away").
    """
    a = preds.to(torch.float64)
    b = target.to(torch.float64)
    centroid_a = a.mean(dim=-2, keepdim=True)
    centroid_b = b.mean(dim=-2, keepdim=True)
    a0 = a - centroid_a
    b0 = b - centroid_b
    u, s, vt = torch.linalg.svd(a0.mT @ b0)
    reflected = torch.linalg.det(vt.mT @ u.mT) < 0
    # Sign of the smallest singular direction: -1 where the unguarded R would reflect.
    sign = torch.ones_like(s)
    sign[..., -1] = 1.0 - 2.0 * reflected.to(s.dtype)
    rotation = (vt * sign.unsqueeze(-1)).mT @ u.mT
    aligned = a0 @ rotation.mT
    if with_scale:
        # Umeyama: c = tr(D S) / sum |A - cA|^2; the clamp makes a collapsed prediction
        # (all joints equal) map to the target centroid instead of NaN.
        variance = a0.square().sum(dim=(-2, -1))
        scale = (s * sign).sum(dim=-1) / variance.clamp_min(torch.finfo(torch.float64).tiny)
        aligned = aligned * scale[..., None, None]
    return aligned + centroid_b


def rigid_align(preds: Tensor, target: Tensor) -> Tensor:
    """Rotate and translate preds (..., J, 3) onto target, no scale: the paper's PA-MPJPE (3DMPPE).

    Returns the aligned preds in float64, so the figure does not depend on the input precision.
    """
    return _procrustes_align(preds, target, with_scale=False)


def similarity_align(preds: Tensor, target: Tensor) -> Tensor:
    """Rotate, translate and uniformly scale preds (..., J, 3) onto target (VideoPose3D / MMPose PA-MPJPE).

    Returns the aligned preds in float64.
    """
    return _procrustes_align(preds, target, with_scale=True)


_ALIGNERS = {"rigid": rigid_align, "similarity": similarity_align}


class PoseError(Metric):
    """Mean per-joint position error in mm, overall and per group, after an optional alignment.

    The alignment is fitted on all J joints given (as the authors' evaluation does);
    the error is then averaged over ``joints`` only (e.g. Human3.6M's 17 without Thorax).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    error_sum: Tensor
    count: Tensor

    def __init__(
        self,
        alignment: Alignment = "none",
        num_groups: int = 1,
        joints: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if alignment != "none" and alignment not in _ALIGNERS:
            raise ValueError(f"alignment must be 'none', 'rigid' or 'similarity', got {alignment!r}")
        if num_groups < 1:
            raise ValueError(f"num_groups must be at least 1, got {num_groups}")
        if joints is not None and (len(joints) == 0 or min(joints) < 0):
            raise ValueError(f"joints must be a non-empty list of non-negative indices, got {list(joints)}")
        self.alignment = alignment
        self.num_groups = num_groups
        self.joints = None if joints is None else tuple(int(j) for j in joints)
        self.add_state("error_sum", torch.zeros(num_groups, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(num_groups, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, groups: Tensor | None = None) -> None:
        """Add a batch of root-relative poses (B, J, 3) in mm; groups (B,) holds each sample's group."""
        if preds.ndim != 3 or preds.shape[-1] != 3 or preds.shape != target.shape:
            raise ValueError(
                f"preds and target must both have shape (B, J, 3), got {tuple(preds.shape)} and {tuple(target.shape)}"
            )
        batch, num_joints = preds.shape[:2]
        if self.joints is not None and max(self.joints) >= num_joints:
            raise ValueError(f"joint index {max(self.joints)} is out of range for {num_joints} joints")
        if groups is None:
            groups = torch.zeros(batch, dtype=torch.int64, device=preds.device)
        elif groups.shape != (batch,) or groups.dtype.is_floating_point or groups.dtype.is_complex:
            raise ValueError(
                f"groups must be an integer tensor of shape ({batch},), got {groups.dtype} {tuple(groups.shape)}"
            )
        elif batch and (int(groups.min()) < 0 or int(groups.max()) >= self.num_groups):
            raise ValueError(
                f"groups must lie in [0, {self.num_groups}), got values from {int(groups.min())} to {int(groups.max())}"
            )

        target = target.to(torch.float64)
        aligned = preds.to(torch.float64) if self.alignment == "none" else _ALIGNERS[self.alignment](preds, target)
        index = slice(None) if self.joints is None else list(self.joints)
        per_sample = torch.linalg.vector_norm(aligned[:, index] - target[:, index], dim=-1).mean(dim=-1)
        # A one-hot product instead of index_add_: deterministic on GPUs as well.
        one_hot = F.one_hot(groups.long(), self.num_groups)
        self.error_sum += per_sample @ one_hot.to(torch.float64)
        self.count += one_hot.sum(dim=0)

    def compute(self) -> dict[str, Tensor]:
        """Sample-weighted means; a group (or the whole metric) without samples is NaN (0 / 0)."""
        return {
            "overall": self.error_sum.sum() / self.count.sum(),
            "per_group": self.error_sum / self.count,
            "count": self.count.clone(),
        }


def pose_metrics(num_groups: int, joints: Sequence[int]) -> torch.nn.ModuleDict:
    """The three reported errors, keyed by the names used in results: mpjpe, pa_mpjpe, pa_mpjpe_scaled."""
    return torch.nn.ModuleDict(
        {
            "mpjpe": PoseError("none", num_groups=num_groups, joints=joints),
            "pa_mpjpe": PoseError("rigid", num_groups=num_groups, joints=joints),
            "pa_mpjpe_scaled": PoseError("similarity", num_groups=num_groups, joints=joints),
        }
    )
