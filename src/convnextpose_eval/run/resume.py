"""``sweep.resume=true``: keep a job's earlier results when they are provably what this job would compute.

A job is kept when its folder holds a results.json written by this tool whose ``config_sha256`` equals
the digest of the job's composed config (the settings that can change a figure) and whose checkpoint
sha256 equals that of the file the job would load now. Anything else (no results, a failure.json, a
different config or checkpoint, an ONNX run) is run again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..results.files import RESULTS_FILE
from ..results.records import TOOL_NAME
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
    """The earlier results to keep, or None; and why, for the log. The engine and the checkpoint are the
    plan's, as the run would decide them (``backend=auto`` included)."""
    assert plan.run_dir is not None
    path = Path(plan.run_dir) / RESULTS_FILE
    if plan.engine == ONNXRUNTIME:
        return None, "runs of a given or exported ONNX file are always run again"
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "no results.json yet"
    except (OSError, ValueError) as exc:
        return None, f"{path} is unreadable ({exc})"
    if not isinstance(earlier, dict) or earlier.get("tool") != TOOL_NAME:
        return None, f"{path} was not written by this tool"
    if earlier.get("config_sha256") != digest:
        return None, "its results.json was computed with other settings"
    current = plan.checkpoint.sha256 if plan.checkpoint else None
    recorded = (earlier.get("checkpoint") or {}).get("sha256")
    if recorded != current:
        return None, "its checkpoint has changed"
    return earlier, f"{path} matches this job's config and checkpoint"
