"""Tests for convnextpose_eval.metrics against independent numpy references, hand cases and invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from convnextpose_eval.metrics import (
    PoseError,
    pose_metrics,
    rigid_align,
    similarity_align,
)

J = 18
EVAL_JOINTS = list(range(17))  # Human3.6M without Thorax (index 17)
ALIGNMENTS = ("none", "rigid", "similarity")

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
    U, s, V = np.linalg.svd(H)
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


def ref_pose_error(preds, target, groups, num_groups, joints, alignment):
    """Per-sample loop: (overall, per_group, count) as the authors' evaluate() would average them."""
    align = {"none": lambda a, b: a, "rigid": ref_rigid_align, "similarity": ref_similarity_align}[alignment]
    per_group: list[list[float]] = [[] for _ in range(num_groups)]
    everything = []
    for p, t, g in zip(preds, target, groups):
        aligned = align(p.copy(), t.copy())
        per_joint = np.sqrt(np.sum((aligned[joints] - t[joints]) ** 2, axis=1))
        per_group[g].append(per_joint.mean())
        everything.append(per_joint.mean())
    group_means = np.array([np.mean(e) if e else np.nan for e in per_group])
    return np.mean(everything), group_means, np.array([len(e) for e in per_group])


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


def run_metric(alignment, preds, target, groups=None, num_groups=1, joints=None) -> dict[str, torch.Tensor]:
    metric = PoseError(alignment, num_groups=num_groups, joints=joints)
    metric.update(
        torch.as_tensor(preds),
        torch.as_tensor(target),
        None if groups is None else torch.as_tensor(groups, dtype=torch.int64),
    )
    return metric.compute()


def sse(aligned: torch.Tensor, target: np.ndarray) -> torch.Tensor:
    """Per-sample sum of squared residuals over all joints: what the alignments minimise."""
    return (aligned - torch.as_tensor(target)).square().sum(dim=(-2, -1))


# --------------------------------------------------------------------------- against the references


