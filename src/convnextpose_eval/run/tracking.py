"""Run tracking through Lightning's own loggers (``logger=csv|tensorboard|mlflow``).

The trainer gets the logger; :class:`RunTracker`, a callback placed after the results writer, sends it the
run's config, every figure of results.json (under a name that contains its results.json key) and the
pictures, once, from global rank 0, after the files are written. It is made before the checkpoint and the
data are read, so a store that cannot be opened stops the run first. The tracking libraries are imported only
when their logger is asked for, so the command line starts as fast without them.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.loggers import Logger

from ..common.atomic import errno_text
from ..common.errors import ConfigError, EvalError, one_line
from ..config.compose import as_plain
from ..config.schema import EvalConfig, LoggerConfig, LoggerKind
from ..results.files import MLFLOW_STORE_DIR, RESULTS_FILE, WORST_CASES_PNG
from ..results.writer import ResultsWriter

log = logging.getLogger(__name__)

METRIC_PREFIX = "test"
# The default MLflow store, in MLFLOW_STORE_DIR: a SQLite file and the artifacts beside it (MLflow's recommended
# local store; its plain-folder store is in maintenance mode and refused by MLflow 3 without an opt-in).
MLFLOW_DATABASE = "mlflow.db"
MLFLOW_ARTIFACTS = "artifacts"
# What each logger imports, and the install line for it (the ``tracking`` extra holds the same).
_INSTALL = {
    LoggerKind.tensorboard: (("tensorboard",), "pip install tensorboard"),
    LoggerKind.mlflow: (("mlflow",), "pip install mlflow-skinny sqlalchemy alembic"),
}
# A SQLite store (the default) also needs these.
_SQLITE_MODULES = ("sqlalchemy", "alembic")
# Blocks of results.json whose entries each hold figures: {key: {metric: value}}.
_GROUPED = ("per_action", "per_subject", "per_joint")


def tracked_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Every figure of results.json, named after its key: ``metrics.mpjpe`` -> ``test/mpjpe``,
    ``per_action.Directions.mpjpe`` -> ``test/per_action/Directions/mpjpe``; empty groups (null) are left out."""
    named: dict[str, Any] = {f"{METRIC_PREFIX}/num_samples": results["num_samples"]}
    named.update({f"{METRIC_PREFIX}/{name}": value for name, value in results["metrics"].items()})
    named.update({f"{METRIC_PREFIX}/action_average/{name}": value for name, value in results["action_average"].items()})
    for group in _GROUPED:
        for key, block in results[group].items():
            named.update({f"{METRIC_PREFIX}/{group}/{key}/{name}": value for name, value in block.items()})
    comparison = results.get("comparison") or {}
    if comparison.get("diff") is not None:
        named[f"{METRIC_PREFIX}/comparison/diff"] = comparison["diff"]
    throughput = results.get("throughput") or {}
    if throughput.get("images_per_s") is not None:
        named[f"{METRIC_PREFIX}/throughput/images_per_s"] = throughput["images_per_s"]
    return {name: float(value) for name, value in named.items() if value is not None}


