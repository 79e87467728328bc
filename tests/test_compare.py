"""Comparing runs on hand-made run folders: differences read from the two results.json files, the paired
bootstrap interval against a normal approximation, the images both runs scored, refusals in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli import run_cli

from convnextpose_eval.cli.compare import main
from convnextpose_eval.common.human36m import ACTION_NAMES, EVAL_JOINT_NAMES

METRICS = ("mpjpe", "pa_mpjpe", "pa_mpjpe_scaled", "n_mpjpe", "pck3d_150", "auc3d")


def make_images(count: int, seed: int) -> list[dict]:
    """Per-image entries as a run writes them: ids, inputs, action, subject and each image's own figures."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        joints = np.abs(rng.normal(60.0, 20.0, size=len(EVAL_JOINT_NAMES)))
        joints[0] = 0.0
        images.append({
            "image_id": 1000 + index, "bbox": [10.0 + index, 20.0, 300.0, 300.0], "root_cam": [1.0, 2.0, 4000.0 + index],
            "joint_cam": [[0.0, 0.0, 0.0]] * 17, "thorax_cam": [0.0, -250.0, 0.0], "action": ACTION_NAMES[index % len(ACTION_NAMES)],
            "subject": "S9" if index % 2 else "S11", "mpjpe": float(joints.mean()), "pa_mpjpe": float(joints.mean() * 0.6),
            "pa_mpjpe_scaled": float(joints.mean() * 0.55), "n_mpjpe": float(joints.mean() * 0.9),
            "pck3d_150": float(rng.uniform(80, 100)), "auc3d": float(rng.uniform(40, 60)), "joint_mpjpe": joints.tolist(),
        })  # fmt: skip
    return images


def _means(images: list[dict]) -> dict:
    return {name: float(np.mean([image[name] for image in images])) for name in METRICS}


def write_run(folder: Path, images: list[dict], protocol: int = 2, use_gt_info: bool = True, synthetic: bool = False,
              checkpoint: str = "ConvNeXtPose_L.tar") -> Path:  # fmt: skip
    """results.json (its figures: the means of the images', as a run's are) and predictions.json."""
    folder.mkdir(parents=True)
    per_action = {}
    for action in ACTION_NAMES:
        group = [image for image in images if image["action"] == action]
        per_action[action] = {**(_means(group) if group else dict.fromkeys(METRICS)), "num_samples": len(group)}
    per_subject = {}
    for subject in ("S9", "S11"):
        group = [image for image in images if image["subject"] == subject]
        per_subject[subject] = {**(_means(group) if group else dict.fromkeys(METRICS)), "num_samples": len(group)}
    joints = np.mean([image["joint_mpjpe"] for image in images], axis=0)
    present = [block for block in per_action.values() if block["num_samples"]]
    results = {
        "tool": "convnextpose-eval", "schema_version": 1, "variant": "L", "protocol": protocol, "num_samples": len(images),
        "flip_test": True, "use_gt_info": use_gt_info, "synthetic": synthetic, "oracle": False, "skip_corrupt_s9": False,
        "dropped_sequences": [], "metrics": _means(images),
        "action_average": {name: float(np.mean([block[name] for block in present])) for name in METRICS},
        "per_action": per_action, "per_subject": per_subject,
        "per_joint": {name: {"mpjpe": float(value)} for name, value in zip(EVAL_JOINT_NAMES, joints)},
        "checkpoint": {"path": f"/ckpt/{checkpoint}", "sha256": "ab" * 32, "epoch": 83},
        "model": {"heatmap_size": 32, "params": 8_000_000, "gflops": 5.0},
        "inference": {"precision": "32-true", "tf32": False, "channels_last": True, "fold_batchnorm": True, "backend": "pytorch"},
        "paper": None, "comparison": None, "throughput": {"images_per_s": 10.0, "seconds": 1.0, "device": "cpu"},
        "crop_cache": {"hits": 0, "misses": len(images)}, "data_root": "/data/h36m", "created": "2026-12-07T00:00:00+00:00",
        "config_sha256": "cd" * 32, "files": {"predictions.json": {"sha256": "ef" * 32, "schema_version": 1}},
    }  # fmt: skip
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "predictions.json").write_text(json.dumps(images))
    return folder


