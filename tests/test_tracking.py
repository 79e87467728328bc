"""Run tracking read back with each library's own reader: MLflow's client on the demo sweep (one run per job),
TensorBoard's event reader on a run of its own; both compared with results.json. CSV under DDP: test_evaluate.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from cli import run_cli
from PIL import Image
from tracking_readers import expected_metrics, read_results

from convnextpose_eval.report.paper import SYNTHETIC_WARNING

JOBS = ("0_XS", "1_S", "2_M", "3_L")


def png_pixels(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.mark.slow
def test_mlflow_logs_one_run_per_sweep_job(demo_sweep_p1, tmp_path):
    from mlflow.tracking import MlflowClient

    store = demo_sweep_p1 / "mlflow" / "mlflow.db"
    assert store.is_file(), "the sweep's jobs share one store in the sweep folder"
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("convnextpose-eval")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == list(JOBS)
    for job in JOBS:
        run, results = runs[job], read_results(demo_sweep_p1 / job)
        assert run.info.status == "FINISHED"
        expected = expected_metrics(results)
        assert {"test/mpjpe", "test/per_action/Directions/mpjpe", "test/per_subject/S11/pa_mpjpe", "test/per_joint/L_Wrist/mpjpe"} <= expected.keys()
        assert run.data.metrics == expected, job
        params = run.data.params
        assert (params["variant/name"], params["data/protocol"], params["logger/name"]) == (results["variant"], "1", "mlflow")
        assert params["run/checkpoint_sha256"] == results["checkpoint"]["sha256"]
        assert run.data.tags["variant"] == results["variant"] and run.data.tags["synthetic"] == "true"
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["results.json", "worst_cases.png"]
        for name in ("results.json", "worst_cases.png"):
            copy = Path(client.download_artifacts(run.info.run_id, name, str(tmp_path / job)))
            assert copy.read_bytes() == (demo_sweep_p1 / job / name).read_bytes(), (job, name)


@pytest.mark.slow
def test_tensorboard_logs_scalars_hyperparameters_and_the_picture(eval_root_with_sample):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    root = eval_root_with_sample("tensorboard")
    run_dir = root / "run"
    done = run_cli(root, "experiment=demo", "variant=XS", "data.protocol=1", "flip_test=false", "logger=tensorboard", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.describe()
    results = read_results(run_dir)
    logs = run_dir / "tensorboard" / "version_0"
    assert f"tracking: tensorboard -> {logs}" in done.stdout
    events = EventAccumulator(str(logs), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    expected = expected_metrics(results)
    assert sorted(events.Tags()["scalars"]) == sorted(expected)
    for name, value in expected.items():
        (scalar,) = events.Scalars(name)
        # TensorBoard stores scalars as float32.
        assert scalar.value == pytest.approx(value, rel=1e-6, abs=1e-6), name
    (picture,) = events.Images("worst_cases")
    stored = (run_dir / "worst_cases.png").read_bytes()
    assert np.array_equal(png_pixels(picture.encoded_image_string), png_pixels(stored))
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["variant/name"].string_value == "XS" and hparams["data/protocol"].number_value == 1
    assert hparams["run/checkpoint_sha256"].string_value == results["checkpoint"]["sha256"]
    # The picture names what it shows (also in its PNG text fields).
    description = Image.open(run_dir / "worst_cases.png").text["Description"]
    assert "ConvNeXtPose-XS" in description and "ConvNeXtPose_XS.tar" in description and SYNTHETIC_WARNING in description
    assert results["checkpoint"]["sha256"][:12] in description


def test_an_unreachable_mlflow_store_is_refused_in_one_line(tmp_path):
    from convnextpose_eval.config.schema import LoggerConfig, LoggerKind
    from convnextpose_eval.errors import ConfigError
    from convnextpose_eval.tracking import build_logger

    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    uri = f"sqlite:///{blocked}/store/mlflow.db"
    with pytest.raises(ConfigError) as refused:
        build_logger(LoggerConfig(name=LoggerKind.mlflow, tracking_uri=uri), tmp_path / "run")
    message = str(refused.value)
    assert message.startswith(f"logger.tracking_uri={uri}: MLflow cannot open it") and "\n" not in message


def test_a_missing_tracking_library_is_one_line_with_its_install(monkeypatch, tmp_path):
    import importlib.util

    from convnextpose_eval.config.schema import LoggerConfig, LoggerKind
    from convnextpose_eval.errors import ConfigError
    from convnextpose_eval.tracking import build_logger

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^logger=tensorboard needs tensorboard, which is not installed; run: pip install tensorboard$"):
        build_logger(LoggerConfig(name=LoggerKind.tensorboard), tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "csv", "tracking_uri": "http://localhost:5000"}, "logger.tracking_uri is MLflow's setting, but logger=csv"),
        ({"name": "mlflow", "save_dir": Path("elsewhere")}, "logger.save_dir is for logger=csv or tensorboard, not logger=mlflow"),
    ],
)
def test_a_setting_of_another_logger_is_refused(tmp_path, fields, message):
    from convnextpose_eval.config.schema import LoggerConfig, LoggerKind
    from convnextpose_eval.errors import ConfigError
    from convnextpose_eval.tracking import build_logger

    with pytest.raises(ConfigError, match=f"^{message}"):
        build_logger(LoggerConfig(**{**fields, "name": LoggerKind[fields["name"]]}), tmp_path)
    assert not list(tmp_path.iterdir())
