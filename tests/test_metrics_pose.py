"""Tests for convnextpose_eval.metrics.pose.PoseMetrics: a per-sample numpy reference, groupings, summable states."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_metrics_functional import (
    BASE,
    EVAL_JOINTS,
    THORAX,
    J,
    quat_to_matrix,
    random_batch,
    ref_auc,
    ref_n_mpjpe,
    ref_pck,
    ref_rigid_align,
    ref_similarity_align,
)

from convnextpose_eval.common.errors import EvalError
from convnextpose_eval.metrics import (
    METRIC_NAMES,
    MetricInputError,
    PoseMetrics,
    PoseScores,
)

NUM_ACTIONS = 15
NUM_SUBJECTS = 3  # the last slot never gets a sample below
ERROR_METRICS = ("mpjpe", "pa_mpjpe", "pa_mpjpe_scaled", "n_mpjpe")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: a thread pool only slows them down on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------- reference


def ref_sample(p: np.ndarray, g: np.ndarray) -> dict[str, float]:
    """Every figure of one sample, each protocol written out: 3DMPPE's rigid fit on all 18 joints,
    the similarity fit (Horn) and VideoPose3D's N-MPJPE on the 17 evaluated ones, MMPose's PCK / AUC."""
    errors = np.linalg.norm(p[:17] - g[:17], axis=1)
    return {
        "mpjpe": errors.mean(),
        "pa_mpjpe": np.linalg.norm(ref_rigid_align(p, g)[:17] - g[:17], axis=1).mean(),
        "pa_mpjpe_scaled": np.linalg.norm(ref_similarity_align(p[:17], g[:17]) - g[:17], axis=1).mean(),
        "n_mpjpe": ref_n_mpjpe(p[None, :17], g[None, :17])[0],
        "pck3d_150": ref_pck(errors),
        "auc3d": ref_auc(errors),
    }


def ref_group_means(values: list[dict[str, float]]) -> dict[str, float]:
    return {name: np.mean([v[name] for v in values]) if values else math.nan for name in METRIC_NAMES}


def make_data(seed: int, batch: int) -> tuple[torch.Tensor, ...]:
    """Root-relative poses, actions 0..13 (14 never occurs) and subject slots 0..1 (2 never occurs)."""
    rng = np.random.default_rng(seed)
    preds, target = random_batch(rng, batch)
    preds, target = preds - preds[:, :1], target - target[:, :1]
    actions = rng.integers(0, NUM_ACTIONS - 1, size=batch)
    subjects = rng.integers(0, NUM_SUBJECTS - 1, size=batch)
    return torch.as_tensor(preds), torch.as_tensor(target), torch.as_tensor(actions), torch.as_tensor(subjects)


def new_metric(**kwargs) -> PoseMetrics:
    return PoseMetrics(NUM_ACTIONS, NUM_SUBJECTS, EVAL_JOINTS, **kwargs)


def assert_figures(ours: dict[str, float], expected: dict[str, float]) -> None:
    assert list(ours) == list(METRIC_NAMES)
    for name in METRIC_NAMES:
        # The references compute PCK / AUC in float32, as MMPose does.
        tolerance = 1e-9 if name in ERROR_METRICS else 1e-4
        if math.isnan(expected[name]):
            assert math.isnan(ours[name]), name
        else:
            assert ours[name] == pytest.approx(expected[name], abs=tolerance), name


# --------------------------------------------------------------------------- against the reference


def test_metric_names_are_the_results_contract():
    # docs/results-format.md, results.json: the keys of "metrics" and of each per-action / per-subject entry.
    assert METRIC_NAMES == ("mpjpe", "pa_mpjpe", "pa_mpjpe_scaled", "n_mpjpe", "pck3d_150", "auc3d")


def test_matches_per_sample_reference_overall_per_action_per_subject_per_joint():
    preds, target, actions, subjects = make_data(7, 96)
    metric = new_metric()
    for part in (slice(0, 40), slice(40, 41), slice(41, 96)):  # uneven batches, one of a single sample
        metric.update(preds[part], target[part], actions[part], subjects[part])
    scores = metric.compute()
    assert isinstance(scores, PoseScores)

    samples = [ref_sample(p, g) for p, g in zip(preds.numpy(), target.numpy())]
    acts, subs = actions.tolist(), subjects.tolist()
    assert scores.num_samples == 96
    assert_figures(scores.overall, ref_group_means(samples))
    action_means = []
    for a in range(NUM_ACTIONS):
        members = [s for s, act in zip(samples, acts) if act == a]
        assert scores.per_action[a].num_samples == len(members)
        assert_figures(scores.per_action[a].metrics, ref_group_means(members))
        if members:
            action_means.append(ref_group_means(members))
    for s in range(NUM_SUBJECTS):
        members = [x for x, sub in zip(samples, subs) if sub == s]
        assert scores.per_subject[s].num_samples == len(members)
        assert_figures(scores.per_subject[s].metrics, ref_group_means(members))
    # VideoPose3D's action-wise average: the mean of the per-action means, actions with samples only.
    assert_figures(scores.action_average, {n: np.mean([m[n] for m in action_means]) for n in METRIC_NAMES})
    per_joint = np.linalg.norm(preds.numpy()[:, :17] - target.numpy()[:, :17], axis=-1).mean(axis=0)
    np.testing.assert_allclose(scores.per_joint, per_joint, rtol=0, atol=1e-9)
    # The groups that never occur are NaN, and they are there.
    assert len(scores.per_action) == NUM_ACTIONS and len(scores.per_subject) == NUM_SUBJECTS
    assert all(math.isnan(v) for v in scores.per_action[-1].metrics.values())
    assert all(math.isnan(v) for v in scores.per_subject[-1].metrics.values())


def test_groupings_are_consistent():
    preds, target, actions, subjects = make_data(3, 60)
    metric = new_metric()
    metric.update(preds, target, actions, subjects)
    scores = metric.compute()
    assert sum(s.num_samples for s in scores.per_subject) == scores.num_samples == 60
    assert sum(a.num_samples for a in scores.per_action) == 60
    # The per-joint MPJPE averaged over the joints is the overall MPJPE.
    assert np.mean(scores.per_joint) == pytest.approx(scores.overall["mpjpe"], abs=1e-9)
    assert len(scores.per_joint) == len(EVAL_JOINTS)
    # The action average is the plain mean of the per-action values that exist.
    for name in METRIC_NAMES:
        values = [a.metrics[name] for a in scores.per_action if a.num_samples]
        assert scores.action_average[name] == pytest.approx(np.mean(values), abs=1e-9)
        # The sample-weighted per-subject means recombine into the overall figure.
        weighted = sum(s.metrics[name] * s.num_samples for s in scores.per_subject if s.num_samples)
        assert weighted / 60 == pytest.approx(scores.overall[name], abs=1e-9)


def test_hand_computed_action_average_differs_from_the_frame_weighted_mean():
    # Action 0: one sample, every joint 10 mm off; action 1: three samples, 2 mm off.
    target = torch.zeros(4, J, 3, dtype=torch.float64)
    preds = target.clone()
    preds[0, :, 0] = 10.0
    preds[1:, :, 2] = 2.0
    metric = PoseMetrics(2, 1, EVAL_JOINTS)
    metric.update(preds, target, torch.tensor([0, 1, 1, 1]), torch.zeros(4, dtype=torch.int64))
    scores = metric.compute()
    assert scores.overall["mpjpe"] == pytest.approx((10 + 3 * 2) / 4)
    assert scores.action_average["mpjpe"] == pytest.approx((10 + 2) / 2)
    assert [a.metrics["mpjpe"] for a in scores.per_action] == pytest.approx([10.0, 2.0])
    assert scores.per_joint == pytest.approx([4.0] * 17)
    assert scores.overall["pck3d_150"] == 100.0


def test_thorax_noise_changes_pa_mpjpe_only():
    """The authors' rigid fit uses the Thorax (18 joints); the scaled fits use the 17 evaluated joints."""
    target = torch.as_tensor(BASE - BASE[:1])[None]
    preds = target.clone()
    preds[0, THORAX] += torch.tensor([0.0, 1000.0, 0.0], dtype=torch.float64)
    labels = (torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64))
    metric = new_metric()
    metric.update(preds, target, *labels)
    overall = metric.compute().overall
    assert overall["mpjpe"] == 0.0
    assert overall["pa_mpjpe"] > 10.0
    assert overall["pa_mpjpe_scaled"] == pytest.approx(0.0, abs=1e-9)
    assert overall["n_mpjpe"] == pytest.approx(0.0, abs=1e-9)

    fitted_on_18 = new_metric(fit_joints=range(J))
    fitted_on_18.update(preds, target, *labels)
    assert fitted_on_18.compute().overall["pa_mpjpe_scaled"] > 10.0
    assert fitted_on_18.compute().overall["n_mpjpe"] > 0.1


