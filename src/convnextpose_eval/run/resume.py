"""``sweep.resume=true``: keep a job's earlier results when they are provably what this job would compute.

A job is kept when its folder holds a results.json of this tool's schema whose ``config_sha256`` equals
the digest of the job's composed config (the settings that can change a figure), whose checkpoint
sha256 equals that of the file the job would load now, every file it records is present with the
recorded sha256, and whose figures are those of its predictions.json rescored against the ground truth
in ``data.root`` (``results/proof.py``). Anything else (no results, a failure.json, a different config or
checkpoint, a missing or altered file, another engine than the plan's, an ONNX Runtime run of the
checkpoint's export that was not proven on its scored batches, any run of a given ONNX file) is run
again, and the log says why in one line. Every file is read through ``results/contract.py``'s guarded reader. See
docs/results-contract.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..common.errors import EvalError, one_line
from ..config.schema import EvalConfig
from ..data.h36m import load_test_index
from ..data.selection import drop_sequences
from ..results.contract import (
    DEFAULT_MAX_BYTES,
    MAX_BYTES,
    ContractError,
    load_checked,
    read_regular,
)
from ..results.files import PREDICTIONS_FILE, RESULTS_FILE
from ..results.proof import rescoring_disagreement, totals_disagreement
from .plan import ONNXRUNTIME, RunPlan

# Settings that cannot change a figure of results.json: a rerun that differs only in these is the same job.
NOT_IN_DIGEST = ("sweep", "logger", "download", "trainer.progress_bar", "trainer.timeout_s", "data.num_workers", "data.pin_memory")


def config_digest(cfg: DictConfig) -> str:
    """sha256 of the job's resolved settings (without ``hydra`` and :data:`NOT_IN_DIGEST`), keys sorted."""
    content = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(content, dict)
    content.pop("hydra", None)
    for dotted in NOT_IN_DIGEST:
        *parents, leaf = dotted.split(".")
        node: Any = content
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def kept_results(plan: RunPlan, digest: str) -> tuple[dict[str, Any] | None, str]:
    """The earlier results to keep, or None; and why, for the log (one line). The engine and the checkpoint
    are the plan's, as this job would decide them (``backend=auto`` included), never the raw settings."""
    settings = plan.settings
    assert plan.run_dir is not None
    folder = Path(plan.run_dir)
    path = folder / RESULTS_FILE
    if plan.onnx is not None and plan.onnx.path is not None:
        return None, "runs of a given ONNX file are always run again"
    if not path.exists() and not path.is_symlink():
        return None, "no results.json yet"
    try:
        earlier = load_checked(path, RESULTS_FILE)
    except ContractError as exc:
        return None, one_line(exc)
    recorded_engine = (earlier.get("inference") or {}).get("backend")
    if recorded_engine != plan.engine:
        engine = "ONNX Runtime (onnxruntime)" if plan.engine == ONNXRUNTIME else plan.engine
        return None, f"its results.json was computed by the {recorded_engine} engine; this job runs {engine}"
    onnx_record = (earlier.get("inference") or {}).get("onnx") or {}
    if plan.engine == ONNXRUNTIME and onnx_record.get("source_verified") is not True:
        return None, "its ONNX Runtime run was not proven against the checkpoint on its scored batches"
    if earlier.get("config_sha256") != digest:
        return None, "its results.json was computed with other settings"
    current = plan.checkpoint.sha256 if plan.checkpoint else None
    recorded = (earlier.get("checkpoint") or {}).get("sha256")
    if recorded != current:
        return None, "its checkpoint has changed"
    try:
        problem = _files_problem(folder, earlier) or _rescoring_problem(settings, folder, earlier)
    except ContractError as exc:
        return None, one_line(exc)
    if problem:
        return None, problem
    return earlier, f"{path} re-proven: this job's config and checkpoint, every file's sha256, its figures rescored from predictions.json"


def _files_problem(folder: Path, results: dict[str, Any]) -> str | None:
    """Whether every file results.json records is there with the recorded sha256 (read through the guarded reader)."""
    for name, record in results["files"].items():
        path = folder / name
        if not path.exists() and not path.is_symlink():
            return f"{name} is missing (its results.json records it)"
        data = read_regular(path, MAX_BYTES.get(name, DEFAULT_MAX_BYTES))
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            return f"{path} is not the file its results.json records (sha256 differs)"
    return None


def _rescoring_problem(settings: EvalConfig, folder: Path, results: dict[str, Any]) -> str | None:
    """Whether predictions.json, scored again against the ground truth in ``data.root``, gives results.json's figures."""
    predictions = folder / PREDICTIONS_FILE
    entries = load_checked(predictions, PREDICTIONS_FILE)
    data = settings.data
    try:
        index = drop_sequences(load_test_index(data.root, data.protocol, data.use_gt_info, data.index_cache_dir),
                               tuple(data.corrupt_s9_sequences) if data.skip_corrupt_s9 else ())  # fmt: skip
    except EvalError as exc:
        return f"its test set cannot be read to rescore it ({one_line(exc)})"
    problem = rescoring_disagreement(entries, index)
    if problem:
        return f"{predictions}: {problem}"
    problem = totals_disagreement(results, entries)
    if problem:
        return f"{folder / RESULTS_FILE}: {problem}"
    return None