def tracked_params(config: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The run's config (without ``released``, the table of all four variants, which is the same for every run)
    and, under ``run``, what the results say the run was: variant, weights, backend, data."""
    params = {key: value for key, value in config.items() if key != "released"}
    checkpoint = results.get("checkpoint") or {}
    onnx = results["inference"].get("onnx") or {}
    params["run"] = {
        "variant": results["variant"],
        "protocol": results["protocol"],
        "num_samples": results["num_samples"],
        "synthetic": results["synthetic"],
        "oracle": results["oracle"],
        "backend": results["inference"]["backend"],
        "checkpoint_path": checkpoint.get("path"),
        "checkpoint_sha256": checkpoint.get("sha256"),
        "onnx_sha256": onnx.get("sha256"),
        "data_root": results["data_root"],
    }
    return params


def _strings(value: Any) -> Any:
    """Paths as strings, so YAML and every logger's parameter writer take the config."""
    if isinstance(value, dict):
        return {str(key): _strings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strings(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def _require(kind: LoggerKind, extra: Sequence[str] = ()) -> None:
    """The libraries a logger needs, or one line saying how to install them."""
    import importlib.util

    modules, install = _INSTALL[kind]
    missing = [module for module in (*modules, *extra) if importlib.util.find_spec(module) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"logger={kind.value} needs {', '.join(missing)}, which {verb} not installed; run: {install}")


def _sweep_folder() -> Path | None:
    """The sweep folder when this process runs a job of a Hydra ``-m`` sweep (its jobs share one MLflow store)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return Path(str(hydra_cfg.sweep.dir)) if hydra_cfg.mode == RunMode.MULTIRUN else None


def default_mlflow_store(output_dir: Path) -> tuple[str, str]:
    """(tracking URI, artifact location) of the local store: in the sweep folder for a sweep's jobs, else the run's."""
    folder = (_sweep_folder() or output_dir).resolve() / MLFLOW_STORE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / MLFLOW_DATABASE}", (folder / MLFLOW_ARTIFACTS).as_uri()


def build_logger(settings: LoggerConfig, output_dir: Path) -> Logger | None:
    """The Lightning logger ``settings`` ask for, its version fixed here so spawned ranks agree on its folder."""
    kind = settings.name
    if settings.tracking_uri is not None and kind is not LoggerKind.mlflow:
        raise ConfigError(f"logger.tracking_uri is MLflow's setting, but logger={kind.value}; use logger=mlflow or drop it")
    if settings.save_dir is not None and kind not in (LoggerKind.csv, LoggerKind.tensorboard):
        raise ConfigError(f"logger.save_dir is for logger=csv or tensorboard, not logger={kind.value}"
                          + ("; MLflow's store is set with logger.tracking_uri" if kind is LoggerKind.mlflow else ""))  # fmt: skip
    if kind is LoggerKind.none:
        return None
    if settings.connect_timeout_s <= 0:
        raise ConfigError(f"logger.connect_timeout_s={settings.connect_timeout_s}: must be a positive number of seconds")
    if kind is not LoggerKind.csv:
        _require(kind)
    run_name = settings.run_name or output_dir.name
    save_dir = str(settings.save_dir or output_dir)
    if settings.save_dir is not None:
        check_writable_folder(settings.save_dir, "logger.save_dir")
    if kind is LoggerKind.csv:
        from pytorch_lightning.loggers import CSVLogger

        logger: Logger = CSVLogger(save_dir, name="csv")
        where = str(logger.log_dir)
    elif kind is LoggerKind.tensorboard:
        from pytorch_lightning.loggers import TensorBoardLogger

        logger = TensorBoardLogger(save_dir, name="tensorboard", default_hp_metric=False)
        where = str(logger.log_dir)
    else:
        from pytorch_lightning.loggers import MLFlowLogger

        # MLflow's own INFO lines (database set-up) would interleave with the results table, here and in spawned ranks.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        uri = settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        if uri is not None and uri.split(":", 1)[0].lower() in ("http", "https"):
            bound_mlflow_requests(settings.connect_timeout_s)
            if rank_zero_only.rank == 0:
                probe_tracking_server(uri, settings.connect_timeout_s)
        if uri is None or uri.startswith("sqlite:"):
            _require(kind, _SQLITE_MODULES)
        artifacts = None
        if uri is None:
            uri, artifacts = default_mlflow_store(output_dir)
        if rank_zero_only.rank == 0:  # ranks started by torchrun or srun each get here; only rank 0 logs
            _open_experiment(uri, settings.experiment_name, artifacts)
        logger = MLFlowLogger(experiment_name=settings.experiment_name, run_name=run_name, tracking_uri=uri,
                              artifact_location=artifacts)  # fmt: skip
        where = f"{uri}, experiment {settings.experiment_name}, run {run_name}"
    log.info(f"tracking: {kind.value} -> {where}")
    return logger


# MLflow's REST client retries a failed request up to 7 times with growing pauses and waits 120 s for each
# answer (its defaults); bounded here unless the user set them.
_MLFLOW_RETRIES = "2"
_MLFLOW_BACKOFF_FACTOR = "1"


def bound_mlflow_requests(timeout_s: float) -> None:
    """MLflow's own requests to a tracking server: at most ``timeout_s`` each, few retries (environment
    settings the user gave are kept)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, math.ceil(timeout_s))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", _MLFLOW_RETRIES)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", _MLFLOW_BACKOFF_FACTOR)