# --------------------------------------------------------------------------- summable states (DDP)


def halves() -> tuple[PoseMetrics, PoseMetrics, PoseMetrics]:
    preds, target, actions, subjects = make_data(5, 50)
    first, second, whole = new_metric(), new_metric(), new_metric()
    first.update(preds[:23], target[:23], actions[:23], subjects[:23])
    second.update(preds[23:], target[23:], actions[23:], subjects[23:])
    whole.update(preds, target, actions, subjects)
    return first, second, whole


def assert_scores_close(left: PoseScores, right: PoseScores) -> None:
    np.testing.assert_allclose(list(left.overall.values()), list(right.overall.values()), rtol=1e-12)
    np.testing.assert_allclose(list(left.action_average.values()), list(right.action_average.values()), rtol=1e-12)
    np.testing.assert_allclose(left.per_joint, right.per_joint, rtol=1e-12)
    for mine, theirs in zip(left.per_action + left.per_subject, right.per_action + right.per_subject):
        assert mine.num_samples == theirs.num_samples
        np.testing.assert_allclose(list(mine.metrics.values()), list(theirs.metrics.values()), rtol=1e-12)
    assert left.num_samples == right.num_samples


def test_states_are_sums_with_a_sum_reduction():
    metric = new_metric()
    assert set(metric._defaults) == {"error_sum", "count", "joint_error_sum"}
    assert all(metric._reductions[name] is not None for name in metric._defaults)
    assert metric.error_sum.dtype == metric.joint_error_sum.dtype == torch.float64
    assert metric.count.dtype == torch.int64
    assert metric.error_sum.shape == (len(METRIC_NAMES), NUM_ACTIONS, NUM_SUBJECTS)


