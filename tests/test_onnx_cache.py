"""The default CPU path end to end: each checkpoint exported once into the cache, shared by sweeps and DDP
ranks, proven against the checkpoint before scoring, and scoring what PyTorch scores.

``backend=auto`` (the default) runs ONNX Runtime on a CPU trainer. That default stands on the equality
tested here (the cached path) and in ``test_onnx_eval.py`` (every variant's exported file): on the sample,
totals equal the PyTorch engine's to 0.001 mm and per-action figures to 0.005 mm.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cli import run_cli
from figures import assert_same_figures
from onnx_hostile import hand_made_graph

pytestmark = pytest.mark.slow

METRICS = ("mpjpe", "pa_mpjpe", "pa_mpjpe_scaled", "n_mpjpe", "pck3d_150", "auc3d")
TOTAL_MM, PER_ACTION_MM = 1e-3, 5e-3
XS_P1 = ("experiment=demo", "variant=XS", "data.protocol=1")
DDP = ("trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu")


def read(path: Path) -> dict:
    with open(path) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def root(eval_root_with_sample) -> Path:
    return eval_root_with_sample("onnx_cache_root")


@pytest.fixture(scope="module")
def racing_runs(root) -> dict:
    """A two-job sweep (XS, then S) whose jobs run as two spawned DDP ranks each, and a single run of XS, started
    together on one empty export cache (crop stores apart). Results: the sweep's jobs, then the single run."""
    cache = root / "fresh_export_cache"
    sweep, single = root / "sweep", root / "single"

    def own_crops(name: str) -> tuple[str, ...]:
        return (f"data.crop_cache_dir={root / name / 'crops'}", f"data.index_cache_dir={root / name / 'index'}")

    commands = {
        "ddp_sweep": ("-m", "experiment=demo", "variant=XS,S", "data.protocol=1", *DDP, f"paths.cache_dir={cache}",
                      *own_crops("sweep_data"), f"hydra.sweep.dir={sweep}"),
        "single": (*XS_P1, f"paths.cache_dir={cache}", *own_crops("single_data"), f"hydra.run.dir={single}"),
    }  # fmt: skip
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(commands, pool.map(lambda args: run_cli(root, *args, shared_exports=False), commands.values())))
    for run in done.values():
        assert run.returncode == 0, run.describe()
    return {"cache": cache, "sweep": sweep, "results": [read(sweep / "0_XS" / "results.json"), read(sweep / "1_S" / "results.json"),
                                                        read(single / "results.json")]}  # fmt: skip


def test_a_sweep_and_ddp_ranks_share_one_cached_export(racing_runs):
    exports = sorted(p.name for p in (racing_runs["cache"] / "onnx").glob("*.onnx"))
    assert len(exports) == 2 and exports[0].startswith("ConvNeXtPose_S-") and exports[1].startswith("ConvNeXtPose_XS-"), exports
    onnx = [results["inference"]["onnx"] for results in racing_runs["results"]]
    assert all(results["inference"]["backend"] == "onnxruntime" for results in racing_runs["results"])
    xs_job, s_job, single = onnx
    assert xs_job["path"] == single["path"] != s_job["path"] and xs_job["sha256"] == single["sha256"] != s_job["sha256"]
    # Whoever took XS's lock first exported it; the other waited for it and reused the file. S's job exported S.
    assert sorted([xs_job["cache"]["hit"], single["cache"]["hit"]]) == [False, True] and s_job["cache"]["hit"] is False
    assert all(entry["source_verified"] is True for entry in onnx)
    first_job = racing_runs["results"][0]
    assert first_job["throughput"]["devices"] == 2 and first_job["num_samples"] == 23
    assert first_job["checkpoint"]["sha256"] == xs_job["verification"]["checkpoint_sha256"] == xs_job["source_checkpoint_sha256"]


