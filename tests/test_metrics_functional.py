"""Tests for convnextpose_eval.metrics.functional against independent numpy references, hand cases and invariants.

The references follow the published formulas of the projects whose figures are
compared with: 3DMPPE's ``rigid_align`` (written out literally), Horn's closed-form
similarity fit (no SVD), VideoPose3D's ``n_mpjpe`` and MMPose's ``keypoint_3d_pck``
/ ``keypoint_3d_auc``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from convnextpose_eval.common.errors import EvalError
from convnextpose_eval.metrics import (
    ALIGNMENTS,
    MetricInputError,
    align,
    auc3d,
    joint_errors,
    pck3d,
    per_sample_mpjpe,
)

J = 18
THORAX = 17
EVAL_JOINTS = list(range(17))  # Human3.6M without Thorax (index 17)

# A fixed, non-planar, asymmetric 18-joint "pose" (mm) with distinct spreads per axis, so that
# poses near it have a unique best alignment (the metric is only well defined then).
BASE = np.random.default_rng(1234).normal(size=(J, 3)) * np.array([200.0, 450.0, 300.0])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: handing them to a thread pool costs far more than it saves
    (100x on a busy 2-core machine), so run this module single-threaded and restore afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------- references


def ref_rigid_align(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """3DMPPE's rigid_transform_3D + rigid_align for one sample, written out literally."""
    centroid_A = np.mean(A, axis=0)
    centroid_B = np.mean(B, axis=0)
    H = np.dot(np.transpose(A - centroid_A), B - centroid_B)
    U, _, V = np.linalg.svd(H)
    R = np.dot(np.transpose(V), np.transpose(U))
    if np.linalg.det(R) < 0:
        V[2] = -V[2]
        R = np.dot(np.transpose(V), np.transpose(U))
    t = -np.dot(R, np.transpose(centroid_A)) + np.transpose(centroid_B)
    return np.transpose(np.dot(R, np.transpose(A))) + t


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a (not necessarily unit) quaternion (w, x, y, z)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def ref_similarity_align(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Horn's closed form (1987): best rotation from the top eigenvector of a 4x4 quaternion
    matrix (no SVD, and proper by construction), then the least-squares scale for that rotation."""
    a0 = A - A.mean(axis=0)
    b0 = B - B.mean(axis=0)
    S = a0.T @ b0
    (sxx, sxy, sxz), (syx, syy, syz), (szx, szy, szz) = S
    N = np.array(
        [
            [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
            [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
            [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
            [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
        ]
    )
    eigenvalues, eigenvectors = np.linalg.eigh(N)
    R = quat_to_matrix(eigenvectors[:, np.argmax(eigenvalues)])
    rotated = a0 @ R.T
    scale = np.sum(rotated * b0) / np.sum(a0 * a0)
    return scale * rotated + B.mean(axis=0)


def ref_n_mpjpe(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """VideoPose3D's n_mpjpe per sample: scale = mean(sum(t*p)) / mean(sum(p*p)) over the joints, then MPJPE."""
    norm_predicted = np.mean(np.sum(predicted**2, axis=-1, keepdims=True), axis=-2, keepdims=True)
    norm_target = np.mean(np.sum(target * predicted, axis=-1, keepdims=True), axis=-2, keepdims=True)
    scale = norm_target / norm_predicted
    return np.mean(np.linalg.norm(scale * predicted - target, axis=-1), axis=-1)


def ref_mmpose_scale_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """MMPose keypoint_mpjpe(alignment='scale'): pred times einsum('nkc,nkc->n', pred, gt) / einsum(pred, pred)."""
    factor = np.einsum("nkc,nkc->n", pred, gt) / np.einsum("nkc,nkc->n", pred, pred)
    return pred * factor[:, None, None]


def ref_pck(errors: np.ndarray, threshold: float = 150.0) -> float:
    """MMPose keypoint_3d_pck over one image's joints (all visible): strict '<', percent."""
    return float((errors < threshold).astype(np.float32).mean() * 100)


def ref_auc(errors: np.ndarray) -> float:
    """MMPose keypoint_3d_auc: mean PCK over np.linspace(0, 150, 31), percent."""
    thresholds = np.linspace(0.0, 150, 31)
    return float(np.array([(errors < t).astype(np.float32).mean() for t in thresholds]).mean() * 100)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    return quat_to_matrix(rng.normal(size=4))


def random_batch(rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets near BASE; predictions of four kinds: noisy, rotated+shifted, scaled, unrelated."""
    target = BASE + rng.normal(scale=80.0, size=(batch, J, 3))
    preds = target + rng.normal(scale=60.0, size=(batch, J, 3))
    for i in range(batch):
        kind = i % 4
        if kind == 1:
            preds[i] = preds[i] @ random_rotation(rng).T + rng.normal(scale=300.0, size=3)
        elif kind == 2:
            preds[i] = preds[i] * rng.uniform(0.5, 2.0)
        elif kind == 3:
            preds[i] = rng.normal(scale=400.0, size=(J, 3))
    return preds, target


def t(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(array)


def mean_error(alignment: str, preds: np.ndarray, target: np.ndarray, fit=None, joints=None) -> np.ndarray:
    """Per-sample mean joint error (B,) as a numpy array."""
    return joint_errors(t(preds), t(target), alignment, fit, joints).mean(dim=-1).numpy()


def sse(aligned: torch.Tensor, target: np.ndarray) -> torch.Tensor:
    """Per-sample sum of squared residuals over all joints: what the alignments minimise."""
    return (aligned - t(target)).square().sum(dim=(-2, -1))


# --------------------------------------------------------------------------- alignments against the references


def test_reference_batch_exercises_the_reflection_guard():
    """The batch below only tests the guard if some samples' unguarded Kabsch rotation reflects."""
    preds, target = random_batch(np.random.default_rng(11), 40)
    dets = []
    for p, g in zip(preds, target):
        U, _, Vt = np.linalg.svd((p - p.mean(0)).T @ (g - g.mean(0)))
        dets.append(np.linalg.det(Vt.T @ U.T))
    assert 0 < sum(d < 0 for d in dets) < len(dets)


@pytest.mark.parametrize("fit", [None, EVAL_JOINTS], ids=["fit-all", "fit-17"])
def test_alignments_match_references_per_sample(fit):
    preds, target = random_batch(np.random.default_rng(11), 40)
    rigid = align(t(preds), t(target), "rigid", fit)
    similar = align(t(preds), t(target), "similarity", fit)
    scaled = align(t(preds), t(target), "scale", fit)
    assert rigid.dtype == similar.dtype == scaled.dtype == torch.float64
    on = slice(None) if fit is None else fit
    expected_scaled = ref_mmpose_scale_align(preds[:, on], target[:, on])
    for i in range(len(preds)):
        # Fitted on `on`, the fitted joints land where the reference puts them.
        np.testing.assert_allclose(rigid[i, on].numpy(), ref_rigid_align(preds[i, on], target[i, on]), rtol=0, atol=1e-9)
        np.testing.assert_allclose(
            similar[i, on].numpy(), ref_similarity_align(preds[i, on], target[i, on]), rtol=0, atol=1e-9
        )
        np.testing.assert_allclose(scaled[i, on].numpy(), expected_scaled[i], rtol=0, atol=1e-9)


def test_fitted_transform_is_applied_to_the_joints_left_out_of_the_fit():
    """The Thorax, left out of a 17-joint fit, moves with the same rotation as the others (distances kept)."""
    preds, target = random_batch(np.random.default_rng(2), 8)
    for alignment in ("rigid", "similarity", "scale"):
        aligned = align(t(preds), t(target), alignment, EVAL_JOINTS).numpy()
        fitted_only = align(t(preds[:, :17]), t(target[:, :17]), alignment).numpy()
        np.testing.assert_allclose(aligned[:, :17], fitted_only, rtol=0, atol=1e-9)
        # The Thorax keeps its (scaled) distance to every other joint: the same transform moved it.
        before = np.linalg.norm(preds[:, THORAX, None] - preds[:, :17], axis=-1)
        after = np.linalg.norm(aligned[:, THORAX, None] - aligned[:, :17], axis=-1)
        np.testing.assert_allclose(after / after.mean(axis=1, keepdims=True),
                                   before / before.mean(axis=1, keepdims=True), rtol=1e-9)  # fmt: skip


def test_float32_inputs_are_evaluated_in_float64():
    preds, target = random_batch(np.random.default_rng(3), 16)
    preds32, target32 = preds.astype(np.float32), target.astype(np.float32)
    for alignment in ALIGNMENTS:
        from32 = joint_errors(t(preds32), t(target32), alignment, EVAL_JOINTS, EVAL_JOINTS)
        from64 = joint_errors(t(preds32.astype(np.float64)), t(target32.astype(np.float64)), alignment,
                              EVAL_JOINTS, EVAL_JOINTS)  # fmt: skip
        assert from32.dtype == torch.float64
        assert torch.equal(from32, from64)


# --------------------------------------------------------------------------- hand cases


def test_hand_computed_joint_errors_and_per_sample_mpjpe():
    target = np.zeros((2, 4, 3))
    preds = np.zeros((2, 4, 3))
    preds[0] += (3.0, 4.0, 0.0)  # every joint 5 mm off
    preds[1, 2:] += (0.0, 0.0, 40.0)  # joints 0, 1 exact, joints 2, 3 40 mm off
    errors = joint_errors(t(preds), t(target))
    np.testing.assert_array_equal(errors.numpy(), [[5, 5, 5, 5], [0, 0, 40, 40]])
    np.testing.assert_array_equal(joint_errors(t(preds), t(target), eval_joints=[3, 0]).numpy(), [[5, 5], [40, 0]])
    np.testing.assert_allclose(per_sample_mpjpe(t(preds), t(target)).numpy(), [5.0, 20.0])
    np.testing.assert_allclose(per_sample_mpjpe(t(preds), t(target), [0, 1]).numpy(), [5.0, 0.0])


def test_hand_computed_n_mpjpe():
    # g = (100,0,0), (0,100,0); p = (200,0,0), (0,0,100): p.g = 20000, p.p = 50000, s = 0.4,
    # so s p = (80,0,0), (0,0,40) and the errors are 20 and sqrt(100^2 + 40^2).
    target = np.array([[[100.0, 0, 0], [0, 100.0, 0]]])
    preds = np.array([[[200.0, 0, 0], [0, 0, 100.0]]])
    np.testing.assert_allclose(align(t(preds), t(target), "scale").numpy(), [[[80, 0, 0], [0, 0, 40]]], atol=1e-12)
    expected = (20.0 + np.hypot(100.0, 40.0)) / 2
    assert mean_error("scale", preds, target)[0] == pytest.approx(expected, abs=1e-12)
    assert ref_n_mpjpe(preds, target)[0] == pytest.approx(expected, abs=1e-12)


def test_n_mpjpe_matches_videopose3d_and_mmpose_on_17_joints():
    preds, target = random_batch(np.random.default_rng(21), 32)
    # Root-relative, as the caller passes them.
    preds, target = preds - preds[:, :1], target - target[:, :1]
    ours = mean_error("scale", preds, target, EVAL_JOINTS, EVAL_JOINTS)
    np.testing.assert_allclose(ours, ref_n_mpjpe(preds[:, :17], target[:, :17]), rtol=0, atol=1e-9)
    mmpose = ref_mmpose_scale_align(preds[:, :17], target[:, :17])
    np.testing.assert_allclose(ours, np.linalg.norm(mmpose - target[:, :17], axis=-1).mean(-1), rtol=0, atol=1e-9)
    # Fitting on all 18 joints is a different figure.
    assert not np.allclose(ours, mean_error("scale", preds, target, None, EVAL_JOINTS), rtol=0, atol=1e-6)


# 17 joints: 12 exact, 3 off by 100 mm, 2 off by 160 mm.
KNOWN_ERRORS = np.array([0.0] * 12 + [100.0] * 3 + [160.0] * 2)


def poses_with_errors(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A target and a prediction whose joint j is exactly errors[j] mm away from it.

    Whole-millimetre coordinates and offsets along the axes keep every difference exact,
    so errors on a threshold stay on it.
    """
    target = np.round(BASE[None, :17])
    axes = np.eye(3)[np.arange(17) % 3] * np.where(np.arange(17) % 2, -1.0, 1.0)[:, None]
    return target + errors[:, None] * axes, target


def test_hand_computed_pck_and_auc():
    preds, target = poses_with_errors(KNOWN_ERRORS)
    errors = joint_errors(t(preds), t(target))
    np.testing.assert_array_equal(errors.numpy()[0], KNOWN_ERRORS)
    # 3DPCK@150: the 15 joints below 150 mm.
    assert pck3d(errors).item() == pytest.approx(100 * 15 / 17)
    # AUC over t = 0, 5, ..., 150: none at t = 0; the 12 exact ones for t = 5..100 (20 thresholds,
    # 100 < 100 is false); 15 for t = 105..150 (10 thresholds); the 160 mm ones never.
    assert auc3d(errors).item() == pytest.approx(100 * (20 * 12 + 10 * 15) / (31 * 17))
    assert pck3d(errors).item() == pytest.approx(ref_pck(KNOWN_ERRORS), abs=1e-4)
    assert auc3d(errors).item() == pytest.approx(ref_auc(KNOWN_ERRORS), abs=1e-4)
    assert pck3d(errors, threshold=100.0).item() == pytest.approx(100 * 12 / 17)


def test_pck_threshold_is_strict_and_a_perfect_pose_misses_the_zero_threshold():
    at_threshold = t(np.full((1, 17), 150.0))
    assert pck3d(at_threshold).item() == 0.0
    assert pck3d(at_threshold, threshold=150.0 + 1e-9).item() == 100.0
    perfect = t(np.zeros((1, 17)))
    assert pck3d(perfect).item() == 100.0
    assert auc3d(perfect).item() == pytest.approx(100 * 30 / 31)  # docs/protocol.md, "Metrics": at 0 nothing counts
    assert auc3d(perfect, max_threshold=10.0, step=5.0).item() == pytest.approx(100 * 2 / 3)


def test_pck_and_auc_match_mmpose_per_sample():
    rng = np.random.default_rng(9)
    errors = np.abs(rng.normal(scale=90.0, size=(64, 17)))
    errors[::7, ::3] = np.round(errors[::7, ::3] / 5) * 5  # errors on the thresholds themselves
    ours_pck, ours_auc = pck3d(t(errors)).numpy(), auc3d(t(errors)).numpy()
    np.testing.assert_allclose(ours_pck, [ref_pck(e) for e in errors], atol=1e-4)
    np.testing.assert_allclose(ours_auc, [ref_auc(e) for e in errors], atol=1e-4)
    # Per image, then averaged: with all joints visible, the same as MMPose's one mean over the batch.
    assert ours_pck.mean() == pytest.approx(ref_pck(errors), abs=1e-4)


def test_rigidly_moved_copy_is_aligned_away_only_by_procrustes():
    rotation = quat_to_matrix(np.array([0.9, 0.2, -0.3, 0.25]))
    preds = (BASE @ rotation.T + (120.0, -40.0, 75.0))[None]
    target = BASE[None]
    assert mean_error("none", preds, target)[0] > 50.0
    assert mean_error("scale", preds, target)[0] > 50.0
    assert mean_error("rigid", preds, target)[0] == pytest.approx(0.0, abs=1e-9)
    assert mean_error("similarity", preds, target, EVAL_JOINTS)[0] == pytest.approx(0.0, abs=1e-9)


def test_scaled_copy_is_aligned_away_only_with_scale():
    target = BASE[None] - BASE[None, :1]
    scaled = 1.3 * target
    assert mean_error("scale", scaled, target, EVAL_JOINTS)[0] == pytest.approx(0.0, abs=1e-9)
    assert mean_error("rigid", scaled, target)[0] > 20.0
    rotation = quat_to_matrix(np.array([0.5, -0.5, 0.1, 0.7]))
    moved = scaled @ rotation.T + (10.0, 20.0, -30.0)
    assert mean_error("similarity", moved, target, EVAL_JOINTS)[0] == pytest.approx(0.0, abs=1e-9)
    assert mean_error("scale", moved, target, EVAL_JOINTS)[0] > 20.0


def test_mirrored_pose_is_not_aligned_away():
    target = BASE[None]
    preds = target * np.array([-1.0, 1.0, 1.0])
    # Without the reflection guard, Kabsch would map the mirror image exactly onto the target:
    U, _, Vt = np.linalg.svd((preds[0] - preds[0].mean(0)).T @ (target[0] - target[0].mean(0)))
    unguarded = (preds[0] - preds[0].mean(0)) @ (Vt.T @ U.T).T + target[0].mean(0)
    assert np.abs(unguarded - target[0]).max() < 1e-9
    assert mean_error("rigid", preds, target)[0] > 50.0
    assert mean_error("similarity", preds, target)[0] > 50.0


def test_thorax_noise_moves_the_18_joint_rigid_fit_but_not_the_17_joint_similarity_fit():
    target = BASE[None]
    preds = target.copy()
    preds[0, THORAX] += (0.0, 1000.0, 0.0)  # only the Thorax is wrong

    # Not measured: every evaluated joint is exact.
    assert mean_error("none", preds, target, joints=EVAL_JOINTS)[0] == 0.0
    # Fitted on 18 joints, the Thorax outlier drags the alignment, which moves the evaluated joints...
    assert mean_error("rigid", preds, target, None, EVAL_JOINTS)[0] > 10.0
    assert mean_error("similarity", preds, target, None, EVAL_JOINTS)[0] > 10.0
    # ...fitted on the 17 evaluated joints, it does not.
    assert mean_error("similarity", preds, target, EVAL_JOINTS, EVAL_JOINTS)[0] == pytest.approx(0.0, abs=1e-9)
    assert mean_error("rigid", preds, target, EVAL_JOINTS, EVAL_JOINTS)[0] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("alignment", ["similarity", "scale"])
def test_collapsed_prediction_gives_a_finite_error(alignment):
    target = BASE[None] - BASE[None, :1]
    preds = np.zeros((1, J, 3))  # all joints at one point: any scale is optimal
    # Both map it to one point: the target centroid (similarity) or the root (scale).
    centre = target[0].mean(0) if alignment == "similarity" else target[0, 0]
    expected = np.linalg.norm(target[0] - centre, axis=1).mean()
    assert mean_error(alignment, preds, target)[0] == pytest.approx(expected)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: align(torch.zeros(2, J, 3), torch.zeros(2, J - 1, 3), "none"), "shape"),
        (lambda: align(torch.zeros(2, J, 2), torch.zeros(2, J, 2), "rigid"), "shape"),
        (lambda: align(torch.zeros(J, 3), torch.zeros(J, 3), "rigid"), "shape"),
        (lambda: align(torch.zeros(1, J, 3), torch.zeros(1, J, 3), "procrustes"), "alignment"),
        (lambda: align(torch.zeros(1, J, 3), torch.zeros(1, J, 3), "rigid", []), "fit_joints"),
        (lambda: align(torch.zeros(1, J, 3), torch.zeros(1, J, 3), "rigid", [0, J]), "fit_joints"),
        (lambda: joint_errors(torch.zeros(1, J, 3), torch.zeros(1, J, 3), eval_joints=[-1]), "eval_joints"),
        (lambda: pck3d(torch.zeros(17)), "errors"),
        (lambda: auc3d(torch.zeros(1, 0)), "errors"),
        (lambda: auc3d(torch.zeros(1, 17), max_threshold=150.0, step=7.0), "multiple"),
        (lambda: auc3d(torch.zeros(1, 17), max_threshold=150.0, step=0.0), "multiple"),
    ],
)
def test_bad_input_is_one_line_eval_error(call, match):
    with pytest.raises(MetricInputError, match=match) as caught:
        call()
    assert isinstance(caught.value, EvalError) and "\n" not in str(caught.value)


# --------------------------------------------------------------------------- properties

coordinate_noise = st.floats(-60.0, 60.0, allow_nan=False, allow_subnormal=False)
batch_sizes = st.integers(1, 3)
translations = hnp.arrays(np.float64, 3, elements=st.floats(-1000.0, 1000.0, allow_subnormal=False))
quaternions = hnp.arrays(np.float64, 4, elements=st.floats(-1.0, 1.0, allow_subnormal=False)).filter(
    lambda q: np.linalg.norm(q) > 0.1
)
scales = st.floats(0.2, 5.0)


def well_conditioned(p: np.ndarray, g: np.ndarray) -> bool:
    s = np.linalg.svd((p - p.mean(0)).T @ (g - g.mean(0)), compute_uv=False)
    return bool(s[2] > 1e-3 * s[0] and s[1] - s[2] > 1e-3 * s[0])


@st.composite
def pose_pairs(draw) -> tuple[np.ndarray, np.ndarray]:
    """(preds, target) near BASE, kept only where the best rotation is unique and well conditioned."""
    batch = draw(batch_sizes)
    target = BASE + draw(hnp.arrays(np.float64, (batch, J, 3), elements=coordinate_noise))
    preds = BASE + draw(hnp.arrays(np.float64, (batch, J, 3), elements=coordinate_noise))
    for p, g in zip(preds, target):
        assume(well_conditioned(p, g) and well_conditioned(p[:17], g[:17]))
    return preds, target


def rotate(poses: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    return poses @ quat_to_matrix(quaternion).T


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)
TOL = 1e-7  # mm; coordinates are up to a few thousand mm


@PROPERTY_SETTINGS
@given(pose_pairs(), quaternions, translations)
def test_mpjpe_is_invariant_to_a_common_rigid_motion(pair, quaternion, translation):
    preds, target = pair
    moved = mean_error("none", rotate(preds, quaternion) + translation, rotate(target, quaternion) + translation)
    np.testing.assert_allclose(moved, mean_error("none", preds, target), rtol=0, atol=TOL)


@PROPERTY_SETTINGS
@given(pose_pairs())
def test_mpjpe_and_rigid_pa_mpjpe_are_symmetric(pair):
    preds, target = pair
    for alignment in ("none", "rigid"):
        np.testing.assert_allclose(
            mean_error(alignment, target, preds), mean_error(alignment, preds, target), rtol=0, atol=TOL
        )


@PROPERTY_SETTINGS
@given(pose_pairs(), quaternions, translations)
def test_pa_mpjpe_is_invariant_to_rotating_and_moving_the_prediction(pair, quaternion, translation):
    preds, target = pair
    moved = rotate(preds, quaternion) + translation
    for alignment, fit in (("rigid", None), ("similarity", EVAL_JOINTS)):
        np.testing.assert_allclose(mean_error(alignment, moved, target, fit, EVAL_JOINTS),
                                   mean_error(alignment, preds, target, fit, EVAL_JOINTS), rtol=0, atol=TOL)  # fmt: skip


@PROPERTY_SETTINGS
@given(pose_pairs(), quaternions, translations, scales)
def test_scaled_pa_mpjpe_is_invariant_to_a_similarity_of_the_prediction(pair, quaternion, translation, scale):
    preds, target = pair
    moved = scale * rotate(preds, quaternion) + translation
    np.testing.assert_allclose(mean_error("similarity", moved, target, EVAL_JOINTS, EVAL_JOINTS),
                               mean_error("similarity", preds, target, EVAL_JOINTS, EVAL_JOINTS), rtol=0, atol=TOL)  # fmt: skip


@PROPERTY_SETTINGS
@given(pose_pairs(), scales)
def test_n_mpjpe_is_invariant_to_scaling_the_prediction(pair, scale):
    preds, target = pair
    np.testing.assert_allclose(mean_error("scale", scale * preds, target, EVAL_JOINTS, EVAL_JOINTS),
                               mean_error("scale", preds, target, EVAL_JOINTS, EVAL_JOINTS), rtol=0, atol=TOL)  # fmt: skip


@PROPERTY_SETTINGS
@given(pose_pairs(), quaternions, translations, scales)
def test_alignments_minimise_the_squared_residual(pair, quaternion, translation, scale):
    """Each fit is the least-squares optimum over its transform family; similarity has the most freedom.

    (The reported mean of joint distances is not what is minimised, so no ordering is
    asserted between the metric values themselves.)
    """
    preds, target = pair
    rigid = sse(align(t(preds), t(target), "rigid"), target)
    similar = sse(align(t(preds), t(target), "similarity"), target)
    scaled = sse(align(t(preds), t(target), "scale"), target)
    candidate = t(rotate(preds, quaternion) + translation)
    scaled_candidate = t(scale * rotate(preds, quaternion) + translation)
    slack = 1e-12 * float(np.sum(preds**2) + np.sum(target**2))  # rounding of sums of squares
    assert torch.all(similar <= rigid + slack)
    assert torch.all(similar <= scaled + slack)
    assert torch.all(rigid <= sse(t(preds), target) + slack)
    assert torch.all(scaled <= sse(t(preds), target) + slack)
    assert torch.all(scaled <= sse(t(scale * preds), target) + slack)
    assert torch.all(rigid <= sse(candidate, target) + slack)
    assert torch.all(similar <= sse(scaled_candidate, target) + slack)


def signed_volumes(poses: torch.Tensor) -> torch.Tensor:
    """Signed volumes of the tetrahedra (0, i, i+1, i+2): flip sign under a reflection."""
    edges = poses[..., 1:, :] - poses[..., :1, :]
    return torch.linalg.det(torch.stack((edges[..., :-2, :], edges[..., 1:-1, :], edges[..., 2:, :]), dim=-2))


@PROPERTY_SETTINGS
@given(pose_pairs(), st.booleans())
def test_alignments_are_proper_motions_of_the_prediction(pair, mirror):
    """Never a reflection, even where a mirrored prediction would fit better reflected."""
    preds_np, target = pair
    preds = t(preds_np * np.array([-1.0, 1.0, 1.0]) if mirror else preds_np)
    rigid = align(preds, t(target), "rigid")
    similar = align(preds, t(target), "similarity", EVAL_JOINTS)
    torch.testing.assert_close(torch.cdist(rigid, rigid), torch.cdist(preds, preds), rtol=1e-9, atol=1e-7)
    torch.testing.assert_close(signed_volumes(rigid), signed_volumes(preds), rtol=1e-9, atol=1e-3)
    scale = torch.cdist(similar, similar).sum(dim=(-2, -1)) / torch.cdist(preds, preds).sum(dim=(-2, -1))
    assert torch.all(scale > 0)
    torch.testing.assert_close(torch.cdist(similar, similar), scale[:, None, None] * torch.cdist(preds, preds))
    torch.testing.assert_close(
        signed_volumes(similar), scale[:, None] ** 3 * signed_volumes(preds), rtol=1e-9, atol=1e-3
    )


@PROPERTY_SETTINGS
@given(
    hnp.arrays(np.float64, st.tuples(batch_sizes, st.just(J), st.just(3)), elements=st.floats(-1000, 1000)),
    hnp.arrays(np.float64, (3, J, 3), elements=st.floats(-1000, 1000)),
)
def test_errors_are_finite_and_non_negative_even_for_degenerate_poses(preds, target):
    target = target[: len(preds)]
    for alignment in ALIGNMENTS:
        errors = joint_errors(t(preds), t(target), alignment, EVAL_JOINTS, EVAL_JOINTS)
        assert torch.isfinite(errors).all() and (errors >= 0).all()
        assert ((pck3d(errors) >= 0) & (pck3d(errors) <= 100)).all()
        assert ((auc3d(errors) >= 0) & (auc3d(errors) <= pck3d(errors))).all()
