"""End-to-end runs of run_eval.py on the generated sample: DDP exactness, sweeps, reports, oracle, kills.

Launches (DDP, the killed run) are processes of their own (tests/cli.py); runs whose files or exit status
are the point, not the process, go through the real entry point in this process (tests/inprocess.py),
without a new interpreter's start-up. The one-process XS run is the session's ``default_engine_p1``
(conftest.py), shared with the cluster tests. A sweep whose jobs run as DDP ranks is test_onnx_cache.py's:
it races a single run on an empty export cache.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
import yaml
from cli import run_cli, start_cli, wait_for
from doc_commands import page_command
from figures import assert_same_figures
from inprocess import run_in_process
from tracking_readers import assert_tensorboard_matches, csv_logged, expected_metrics

pytestmark = pytest.mark.slow

METRICS = ("mpjpe", "pa_mpjpe", "pa_mpjpe_scaled", "n_mpjpe", "pck3d_150", "auc3d")
XS_P1 = ("experiment=demo", "variant=XS", "data.protocol=1")


@pytest.fixture(scope="module")
def env_root(eval_root_with_sample) -> Path:
    """A project root of this module's own (outputs, caches) on the session's sample, outside the checkout."""
    return eval_root_with_sample("evalroot")


def read(path: Path) -> dict:
    with open(path) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def single_xs_dir(default_engine_p1) -> Path:
    """XS on protocol 1 (23 test images: an odd count, so two ranks get different shares) in one process,
    default settings, tracked with TensorBoard: the first job of the session's ``default_engine_p1``."""
    return default_engine_p1 / "0_XS"


@pytest.fixture(scope="module")
def single_xs(single_xs_dir) -> dict:
    return read(single_xs_dir / "results.json")


def test_single_run_counts_every_image_once(single_xs_dir, single_xs):
    predictions = read(single_xs_dir / "predictions.json")
    ids = [p["image_id"] for p in predictions]
    assert single_xs["num_samples"] == len(ids) == len(set(ids)) == 23
    assert sum(a["num_samples"] for a in single_xs["per_action"].values()) == 23
    assert single_xs["synthetic"] is True and single_xs["tool"] == "convnextpose-eval"
    # The defaults are the exact float32 path (docs/protocol.md, "Pitfalls in the stack": no TF32); on a CPU trainer through
    # ONNX Runtime, on the checkpoint's export proven against the checkpoint before scoring.
    assert {k: single_xs["inference"][k] for k in ("precision", "tf32", "backend")} == {"precision": "32-true", "tf32": False, "backend": "onnxruntime"}
    assert single_xs["inference"]["onnx"]["source_verified"] is True
    assert single_xs["checkpoint"]["sha256"] == single_xs["inference"]["onnx"]["source_checkpoint_sha256"]
    assert all(len(p["joint_cam"]) == 17 for p in predictions)


def test_single_run_is_tracked_in_tensorboard(single_xs_dir):
    assert_tensorboard_matches(single_xs_dir)


