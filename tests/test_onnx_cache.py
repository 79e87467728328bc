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
    """A two-job sweep whose jobs run as two spawned DDP ranks each, and a single run, started together on one
    empty export cache (crop stores apart). Results: the sweep's jobs (flip test on, then off), the single run."""
    cache = root / "fresh_export_cache"
    sweep, single = root / "sweep", root / "single"

    def own_crops(name: str) -> tuple[str, ...]:
        return (f"data.crop_cache_dir={root / name / 'crops'}", f"data.index_cache_dir={root / name / 'index'}")

    commands = {
        "ddp_sweep": ("-m", *XS_P1, "flip_test=true,false", *DDP, f"paths.cache_dir={cache}", *own_crops("sweep_data"),
                      f"hydra.sweep.dir={sweep}"),
        "single": (*XS_P1, f"paths.cache_dir={cache}", *own_crops("single_data"), f"hydra.run.dir={single}"),
    }  # fmt: skip
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(commands, pool.map(lambda args: run_cli(root, *args, shared_exports=False), commands.values())))
    for run in done.values():
        assert run.returncode == 0, run.describe()
    return {"cache": cache, "sweep": sweep, "results": [read(sweep / "0_XS" / "results.json"), read(sweep / "1_XS" / "results.json"),
                                                        read(single / "results.json")]}  # fmt: skip


def test_a_sweep_and_ddp_ranks_share_one_cached_export(racing_runs):
    exports = sorted(p.name for p in (racing_runs["cache"] / "onnx").glob("*.onnx"))
    assert len(exports) == 1 and exports[0].startswith("ConvNeXtPose_XS-"), exports
    onnx = [results["inference"]["onnx"] for results in racing_runs["results"]]
    assert all(results["inference"]["backend"] == "onnxruntime" for results in racing_runs["results"])
    assert len({entry["path"] for entry in onnx}) == 1 and len({entry["sha256"] for entry in onnx}) == 1
    # Whoever took the lock first exported; everyone else waited for it and reused the file.
    assert sorted(entry["cache"]["hit"] for entry in onnx) == [False, True, True]
    assert all(entry["source_verified"] is True for entry in onnx)
    first_job = racing_runs["results"][0]
    assert first_job["throughput"]["devices"] == 2 and first_job["num_samples"] == 23
    assert first_job["checkpoint"]["sha256"] == onnx[0]["verification"]["checkpoint_sha256"] == onnx[0]["source_checkpoint_sha256"]


def test_ddp_inside_a_sweep_writes_one_folder_per_job(racing_runs, root):
    """Each job's ranks write its own folder and no other: none re-runs the sweep; the job with the single run's
    settings gives its figures, the other (no flip test) differs from it."""
    sweep = racing_runs["sweep"]
    first_job, second_job, single = racing_runs["results"]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0_XS", "1_XS"]
    assert [(job["flip_test"], job["throughput"]["devices"]) for job in (first_job, second_job)] == [(True, 2), (False, 2)]
    assert_same_figures(first_job, single, tolerance_mm=1e-4)
    assert second_job["num_samples"] == 23 and second_job["metrics"]["mpjpe"] != single["metrics"]["mpjpe"]
    assert not (root / "outputs" / "runs").exists() and not (root / "outputs" / "sweeps").exists()
    entries = read(sweep / "benchmark_results.json")["entries"]
    assert [(e["variant"], e["status"]) for e in entries] == [("XS", "ok"), ("XS", "ok")]


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
    real = next((racing_runs["cache"] / "onnx").glob("*.onnx"))
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