def shifted(images: list[dict], seed: int, mean: float = -2.0, spread: float = 3.0) -> list[dict]:
    """The same images scored by another network: every figure moved by its own random amount per image."""
    rng = np.random.default_rng(seed)
    out = []
    for image in images:
        moved = dict(image)
        for name in METRICS:
            moved[name] = image[name] + float(rng.normal(mean, spread))
        moved["joint_mpjpe"] = (np.asarray(image["joint_mpjpe"]) + rng.normal(mean, spread, size=17)).tolist()
        out.append(moved)
    return out


def compare_json(capsys, *args: str) -> tuple[dict, str]:
    assert main([*args, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out.strip().splitlines()[-1]), out


@pytest.fixture()
def two_runs(tmp_path) -> tuple[Path, Path]:
    base = make_images(400, seed=1)
    return write_run(tmp_path / "a", base), write_run(tmp_path / "b", shifted(base, seed=2))


def test_differences_are_those_of_the_two_results_files(capsys, two_runs):
    run_a, run_b = two_runs
    result, _ = compare_json(capsys, str(run_a), str(run_b))
    results_a, results_b = (json.loads((run / "results.json").read_text()) for run in two_runs)
    assert result["num_common"] == 400
    for name in METRICS:
        entry = result["metrics"][name]
        assert entry["a"] == results_a["metrics"][name] and entry["b"] == results_b["metrics"][name]
        assert entry["difference"] == results_b["metrics"][name] - results_a["metrics"][name], name
    for action in ACTION_NAMES:
        expected = results_b["per_action"][action]["mpjpe"] - results_a["per_action"][action]["mpjpe"]
        assert result["per_action"][action]["difference"] == expected, action
    for joint in EVAL_JOINT_NAMES:
        assert result["per_joint"][joint]["difference"] == results_b["per_joint"][joint]["mpjpe"] - results_a["per_joint"][joint]["mpjpe"]


def test_bootstrap_interval_matches_a_normal_approximation(capsys, two_runs):
    run_a, run_b = two_runs
    result, text = compare_json(capsys, str(run_a), str(run_b))
    images_a, images_b = (json.loads((run / "predictions.json").read_text()) for run in two_runs)
    for name in ("mpjpe", "pa_mpjpe"):
        differences = np.array([b[name] - a[name] for a, b in zip(images_a, images_b)])
        centre = differences.mean()
        half = 1.959964 * differences.std(ddof=1) / math.sqrt(len(differences))
        low, high = result["metrics"][name]["ci95"]
        # The percentile interval of 10,000 resamples lies within a few percent of its half-width of the normal one.
        assert abs(low - (centre - half)) < 0.06 * half and abs(high - (centre + half)) < 0.06 * half, (name, low, high, centre, half)
        # Paired: the images' own spread (about 20 mm) cancels; unpaired, the interval would be several times wider.
        assert high - low < 1.0
    assert "10000 resamples, seed 0" in text
    again, _ = compare_json(capsys, str(run_a), str(run_b))
    assert again["metrics"]["mpjpe"]["ci95"] == result["metrics"]["mpjpe"]["ci95"]
    other, _ = compare_json(capsys, str(run_a), str(run_b), "--seed", "7", "--resamples", "2000")
    assert other["metrics"]["mpjpe"]["ci95"] != result["metrics"]["mpjpe"]["ci95"]
    assert other["bootstrap"]["resamples"] == 2000 and other["bootstrap"]["seed"] == 7


def test_only_the_images_both_runs_scored_count(capsys, tmp_path):
    base = make_images(60, seed=3)
    others = shifted(base, seed=4)
    run_a = write_run(tmp_path / "a", base)
    run_b = write_run(tmp_path / "b", others[:45] + others[50:])  # five images left out, as skip_corrupt_s9 does
    result, text = compare_json(capsys, str(run_a), str(run_b))
    common = [i for i in range(60) if not 45 <= i < 50]
    assert (result["num_common"], result["num_a"], result["num_b"]) == (55, 60, 55)
    assert "55 test images both runs scored (A scored 60, B 55)" in text
    for name in METRICS:
        mean_a = sum(base[i][name] for i in common) / len(common)
        mean_b = sum(others[i][name] for i in common) / len(common)
        assert result["metrics"][name]["a"] == pytest.approx(mean_a, rel=1e-12)
        assert result["metrics"][name]["difference"] == pytest.approx(mean_b - mean_a, rel=1e-9, abs=1e-9)
    walking = [i for i in common if base[i]["action"] == "Walking"]
    assert result["per_action"]["Walking"]["num_common"] == len(walking)
    expected = np.mean([others[i]["mpjpe"] for i in walking]) - np.mean([base[i]["mpjpe"] for i in walking])
    assert result["per_action"]["Walking"]["difference"] == pytest.approx(expected, rel=1e-9)


def test_lists_the_actions_and_joints_that_changed_most(capsys, tmp_path):
    base = make_images(90, seed=5)
    others = [dict(image) for image in base]
    for image in others:
        if image["action"] == "Eating":
            image["mpjpe"] += 30.0
        joints = list(image["joint_mpjpe"])
        joints[EVAL_JOINT_NAMES.index("L_Wrist")] -= 40.0
        image["joint_mpjpe"] = joints
    run_a, run_b = write_run(tmp_path / "a", base), write_run(tmp_path / "b", others)
    assert main([str(run_a), str(run_b), "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    actions = lines[lines.index("actions that changed most (MPJPE, mm):") + 3]
    joints = lines[lines.index("joints that changed most (MPJPE, mm):") + 3]
    assert actions.split()[0] == "Eating" and actions.split()[3] == "+30.00"
    assert joints.split()[0] == "L_Wrist" and joints.split()[3] == "-40.00"


def test_later_runs_are_each_compared_with_the_first(capsys, tmp_path, two_runs):
    run_a, run_b = two_runs
    base = json.loads((run_a / "predictions.json").read_text())
    run_c = write_run(tmp_path / "c", shifted(base, seed=9, mean=5.0))
    assert main([str(run_a), str(run_b), str(run_c), "--json"]) == 0
    out = capsys.readouterr().out
    comparisons = json.loads(out.strip().splitlines()[-1])["comparisons"]
    assert [(c["a"], c["b"]) for c in comparisons] == [(str(run_a), str(run_b)), (str(run_a), str(run_c))]
    results_a, results_c = (json.loads((run / "results.json").read_text()) for run in (run_a, run_c))
    assert comparisons[1]["metrics"]["mpjpe"]["difference"] == results_c["metrics"]["mpjpe"] - results_a["metrics"]["mpjpe"]
    assert out.count("test images both runs scored") == 2


def test_markdown_tables(capsys, two_runs):
    assert main([str(run) for run in two_runs] + ["--md"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines.index("| metric (mm) | A | B | B - A | 95% interval |")
    assert lines[header + 1] == "|---|---:|---:|---:|---:|"
    assert lines[header + 2].startswith("| MPJPE | ") and lines[header + 2].count("|") == 6
    assert "| action | A | B | B - A | images |" in lines and "| joint | A | B | B - A |" in lines


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"protocol": 1}, "protocol 2 vs 1"),
        ({"use_gt_info": False}, "boxes ground-truth boxes vs RootNet boxes"),
        ({"synthetic": True}, "data Human3.6M vs the synthetic sample"),
    ],
)
def test_runs_of_different_test_sets_are_refused(capsys, tmp_path, changes, reason):
    base = make_images(30, seed=6)
    run_a = write_run(tmp_path / "a", base)
    run_b = write_run(tmp_path / "b", base, **changes)
    assert main([str(run_a), str(run_b), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert "different test sets" in captured.err and reason in captured.err and str(run_a) in captured.err


def test_other_subjects_boxes_and_unreadable_runs_are_refused(capsys, tmp_path):
    base = make_images(30, seed=7)
    run_a = write_run(tmp_path / "a", base)
    only_s11 = write_run(tmp_path / "s11", [image for image in base if image["subject"] == "S11"])
    moved = [dict(image) for image in base]
    moved[3] = {**moved[3], "bbox": [0.0, 0.0, 100.0, 100.0]}
    other_boxes = write_run(tmp_path / "boxes", moved)
    old = write_run(tmp_path / "old", base)  # predictions.json as written before runs kept each image's figures
    (old / "predictions.json").write_text(json.dumps([{k: image[k] for k in ("image_id", "joint_cam", "bbox", "root_cam")} for image in base]))
    cases = {
        only_s11: "subjects S9 S11 vs S11",
        other_boxes: f"image {base[3]['image_id']} has bbox",
        old: "predictions.json: not a predictions.json this tool writes (schema version 1): at $[0]",
        tmp_path / "missing": "no such run folder",
    }
    for run_b, reason in cases.items():
        assert main([str(run_a), str(run_b)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and reason in err, err
    assert main([str(run_a)]) == 2
    assert "at least two run folders" in capsys.readouterr().err


@pytest.mark.slow
def test_module_entry_point(tmp_path, two_runs):
    done = run_cli(None, *(str(run) for run in two_runs), "--json", module="convnextpose_eval.compare")
    assert done.returncode == 0, done.describe()
    assert json.loads(done.stdout.strip().splitlines()[-1])["num_common"] == 400
    helped = run_cli(None, "--help", module="convnextpose_eval.compare")
    assert helped.returncode == 0 and "--md" in helped.stdout and "bootstrap" in helped.stdout


@pytest.mark.slow
def test_each_images_figures_average_to_the_run_totals(demo_sweep_p1):
    """The per-image figures a run writes are the terms of its results.json means: overall, per group, per joint."""
    for job in ("0_XS", "1_S", "2_M", "3_L"):
        results = json.loads((demo_sweep_p1 / job / "results.json").read_text())
        images = json.loads((demo_sweep_p1 / job / "predictions.json").read_text())
        assert len(images) == results["num_samples"] == 23
        for name in METRICS:
            assert np.mean([image[name] for image in images]) == pytest.approx(results["metrics"][name], rel=1e-12), (job, name)
        for block, key in (("per_action", "action"), ("per_subject", "subject")):
            for group, figures in results[block].items():
                members = [image for image in images if image[key] == group]
                assert len(members) == figures["num_samples"], (job, group)
                for name in METRICS:
                    if members:
                        assert np.mean([image[name] for image in members]) == pytest.approx(figures[name], rel=1e-12), (job, group, name)
                    else:
                        assert figures[name] is None
        joints = np.mean([image["joint_mpjpe"] for image in images], axis=0)
        assert joints.tolist() == pytest.approx([results["per_joint"][name]["mpjpe"] for name in EVAL_JOINT_NAMES], rel=1e-12)


@pytest.mark.slow
def test_compare_two_real_runs(demo_sweep_p1):
    run_a, run_b = demo_sweep_p1 / "0_XS", demo_sweep_p1 / "3_L"
    done = run_cli(None, str(run_a), str(run_b), "--json", module="convnextpose_eval.compare")
    assert done.returncode == 0, done.describe()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    results_a, results_b = (json.loads((run / "results.json").read_text()) for run in (run_a, run_b))
    assert result["num_common"] == 23
    for name in ("mpjpe", "pa_mpjpe"):
        entry = result["metrics"][name]
        assert entry["difference"] == results_b["metrics"][name] - results_a["metrics"][name]
        low, high = entry["ci95"]
        assert low < entry["difference"] < high
    assert "ConvNeXtPose-XS" in done.stdout and "ConvNeXtPose-L" in done.stdout and "SYNTHETIC SAMPLE" in done.stdout
