"""Run tracking read back with MLflow's own client on the demo sweep (one run per job), compared with results.json;
bad tracking settings. TensorBoard (a single run) and CSV (under DDP) are read back in test_evaluate.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from tracking_readers import expected_metrics, read_results

JOBS = ("0_XS", "1_S", "2_M", "3_L")


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


def test_an_unreachable_mlflow_store_is_refused_in_one_line(tmp_path):
    from convnextpose_eval.common.errors import ConfigError
    from convnextpose_eval.config.schema import LoggerConfig, LoggerKind
    from convnextpose_eval.run.tracking import build_logger

    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    uri = f"sqlite:///{blocked}/store/mlflow.db"
    with pytest.raises(ConfigError) as refused:
        build_logger(LoggerConfig(name=LoggerKind.mlflow, tracking_uri=uri), tmp_path / "run")
    message = str(refused.value)
    assert message.startswith(f"logger.tracking_uri={uri}: MLflow cannot open it") and "\n" not in message


def test_a_missing_tracking_library_is_one_line_with_its_install(monkeypatch, tmp_path):
    import importlib.util

    from convnextpose_eval.common.errors import ConfigError
    from convnextpose_eval.config.schema import LoggerConfig, LoggerKind
    from convnextpose_eval.run.tracking import build_logger

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
    from convnextpose_eval.common.errors import ConfigError
    from convnextpose_eval.config.schema import LoggerConfig, LoggerKind
    from convnextpose_eval.run.tracking import build_logger

    with pytest.raises(ConfigError, match=f"^{message}"):
        build_logger(LoggerConfig(**{**fields, "name": LoggerKind[fields["name"]]}), tmp_path)
    assert not list(tmp_path.iterdir())
