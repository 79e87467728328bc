"""The Lightning callback that scores every test batch once and writes the run's files on global rank 0.

Results flow one way: the evaluator's ``test_step`` returns predictions, this callback turns them into
metrics and records, makes every file's bytes, then writes ``predictions.json``, ``worst_cases.png``, the
files a caller adds (``extra_files``: the run's ``report.html``, made by a later room of the package) and
``results.json`` atomically, announced by a manifest of their SHA-256 (so the next run can recognise
what a killed one left), and hands the records back to the caller. Under spawned DDP the writing rank is a child process: the results travel back to the
launching process through ``trainer.callback_metrics``, which Lightning returns from rank 0 by design.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torchmetrics import SumMetric

from ..common.atomic import errno_text, json_bytes, write_file_set
from ..common.errors import EvalError
from ..common.human36m import ACTION_NAMES, EVAL_JOINTS, JOINT_NAMES, TEST_SUBJECTS
from ..metrics import METRIC_NAMES, PoseMetrics, PoseScores
from .contract import SCHEMA_FILES, schema_version
from .files import PENDING_FILE, PREDICTIONS_FILE, RESULTS_FILE, WORST_CASES_PNG
from .records import (
    TOOL_NAME,
    CheckpointInfo,
    InferenceSettings,
    ModelInfo,
    RunResults,
    RunSettings,
    Scores,
    finite_or_none,
)
from .worst_cases import WorstCase, render_worst_cases, run_caption

RESULTS_METRIC_KEY = "convnextpose_eval/results_json"
# predictions.json also keeps the predicted Thorax: the paper's rigid alignment (pa_mpjpe) fits on all 18 joints,
# so a reader can rescore every figure from the file alone.
THORAX_INDEX = JOINT_NAMES.index("Thorax")
# The panels of worst_cases.png.
WORST_CASES = 12
# Files a run adds to its set, made from (results.json's object, predictions.json's entries, the worst
# frames, worst first, with their crops and ground truth in 3D): {file name: bytes}.
ExtraFiles = Callable[[dict[str, Any], list[dict[str, Any]], Sequence[WorstCase]], dict[str, bytes]]


class ResultsWriter(pl.Callback):
    """Scores the outputs of every test step; on global rank 0 writes the files and keeps :attr:`results`."""

    def __init__(self, output_dir: Path, settings: RunSettings, inference: InferenceSettings,
                 extra_files: ExtraFiles | None = None, worst_frames: int = WORST_CASES) -> None:  # fmt: skip
        self.output_dir = Path(output_dir)
        self.settings = settings
        self.inference = inference
        self.extra_files = extra_files
        self.worst_frames = worst_frames
        self.metrics = PoseMetrics(len(ACTION_NAMES), len(TEST_SUBJECTS), EVAL_JOINTS)
        self.cache_hits = SumMetric()
        self.cache_misses = SumMetric()
        # Images of each rank's first batch: its time holds the first session's start (allocations, thread
        # pools, kernel selection), which a throughput must not charge to the images.
        self.warmup_images = SumMetric()
        self.results: dict[str, Any] | None = None
        self._rows: list[dict[str, Any]] = []
        self._started = 0.0
        self._warm_from: float | None = None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Spawned ranks receive this callback through shared memory: fresh states, or every rank
        # would add into the same storage.
        for metric in (self.metrics, self.cache_hits, self.cache_misses):
            metric.reset()
        self.metrics.to(pl_module.device)
        self.cache_hits.to(pl_module.device)
        self.cache_misses.to(pl_module.device)
        self.warmup_images.reset()
        self.warmup_images.to(pl_module.device)
        self._rows = []
        self._started = time.perf_counter()
        self._warm_from: float | None = None

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        pred_rel, gt_rel = outputs["pred_rel"], outputs["gt_rel"]
        self.metrics.update(pred_rel, gt_rel, outputs["action"], subject_slots(outputs["subject"]))
        per_image, joint_mpjpe = (values.tolist() for values in self.metrics.per_sample(pred_rel, gt_rel))
        if self._warm_from is None:
            self.warmup_images.update(torch.tensor(float(pred_rel.shape[0]), dtype=torch.float64))
        cached = outputs["cached"].to(torch.float64)
        self.cache_hits.update(cached.sum())
        self.cache_misses.update((1 - cached).sum())
        # One device-to-host copy per field and batch, not per image.
        columns = {key: outputs[key].tolist() for key in ("index", "image_id", "bbox", "root_cam", "action", "subject", "pred_xy", "gt_xy")}
        joints = pred_rel[:, list(EVAL_JOINTS)].tolist()
        truth = gt_rel[:, list(EVAL_JOINTS)].tolist()
        thorax = pred_rel[:, THORAX_INDEX].tolist()
        for i, index in enumerate(columns["index"]):
            # Each image's own figures (the terms results.json's means are made of), for paired comparisons.
            scores = {name: values[i] for name, values in zip(METRIC_NAMES, per_image)}
            self._rows.append({"index": index, "image_id": columns["image_id"][i], "joint_cam": joints[i],
                               "thorax_cam": thorax[i],
                               "bbox": columns["bbox"][i], "root_cam": columns["root_cam"][i],
                               "action": ACTION_NAMES[columns["action"][i]], "subject": f"S{columns['subject'][i]}",
                               **scores, "joint_mpjpe": joint_mpjpe[i],
                               _PRIVATE: {"pred_xy": columns["pred_xy"][i], "gt_xy": columns["gt_xy"][i], "gt_cam": truth[i]}})  # fmt: skip
        if self._warm_from is None:
            self._warm_from = time.perf_counter()

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        scores = self._scores()
        hits, misses = int(self.cache_hits.compute()), int(self.cache_misses.compute())
        rows = _gather(self._rows)
        finished = time.perf_counter()
        seconds = finished - self._started
        warmup_images = int(self.warmup_images.compute())
        inference = self.inference
        if inference.onnx is not None:  # what the scored batches showed of the file (gathered from every rank)
            inference = dataclasses.replace(inference, onnx=pl_module.scored_backend_info())
        failure: EvalError | None = None
        if trainer.is_global_zero:
            rows.sort(key=lambda row: row["index"])
            results = RunResults(
                settings=self.settings,
                inference=inference,
                scores=scores,
                checkpoint=CheckpointInfo(**pl_module.checkpoint_info) if pl_module.checkpoint_info else None,
                model=ModelInfo(**pl_module.model_info()),
                throughput={**warm_throughput(scores.num_samples, warmup_images, seconds, finished - (self._warm_from or finished)),
                            "device": pl_module.device.type, "devices": trainer.world_size,
                            "world_size": trainer.world_size, "num_nodes": trainer.num_nodes},  # fmt: skip
                crop_cache={"hits": hits, "misses": misses},
            ).to_json()
            predictions = [{k: v for k, v in row.items() if k not in ("index", _PRIVATE)} for row in rows]
            files = [(PREDICTIONS_FILE, json_bytes(predictions))]
            # One read of the worst crops serves the picture and the extra files.
            worst = _worst_cases(rows, trainer, max(WORST_CASES, self.worst_frames if self.extra_files else 0)) if rows else []
            if worst:
                files.append((WORST_CASES_PNG, render_worst_cases(worst[:WORST_CASES], run_caption(results))))
            if self.extra_files is not None:
                files.extend(self.extra_files(results, predictions, worst[: self.worst_frames]).items())
            results["files"] = files_record(files)
            files.append((RESULTS_FILE, json_bytes(results)))
            failure = write_results(self.output_dir, files)
            if failure is None:
                self.results = results
                encoded = json.dumps(results).encode("utf-8")
                trainer.callback_metrics[RESULTS_METRIC_KEY] = torch.frombuffer(bytearray(encoded), dtype=torch.uint8)
        # Ranks started by torchrun or srun must not finish before rank 0 has written (or failed to).
        trainer.strategy.barrier("results written")
        if failure is not None:
            raise failure

    def _scores(self) -> Scores:
        return scores_record(self.metrics.compute())

    def collect(self, trainer: pl.Trainer) -> dict[str, Any] | None:
        """The results in the launching process: kept here, or carried back from a spawned rank 0."""
        if self.results is not None:
            return self.results
        carried = trainer.callback_metrics.get(RESULTS_METRIC_KEY)
        return None if carried is None else json.loads(bytes(carried.to(torch.uint8).tolist()).decode("utf-8"))


def files_record(files: list[tuple[str, bytes]]) -> dict[str, dict[str, Any]]:
    """results.json's record of the other files of the run: each one's sha256 (results.json cannot hold its own)
    and, for a JSON file, the version of the schema it follows, so a reader can re-prove the whole folder."""
    record: dict[str, dict[str, Any]] = {}
    for name, data in files:
        record[name] = {"sha256": hashlib.sha256(data).hexdigest()}
        if name in SCHEMA_FILES:
            record[name]["schema_version"] = schema_version(name)
    return record


def warm_throughput(images: int, warmup_images: int, seconds: float, warm_seconds: float) -> dict[str, Any]:
    """results.json's speed: images per second after each rank's first batch (its time holds the session's
    start-up), over ``warm_seconds``; ``seconds`` is the whole test loop. A run of one batch has nothing after
    its warm-up to time: its rate is null."""
    timed = images - warmup_images
    rate = timed / warm_seconds if timed > 0 and warm_seconds > 0 else None
    return {"images_per_s": rate, "seconds": seconds, "timed_images": max(timed, 0), "timed_seconds": warm_seconds,
            "warmup_images": warmup_images, "warmup_batches_per_rank": 1}  # fmt: skip


def write_results(output_dir: Path, files: list[tuple[str, bytes]]) -> EvalError | None:
    """Write a run's files, results.json last, so that a kill at any moment leaves only what the next run
    recognises as its own (see :func:`~convnextpose_eval.common.atomic.write_file_set`); a write failure removes
    what was written and comes back as one line naming the file and the errno."""
    try:
        write_file_set(output_dir, files, PENDING_FILE, TOOL_NAME)
    except OSError as exc:
        return EvalError(f"{exc.filename}: could not be written ({errno_text(exc)}); no results were kept, so the same command can simply be run again")
    return None


def _gather(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(rows)
    shards: list[list[dict[str, Any]] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(shards, rows)
    return [row for shard in shards for row in shard or []]


_PRIVATE = "_worst_case"


def subject_slots(subjects: torch.Tensor) -> torch.Tensor:
    """Subject numbers (9, 11) -> their slots in the per-subject state."""
    lookup = torch.full((max(TEST_SUBJECTS) + 1,), -1, dtype=torch.int64, device=subjects.device)
    lookup[list(TEST_SUBJECTS)] = torch.arange(len(TEST_SUBJECTS), device=subjects.device)
    return lookup[subjects.long()]


def scores_record(computed: PoseScores) -> Scores:
    """The metric's output as results.json's blocks (NaN written as null)."""

    def block(values: dict[str, float]) -> dict[str, float | None]:
        return {name: finite_or_none(values[name]) for name in METRIC_NAMES}

    return Scores(
        metrics=block(computed.overall),
        per_action={action: {**block(group.metrics), "num_samples": group.num_samples}
                    for action, group in zip(ACTION_NAMES, computed.per_action)},  # fmt: skip
        per_subject={f"S{subject}": {**block(group.metrics), "num_samples": group.num_samples}
                     for subject, group in zip(TEST_SUBJECTS, computed.per_subject)},  # fmt: skip
        per_joint={JOINT_NAMES[j]: {"mpjpe": finite_or_none(value)} for j, value in zip(EVAL_JOINTS, computed.per_joint)},
        action_average=block(computed.action_average),
        num_samples=computed.num_samples,
    )


def _worst_cases(rows: list[dict[str, Any]], trainer: pl.Trainer, count: int) -> list[WorstCase]:
    """The ``count`` highest-MPJPE images with their crops, re-read from the test set (the crop store makes that cheap)."""
    dataset = trainer.datamodule.dataset
    worst = sorted(rows, key=lambda row: -row["mpjpe"])[:count]
    cases = []
    for row in worst:
        extra = row[_PRIVATE]
        crop = dataset[row["index"]]["image"].permute(1, 2, 0).numpy()
        cases.append(WorstCase(crop=crop, pred_xy=np.asarray(extra["pred_xy"]), gt_xy=np.asarray(extra["gt_xy"]),
                               image_id=int(row["image_id"]), action=row["action"],
                               error_mm=float(row["mpjpe"]), gt_cam=np.asarray(extra["gt_cam"])))  # fmt: skip
    return cases
