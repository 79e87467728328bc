"""Hydra callbacks: the sweep-wide report written once every job of a multirun has finished."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .report.sweep import write_sweep_report
from .results.files import BENCHMARK_JSON, BENCHMARK_MD, BENCHMARK_PNG

SWEEP_START_FILE = ".sweep_started"


class CallbackExit(SystemExit):
    """A callback's refusal: SystemExit, since Hydra turns a callback's other exceptions into warnings;
    ``reason`` is its one line, for callers in Python (the API), which must not exit."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code)
        self.reason = reason


def report_sweep(sweep_dir: Path, config: DictConfig) -> dict[str, Any]:
    """Write the sweep's three reports covering the jobs this sweep started (see :class:`SweepReport`)."""
    bands = OmegaConf.select(config, "report.tolerance_bands", default=None)
    papers = {str(name): OmegaConf.to_container(node.paper) if node.get("paper") is not None else {}
              for name, node in (OmegaConf.select(config, "released", default=None) or {}).items()}  # fmt: skip
    started = sweep_dir / SWEEP_START_FILE
    since = started.stat().st_mtime_ns if started.is_file() else None
    return write_sweep_report(sweep_dir, bands=OmegaConf.to_container(bands) if bands is not None else None,
                              since_ns=since, papers=papers)  # fmt: skip


class SweepReport(Callback):
    """Write the benchmark reports into the sweep folder and make the sweep exit 1 if any job failed.

    A reused sweep folder may hold job folders of an earlier sweep: the report covers only job folders
    whose job started after this sweep did (Hydra writes each job's ``.hydra/`` as it starts).
    Hydra turns an ``Exception`` raised by a callback into a mere warning, so every failure here,
    the report's own included, is turned into ``SystemExit(1)`` after saying why on stderr.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_START_FILE).write_text(f"{time.time_ns()}\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            aggregate = report_sweep(sweep_dir, config)
        except Exception as exc:  # noqa: BLE001 - Hydra would swallow it; the exit status must tell
            reason = f"sweep report for {sweep_dir} could not be written: {exc}"
            print(reason, file=sys.stderr)
            raise CallbackExit(1, reason) from exc
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
            raise CallbackExit(1, f"{len(failed)} of {len(entries)} jobs failed" if entries else f"no job folders found in {sweep_dir}")


def _check_can_create(folder: Path) -> None:
    """Exit with one line if ``folder`` cannot be created or written: before Hydra makes it, before any compute."""
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        reason = f"{ancestor} is a file, not a folder"
    elif not os.access(ancestor, os.W_OK | os.X_OK):
        reason = f"{ancestor} is not writable"
    else:
        return
    message = f"{folder}: output folder is not writable ({reason})"
    print(f"error: {message}", file=sys.stderr)
    raise CallbackExit(2, message)


class OutputFolderCheck(Callback):
    """Refuse an output folder that cannot be created, instead of Hydra's traceback when it tries to.

    Raises SystemExit because Hydra turns a callback's ordinary exceptions into warnings.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_can_create(Path(str(config.hydra.run.dir)))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_can_create(Path(str(config.hydra.sweep.dir)))
