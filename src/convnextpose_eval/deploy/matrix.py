"""One variant's deploy matrix: every format built, checked, scored on the same test crops and timed side by side.

Order of work: the checkpoint is read and its network built by the evaluation's own code; the test
crops are read once; calibration crops (training subjects only) are read when an int8 format is asked
for; each format is built and checked against PyTorch on held-out crops, then scored through the
evaluator's own flip test, back-projection and metric functions. Timing comes last, for all the formats
that were built, in interleaved rounds (one call of each format per round), so that a slow spell of
the machine falls on every format alike. A format that cannot be built is a row saying why; the other
formats go on.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backends.pytorch import PyTorchForward
from ..common.errors import ConfigError, DataError, one_line
from ..common.geometry import heatmap_to_camera
from ..common.human36m import (
    DEPTH_RANGE_MM,
    EVAL_JOINT_NAMES,
    EVAL_JOINTS,
    PROTOCOL_SUBJECTS,
    ROOT_INDEX,
)
from ..config.schema import SAMPLE_MARKER, EvalConfig
from ..metrics import METRIC_NAMES, PoseMetrics
from ..model.evaluator import PoseEvaluator
from ..report.compare import paired_bootstrap
from ..results.paper import SYNTHETIC_WARNING
from ..results.records import TOOL_NAME
from ..run.evaluation import build_datamodule, build_evaluator
from ..run.plan import PYTORCH, plan_run
from .calibration import TRAINING_SUBJECTS, CalibrationSet, read_calibration_set
from .converters import Built, Converter, open_user_file, version
from .formats import BY_NAME, FORMAT_NAMES, REFERENCE, USER_PREFIX, skip_reason
from .runners import RunnerForward, pytorch_runner

SCHEMA_VERSION = 1
INTERVAL_METRICS = ("mpjpe", "pa_mpjpe")
# Held-out check crops: test crops spread over the test set (never calibration images), with their mirrors.
CHECK_IMAGES = 8
MOVED_JOINTS = 3
USER_SUFFIXES = (".onnx", ".tflite", ".xml")
PACKAGES = ("torch", "onnx", "onnxruntime", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "openvino")


@dataclass(frozen=True)
class TestCrops:
    """The scored test images: crops (N, 3, S, S) uint8 and everything back-projection and scoring need."""

    batch: dict[str, torch.Tensor]

    @property
    def count(self) -> int:
        return int(self.batch["image"].shape[0])


@dataclass
class Scored:
    """One format's predictions on the test crops: per-image figures (N, len(METRIC_NAMES)) and joint errors (N, 17)."""

    per_image: np.ndarray
    joints: np.ndarray

    def metric(self, name: str) -> float:
        return float(self.per_image[:, METRIC_NAMES.index(name)].mean())


def check_user_files(files: list[Path]) -> None:
    """A user's file that is missing or of an unknown kind is refused up front, in one line."""
    names = [path.name for path in files]
    for path in files:
        if names.count(path.name) > 1:
            raise ConfigError(f"deploy.files: two files are named {path.name}; their rows would share the name user:{path.name}")
        if path.suffix.lower() not in USER_SUFFIXES:
            raise ConfigError(f"deploy.files: {path}: not a .onnx, .tflite or OpenVINO .xml file")
        if not path.is_file():
            raise ConfigError(f"deploy.files: {path}: no such file")
        if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
            raise ConfigError(f"deploy.files: {path}: its weights {path.with_suffix('.bin').name} are not beside it")


def check_formats(names: list[str]) -> list[str]:
    """The asked formats in the matrix's order, the reference always first; unknown names refused in one line."""
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        raise ConfigError(f"deploy.formats: unknown format {unknown[0]}; known: {', '.join(FORMAT_NAMES)}")
    return [REFERENCE] + [name for name in FORMAT_NAMES if name in names and name != REFERENCE]


def read_test_crops(settings: EvalConfig, input_size: int) -> TestCrops:
    """The first ``deploy.images`` test images (all when null), as the evaluation's data path gives them."""
    datamodule = build_datamodule(settings, input_size)
    count = len(datamodule.dataset)
    if settings.deploy.images is not None:
        count = min(count, settings.deploy.images)
    return TestCrops(datamodule.dataset.__getitems__(list(range(count))))


def check_crops(crops: TestCrops, forward: PyTorchForward) -> torch.Tensor:
    """Normalized held-out crops spread over the test set, and their mirrors (2 x up to CHECK_IMAGES)."""
    picks = np.unique(np.linspace(0, crops.count - 1, num=min(CHECK_IMAGES, crops.count)).round().astype(int))
    normalized = forward.normalize(crops.batch["image"][picks].float())
    return torch.cat([normalized, normalized.flip(3)]).contiguous()