def test_ddp_two_processes_equal_one_process(env_root, single_xs_dir, single_xs):
    out = env_root / "ddp_xs"
    command = "python run_eval.py experiment=demo variant=XS data.protocol=1 trainer=ddp trainer.devices=2 trainer.accelerator=cpu logger=csv hydra.run.dir=OUT"
    done = run_cli(env_root, *page_command(command, OUT=out)[2:])
    assert done.returncode == 0, done.describe()
    results = read(out / "results.json")
    # The default engine on a CPU trainer, under DDP too: ONNX Runtime on the cached export (the same file in
    # every rank), each image scored once (test_onnx_eval.py gives ONNX Runtime its own file, no DDP there).
    assert results["throughput"]["devices"] == 2 and results["inference"]["backend"] == "onnxruntime"
    assert results["inference"]["onnx"]["sha256"] == single_xs["inference"]["onnx"]["sha256"]
    assert_same_figures(results, single_xs, tolerance_mm=1e-4)
    assert len(results["per_joint"]) == 17
    # Tracked once, by rank 0, into the folder the launching process named: one CSV file with one row.
    logged, folder = csv_logged(out)
    assert logged == expected_metrics(results) and folder == out / "csv" / "version_0"
    assert yaml.safe_load((folder / "hparams.yaml").read_text())["trainer"]["strategy"] == "ddp"
    predictions = read(out / "predictions.json")
    assert [p["image_id"] for p in predictions] == [p["image_id"] for p in read(single_xs_dir / "predictions.json")]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["csv", "predictions.json", "report.html", "results.json", "run_eval.log", "worst_cases.png"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_defaults_match_cpu(env_root, single_xs):
    """Default settings (float32, TF32 off) give the CPU's totals on a GPU, to 0.01 mm."""
    out = env_root / "gpu_xs"
    done = run_cli(env_root, *XS_P1, "trainer=gpu", f"hydra.run.dir={out}")
    assert done.returncode == 0, done.describe()
    results = read(out / "results.json")
    assert results["inference"]["tf32"] is False and results["throughput"]["device"] == "cuda"
    for name in METRICS:
        assert abs(results["metrics"][name] - single_xs["metrics"][name]) < 0.01, name


def test_four_variant_sweep_reports_and_reuses_crops(demo_sweep_p1):
    sweep = demo_sweep_p1
    aggregate = read(sweep / "benchmark_results.json")
    assert [e["variant"] for e in aggregate["entries"]] == ["XS", "S", "M", "L"]
    assert all(e["status"] == "ok" for e in aggregate["entries"])
    caches = [e["results"]["crop_cache"] for e in aggregate["entries"]]
    count = aggregate["entries"][0]["results"]["num_samples"]
    assert count == 23
    # The first job decodes every JPEG; the later ones read every crop from the cache.
    assert caches[0] == {"hits": 0, "misses": count}
    assert all(c == {"hits": count, "misses": 0} for c in caches[1:])
    report = (sweep / "BENCHMARK_REPORT.md").read_text()
    assert all(v in report for v in ("XS", "S", "M", "L")) and "SYNTHETIC" in report.upper()
    png = (sweep / "benchmark_comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
    # Different synthetic weights give different errors: the report is not one number four times.
    assert len({round(e["results"]["metrics"]["pa_mpjpe"], 3) for e in aggregate["entries"]}) == 4


def test_sweep_with_a_failing_job_reports_it_and_exits_nonzero(env_root, monkeypatch):
    sweep = env_root / "sweep_fail"
    xs_file = env_root / "outputs" / "sample" / "checkpoints" / "ConvNeXtPose_XS.tar"
    done = run_in_process(monkeypatch, env_root, "-m", "experiment=demo", "variant=XS,S", f"ckpt_path={xs_file}", "data.protocol=1",
                          f"hydra.sweep.dir={sweep}", shared_exports=True)  # fmt: skip
    assert done.returncode == 1, done.describe()
    entries = {e["variant"]: e for e in read(sweep / "benchmark_results.json")["entries"]}
    assert entries["XS"]["status"] == "ok"
    assert entries["S"]["status"] == "failed"
    assert "holds an XS-shaped network" in entries["S"]["error"]
    assert "holds an XS-shaped network" in (sweep / "BENCHMARK_REPORT.md").read_text()
    assert not (sweep / "1_S" / "results.json").exists()


@pytest.mark.parametrize("gt_boxes", [True, False])
def test_oracle_is_below_one_millimetre(env_root, gt_boxes, monkeypatch):
    out = env_root / f"oracle_{gt_boxes}"
    done = run_in_process(monkeypatch, env_root, "experiment=demo", "oracle=true", f"data.use_gt_info={str(gt_boxes).lower()}",
                          f"hydra.run.dir={out}", shared_exports=True)  # fmt: skip
    assert done.returncode == 0, done.describe()
    results = read(out / "results.json")
    assert results["oracle"] is True
    assert results["num_samples"] == (49 if gt_boxes else 50)
    assert all(results["metrics"][m] < 1.0 for m in ("mpjpe", "pa_mpjpe", "pa_mpjpe_scaled", "n_mpjpe"))
    assert results["metrics"]["pck3d_150"] == 100.0  # every joint within 150 mm
    assert "oracle check: PASS" in done.stdout, done.describe()


def test_killed_run_leaves_nothing_and_rerun_completes(env_root, single_xs, monkeypatch):
    out = env_root / "killed"
    cache = env_root / "kill_cache"
    args = (*XS_P1, "data.batch_size=2", "data.num_workers=0", f"paths.cache_dir={cache}", f"hydra.run.dir={out}")
    process = start_cli(env_root, *args, capture=False)
    # Kill once the crop store exists: the test set is read and checked, inference is starting.
    wait_for(lambda: bool(list((cache / "crops").rglob("rows.u8"))), process, "the crop store", poll_s=0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "results.json").exists() and not (out / "predictions.json").exists()
    assert not [p for p in out.rglob("*.tmp")]
    done = run_in_process(monkeypatch, env_root, *args, shared_exports=True)
    assert done.returncode == 0, done.describe()
    # Batch 2 here, 16 there: channels-last convolutions may round differently per batch size, so the
    # float-rounding bound (1e-3 mm, the same as for devices), not bit equality.
    assert_same_figures(read(out / "results.json"), single_xs, tolerance_mm=1e-3)
    assert len(read(out / "predictions.json")) == 23


def test_bench_reports_every_throughput(env_root):
    done = run_cli(env_root, "experiment=demo", "variant=XS", "data.protocol=1", "bench.images=8", "bench.repeats=1", module="convnextpose_eval.bench")
    assert done.returncode == 0, done.describe()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rates = ("eager_fp32_ips", "inference_ips", "pipeline_ips", "data_ips", "onnx_ips", "onnx_pipeline_ips")
    assert {"variant", "device", "batch_size", *rates} <= set(result)
    assert result["variant"] == "XS" and result["num_images"] == 8
    assert all(result[k] > 0 for k in rates)
    assert result["onnx_vs_inference"] == pytest.approx(result["onnx_ips"] / result["inference_ips"])
    assert result["onnx_pipeline_vs_onnx"] == pytest.approx(result["onnx_pipeline_ips"] / result["onnx_ips"])
    assert result["onnx_pipeline_vs_eager"] == pytest.approx(result["onnx_pipeline_ips"] / result["eager_fp32_ips"])
    assert result["onnx_source_verified"] is True
    # 8 images are one batch, fewer than the two-batch minimum of the cross-check: all of (f) is checked too.
    assert result["onnx_pipeline_images_cross_checked"] == 8 and "8 of 8 images also run through" in done.stdout
    # Progress on stderr: each phase, with the images done.
    assert "bench: (a) eager fp32: 8/8 images" in done.stderr and "bench: (f) ONNX Runtime pipeline: 8/8 images" in done.stderr
    # The fast path, and ONNX Runtime on the exported network, compute the same function as the plain one.
    assert result["max_coord_diff_vs_eager"] < 1e-3
    assert result["onnx_max_coord_diff"] < 1e-3


def test_bench_takes_its_repeats_in_rounds_so_a_slow_spell_hits_every_measurement():
    from convnextpose_eval.cli.bench import _rounds

    calls = []
    steps = {name: (lambda name=name: calls.append(name) or len(calls)) for name in ("a", "b", "e")}
    assert _rounds(steps, 3) == {"a": [1, 4, 7], "b": [2, 5, 8], "e": [3, 6, 9]}
    assert calls == ["a", "b", "e"] * 3


def test_gpu_trainer_without_a_gpu_fails_in_one_line(env_root, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = env_root / "no_gpu"
    done = run_in_process(monkeypatch, env_root, *XS_P1, "trainer=gpu", f"hydra.run.dir={out}", shared_exports=True)
    assert done.returncode == 2, done.describe()
    assert done.last_line.startswith("error: trainer.accelerator=gpu: no CUDA GPU is visible") and "Traceback" not in done.stderr
    assert len(done.error_lines) == 1, done.describe()
    assert not (out / "results.json").exists()


CORRUPT_S9 = ("s_09_act_05_subact_02", "s_09_act_10_subact_02", "s_09_act_13_subact_01")  # docs/protocol.md, "The test set"


def test_skip_corrupt_s9_drops_exactly_those_sequences(env_root, monkeypatch):
    """The dropped images are those sequences' test frames; the total is the mean over the remaining images."""
    import numpy as np

    from convnextpose_eval.data.h36m import load_test_index

    runs = {}
    for skip in (False, True):
        out = env_root / f"skip_{skip}"
        # Which images are scored is the point, not how: no flip test (half the network's work).
        done = run_in_process(monkeypatch, env_root, "experiment=demo", "variant=XS", f"data.skip_corrupt_s9={str(skip).lower()}",
                              "flip_test=false", f"hydra.run.dir={out}", shared_exports=True)  # fmt: skip
        assert done.returncode == 0, done.describe()
        runs[skip] = (read(out / "results.json"), read(out / "predictions.json"))
    index = load_test_index(env_root / "outputs" / "sample", 2, True)
    sequence = {int(i): str(name).split("/")[0].split("_ca_")[0] for i, name in zip(index.image_id, index.file_name)}
    kept = {p["image_id"] for p in runs[True][1]}
    dropped = {p["image_id"] for p in runs[False][1]} - kept
    assert dropped and {sequence[i] for i in dropped} <= set(CORRUPT_S9) and len({sequence[i] for i in dropped}) >= 2
    assert not {sequence[i] for i in kept} & set(CORRUPT_S9)
    assert runs[True][0]["num_samples"] == len(kept) == runs[False][0]["num_samples"] - len(dropped)
    assert runs[True][0]["dropped_sequences"] == list(CORRUPT_S9) and runs[False][0]["dropped_sequences"] == []
    # MPJPE per remaining image, recomputed here from the predictions and the index's ground truth.
    truth = {int(i): joints[:17] - joints[:1] for i, joints in zip(index.image_id, index.joint_cam)}
    errors = [np.linalg.norm(np.asarray(p["joint_cam"]) - truth[p["image_id"]], axis=1).mean() for p in runs[True][1]]
    assert abs(runs[True][0]["metrics"]["mpjpe"] - float(np.mean(errors))) < 1e-6
