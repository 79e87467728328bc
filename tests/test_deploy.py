"""The deploy matrix (docs/deployment.md) on the synthetic sample: one shared run of XS builds and scores every
CPU format; the other tests read its files, or run small pieces (calibration reader, a package made missing)."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from cli import PROJECT_ROOT, cli_env, run_cli
from onnx import TensorProto, helper

from convnextpose_eval.common.errors import DataError
from convnextpose_eval.deploy.calibration import read_calibration_set

CPU_FORMATS = ("pytorch-fp32", "onnx-fp32", "onnx-fp16", "onnx-int8", "tflite-fp32", "tflite-int8", "openvino-fp32", "openvino-int8")
GPU_FORMATS = ("ort-cuda-fp32", "ort-cuda-fp16", "tensorrt-fp16", "tensorrt-int8")
FLOAT32 = ("onnx-fp32", "tflite-fp32", "openvino-fp32")
SCHEMA = PROJECT_ROOT / "src" / "convnextpose_eval" / "results" / "schemas" / "deploy_results.schema.json"
# Kept small: the suite's time goal. Timing figures from so few runs mean nothing; the test checks their bookkeeping.
SMALL = ("deploy.images=6", "deploy.calibration_images=4", "deploy.runs=7", "deploy.warmup=1", "deploy.throughput_batches=1",
         "deploy.bootstrap_resamples=300", "data.batch_size=4")  # fmt: skip


def _torchscript_export(checkpoint: Path, path: Path) -> None:
    """A user's own ONNX file, made the way another project would: the TorchScript exporter, no metadata."""
    from convnextpose_eval.checkpoint.architecture import load_weights
    from convnextpose_eval.checkpoint.reader import read_checkpoint
    from convnextpose_eval.config.compose import compose_config, variant_table
    from convnextpose_eval.network import ArchSpec, ConvNeXtPose

    spec = ArchSpec.from_variant(variant_table(compose_config(["variant=XS"]))["XS"])
    network = ConvNeXtPose(spec)
    load_weights(network, read_checkpoint(checkpoint))
    torch.onnx.export(network.eval(), (torch.zeros(1, 3, 256, 256),), str(path), input_names=["images"], output_names=["coords"],
                      dynamic_axes={"images": {0: "batch"}, "coords": {0: "batch"}}, opset_version=17, dynamo=False)  # fmt: skip


def _custom_op_file(path: Path) -> None:
    """A file whose runtime lacks an operator: one node of a custom domain ONNX Runtime does not know."""
    node = helper.make_node("PoseMagic", ["images"], ["coords"], domain="com.example.custom")
    graph = helper.make_graph([node], "custom", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["b", 3, 256, 256])],
                              [helper.make_tensor_value_info("coords", TensorProto.FLOAT, ["b", 18, 3])])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example.custom", 1)])
    onnx.save(model, str(path))


@pytest.fixture(scope="session")
def deploy_run(eval_root_with_sample, synthetic_sample, tmp_path_factory):
    """One matrix of XS on the sample: every format, plus two users' files (one good, one with a custom op)."""
    root = eval_root_with_sample("deploy")
    users = tmp_path_factory.mktemp("user_files")
    _torchscript_export(synthetic_sample / "checkpoints" / "ConvNeXtPose_XS.tar", users / "mine.onnx")
    _custom_op_file(users / "custom_op.onnx")
    out = root / "deploy_xs"
    done = run_cli(root, "deploy", "variant=XS", "data=sample", *SMALL, f"deploy.files=[{users / 'mine.onnx'},{users / 'custom_op.onnx'}]",
                   f"hydra.run.dir={out}", module="convnextpose_eval")  # fmt: skip
    assert done.returncode == 0, done.describe()
    return out, done


@pytest.fixture(scope="session")
def deploy_results(deploy_run) -> dict:
    return json.loads((deploy_run[0] / "deploy_results.json").read_text())


def _rows(results: dict) -> dict[str, dict]:
    return {row["format"]: row for row in results["formats"]}