def test_ddp_inside_a_sweep_writes_one_folder_per_job(racing_runs, root):
    """Each job's ranks write its own folder and no other, with its own variant's checkpoint and export: none
    re-runs the sweep; the XS job gives the single run's figures, the S job S's own."""
    sweep = racing_runs["sweep"]
    xs_job, s_job, single = racing_runs["results"]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0_XS", "1_S"]
    assert [(job["variant"], job["throughput"]["devices"], job["num_samples"]) for job in (xs_job, s_job)] == [("XS", 2, 23), ("S", 2, 23)]
    assert_same_figures(xs_job, single, tolerance_mm=1e-4)
    assert s_job["checkpoint"]["sha256"] != xs_job["checkpoint"]["sha256"] and s_job["metrics"]["mpjpe"] != xs_job["metrics"]["mpjpe"]
    assert not (root / "outputs" / "runs").exists() and not (root / "outputs" / "sweeps").exists()
    entries = read(sweep / "benchmark_results.json")["entries"]
    assert [(e["variant"], e["status"]) for e in entries] == [("XS", "ok"), ("S", "ok")]


def test_the_default_cpu_path_scores_as_pytorch(default_engine_p1, demo_sweep_p1):
    """The session's default-settings sweep (XS and S; on this CPU ONNX Runtime on the cached exports) against
    the session's PyTorch sweep of the same command. The other variants' exports, made by the same exporter,
    are held to the same bounds in test_onnx_eval.py, and XS on both protocols against an independent
    re-implementation in test_agreement.py: no run of its own here."""
    for job, variant in enumerate(("XS", "S")):
        ours = read(default_engine_p1 / f"{job}_{variant}" / "results.json")
        torch_run = read(demo_sweep_p1 / f"{job}_{variant}" / "results.json")
        assert ours["variant"] == torch_run["variant"] == variant
        assert (ours["inference"]["backend"], torch_run["inference"]["backend"]) == ("onnxruntime", "pytorch")
        onnx = ours["inference"]["onnx"]
        assert onnx["source_verified"] is True and onnx["cache"]["hit"] in (True, False)
        assert ours["checkpoint"]["sha256"] == torch_run["checkpoint"]["sha256"] == onnx["source_checkpoint_sha256"]
        assert ours["num_samples"] == torch_run["num_samples"] == 23
        for name in METRICS:
            assert abs(ours["metrics"][name] - torch_run["metrics"][name]) < TOTAL_MM, (variant, name)
        assert ours["per_action"].keys() == torch_run["per_action"].keys()
        for action, scores in ours["per_action"].items():
            for name in METRICS:
                assert abs(scores[name] - torch_run["per_action"][action][name]) < PER_ACTION_MM, (variant, action, name)
        assert ours["model"]["params"] == torch_run["model"]["params"]


def test_a_hand_made_graph_is_refused_with_its_checkpoint_and_marked_unverified_without(racing_runs, root):
    real = next((racing_runs["cache"] / "onnx").glob("ConvNeXtPose_XS-*.onnx"))
    fake = hand_made_graph(real, root / "hand_made.onnx", input_size=256, offset_range=(5, 25))
    ckpt = root / "outputs" / "sample" / "checkpoints" / "ConvNeXtPose_XS.tar"
    with ThreadPoolExecutor(max_workers=2) as pool:
        refused, scored = pool.map(
            lambda args: run_cli(root, *args),
            [(*XS_P1, f"onnx_path={fake}", f"ckpt_path={ckpt}", f"hydra.run.dir={root / 'refused'}"),
             (*XS_P1, f"onnx_path={fake}", f"hydra.run.dir={root / 'unverified'}")],
        )  # fmt: skip
    assert refused.returncode == 2 and len(refused.error_lines) == 1 and "Traceback" not in refused.stderr, refused.describe()
    line = refused.error_lines[0]
    assert str(fake) in line and "does not compute the network of" in line and str(ckpt.resolve()) in line, line
    assert not (root / "refused" / "results.json").exists()
    assert scored.returncode == 0, scored.describe()
    results = read(root / "unverified" / "results.json")
    onnx = results["inference"]["onnx"]
    assert onnx["source_verified"] is False and results["checkpoint"] is None
    assert results["model"]["params"] == onnx["stored_params"] == 18 * 3  # the constant; shapes are int64
    assert "not checked against a checkpoint" in scored.stdout
