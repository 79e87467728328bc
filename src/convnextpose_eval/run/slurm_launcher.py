"""Hydra's submitit SLURM launcher (``hydra/launcher=slurm``), made to say what SLURM says.

The plugin's own launcher waits on each job's result file and on ``sacct``: a job SLURM will never start
waits in silence, and a job whose task died without a result file (killed, out of memory, no accounting
database for ``sacct``) is waited on forever. This one submits the same array through submitit, then
watches it with ``squeue``: a job pending for a reason SLURM cannot resolve by itself (``PartitionTimeLimit``,
``PartitionConfig``, ...) is cancelled and reported with that reason, and a job that ends without
results is reported with its SLURM state. Every such job gets a ``failure.json`` in its folder, so the
sweep report lists it as failed and the sweep exits non-zero; the jobs that worked report as usual.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)
from omegaconf import OmegaConf, open_dict

from ..common.atomic import atomic_write_json
from ..results.files import FAILURE_FILE, RESULTS_FILE
from ..results.records import TOOL_NAME

log = logging.getLogger(__name__)

# Pending reasons that no amount of waiting resolves, with what to change.
UNRUNNABLE = {
    "PartitionTimeLimit": "the job asks for more time than the partition allows; lower hydra.launcher.timeout_min",
    "PartitionNodeLimit": "the job asks for more nodes than the partition allows; lower trainer.num_nodes",
    "PartitionConfig": "the partition cannot give what the job asks (time limit, CPUs, GPUs, memory or account); check hydra.launcher.timeout_min and the rest of hydra.launcher.*",
    "PartitionDown": "the partition is down; choose another with hydra.launcher.partition",
    "PartitionInactive": "the partition is inactive; choose another with hydra.launcher.partition",
    "BadConstraints": "no node has the requested features; check hydra.launcher.constraint",
    "InvalidAccount": "the account is not valid here; check hydra.launcher.account",
    "InvalidQOS": "the QOS is not valid here; check hydra.launcher.qos",
    "QOSMaxWallDurationPerJobLimit": "the job asks for more time than its QOS allows; lower hydra.launcher.timeout_min",
    "AssocMaxWallDurationLimit": "the job asks for more time than the account allows; lower hydra.launcher.timeout_min",
    "ReqNodeNotAvail": "the requested nodes are not available (down, drained or reserved)",
    "DependencyNeverSatisfied": "a dependency of the job can never be satisfied",
}
ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT")
POLL_S = 2.0
# A completed job's result files can reach a shared file system a little after SLURM says it ended.
RESULT_GRACE_S = 15.0


def _squeue(job_ids: Sequence[str]) -> dict[str, tuple[str, str]] | None:
    """Array element id -> (state, reason) from squeue (finished jobs stay listed for MinJobAge); None if squeue fails."""
    mains = sorted({job_id.split("_")[0] for job_id in job_ids})
    command = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r", *(f"--jobs={','.join(mains)}",)]
    try:
        output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    states = {}
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no reason given"])[-1]


class WatchedSlurmLauncher(SubmititSlurmLauncher):
    """Submit the sweep as a SLURM array with submitit; watch it with squeue (see the module docstring)."""

    def _executor(self) -> Any:
        import submitit

        params = dict(self.params)
        folder = params.pop("submitit_folder")
        max_num_timeout = params.pop("max_num_timeout", 0)
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=max_num_timeout)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{key if key in shared else f"slurm_{key}": value for key, value in params.items()})
        return executor

    def _job_folder(self, overrides: Sequence[str], job_num: int) -> tuple[Path, str]:
        """The folder and variant name a job's Hydra config gives it (where its files land)."""
        assert self.hydra_context is not None and self.config is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config.hydra.job):
            config.hydra.job.num = job_num
        folder = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        return folder, str(OmegaConf.select(config, "variant.name", default="?"))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and job_overrides
        executor = self._executor()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        numbers = [initial_job_idx + i for i in range(len(job_overrides))]
        for number, overrides in zip(numbers, job_overrides):
            log.info(f"\t#{number} : {' '.join(filter_overrides(overrides))}")
        arguments = [(list(o), "hydra.sweep.dir", n, f"job_id_for_{n}", Singleton.get_state()) for n, o in zip(numbers, job_overrides)]
        try:
            jobs = executor.map_array(self, *zip(*arguments))
        except Exception as exc:  # noqa: BLE001 - sbatch's refusal arrives as whatever submitit wraps it in
            print(f"error: sbatch refused the sweep's jobs: {_first_error_line(str(exc))} (see hydra.launcher.* in conf/hydra/launcher/slurm.yaml)",
                  file=sys.stderr)  # fmt: skip
            raise SystemExit(2) from None
        tasks = int(self.params.get("nodes") or 1) * int(self.params.get("tasks_per_node") or 1)
        outcomes = self._watch(jobs, tasks)
        returns = []
        for number, overrides, job in zip(numbers, job_overrides, jobs):
            returns.append(self._job_return(job, overrides, number, tasks, outcomes[job.job_id]))
        return returns

    def _watch(self, jobs: Sequence[Any], tasks: int) -> dict[str, str]:
        """Wait until every job has ended or been cancelled; job id -> its final SLURM state (or why cancelled)."""
        from submitit.core.utils import JobPaths

        outcomes: dict[str, str] = {}
        said: dict[str, tuple[str, str]] = {}
        ended_at: dict[str, float] = {}
        squeue_failed = False
        previous = signal.signal(signal.SIGTERM, _interrupted)
        try:
            while len(outcomes) < len(jobs):
                states = _squeue([job.job_id for job in jobs])
                if states is None and not squeue_failed:
                    squeue_failed = True
                    log.warning("squeue does not answer: waiting on the jobs' result files only")
                for job in jobs:
                    job_id = job.job_id
                    if job_id in outcomes:
                        continue
                    results = [JobPaths(job.paths.folder, job_id, task).result_pickle for task in range(tasks)]
                    if states is None:  # squeue did not answer this time: decide nothing on its silence
                        if all(path.exists() for path in results):
                            outcomes[job_id] = "GONE"
                        continue
                    state, reason = states.get(job_id, ("GONE", ""))
                    if all(path.exists() for path in results) and state not in ACTIVE_STATES:
                        outcomes[job_id] = state
                    elif state == "PENDING" and reason in UNRUNNABLE:
                        subprocess.run(["scancel", job_id], check=False, capture_output=True)
                        outcomes[job_id] = f"cancelled: SLURM cannot start it: pending with reason {reason} ({UNRUNNABLE[reason]})"
                    elif state not in ACTIVE_STATES and state not in ("COMPLETED", "GONE"):
                        outcomes[job_id] = state  # failed, cancelled, timed out...: its result files no longer matter
                    elif state not in ACTIVE_STATES:
                        ended_at.setdefault(job_id, time.monotonic())
                        if all(path.exists() for path in results) or time.monotonic() - ended_at[job_id] > RESULT_GRACE_S:
                            outcomes[job_id] = state
                    if job_id not in outcomes and said.get(job_id) != (state, reason):
                        said[job_id] = (state, reason)
                        log.info(f"SLURM job {job_id}: {state}" + (f" ({reason})" if reason and reason != "None" else ""))
                if len(outcomes) < len(jobs):
                    time.sleep(POLL_S)
        except KeyboardInterrupt:
            unfinished = [job.job_id for job in jobs if job.job_id not in outcomes]
            subprocess.run(["scancel", *unfinished], check=False, capture_output=True)
            print(f"error: sweep interrupted; cancelled SLURM jobs {' '.join(unfinished)}", file=sys.stderr)
            raise SystemExit(130) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        return outcomes

    def _job_return(self, job: Any, overrides: Sequence[str], number: int, tasks: int, outcome: str) -> JobReturn:
        """Task 0's JobReturn when the job worked; otherwise a completed, empty one, its failure in failure.json."""
        from submitit.core.utils import JobPaths, pickle_load

        result_file = JobPaths(job.paths.folder, job.job_id, 0).result_pickle
        kind, value = pickle_load(result_file) if result_file.exists() else ("missing", None)
        if kind == "success" and outcome in ("COMPLETED", "GONE") and isinstance(value, JobReturn) and value.status == JobStatus.COMPLETED:
            return value
        folder, variant = self._job_folder(overrides, number)
        logs = JobPaths(job.paths.folder, job.job_id, 0).stderr
        if outcome.startswith("cancelled"):
            reason = f"SLURM job {job.job_id} {outcome}"
        else:
            reason = f"SLURM job {job.job_id} ended {outcome} without results; see {logs}"
        print(f"error: sweep job #{number} ({variant}): {reason}", file=sys.stderr)
        if not (folder / FAILURE_FILE).exists() and not (folder / RESULTS_FILE).exists():
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / FAILURE_FILE, {"tool": TOOL_NAME, "variant": variant, "status": "failed", "error": reason})
        return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None)