def score(module: PoseEvaluator, forward: RunnerForward, crops: TestCrops, batch_size: int) -> Scored:
    """Predictions through the evaluator's flip test, back-projected and scored by the project's metrics."""
    assert module.arch is not None
    metrics = PoseMetrics(1, 1, EVAL_JOINTS)
    per_image, joints = [], []
    batch = crops.batch
    for start in range(0, crops.count, batch_size):
        part = slice(start, start + batch_size)
        with torch.inference_mode():
            coords = module.predict_coords(batch["image"][part], forward_pass=forward)
        pred = heatmap_to_camera(coords.double(), bbox=batch["bbox"][part], root_depth=batch["root_cam"][part, 2],
                                 focal=batch["focal"][part], center=batch["center"][part], heatmap_size=module.arch.heatmap_size,
                                 depth_dim=module.arch.depth_dim, depth_range=DEPTH_RANGE_MM)  # fmt: skip
        if not bool(torch.isfinite(pred).all()):
            raise RuntimeError("non-finite coordinates on the test crops")
        gt = batch["joint_cam"][part].double()
        figures, unaligned = metrics.per_sample(pred - pred[:, ROOT_INDEX : ROOT_INDEX + 1], gt - gt[:, ROOT_INDEX : ROOT_INDEX + 1])
        per_image.append(figures.T.numpy())
        joints.append(unaligned.numpy())
    return Scored(np.concatenate(per_image), np.concatenate(joints))


def percentiles(timings_ms: list[float]) -> dict[str, float]:
    """p50, p90, p99 of the recorded timings (linear interpolation between order statistics)."""
    values = np.asarray(timings_ms, dtype=np.float64)
    return {name: float(np.percentile(values, q)) for name, q in (("p50", 50), ("p90", 90), ("p99", 99))}


