"""How a run ends when it does not finish: the one line it reports, what it leaves in its folder, and signals.

A failure is recorded in the run folder as ``failure.json`` (and an unforeseen one's traceback) only once
the folder is the run's own; a run refused before that leaves no folder behind. SIGTERM, SIGINT and
SIGUSR2 raise :class:`RunInterrupted`, so a run stops where it is and exits 128 + the signal's number.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..common.atomic import atomic_write_json, atomic_write_text
from ..common.errors import EvalError, one_line
from ..common.launch import detect_launch
from ..results.files import FAILURE_FILE, TRACEBACK_FILE
from ..results.records import TOOL_NAME


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT arrived: the run stops, writes no results and exits non-zero."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# Signals received by this process's run: RunInterrupted raised inside library code can surface as that
# code's own error when its clean-up fails half-way (OmegaConf does), so the record says what happened.
received_signals: list[int] = []


def on_signal(signum: int, frame: Any) -> None:
    received_signals.append(signum)
    raise RunInterrupted(signum)


def _internal_error(exc: BaseException, output_dir: Path) -> str:
    """A bug or an unforeseen failure: one line on the console, the traceback in the job folder."""
    import traceback

    text = "".join(traceback.format_exception(exc))
    try:
        atomic_write_text(output_dir / TRACEBACK_FILE, text)
        where = f"; traceback in {output_dir / TRACEBACK_FILE}"
    except OSError:
        where = ""
    return f"unexpected {type(exc).__name__}: {one_line(exc)}{where}"


def record_failure(output_dir: Path, variant: str, reason: str) -> None:
    try:
        atomic_write_json(output_dir / FAILURE_FILE, {"tool": TOOL_NAME, "variant": variant, "status": "failed", "error": reason})
    except OSError:
        pass  # the sweep report lists a job folder without results as failed anyway


def _distributed_failure(exc: BaseException, cfg: DictConfig) -> str | None:
    """One line for a collective that timed out or lost a peer: another rank failed, was killed or never joined.
    Only a run of several processes has peers to lose."""
    import torch.distributed as dist

    several = detect_launch().world_size > 1 or str(OmegaConf.select(cfg, "trainer.strategy", default="")) == "ddp"
    text = one_line(exc)
    lost = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe", "socket", "peer")
    if not several or not (isinstance(exc, getattr(dist, "DistError", ())) or any(word in text.lower() for word in lost)):
        return None
    timeout_s = OmegaConf.select(cfg, "trainer.timeout_s", default="?")
    return f"another rank failed, was killed or did not answer within trainer.timeout_s={timeout_s} s ({text})"


def interrupt_signal(exc: BaseException) -> int | None:
    """The signal a run was stopped by (SIGINT for Ctrl-C, SIGTERM for an exit request), or None for a failure."""
    if isinstance(exc, RunInterrupted):
        return exc.signum
    if received_signals:
        return received_signals[-1]
    if isinstance(exc, KeyboardInterrupt):
        return int(signal.SIGINT)
    if isinstance(exc, SystemExit) and exc.code in (None, 0, 1):
        return int(signal.SIGTERM)
    return None


def failure_reason(exc: BaseException, traceback_dir: Path | None, cfg: DictConfig) -> str:
    """The one line a failed or interrupted run reports; the first answer for an exception is kept, so the
    console and failure.json say the same. An unforeseen failure leaves its traceback in ``traceback_dir``:
    the run's folder once this process owns it (global rank 0, folder taken), else nowhere."""
    known = getattr(exc, _REASON, None)
    if isinstance(known, str):
        return known
    reason = _failure_reason(exc, traceback_dir, cfg)
    try:
        setattr(exc, _REASON, reason)
    except AttributeError:
        pass
    return reason


_REASON = "_convnextpose_eval_reason"


def _failure_reason(exc: BaseException, traceback_dir: Path | None, cfg: DictConfig) -> str:
    signum = interrupt_signal(exc)
    if signum is not None:
        notice = " (SLURM's notice that the time limit is near)" if signum == signal.SIGUSR2 else ""
        return f"interrupted by {signal.Signals(signum).name}{notice}; no results written"
    if isinstance(exc, EvalError):
        return one_line(exc)
    lost = _distributed_failure(exc, cfg)
    if lost:
        return lost
    return _internal_error(exc, traceback_dir) if traceback_dir else f"unexpected {type(exc).__name__}: {one_line(exc)}"


def _log_file(output_dir: Path) -> Path:
    from hydra.core.hydra_config import HydraConfig

    return output_dir / f"{HydraConfig.get().job.name}.log"


def leave_no_empty_folder(output_dir: Path) -> None:
    """Remove the folder of a run that failed before it took it, when Hydra's ``.hydra/`` and an empty log
    are all it holds: a refused run leaves nothing behind (any other file, a lock included, keeps it)."""
    import shutil

    log_file = _log_file(output_dir)
    try:
        if {p.name for p in output_dir.iterdir()} <= {".hydra", log_file.name} and not (log_file.is_file() and log_file.stat().st_size):
            shutil.rmtree(output_dir)
    except OSError:
        pass


def drop_empty_log(output_dir: Path) -> None:
    log_file = _log_file(output_dir)
    if log_file.is_file() and log_file.stat().st_size == 0:
        log_file.unlink(missing_ok=True)
