"""Hydra callbacks: the sweep-wide report written once every job of a multirun has finished."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..report.sweep import write_sweep_report
from ..results.files import BENCHMARK_JSON, BENCHMARK_MD, BENCHMARK_PNG, REPORT_HTML

SWEEP_START_FILE = ".sweep_started"


class CallbackExit(SystemExit):
    """A callback's refusal: SystemExit, since Hydra turns a callback's other exceptions into warnings;
    ``reason`` is its one line, for callers in Python (the API), which must not exit."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code)
        self.reason = reason


def report_sweep(sweep_dir: Path, config: DictConfig) -> dict[str, Any]:
    """Write the sweep's reports covering the jobs this sweep started (see :class:`SweepReport`)."""
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
        for name in (BENCHMARK_JSON, BENCHMARK_MD, BENCHMARK_PNG, REPORT_HTML):
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


def sweep_job_folders(config: DictConfig) -> list[tuple[int, str, Path]]:
    """(job number, its overrides, its output folder) of every job the basic sweeper will launch.

    Each job's configuration is composed as the launcher composes it, so ``hydra.sweep.subdir`` is resolved
    with the job's own values; the timestamps come from this composition's cache, as they do for the jobs.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import open_dict

    loader = GlobalHydra.instance().config_loader()
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))  # type: ignore[arg-type]
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    folders = []
    for number, job in enumerate(jobs):
        job_config = loader.load_sweep_config(config, list(job))
        with open_dict(job_config):
            job_config.hydra.job.id = number
            job_config.hydra.job.num = number
        folder = Path(str(job_config.hydra.sweep.dir)) / str(job_config.hydra.sweep.subdir)
        folders.append((number, " ".join(job), Path(os.path.normpath(folder.absolute()))))
    return folders


def _is_basic_sweeper(config: DictConfig) -> bool:
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    return target.endswith("BasicSweeper")


class SweepFolderCheck(Callback):
    """Refuse, before any job runs, a sweep whose jobs would share an output folder.

    Each job clears its folder of earlier results before it starts, so two jobs in one folder (say
    ``hydra.sweep.subdir=job``) would silently leave only the last one's results and a report listing one
    job. Checked for Hydra's basic sweeper, whose job list is known up front.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _is_basic_sweeper(config):
            return
        seen: dict[Path, tuple[int, str]] = {}
        for number, overrides, folder in sweep_job_folders(config):
            if folder in seen:
                first, first_overrides = seen[folder]
                subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")  # type: ignore[union-attr]
                reason = (f"hydra.sweep.subdir={subdir}: jobs #{first} ({first_overrides}) and #{number} ({overrides}) would both "
                          f"write into {folder}, and the later would delete the earlier's results; give each job its own folder "
                          "(leave hydra.sweep.subdir at its default, or put ${hydra.job.num} in it)")  # fmt: skip
                print(f"error: {reason}", file=sys.stderr)
                raise CallbackExit(2, reason)
            seen[folder] = (number, overrides)