class Matrix:
    """Builds, checks, scores and times the formats of one checkpoint; :meth:`run` returns deploy_results.json's record."""

    def __init__(self, settings: EvalConfig, folder: Path, progress: Any = None) -> None:
        self.settings = settings
        self.folder = folder
        self.deploy = settings.deploy
        self.threads = self.deploy.threads or torch.get_num_threads()
        started = time.monotonic()
        self.progress = progress or (lambda message: print(f"deploy: {time.monotonic() - started:6.1f} s: {message}", file=sys.stderr, flush=True))

    def run(self) -> dict[str, Any]:
        deploy = self.deploy
        names = check_formats(list(deploy.formats))
        user_files = [Path(path).expanduser() for path in deploy.files]
        check_user_files(user_files)
        user_paths = {USER_PREFIX + path.name: path for path in user_files}
        torch.set_num_threads(self.threads)
        module = build_evaluator(plan_run(self.settings, engine=PYTORCH, purpose="deploy builds every format from the "
                                          "checkpoint's PyTorch network; score your own files with deploy.files=[...]"))  # fmt: skip
        reference = module.forward_pass
        assert isinstance(reference, PyTorchForward) and module.arch is not None
        self.progress("reading the test crops")
        crops = read_test_crops(self.settings, module.arch.input_size)
        if crops.count < 2:
            raise DataError(f"{self.settings.data.root}: {crops.count} test image; the paired bootstrap needs at least 2 (deploy.images)")
        checks = check_crops(crops, reference)
        protocol = self.settings.data.protocol
        needs_int8 = any(BY_NAME[name].precision == "int8" and skip_reason(BY_NAME[name]) is None for name in names)
        calibration: CalibrationSet | None = None
        if needs_int8:
            self.progress(f"reading {deploy.calibration_images} calibration crops of the training subjects")
            calibration = read_calibration_set(self.settings.data.root, protocol, deploy.calibration_images, module.arch.input_size)
        normalized_calibration = None
        if calibration is not None:
            normalized = reference.normalize(torch.from_numpy(calibration.crops).float())
            # Mirrors too: the flip test shows the network every crop both ways.
            normalized_calibration = torch.cat([normalized, normalized.flip(3)]).numpy()
        checkpoint = module.checkpoint_info
        converter = Converter(reference.network, self.folder / "formats", self.threads, checks, normalized_calibration,
                              {"file": Path(checkpoint["path"]).name, "sha256": checkpoint["sha256"]}, self.settings.export.opset)  # fmt: skip

        rows: list[dict[str, Any]] = []
        built: dict[str, Built] = {}
        with torch.inference_mode():
            expected = reference.run(checks).float().numpy()
        for name in names + list(user_paths):
            row = self._row(name)
            rows.append(row)
            spec = BY_NAME.get(name)
            reason = skip_reason(spec) if spec is not None else None
            if reason:
                row.update(status="skipped", reason=reason)
                continue
            self.progress(f"{name}: building")
            try:
                if name == REFERENCE:
                    item = Built(pytorch_runner(reference.network, self.settings.channels_last), None)
                elif spec is None:
                    item = open_user_file(user_paths[name], self.threads)
                else:
                    with contextlib.redirect_stdout(sys.stderr):  # converters print their progress; stdout is the table
                        item = converter.build(name)
                got = item.runner(checks.numpy())
                if got.shape != expected.shape:
                    raise RuntimeError(f"returns shape {tuple(got.shape)}, the checkpoint's network {tuple(expected.shape)}")
                check_diff = float(np.abs(got - expected).max())
                if not np.isfinite(check_diff):
                    raise RuntimeError("non-finite coordinates on the check crops")
                self.progress(f"{name}: scoring {crops.count} test images")
                scored = score(module, RunnerForward(module.arch, item.runner, name), crops, self.settings.data.batch_size)
            except Exception as exc:  # noqa: BLE001 - a converter or runtime failure is that format's row, the others go on
                row.update(status="failed", reason=f"{type(exc).__name__}: {one_line(exc)}"[:400])
                continue
            built[name] = item
            row.update(status="ok", file=str(item.path) if item.path else None, conversion=item.conversion,
                       size_bytes=self._size(item, reference), check={"max_coord_diff": check_diff, "unit": "heatmap units",
                       "crops": int(checks.shape[0])}, scored=scored)  # fmt: skip
            if spec is None:
                row["proven"] = self._user_proof(item.path, checkpoint["sha256"], check_diff)
        self._differences(rows)
        self.progress(f"timing {len(built)} formats side by side ({deploy.runs} batch-1 runs each, {deploy.warmup} warm-up)")
        self._time(rows, built, crops, reference)
        return self._record(rows, crops, calibration, module, checks)

    # ------------------------------------------------------------------ rows

    def _row(self, name: str) -> dict[str, Any]:
        spec = BY_NAME.get(name)
        return {"format": name, "status": None, "reason": None, "precision": spec.precision if spec else None,
                "runtime": spec.runtime if spec else None, "device": ("gpu" if spec and spec.gpu else "cpu"),
                "kept_in_float": spec.kept_in_float if spec else None, "file": None, "size_bytes": None,
                "conversion": None, "check": None, "metrics": None, "difference": None, "joints_moved_most": None,
                "latency_ms": None, "throughput_ips": None, "throughput": None}  # fmt: skip

    @staticmethod
    def _size(item: Built, reference: PyTorchForward) -> int:
        if item.path is None:
            buffer = io.BytesIO()
            torch.save(reference.network.state_dict(), buffer)
            return buffer.getbuffer().nbytes
        size = item.path.stat().st_size
        if item.path.suffix == ".xml":
            size += item.path.with_suffix(".bin").stat().st_size
        return size

    @staticmethod
    def _user_proof(path: Path | None, checkpoint_sha256: str, check_diff: float) -> dict[str, Any]:
        """What is known of a user's file: the checkpoint its metadata names (ONNX exports of this tool record
        it), and how far its coordinates are from this checkpoint's on the held-out crops."""
        recorded = None
        if path is not None and path.suffix.lower() == ".onnx":
            import onnx

            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            recorded = next((value for key, value in props.items() if key.endswith("source.sha256")), None)
        return {"built_from": "the user's file (not converted by this run)", "recorded_checkpoint_sha256": recorded,
                "recorded_matches_checkpoint": None if recorded is None else recorded == checkpoint_sha256,
                "max_coord_diff_vs_checkpoint": check_diff}  # fmt: skip

    def _differences(self, rows: list[dict[str, Any]]) -> None:
        """Metrics of every scored row; difference from the reference (paired bootstrap) and the joints that move most."""
        deploy = self.deploy
        base: Scored = rows[0].get("scored") if rows and rows[0]["status"] == "ok" else None  # type: ignore[assignment]
        columns = [METRIC_NAMES.index(name) for name in INTERVAL_METRICS]
        for row in rows:
            scored: Scored | None = row.pop("scored", None)
            if scored is None:
                continue
            row["metrics"] = {name: scored.metric(name) for name in METRIC_NAMES}
            if base is None:
                continue
            change = scored.per_image[:, columns] - base.per_image[:, columns]
            intervals = paired_bootstrap(change, deploy.bootstrap_resamples, deploy.bootstrap_seed)
            row["difference"] = {name: {"value": float(change[:, i].mean()), "ci95": [float(intervals[i, 0]), float(intervals[i, 1])]}
                                 for i, name in enumerate(INTERVAL_METRICS)}  # fmt: skip
            joint_change = (scored.joints - base.joints).mean(axis=0)
            order = np.argsort(-np.abs(joint_change))[:MOVED_JOINTS]
            row["joints_moved_most"] = [{"joint": EVAL_JOINT_NAMES[j], "difference_mm": float(joint_change[j])} for j in order]

    def _time(self, rows: list[dict[str, Any]], built: dict[str, Built], crops: TestCrops, reference: PyTorchForward) -> None:
        """Batch-1 latency and batch throughput of every built format, in interleaved rounds, warm-up left out."""
        deploy = self.deploy
        batch_size = self.settings.data.batch_size
        normalized = reference.normalize(crops.batch["image"].float()).numpy()
        single = np.ascontiguousarray(normalized[:1])
        repeat = -(-batch_size // crops.count)
        batch = np.ascontiguousarray(np.concatenate([normalized] * repeat)[:batch_size])
        latency: dict[str, list[float]] = {name: [] for name in built}
        batch_s: dict[str, list[float]] = {name: [] for name in built}
        for name, item in built.items():
            for _ in range(deploy.warmup):
                item.runner(single)
            item.runner(batch)
        for _ in range(deploy.runs):
            for name, item in built.items():
                start = time.perf_counter()
                item.runner(single)
                latency[name].append((time.perf_counter() - start) * 1e3)
        for _ in range(deploy.throughput_batches):
            for name, item in built.items():
                start = time.perf_counter()
                item.runner(batch)
                batch_s[name].append(time.perf_counter() - start)
        for row in rows:
            name = row["format"]
            if name not in built:
                continue
            row["latency_ms"] = {"batch_size": 1, "runs": deploy.runs, "warmup": deploy.warmup, "threads": self.threads,
                                 **percentiles(latency[name]), "mean": float(np.mean(latency[name])), "timings": latency[name]}  # fmt: skip
            seconds = float(sum(batch_s[name]))
            images = batch_size * len(batch_s[name])
            row["throughput_ips"] = images / seconds
            row["throughput"] = {"batch_size": batch_size, "batches": len(batch_s[name]), "images": images, "seconds": seconds,
                                 "warmup_batches": 1, "threads": self.threads, "flip_test": False}  # fmt: skip

    # ------------------------------------------------------------------ the record

    def _record(self, rows: list[dict[str, Any]], crops: TestCrops, calibration: CalibrationSet | None,
                module: PoseEvaluator, checks: torch.Tensor) -> dict[str, Any]:  # fmt: skip
        settings, deploy = self.settings, self.deploy
        data = settings.data
        synthetic = data.synthetic or (data.root / SAMPLE_MARKER).is_file()
        variant = settings.variant.name if settings.variant.name != "auto" else module.detected_variant or "auto"
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        return {
            "tool": TOOL_NAME,
            "schema_version": SCHEMA_VERSION,
            "kind": "deploy",
            "variant": variant,
            "synthetic": synthetic,
            "label": SYNTHETIC_WARNING if synthetic else None,
            "reference": REFERENCE,
            "num_samples": crops.count,
            "protocol": data.protocol,
            "test_subjects": [f"S{s}" for s in PROTOCOL_SUBJECTS[data.protocol]],
            "image_ids": [int(v) for v in crops.batch["image_id"].tolist()],
            "data_root": str(data.root),
            "flip_test": settings.flip_test,
            "checkpoint": module.checkpoint_info,
            "model": module.model_info(),
            "calibration": None if calibration is None else {
                **calibration.record(), "protocol": data.protocol,
                "training_subjects": [f"S{s}" for s in TRAINING_SUBJECTS[data.protocol]],
                "mirrored": True, "requested": deploy.calibration_images},
            "check": {"crops": int(checks.shape[0]), "what": "test crops spread over the scored set, and their mirrors; "
                      "never calibration images", "unit": "heatmap units"},
            "bootstrap": {"resamples": deploy.bootstrap_resamples, "seed": deploy.bootstrap_seed, "interval": "percentile, 95%",
                          "paired_over": "images", "difference": "format - reference"},
            "timing": {"batch1_runs": deploy.runs, "warmup_runs": deploy.warmup, "threads": self.threads,
                       "throughput_batch_size": data.batch_size, "throughput_batches": deploy.throughput_batches,
                       "interleaved": True, "load_average": list(load) if load else None},
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpu_count": os.cpu_count(), "python": platform.python_version(),
                        "packages": {name: version(name) for name in PACKAGES}},
            "formats": rows,
        }  # fmt: skip