@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize("joints", [None, EVAL_JOINTS])
def test_matches_per_sample_numpy_reference(alignment, joints):
    rng = np.random.default_rng(7)
    preds, target = random_batch(rng, 96)
    num_groups = 6
    groups = rng.integers(0, num_groups - 1, size=96)  # the last group gets no samples

    result = run_metric(alignment, preds, target, groups, num_groups, joints)
    overall, per_group, count = ref_pose_error(preds, target, groups, num_groups, joints or list(range(J)), alignment)

    assert result["overall"].dtype == torch.float64 and result["overall"].ndim == 0
    assert result["overall"].item() == pytest.approx(overall, abs=1e-9)
    np.testing.assert_allclose(result["per_group"].numpy(), per_group, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(result["count"].numpy(), count)
    assert np.isnan(result["per_group"][-1].item())


def test_reference_batch_exercises_the_reflection_guard():
    """The batch above only tests the guard if some samples' unguarded Kabsch rotation reflects."""
    preds, target = random_batch(np.random.default_rng(7), 96)
    dets = []
    for p, t in zip(preds, target):
        U, _, Vt = np.linalg.svd((p - p.mean(0)).T @ (t - t.mean(0)))
        dets.append(np.linalg.det(Vt.T @ U.T))
    assert 0 < sum(d < 0 for d in dets) < len(dets)


def test_aligners_match_references_per_sample():
    preds, target = random_batch(np.random.default_rng(11), 40)
    rigid = rigid_align(torch.as_tensor(preds), torch.as_tensor(target))
    similar = similarity_align(torch.as_tensor(preds), torch.as_tensor(target))
    assert rigid.dtype == similar.dtype == torch.float64
    for i in range(len(preds)):
        np.testing.assert_allclose(rigid[i].numpy(), ref_rigid_align(preds[i], target[i]), rtol=0, atol=1e-9)
        np.testing.assert_allclose(similar[i].numpy(), ref_similarity_align(preds[i], target[i]), rtol=0, atol=1e-9)


def test_float32_inputs_are_evaluated_in_float64():
    preds, target = random_batch(np.random.default_rng(3), 16)
    preds32, target32 = preds.astype(np.float32), target.astype(np.float32)
    for alignment in ALIGNMENTS:
        from32 = run_metric(alignment, preds32, target32)
        from64 = run_metric(alignment, preds32.astype(np.float64), target32.astype(np.float64))
        assert from32["overall"].dtype == torch.float64
        assert from32["overall"].item() == from64["overall"].item()
    assert rigid_align(torch.as_tensor(preds32), torch.as_tensor(target32)).dtype == torch.float64


# --------------------------------------------------------------------------- hand cases


def test_hand_computed_mpjpe_is_a_sample_weighted_mean():
    target = np.zeros((3, 4, 3))
    preds = np.zeros((3, 4, 3))
    preds[0] += (3.0, 4.0, 0.0)  # every joint 5 mm off
    preds[1] += (0.0, 3.0, 4.0)  # 5 mm
    preds[2, 2:] += (0.0, 0.0, 40.0)  # joints 0, 1 exact, joints 2, 3 40 mm off: 20 mm
    result = run_metric("none", preds, target, groups=[0, 0, 1], num_groups=2)
    assert result["overall"].item() == pytest.approx(10.0)  # (5 + 5 + 20) / 3, not (5 + 20) / 2
    np.testing.assert_allclose(result["per_group"].numpy(), [5.0, 20.0])
    np.testing.assert_array_equal(result["count"].numpy(), [2, 1])

    only_last_two = run_metric("none", preds, target, joints=[2, 3])
    assert only_last_two["overall"].item() == pytest.approx((5 + 5 + 40) / 3)


def test_rigidly_moved_copy_is_aligned_away_only_by_procrustes():
    rotation = quat_to_matrix(np.array([0.9, 0.2, -0.3, 0.25]))
    preds = (BASE @ rotation.T + (120.0, -40.0, 75.0))[None]
    target = BASE[None]
    assert run_metric("none", preds, target)["overall"].item() > 50.0
    assert run_metric("rigid", preds, target)["overall"].item() == pytest.approx(0.0, abs=1e-9)
    assert run_metric("similarity", preds, target)["overall"].item() == pytest.approx(0.0, abs=1e-9)


def test_scaled_copy_is_aligned_away_only_with_scale():
    rotation = quat_to_matrix(np.array([0.5, -0.5, 0.1, 0.7]))
    preds = (1.3 * BASE @ rotation.T + (10.0, 20.0, -30.0))[None]
    target = BASE[None]
    assert run_metric("similarity", preds, target)["overall"].item() == pytest.approx(0.0, abs=1e-9)
    assert run_metric("rigid", preds, target)["overall"].item() > 20.0


def test_mirrored_pose_is_not_aligned_away():
    target = BASE[None]
    preds = target * np.array([-1.0, 1.0, 1.0])
    # Without the reflection guard, Kabsch would map the mirror image exactly onto the target:
    U, _, Vt = np.linalg.svd((preds[0] - preds[0].mean(0)).T @ (target[0] - target[0].mean(0)))
    unguarded = (preds[0] - preds[0].mean(0)) @ (Vt.T @ U.T).T + target[0].mean(0)
    assert np.abs(unguarded - target[0]).max() < 1e-9
    assert run_metric("rigid", preds, target)["overall"].item() > 50.0
    assert run_metric("similarity", preds, target)["overall"].item() > 50.0


def test_thorax_is_fitted_but_not_measured():
    target = BASE[None]
    preds = target.copy()
    preds[0, 17] += (0.0, 1000.0, 0.0)  # only the Thorax is wrong

    # Not measured: every evaluated joint is exact.
    assert run_metric("none", preds, target, joints=EVAL_JOINTS)["overall"].item() == 0.0
    assert run_metric("none", preds, target)["overall"].item() == pytest.approx(1000.0 / J)
    # Fitted: the Thorax outlier drags the alignment, which moves the evaluated joints...
    for alignment in ("rigid", "similarity"):
        assert run_metric(alignment, preds, target, joints=EVAL_JOINTS)["overall"].item() > 10.0
        # ...whereas fitting on the 17 evaluated joints alone would give zero.
        fitted_on_17 = run_metric(alignment, preds[:, :17], target[:, :17])
        assert fitted_on_17["overall"].item() == pytest.approx(0.0, abs=1e-9)


def test_collapsed_prediction_gives_a_finite_scaled_error():
    target = BASE[None]
    preds = np.full((1, J, 3), 7.0)  # all joints at one point: any scale is optimal
    result = run_metric("similarity", preds, target)
    centred = np.linalg.norm(BASE - BASE.mean(0), axis=1).mean()  # aligned to the target centroid
    assert result["overall"].item() == pytest.approx(centred)


# --------------------------------------------------------------------------- properties

coordinate_noise = st.floats(-60.0, 60.0, allow_nan=False, allow_subnormal=False)
batch_sizes = st.integers(1, 3)
translations = hnp.arrays(np.float64, 3, elements=st.floats(-1000.0, 1000.0, allow_subnormal=False))
quaternions = hnp.arrays(np.float64, 4, elements=st.floats(-1.0, 1.0, allow_subnormal=False)).filter(
    lambda q: np.linalg.norm(q) > 0.1
)
scales = st.floats(0.2, 5.0)


@st.composite
def pose_pairs(draw) -> tuple[np.ndarray, np.ndarray]:
    """(preds, target) near BASE, kept only where the best rotation is unique and well conditioned."""
    batch = draw(batch_sizes)
    target = BASE + draw(hnp.arrays(np.float64, (batch, J, 3), elements=coordinate_noise))
    preds = BASE + draw(hnp.arrays(np.float64, (batch, J, 3), elements=coordinate_noise))
    for p, t in zip(preds, target):
        s = np.linalg.svd((p - p.mean(0)).T @ (t - t.mean(0)), compute_uv=False)
        assume(s[2] > 1e-3 * s[0] and s[1] - s[2] > 1e-3 * s[0])
    return preds, target


def rotate(poses: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    return poses @ quat_to_matrix(quaternion).T


def errors(alignment: str, preds: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-sample errors over the evaluated joints (each sample its own group)."""
    batch = len(preds)
    return run_metric(alignment, preds, target, np.arange(batch), batch, EVAL_JOINTS)["per_group"].numpy()


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)
TOL = 1e-7  # mm; coordinates are up to a few thousand mm


@PROPERTY_SETTINGS
@given(pose_pairs(), quaternions, translations)
def test_mpjpe_is_invariant_to_a_common_rigid_motion(pair, quaternion, translation):
    preds, target = pair
    moved = errors("none", rotate(preds, quaternion) + translation, rotate(target, quaternion) + translation)
    np.testing.assert_allclose(moved, errors("none", preds, target), rtol=0, atol=TOL)


@PROPERTY_SETTINGS
@given(pose_pairs())
def test_mpjpe_and_rigid_pa_mpjpe_are_symmetric(pair):
    preds, target = pair
    for alignment in ("none", "rigid"):
        np.testing.assert_allclose(errors(alignment, target, preds), errors(alignment, preds, target), rtol=0, atol=TOL)


@PROPERTY_SETTINGS
@given(pose_pairs(), quaternions, translations)
def test_pa_mpjpe_is_invariant_to_rotating_and_moving_the_prediction(pair, quaternion, translation):
    preds, target = pair
    moved = rotate(preds, quaternion) + translation
    for alignment in ("rigid", "similarity"):
        np.testing.assert_allclose(errors(alignment, moved, target), errors(alignment, preds, target), rtol=0, atol=TOL)


@PROPERTY_SETTINGS
@given(pose_pairs(), quaternions, translations, scales)
def test_scaled_pa_mpjpe_is_invariant_to_a_similarity_of_the_prediction(pair, quaternion, translation, scale):
    preds, target = pair
    moved = scale * rotate(preds, quaternion) + translation
    np.testing.assert_allclose(
        errors("similarity", moved, target), errors("similarity", preds, target), rtol=0, atol=TOL
    )


@PROPERTY_SETTINGS
@given(pose_pairs(), quaternions, translations, scales)
def test_alignments_minimise_the_squared_residual(pair, quaternion, translation, scale):
    """Both fits are least-squares optima over their transform families; similarity has more freedom.

    (The reported mean of joint distances is not what is minimised, so no ordering is
    asserted between the metric values themselves.)
    """
    preds, target = pair
    rigid = sse(rigid_align(torch.as_tensor(preds), torch.as_tensor(target)), target)
    similar = sse(similarity_align(torch.as_tensor(preds), torch.as_tensor(target)), target)
    candidate = torch.as_tensor(rotate(preds, quaternion) + translation)
    scaled_candidate = torch.as_tensor(scale * rotate(preds, quaternion) + translation)
    slack = 1e-12 * float(np.sum(preds**2) + np.sum(target**2))  # rounding of sums of squares
    assert torch.all(similar <= rigid + slack)
    assert torch.all(rigid <= sse(torch.as_tensor(preds), target) + slack)
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
    preds = torch.as_tensor(preds_np * np.array([-1.0, 1.0, 1.0]) if mirror else preds_np)
    rigid = rigid_align(preds, torch.as_tensor(target))
    similar = similarity_align(preds, torch.as_tensor(target))
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
        result = run_metric(alignment, preds, target, joints=EVAL_JOINTS)
        assert np.isfinite(result["overall"].item()) and result["overall"].item() >= 0.0


# --------------------------------------------------------------------------- summable states


def split_metrics(alignment: str) -> tuple[PoseError, PoseError, PoseError, tuple[torch.Tensor, ...]]:
    rng = np.random.default_rng(5)
    preds, target = random_batch(rng, 50)
    groups = torch.as_tensor(rng.integers(0, 4, size=50))
    batch = (torch.as_tensor(preds), torch.as_tensor(target), groups)
    first, second, whole = (PoseError(alignment, num_groups=5, joints=EVAL_JOINTS) for _ in range(3))
    first.update(*(x[:23] for x in batch))
    second.update(*(x[23:] for x in batch))
    whole.update(*batch)
    return first, second, whole, batch


def assert_results_close(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    torch.testing.assert_close(left["overall"], right["overall"], rtol=1e-12, atol=0)
    torch.testing.assert_close(left["per_group"], right["per_group"], rtol=1e-12, atol=0, equal_nan=True)
    torch.testing.assert_close(left["count"], right["count"], rtol=0, atol=0)


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_summed_states_of_two_halves_equal_one_pass(alignment):
    first, second, whole, _ = split_metrics(alignment)
    assert first._reductions["error_sum"] is not None  # a "sum" reduction is registered for DDP
    summed = PoseError(alignment, num_groups=5, joints=EVAL_JOINTS)
    summed.error_sum = first.error_sum + second.error_sum
    summed.count = first.count + second.count
    summed._update_count = 1
    assert_results_close(summed.compute(), whole.compute())

    first.merge_state(second)
    assert_results_close(first.compute(), whole.compute())
    assert torch.isnan(whole.compute()["per_group"][4])  # group 4 never occurs
    assert whole.compute()["count"].sum().item() == 50


def test_forward_returns_the_batch_value_and_accumulates():
    _, _, whole, (preds, target, groups) = split_metrics("rigid")
    metric = PoseError("rigid", num_groups=5, joints=EVAL_JOINTS)
    batch_value = metric(preds[:23], target[:23], groups[:23])
    metric(preds[23:], target[23:], groups[23:])
    half = PoseError("rigid", num_groups=5, joints=EVAL_JOINTS)
    half.update(preds[:23], target[:23], groups[:23])
    assert_results_close(batch_value, half.compute())
    assert_results_close(metric.compute(), whole.compute())


def test_no_samples_gives_nan_and_reset_clears():
    metric = PoseError("similarity", num_groups=3)
    metric.update(torch.zeros(0, J, 3), torch.zeros(0, J, 3), torch.zeros(0, dtype=torch.int64))
    result = metric.compute()
    assert torch.isnan(result["overall"]) and torch.isnan(result["per_group"]).all()
    assert result["count"].tolist() == [0, 0, 0]

    metric.update(torch.ones(2, J, 3), torch.zeros(2, J, 3), torch.tensor([2, 2]))
    assert metric.compute()["count"].tolist() == [0, 0, 2]
    metric.reset()
    assert metric.count.tolist() == [0, 0, 0] and metric.error_sum.tolist() == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------- validation and factory


@pytest.mark.parametrize(
    ("preds_shape", "target_shape", "groups", "match"),
    [
        ((2, J, 3), (2, J - 1, 3), None, "shape"),
        ((2, J, 2), (2, J, 2), None, "shape"),
        ((J, 3), (J, 3), None, "shape"),
        ((2, J, 3), (2, J, 3), torch.tensor([0]), "groups"),
        ((2, J, 3), (2, J, 3), torch.tensor([0.0, 1.0]), "groups"),
        ((2, J, 3), (2, J, 3), torch.tensor([0, 4]), r"\[0, 4\)"),
        ((2, J, 3), (2, J, 3), torch.tensor([-1, 0]), r"\[0, 4\)"),
    ],
)
def test_update_rejects_bad_inputs(preds_shape, target_shape, groups, match):
    metric = PoseError(num_groups=4)
    with pytest.raises(ValueError, match=match):
        metric.update(torch.zeros(preds_shape), torch.zeros(target_shape), groups)


def test_constructor_and_joint_range_are_validated():
    with pytest.raises(ValueError, match="alignment"):
        PoseError("procrustes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_groups"):
        PoseError(num_groups=0)
    with pytest.raises(ValueError, match="joints"):
        PoseError(joints=[])
    with pytest.raises(ValueError, match="joints"):
        PoseError(joints=[-1, 0])
    with pytest.raises(ValueError, match="out of range"):
        PoseError(joints=range(J + 1)).update(torch.zeros(1, J, 3), torch.zeros(1, J, 3))


def test_pose_metrics_factory():
    metrics = pose_metrics(num_groups=15, joints=EVAL_JOINTS)
    assert list(metrics) == ["mpjpe", "pa_mpjpe", "pa_mpjpe_scaled"]
    assert [m.alignment for m in metrics.values()] == ["none", "rigid", "similarity"]
    for metric in metrics.values():
        assert metric.num_groups == 15 and metric.joints == tuple(EVAL_JOINTS)
        assert metric.error_sum.shape == metric.count.shape == (15,)
        assert metric.error_sum.dtype == torch.float64 and metric.count.dtype == torch.int64