def test_summed_states_of_two_halves_equal_one_pass():
    first, second, whole = halves()
    summed = new_metric()
    for name in ("error_sum", "count", "joint_error_sum"):
        setattr(summed, name, getattr(first, name) + getattr(second, name))
    summed._update_count = 1
    assert_scores_close(summed.compute(), whole.compute())

    first.merge_state(second)
    assert_scores_close(first.compute(), whole.compute())


def test_torchmetrics_sync_over_two_ranks_equals_one_pass():
    """compute() on "rank 0" gathers rank 1's states through torchmetrics' own sync path."""
    first, second, whole = halves()
    other = {(tuple(v.shape), v.dtype): v for v in (second.error_sum, second.count, second.joint_error_sum)}

    def gather_two_ranks(state: torch.Tensor, group=None) -> list[torch.Tensor]:
        return [state, other[(tuple(state.shape), state.dtype)]]

    preds, target, actions, subjects = make_data(5, 50)
    rank0 = new_metric(dist_sync_fn=gather_two_ranks, distributed_available_fn=lambda: True)
    rank0.update(preds[:23], target[:23], actions[:23], subjects[:23])
    assert_scores_close(rank0.compute(), whole.compute())
    # After compute the local state is restored, so accumulation could go on.
    assert torch.equal(rank0.count, first.count)


def test_forward_returns_the_batch_scores_and_accumulates():
    preds, target, actions, subjects = make_data(5, 50)
    _, _, whole = halves()
    metric = new_metric()
    batch_scores = metric(preds[:23], target[:23], actions[:23], subjects[:23])
    metric(preds[23:], target[23:], actions[23:], subjects[23:])
    first_only = new_metric()
    first_only.update(preds[:23], target[:23], actions[:23], subjects[:23])
    assert isinstance(batch_scores, PoseScores)
    assert_scores_close(batch_scores, first_only.compute())
    assert_scores_close(metric.compute(), whole.compute())


def test_no_samples_gives_nan_and_reset_clears():
    metric = new_metric()
    empty = torch.zeros(0, J, 3)
    no_labels = torch.zeros(0, dtype=torch.int64)
    metric.update(empty, empty, no_labels, no_labels)
    scores = metric.compute()
    assert scores.num_samples == 0
    for figures in (scores.overall, scores.action_average, *(g.metrics for g in scores.per_action + scores.per_subject)):
        assert all(math.isnan(v) for v in figures.values())
    assert all(math.isnan(v) for v in scores.per_joint)

    metric.update(torch.ones(2, J, 3), torch.zeros(2, J, 3), torch.tensor([4, 4]), torch.tensor([1, 1]))
    assert metric.compute().per_action[4].num_samples == 2
    metric.reset()
    assert metric.count.sum().item() == 0 and metric.error_sum.abs().sum().item() == 0.0


