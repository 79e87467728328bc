"""The Python API: the command line's evaluations as function calls that return results and raise errors.

    from convnextpose_eval import evaluate, evaluate_sweep
    result = evaluate("variant=L", "data.root=/data/h36m")         # the overrides of the command line
    result.to_dict()                                              # == <run folder>/results.json
    sweep = evaluate_sweep("experiment=demo", "variant=XS,S")     # one Results per job

Calls from several threads run one after the other (Hydra keeps one configuration state per process).
A call goes through Hydra as ``convnextpose-eval ARGS`` does: the same up-front check of the overrides,
the same composition from the shipped configs, run folder, callbacks (output folder check, sweep report)
and evaluation code (:func:`convnextpose_eval.run.evaluation.evaluate_in_folder`). What differs is only what
the command line prints and exits with: here failures raise the tool's own errors (EvalError and its
subclasses, one line each), the summary is the returned object, and the console stays quiet (the run's
log still goes to ``run_eval.log``). Hydra offers no public call for "run this task with these
overrides", so this drives ``hydra._internal.hydra.Hydra`` the way ``hydra.main`` does.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from .common.errors import ConfigError, EvalError, SweepError
from .config.checks import quote_home_paths, quoted_value
from .config.compose import (
    CONFIG_MODULE,
    CONFIG_NAME,
    composition_error,
    sweep_overrides,
)
from .results.files import BENCHMARK_JSON, BENCHMARK_MD, REPORT_HTML, RESULTS_FILE

PathLike = str | os.PathLike[str]
_SWEEP_FLAGS = ("-m", "--multirun")
# Hydra's configuration state is one per process: calls from several threads take turns.
_ONE_AT_A_TIME = threading.Lock()
# The console stays quiet: Lightning's progress bar is off in API runs unless asked for.
_PROGRESS_BAR = "trainer.progress_bar"


@dataclass(frozen=True)
class ReportView:
    """A report.html shown inline by a notebook: the whole page in a sandboxed iframe (``srcdoc``), so its
    script runs apart from the notebook's and nothing is fetched (docs/report.md)."""

    path: Path
    height: int = 900

    def _repr_html_(self) -> str:
        import html

        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such page (a run of an older version of the tool? run it again to get one)")
        page = self.path.read_text(encoding="utf-8")
        return (f'<iframe title="{html.escape(self.path.name)}" srcdoc="{html.escape(page, quote=True)}" sandbox="allow-scripts" '
                f'style="width: 100%; height: {int(self.height)}px; border: 1px solid #ccc"></iframe>')  # fmt: skip

    def __repr__(self) -> str:
        return f"ReportView({str(self.path)!r})"


