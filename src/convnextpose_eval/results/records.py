"""Turn the evaluator's scores into ``results.json`` and ``predictions.json`` (INTERFACE.md), atomically."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..atomic import atomic_write_json
from ..human36m import ACTION_NAMES
from ..network import ConvNeXtPose, count_macs, count_parameters
from ..report.paper import compare_to_paper
from .files import PREDICTIONS_FILE, RESULTS_FILE


def _number(value: torch.Tensor) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def assemble_results(payload: Mapping[str, Any], meta: Mapping[str, Any], bands: Sequence[tuple[float, str]]) -> dict[str, Any]:
    """The results.json object: run settings, overall and per-action scores, provenance, paper comparison."""
    scores = payload["scores"]
    counts = scores["mpjpe"]["count"]
    metrics = {name: _number(value["overall"]) for name, value in scores.items()}
    per_action = {
        action: {**{name: _number(value["per_group"][i]) for name, value in scores.items()}, "num_samples": int(counts[i])}
        for i, action in enumerate(ACTION_NAMES)
    }
    arch = payload["arch"]
    network = ConvNeXtPose(arch)
    num_samples = int(counts.sum())
    seconds = float(payload["seconds"])
    return {
        "variant": meta["variant"],
        "protocol": meta["protocol"],
        "num_samples": num_samples,
        "flip_test": meta["flip_test"],
        "use_gt_info": meta["use_gt_info"],
        "synthetic": meta["synthetic"],
        "oracle": meta["oracle"],
        "metrics": metrics,
        "per_action": per_action,
        "checkpoint": dict(payload["checkpoint"]) or None,
        "model": {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in arch.to_dict().items()},
            "heatmap_size": arch.heatmap_size,
            "params": count_parameters(network),
            "gflops": round(count_macs(network) / 1e9, 4),
        },
        "paper": dict(meta["paper"]) if meta.get("paper") else None,
        "comparison": compare_to_paper(metrics, meta.get("paper"), meta["protocol"], bands),
        "throughput": {
            "images_per_s": num_samples / seconds if seconds > 0 else None,
            "seconds": seconds,
            "device": payload["device"],
            "devices": payload["world_size"],
        },
        "crop_cache": dict(payload["crop_cache"]),
        "data_root": meta["data_root"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


class ResultWriter:
    """Called on global rank 0 with everything the run produced; writes predictions first, results last.

    A plain picklable object, so spawned DDP processes can carry it.
    """

    def __init__(self, output_dir: str, meta: Mapping[str, Any], bands: Sequence[tuple[float, str]]) -> None:
        self.output_dir = Path(output_dir)
        self.meta = dict(meta)
        self.bands = [(float(limit), str(name)) for limit, name in bands]

    def __call__(self, payload: Mapping[str, Any]) -> None:
        results = assemble_results(payload, self.meta, self.bands)
        atomic_write_json(self.output_dir / PREDICTIONS_FILE, payload["predictions"])
        atomic_write_json(self.output_dir / RESULTS_FILE, results)