# --------------------------------------------------------------------------- properties

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)
quaternions = hnp.arrays(np.float64, 4, elements=st.floats(-1.0, 1.0, allow_subnormal=False)).filter(
    lambda q: np.linalg.norm(q) > 0.1
)
translations = hnp.arrays(np.float64, 3, elements=st.floats(-500.0, 500.0, allow_subnormal=False))
ground_truths = hnp.arrays(np.float64, (2, J, 3), elements=st.floats(-60.0, 60.0, allow_subnormal=False)).map(
    lambda noise: (BASE + noise) - (BASE + noise)[:, :1]
)


def overall_of(preds: np.ndarray, target: np.ndarray) -> dict[str, float]:
    metric = new_metric()
    labels = torch.zeros(len(preds), dtype=torch.int64)
    metric.update(torch.as_tensor(preds), torch.as_tensor(target), labels, labels)
    return metric.compute().overall


@PROPERTY_SETTINGS
@given(ground_truths, quaternions, translations)
def test_rigidly_moved_copy_has_zero_pa_mpjpe(target, quaternion, translation):
    moved = target @ quat_to_matrix(quaternion).T + translation
    overall = overall_of(moved, target)
    assert overall["pa_mpjpe"] == pytest.approx(0.0, abs=1e-7)
    assert overall["pa_mpjpe_scaled"] == pytest.approx(0.0, abs=1e-7)


@PROPERTY_SETTINGS
@given(ground_truths, st.floats(0.3, 3.0).filter(lambda s: abs(s - 1.0) > 0.01))
def test_scaled_copy_has_zero_n_mpjpe_and_scaled_pa_mpjpe_but_not_zero_mpjpe(target, scale):
    overall = overall_of(scale * target, target)
    assert overall["n_mpjpe"] == pytest.approx(0.0, abs=1e-7)
    assert overall["pa_mpjpe_scaled"] == pytest.approx(0.0, abs=1e-7)
    # Every joint is |s - 1| times its distance to the root away.
    expected = abs(scale - 1.0) * np.linalg.norm(target[:, :17], axis=-1).mean()
    assert overall["mpjpe"] == pytest.approx(expected, rel=1e-9) and overall["mpjpe"] > 0.0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("shapes", "action", "subject", "match"),
    [
        (((2, J, 3), (2, J - 1, 3)), [0, 0], [0, 0], "shape"),
        (((2, J, 2), (2, J, 2)), [0, 0], [0, 0], "shape"),
        (((2, J, 3), (2, J, 3)), [0], [0, 0], "action"),
        (((2, J, 3), (2, J, 3)), [0.0, 1.0], [0, 0], "action"),
        (((2, J, 3), (2, J, 3)), [0, NUM_ACTIONS], [0, 0], r"action must lie in \[0, 15\)"),
        (((2, J, 3), (2, J, 3)), [0, 0], [-1, 0], r"subject must lie in \[0, 3\)"),
        (((2, J, 3), (2, J, 3)), [0, 0], [True, False], "subject"),
        (((2, 10, 3), (2, 10, 3)), [0, 0], [0, 0], "eval_joints"),
    ],
)
def test_update_rejects_bad_inputs(shapes, action, subject, match):
    metric = new_metric()
    with pytest.raises(MetricInputError, match=match) as caught:
        metric.update(torch.zeros(shapes[0]), torch.zeros(shapes[1]), torch.tensor(action), torch.tensor(subject))
    assert isinstance(caught.value, EvalError) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_actions": 0}, "num_actions"),
        ({"num_subjects": 0}, "num_subjects"),
        ({"eval_joints": []}, "eval_joints"),
        ({"eval_joints": [-1, 0]}, "eval_joints"),
        ({"fit_joints": []}, "fit_joints"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    arguments = {"num_actions": NUM_ACTIONS, "num_subjects": NUM_SUBJECTS, "eval_joints": EVAL_JOINTS, **kwargs}
    with pytest.raises(MetricInputError, match=match):
        PoseMetrics(**arguments)


def test_fit_joints_out_of_range_is_caught_at_update():
    metric = new_metric(fit_joints=range(J + 1))
    labels = torch.zeros(1, dtype=torch.int64)
    with pytest.raises(MetricInputError, match="fit_joints"):
        metric.update(torch.zeros(1, J, 3), torch.zeros(1, J, 3), labels, labels)