@dataclass(frozen=True)
class Results:
    """One finished run: its folder and its results.json (``to_dict()``); shown as a summary in notebooks."""

    run_dir: Path
    data: dict[str, Any]

    @classmethod
    def from_run_dir(cls, run_dir: PathLike) -> Results:
        """The results a run wrote into ``run_dir``; DataError-free: the caller knows the run finished."""
        folder = Path(run_dir)
        return cls(folder, json.loads((folder / RESULTS_FILE).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        """A copy of results.json's content."""
        return copy.deepcopy(self.data)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def variant(self) -> str:
        return str(self.data["variant"])

    @property
    def metrics(self) -> dict[str, float]:
        """The overall metrics in mm (and percent for PCK/AUC), as in results.json."""
        return dict(self.data["metrics"])

    @property
    def mpjpe(self) -> float:
        return float(self.data["metrics"]["mpjpe"])

    @property
    def pa_mpjpe(self) -> float:
        return float(self.data["metrics"]["pa_mpjpe"])

    @property
    def files(self) -> dict[str, Path]:
        """The files the run wrote (results.json, predictions.json, worst_cases.png, report.html, run_eval.log), by name."""
        return {p.name: p for p in sorted(self.run_dir.iterdir()) if p.is_file() and not p.name.startswith(".")}

    def show(self, height: int = 900) -> ReportView:
        """The run's report.html, displayed inline when it is a notebook cell's value (``result.show()``)."""
        return ReportView(self.run_dir / REPORT_HTML, height)

    def __str__(self) -> str:
        from .report.summary import format_summary

        return format_summary(self.data)

    def __repr__(self) -> str:
        flags = "".join(f", {flag}=True" for flag in ("synthetic", "oracle") if self.data.get(flag))
        return (f"Results(variant={self.variant!r}, protocol={self.data.get('protocol')}, num_samples={self.data.get('num_samples')}, "
                f"mpjpe={self.mpjpe:.2f}, pa_mpjpe={self.pa_mpjpe:.2f}{flags}, run_dir={str(self.run_dir)!r})")  # fmt: skip

    def _repr_markdown_(self) -> str:
        from .report.summary import markdown_summary

        return markdown_summary(self.data, self.run_dir)


@dataclass(frozen=True)
class SweepResults(Sequence[Results]):
    """A finished sweep: one :class:`Results` per job, in the report's order; indexable by position or variant."""

    sweep_dir: Path
    runs: tuple[Results, ...]

    @overload
    def __getitem__(self, key: int) -> Results: ...
    @overload
    def __getitem__(self, key: slice) -> Sequence[Results]: ...
    @overload
    def __getitem__(self, key: str) -> Results: ...

    def __getitem__(self, key: int | slice | str) -> Results | Sequence[Results]:
        if isinstance(key, str):
            matches = [run for run in self.runs if run.variant == key]
            if len(matches) != 1:
                raise KeyError(f"{key}: {len(matches)} jobs of this sweep ran that variant")
            return matches[0]
        return self.runs[key]

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Iterator[Results]:
        return iter(self.runs)

    def report(self) -> dict[str, Any]:
        """The sweep's benchmark_results.json."""
        return json.loads((self.sweep_dir / BENCHMARK_JSON).read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        runs = ", ".join(f"{run.variant}: {run.mpjpe:.2f}" for run in self.runs)
        return f"SweepResults(sweep_dir={str(self.sweep_dir)!r}, mpjpe={{{runs}}})"

    def _repr_markdown_(self) -> str:
        return (self.sweep_dir / BENCHMARK_MD).read_text(encoding="utf-8")

    def show(self, height: int = 900) -> ReportView:
        """The sweep's report.html, displayed inline when it is a notebook cell's value."""
        return ReportView(self.sweep_dir / REPORT_HTML, height)


def _arguments(overrides: Sequence[str], folder_key: str, folder: PathLike | None) -> list[str]:
    """The overrides as the command line would pass them, with the run (or sweep) folder if one is given."""
    for override in overrides:
        if not isinstance(override, str):
            raise ConfigError(f"{override!r}: overrides are strings such as 'variant=L'")
        if override.startswith("-"):
            raise ConfigError(f"{override}: pass settings as key=value; a sweep is evaluate_sweep(...)")
    arguments = quote_home_paths(list(overrides))
    if not any(override.lstrip("+~").split("=", 1)[0] == _PROGRESS_BAR for override in arguments):
        arguments.append(f"{_PROGRESS_BAR}=false")
    if folder is not None:
        arguments.append(f"{folder_key}={quoted_value(str(Path(folder).expanduser().absolute()))}")
    return arguments


@contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's banners and tips, the deprecation notices of its dependencies and the run's log stay off
    the caller's console; the caller's warning filters and root logger are restored afterwards."""
    from .run.evaluation import quiet_lightning

    root, ours, hydra_job = logging.getLogger(), logging.getLogger("convnextpose_eval"), logging.getLogger("hydra.core.utils")
    handlers, level, propagate, hydra_level = list(root.handlers), root.level, ours.propagate, hydra_job.level
    ours.propagate = False  # the summary is the returned object; the run's log file still gets it
    hydra_job.setLevel(logging.CRITICAL)  # "Error executing job with overrides": the raised error says it
    try:
        with warnings.catch_warnings():
            quiet_lightning()
            yield
    finally:
        # Hydra's launcher configures the root logger for a sweep's "Launching jobs" lines: undone here.
        root.handlers[:] = handlers
        root.setLevel(level)
        ours.propagate = propagate
        hydra_job.setLevel(hydra_level)


@contextmanager
def _job_log() -> Iterator[None]:
    """The run's log file, as the command line's logging config names and formats it, for this package's
    messages only: nothing is added to the caller's root logger or console."""
    from hydra.core.hydra_config import HydraConfig

    logging_cfg = HydraConfig.get().job_logging
    spec = logging_cfg.handlers.file
    handler = logging.FileHandler(str(spec.filename), delay=True)
    handler.setFormatter(logging.Formatter(str(logging_cfg.formatters[spec.formatter].format)))
    logger = logging.getLogger("convnextpose_eval")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def _task(sweep_dirs: set[Path]) -> Callable[[Any], dict[str, Any] | None]:
    """The Hydra task of an API call: :func:`run_job`'s work, raising instead of printing and exiting.

    In a sweep a failed job is recorded (failure.json) and the sweep goes on, as on the command line.
    """

    def task(cfg: Any) -> dict[str, Any] | None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from .run.evaluation import evaluate_in_folder, log_summary

        hydra_cfg = HydraConfig.get()
        output_dir = Path(hydra_cfg.runtime.output_dir)
        in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
        if in_sweep:
            sweep_dirs.add(Path(str(hydra_cfg.sweep.dir)).absolute())
        with _job_log():
            try:
                results = evaluate_in_folder(cfg, output_dir, in_sweep)
            except Exception:
                if in_sweep:  # evaluate_in_folder has recorded it in failure.json; the sweep goes on
                    return None
                raise
            if results is not None:
                log_summary(results, output_dir)
            return results

    return task


def _run_hydra(arguments: list[str], multirun: bool, task: Callable[[Any], Any]) -> Any:
    """``hydra.main``'s run or multirun, from the shipped configs, without its printing and exiting."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    from .config.schema import register_schema
    from .run.sweep import CallbackExit

    register_schema()
    GlobalHydra.instance().clear()
    try:
        app = Hydra.create_main_hydra2("run_eval", create_automatic_config_search_path(None, None, f"pkg://{CONFIG_MODULE}"))
        # As hydra.main does: the mode goes in as an override, which the jobs read back from their config.
        if multirun:
            return app.multirun(CONFIG_NAME, task, [*arguments, "hydra.mode=MULTIRUN"], with_log_configuration=False)
        return app.run(CONFIG_NAME, task, [*arguments, "hydra.mode=RUN"], with_log_configuration=False)
    except CallbackExit as exc:
        if multirun and exc.code == 1:
            return None  # some jobs failed: the caller reads the sweep's report
        raise ConfigError(exc.reason) from None
    finally:
        GlobalHydra.instance().clear()


def evaluate(*overrides: str, run_dir: PathLike | None = None) -> Results:
    """Evaluate one checkpoint, as ``convnextpose-eval OVERRIDES`` would; ``run_dir`` is ``hydra.run.dir``.

    Returns the run's results (equal to its results.json). A bad setting, checkpoint or data set raises
    ConfigError, CheckpointError, DataError or BackendError (all EvalError) with the command line's line.
    """
    arguments = _arguments(overrides, "hydra.run.dir", run_dir)
    swept = sweep_overrides(arguments)
    if swept:
        raise ConfigError(f"{swept[0]}: several values make a sweep; run it with evaluate_sweep(...)")
    with _ONE_AT_A_TIME:  # composing uses Hydra's per-process state too
        problem = composition_error(arguments, check_values=True)
        if problem:
            raise ConfigError(problem)
        with _quiet():
            job = _run_hydra(arguments, multirun=False, task=_task(set()))
    if job.return_value is None:  # another rank of a torchrun or srun launch: global rank 0 holds the results
        raise ConfigError(f"{job.hydra_cfg.hydra.runtime.output_dir}: this process is not global rank 0 of its launch; rank 0 returns the results")
    return Results.from_run_dir(job.hydra_cfg.hydra.runtime.output_dir)


def evaluate_sweep(*overrides: str, sweep_dir: PathLike | None = None) -> SweepResults:
    """Evaluate every combination of the swept values (``"variant=XS,S,M,L"``, or ``"experiment=demo"``'s four
    variants), as ``convnextpose-eval -m OVERRIDES`` would; ``sweep_dir`` is ``hydra.sweep.dir``.

    The sweep's reports are written as on the command line. If any job fails, every job still runs, and
    SweepError says which failed and why; its ``completed`` holds the Results of the others.
    """
    arguments = _arguments(overrides, "hydra.sweep.dir", sweep_dir)
    sweep_dirs: set[Path] = set()
    with _ONE_AT_A_TIME:  # composing uses Hydra's per-process state too
        problem = composition_error(["-m", *arguments])
        if problem:
            raise ConfigError(problem)
        with _quiet():
            _run_hydra(arguments, multirun=True, task=_task(sweep_dirs))
    if len(sweep_dirs) != 1:
        raise EvalError(f"the sweep ran {len(sweep_dirs)} sweep folders' jobs in this process; pass sweep_dir= to read one")
    folder = sweep_dirs.pop()
    entries = json.loads((folder / BENCHMARK_JSON).read_text(encoding="utf-8"))["entries"]
    completed = tuple(Results.from_run_dir(folder / entry["job_dir"]) for entry in entries if entry["status"] == "ok")
    failed = [entry for entry in entries if entry["status"] != "ok"]
    if failed:
        reasons = "; ".join(f"{entry['variant']} ({folder / entry['job_dir']}): {entry.get('error')}" for entry in failed)
        raise SweepError(f"{len(failed)} of {len(entries)} jobs failed: {reasons}", list(completed))
    return SweepResults(folder, completed)
