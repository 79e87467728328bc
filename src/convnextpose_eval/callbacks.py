"""Hydra callbacks: the sweep-wide report written once every job of a multirun has finished."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .report import BENCHMARK_JSON, BENCHMARK_MD, BENCHMARK_PNG, write_sweep_report


class SweepReport(Callback):
    """Write the benchmark reports into the sweep folder and make the sweep exit 1 if any job failed.

    Hydra turns an ``Exception`` raised by a callback into a mere warning, so every failure here,
    the report's own included, is turned into ``SystemExit(1)`` after saying why on stderr.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        bands = OmegaConf.select(config, "report.tolerance_bands", default=None)
        try:
            aggregate = write_sweep_report(
                sweep_dir, bands=OmegaConf.to_container(bands) if bands is not None else None
            )
        except Exception as exc:  # noqa: BLE001 - Hydra would swallow it; the exit status must tell
            print(f"sweep report for {sweep_dir} could not be written: {exc}", file=sys.stderr)
            raise SystemExit(1) from exc
        print("Sweep report:")
        for name in (BENCHMARK_JSON, BENCHMARK_MD, BENCHMARK_PNG):
            print(f"  {sweep_dir / name}")
        entries = aggregate["entries"]
        failed = [e for e in entries if e["status"] != "ok"]
        for entry in failed:
            print(f"FAILED {entry['variant']} (job {entry['job_dir']}): {entry['error']}", file=sys.stderr)
        if not entries:
            print(f"no job folders found in {sweep_dir}", file=sys.stderr)
        if failed or not entries:
            raise SystemExit(1)