def probe_tracking_server(uri: str, timeout_s: float) -> None:
    """One HTTP request to the server, answered within ``timeout_s`` (any HTTP status will do: it is there),
    so an address where nothing listens or nothing answers is refused in one line before any compute."""
    import urllib.error
    import urllib.request

    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            answer.read(1)
    except urllib.error.HTTPError:
        return  # the server answered, if only to refuse this request: MLflow will say what is wrong
    except (TimeoutError, urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or time.monotonic() - started >= timeout_s:
            why = f"no answer within {timeout_s:g} s (logger.connect_timeout_s)"
        else:
            why = f"cannot be reached ({one_line(reason) if isinstance(reason, BaseException) else reason})"
        raise ConfigError(f"logger.tracking_uri={uri}: the MLflow tracking server {why}; nothing was computed") from None


def check_writable_folder(folder: Path, setting_name: str) -> None:
    """Refuse, in one line and before any compute, a folder that cannot be created or written: the nearest
    existing part of the path must be a folder in which a file can be written (tried, since permissions alone
    do not tell for every user). Whatever the try created is removed again."""
    folder = Path(folder).expanduser().absolute()
    created: list[Path] = []
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        created.append(ancestor)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{setting_name}={folder}: {ancestor} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"{setting_name}={folder}: cannot be written ({errno_text(exc)})") from None
    finally:
        for path in created:
            try:
                path.rmdir()
            except OSError:
                pass


def _open_experiment(uri: str, name: str, artifact_location: str | None) -> None:
    """Reach the store and make sure the experiment exists, in this process: a wrong URI fails before any data
    is read, and the ranks that log find the experiment instead of each trying to create it."""
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(uri)
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name, artifact_location=artifact_location)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for an unreachable or foreign store
        raise ConfigError(f"logger.tracking_uri={uri}: MLflow cannot open it ({one_line(exc)})") from None


class RunTracker(pl.Callback):
    """Hands the finished run to the trainer's logger: parameters, every figure, the pictures. Rank 0 only."""

    def __init__(self, settings: EvalConfig, output_dir: Path) -> None:
        self.kind = settings.logger.name
        self.output_dir = Path(output_dir)
        self.config = _strings(as_plain(settings))
        self.logger = build_logger(settings.logger, self.output_dir)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self.logger is None:
            return
        writers = [callback for callback in trainer.callbacks if isinstance(callback, ResultsWriter)]
        results = writers[0].results if writers else None
        if results is None:
            return
        try:
            params, metrics = tracked_params(self.config, results), tracked_metrics(results)
            if self.kind is LoggerKind.tensorboard:
                # With its metrics, so TensorBoard's HParams view shows them beside the config.
                self.logger.log_hyperparams(params, metrics, step=0)
                # Lightning wrote an empty hparams.yaml when the test began and never rewrites an existing one.
                Path(self.logger.log_dir, self.logger.NAME_HPARAMS_FILE).unlink(missing_ok=True)
            else:
                self.logger.log_hyperparams(params)
                self.logger.log_metrics(metrics, step=0)
            self._log_files_and_tags(results)
            self.logger.save()
        except EvalError:
            raise
        except Exception as exc:  # noqa: BLE001 - a store or server refusing: the user asked for it, so say so
            raise EvalError(f"logger={self.kind.value}: could not log the run ({one_line(exc)}); "
                            f"its files in {self.output_dir} are complete") from None  # fmt: skip

    def _log_files_and_tags(self, results: dict[str, Any]) -> None:
        """MLflow: results.json and the picture as artifacts, and tags to filter runs by; TensorBoard: the picture."""
        picture = self.output_dir / WORST_CASES_PNG
        if self.kind is LoggerKind.mlflow:
            client, run_id = self.logger.experiment, self.logger.run_id
            for path in (self.output_dir / RESULTS_FILE, picture):
                if path.is_file():
                    client.log_artifact(run_id, str(path))
            tags = {"variant": results["variant"], "protocol": str(results["protocol"]),
                    "synthetic": str(results["synthetic"]).lower(), "oracle": str(results["oracle"]).lower(),
                    "backend": results["inference"]["backend"], "run_folder": str(self.output_dir.resolve())}  # fmt: skip
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
        elif self.kind is LoggerKind.tensorboard and picture.is_file():
            import cv2
            import numpy as np

            image = cv2.imdecode(np.fromfile(picture, dtype=np.uint8), cv2.IMREAD_COLOR)
            if image is not None:
                self.logger.experiment.add_image("worst_cases", cv2.cvtColor(image, cv2.COLOR_BGR2RGB), 0, dataformats="HWC")


def trainer_logger(callbacks: Sequence[pl.Callback]) -> Logger | bool:
    """The logger of the run's tracker among ``callbacks``; False (Lightning: no logger) when nothing is tracked."""
    for callback in callbacks:
        if isinstance(callback, RunTracker) and callback.logger is not None:
            return callback.logger
    return False