@pytest.mark.slow
@pytest.mark.required_in_ci
def test_every_cpu_format_is_built_and_scored_on_the_same_images(deploy_results):
    import importlib.util

    missing = [name for name in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer", "openvino") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f'the deploy extra is not installed (no {", ".join(missing)}): pip install -e ".[deploy]"')
    rows = _rows(deploy_results)
    assert list(rows)[: len(CPU_FORMATS) + len(GPU_FORMATS)] == [*CPU_FORMATS, *GPU_FORMATS]
    for name in CPU_FORMATS:
        row = rows[name]
        assert row["status"] == "ok", (name, row["reason"])
        assert row["size_bytes"] > 100_000 and all(math.isfinite(v) for v in row["metrics"].values())
        assert row["throughput_ips"] > 0 and row["latency_ms"]["p50"] > 0
    assert deploy_results["num_samples"] == 6 and len(deploy_results["image_ids"]) == 6
    # Float32 formats reproduce the checkpoint (the export gate is 1e-3 heatmap units; 2000 mm / 32 bins = 62.5 mm a unit).
    for name in FLOAT32:
        assert rows[name]["check"]["max_coord_diff"] < 1e-3, name
        assert abs(rows[name]["difference"]["mpjpe"]["value"]) < 0.1, name
    # Quantized files are smaller: int8 weights take a quarter of float32's bytes, float16 half.
    assert rows["onnx-int8"]["size_bytes"] < 0.4 * rows["onnx-fp32"]["size_bytes"]
    assert rows["onnx-fp16"]["size_bytes"] < 0.6 * rows["onnx-fp32"]["size_bytes"]
    assert rows["tflite-int8"]["size_bytes"] < 0.4 * rows["tflite-fp32"]["size_bytes"]
    # int8 really changed the numbers (a quantizer that did nothing would read 0 here).
    assert rows["onnx-int8"]["check"]["max_coord_diff"] > 1e-3


@pytest.mark.slow
def test_gpu_rows_are_skipped_on_a_cpu_machine_with_the_reason(deploy_results):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the GPU rows run here")
    for name in GPU_FORMATS:
        row = _rows(deploy_results)[name]
        assert row["status"] == "skipped" and "no CUDA GPU" in row["reason"] and row["metrics"] is None


@pytest.mark.slow
def test_differences_are_paired_against_pytorch_with_an_interval(deploy_results):
    rows = _rows(deploy_results)
    reference = rows["pytorch-fp32"]["metrics"]
    for name in CPU_FORMATS:
        row = rows[name]
        for metric in ("mpjpe", "pa_mpjpe"):
            block = row["difference"][metric]
            # The mean of paired differences is the difference of the means: computed here from the two totals.
            assert block["value"] == pytest.approx(row["metrics"][metric] - reference[metric], abs=1e-9)
            low, high = block["ci95"]
            assert low <= block["value"] + 1e-9 and block["value"] - 1e-9 <= high
        assert len(row["joints_moved_most"]) == 3
    assert rows["pytorch-fp32"]["difference"]["mpjpe"] == {"value": 0.0, "ci95": [0.0, 0.0]}


@pytest.mark.slow
def test_latency_percentiles_come_from_the_recorded_timings(deploy_results):
    for row in deploy_results["formats"]:
        if row["status"] != "ok":
            continue
        latency = row["latency_ms"]
        timings = sorted(latency["timings"])
        assert len(timings) == latency["runs"] == 7 and latency["batch_size"] == 1 and latency["warmup"] == 1
        for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
            # Linear interpolation between the order statistics at rank q * (n - 1), written out by hand.
            rank = q * (len(timings) - 1)
            below = timings[math.floor(rank)]
            above = timings[math.ceil(rank)]
            assert latency[name] == pytest.approx(below + (above - below) * (rank - math.floor(rank)))
        assert latency["threads"] == deploy_results["timing"]["threads"]


@pytest.mark.slow
def test_calibration_reads_only_training_subjects(deploy_results, synthetic_sample):
    calibration = deploy_results["calibration"]
    assert calibration["subjects"] == ["S1"] and calibration["protocol"] == 2
    s1 = json.loads((synthetic_sample / "annotations" / "Human36M_subject1_data.json").read_text())
    s1_ids = {image["id"] for image in s1["images"]}
    assert calibration["image_ids"] and set(calibration["image_ids"]) <= s1_ids
    assert not set(calibration["image_ids"]) & set(deploy_results["image_ids"])
    assert all(name.startswith("s_01_") for name in calibration["file_names"])


def test_calibration_refuses_a_planted_test_subject_image(copy_sample_data, tmp_path):
    root = copy_sample_data(tmp_path / "sample")
    s1_path = root / "annotations" / "Human36M_subject1_data.json"
    s11 = json.loads((root / "annotations" / "Human36M_subject11_data.json").read_text())
    planted = dict(s11["images"][0])
    # Listed in S1's file, labelled S1 even: its file name still says it is S11's.
    s1 = json.loads(s1_path.read_text())
    s1["images"].append({**planted, "subject": 1})
    s1["annotations"].append({**s11["annotations"][0], "id": 10**6})
    s1_path.write_text(json.dumps(s1))
    with pytest.raises(DataError) as refused:
        read_calibration_set(root, protocol=2, count=4, input_size=256)
    message = str(refused.value)
    assert str(s1_path) in message and "S11" in message and "test subject" in message and "\n" not in message
    # And labelled with its own subject.
    s1["images"][-1]["subject"] = 11
    s1_path.write_text(json.dumps(s1))
    with pytest.raises(DataError, match="S11, a test subject of protocol 2"):
        read_calibration_set(root, protocol=2, count=4, input_size=256)


def test_calibration_of_protocol_1_may_read_s9_but_protocol_2_may_not(copy_sample_data, tmp_path):
    root = copy_sample_data(tmp_path / "sample")
    # S9 trains protocol 1: its images are fair calibration there, and they are a test subject of protocol 2.
    s9 = root / "annotations" / "Human36M_subject9_data.json"
    found = read_calibration_set(root, protocol=1, count=50, input_size=256)
    assert set(found.subjects) == {1, 9}
    s1 = json.loads((root / "annotations" / "Human36M_subject1_data.json").read_text())
    s1["images"].append(dict(json.loads(s9.read_text())["images"][0]))
    (root / "annotations" / "Human36M_subject1_data.json").write_text(json.dumps(s1))
    with pytest.raises(DataError, match="S9, a test subject of protocol 2"):
        read_calibration_set(root, protocol=2, count=4, input_size=256)


@pytest.mark.slow
def test_user_files_are_scored_or_fail_in_one_line(deploy_results):
    rows = _rows(deploy_results)
    mine = rows["user:mine.onnx"]
    assert mine["status"] == "ok"
    # Another exporter's file of the same checkpoint: proven to compute the same coordinates, but it records no source.
    assert mine["proven"]["max_coord_diff_vs_checkpoint"] < 1e-3
    assert mine["proven"]["recorded_checkpoint_sha256"] is None and mine["proven"]["recorded_matches_checkpoint"] is None
    assert abs(mine["difference"]["mpjpe"]["value"]) < 0.1
    custom = rows["user:custom_op.onnx"]
    assert custom["status"] == "failed" and "PoseMagic" in custom["reason"] and "\n" not in custom["reason"]
    assert custom["metrics"] is None


@pytest.mark.slow
def test_results_file_matches_its_schema_and_the_report_carries_the_label(deploy_run, deploy_results):
    import jsonschema

    jsonschema.validate(deploy_results, json.loads(SCHEMA.read_text()))
    assert deploy_results["tool"] == "convnextpose-eval" and deploy_results["synthetic"] is True
    assert "SYNTHETIC" in deploy_results["label"]
    out, done = deploy_run
    report = (out / "DEPLOY_REPORT.md").read_text()
    assert deploy_results["label"] in report and "`tflite-int8`" in report and "S1" in report
    png = (out / "deploy_tradeoff.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24])[0] > 400
    assert deploy_results["label"] in done.stdout


def test_schema_refuses_a_row_without_its_reason():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    row = {"format": "tflite-fp32", "status": "skipped", "reason": None, "size_bytes": None, "metrics": None,
           "difference": None, "latency_ms": None, "throughput_ips": None}  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(row, {**schema, "$ref": "#/$defs/format"})


_BLOCK = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Blocked())
from convnextpose_eval.cli.command import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_format_whose_package_is_missing_is_skipped_naming_the_pip_install(eval_root_with_sample, tmp_path):
    root = eval_root_with_sample("deploy_missing")
    out = tmp_path / "out"
    script = _BLOCK.format(blocked={"litert_torch", "ai_edge_litert"})
    command = [sys.executable, "-c", script, "deploy", "variant=XS", "data=sample", *SMALL, "deploy.formats=[tflite-fp32,tflite-int8]",
               f"hydra.run.dir={out}"]  # fmt: skip
    done = subprocess.run(command, check=False, cwd=PROJECT_ROOT, env=cli_env(root), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(json.loads((out / "deploy_results.json").read_text()))
    assert list(rows) == ["pytorch-fp32", "tflite-fp32", "tflite-int8"]
    assert rows["pytorch-fp32"]["status"] == "ok"
    for name in ("tflite-fp32", "tflite-int8"):
        assert rows[name]["status"] == "skipped", rows[name]
        assert 'pip install -e ".[deploy]"' in rows[name]["reason"] and "litert_torch" in rows[name]["reason"]


@pytest.mark.slow
def test_bad_inputs_are_one_line_and_write_nothing(eval_root_with_sample, tmp_path):
    root = eval_root_with_sample("deploy_bad")
    for override, expected in ((f"deploy.files=[{tmp_path / 'absent.onnx'}]", "absent.onnx: no such file"),
                               ("deploy.formats=[onnx-fp64]", "unknown format onnx-fp64"),
                               ("deploy.images=1", "deploy.images=1")):  # fmt: skip
        out = tmp_path / "out"
        done = run_cli(root, "deploy", "variant=XS", "data=sample", override, f"hydra.run.dir={out}", module="convnextpose_eval")
        assert done.returncode == 2 and len(done.error_lines) == 1 and expected in done.error_lines[0], done.describe()
        assert not out.exists()


@pytest.mark.slow
def test_the_help_lists_the_deploy_settings(eval_root_with_sample):
    done = run_cli(None, "deploy", "--help", module="convnextpose_eval")
    assert done.returncode == 0
    for key in ("deploy.formats", "deploy.files", "deploy.calibration_images", "deploy.runs", "deploy.threads"):
        assert key in done.stdout, key
