"""Where this process stands among the ranks of a run: started by torchrun, srun, mpirun, jsrun, or alone.

Read from the launchers' own environment variables before Lightning or Hydra touch anything, so that
Hydra's job set-up (``.hydra/``, ``run_eval.log``) and the run folder are left to global rank 0, and so
that a launch whose process count does not match the trainer's devices is refused instead of quietly
running fewer ranks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from .errors import ConfigError, command


class Launcher(Enum):
    """Who started this process."""

    alone = "alone"  # a shell, a notebook, a SLURM batch script or salloc shell without srun
    torchrun = "torchrun"
    srun = "srun"
    mpirun = "mpirun"  # Open MPI's mpirun/mpiexec
    jsrun = "jsrun"  # LSF's jsrun


@dataclass(frozen=True)
class Launch:
    """This process's place: the launcher, its global rank and the number of processes it started."""

    launcher: Launcher
    rank: int
    world_size: int
    slurm_job: str | None = None  # the SLURM job this process runs in, if any
    slurm_tasks: int | None = None  # that job's task count (SLURM_NTASKS)

    @property
    def external(self) -> bool:
        """The ranks exist already (one process per rank); the trainer must not start any."""
        return self.launcher is not Launcher.alone


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, default))
    except ValueError:
        return default


def detect_launch(env: Mapping[str, str] | None = None) -> Launch:
    """torchrun sets RANK/WORLD_SIZE (and TORCHELASTIC_RUN_ID); srun sets SLURM_STEP_ID and SLURM_PROCID
    in every task it starts. A SLURM batch script or ``salloc`` shell has SLURM_JOB_ID but no step: one
    process, whatever SLURM_NTASKS says. torchrun inside a SLURM allocation is torchrun."""
    env = os.environ if env is None else env
    job = env.get("SLURM_JOB_ID")
    job_tasks = _int(env, "SLURM_NTASKS", 1) if job else None
    if "TORCHELASTIC_RUN_ID" in env or {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"} <= env.keys():
        return Launch(Launcher.torchrun, _int(env, "RANK", 0), _int(env, "WORLD_SIZE", 1), job, job_tasks)
    if job and "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        tasks = _int(env, "SLURM_STEP_NUM_TASKS", job_tasks or 1)
        return Launch(Launcher.srun, _int(env, "SLURM_PROCID", 0), tasks, job, job_tasks)
    if "OMPI_COMM_WORLD_SIZE" in env:
        return Launch(Launcher.mpirun, _int(env, "OMPI_COMM_WORLD_RANK", 0), _int(env, "OMPI_COMM_WORLD_SIZE", 1), job, job_tasks)
    if "JSM_NAMESPACE_SIZE" in env:
        return Launch(Launcher.jsrun, _int(env, "JSM_NAMESPACE_RANK", 0), _int(env, "JSM_NAMESPACE_SIZE", 1), job, job_tasks)
    return Launch(Launcher.alone, 0, 1, job, job_tasks)


def is_rank_zero() -> bool:
    """Global rank 0 of the launch (a process started alone is its own rank 0)."""
    return detect_launch().rank == 0


def check_launch(launch: Launch, devices: int, num_nodes: int) -> None:
    """Refuse, in one line naming both counts and the fix, a launch that started a different number of
    processes than ``trainer.devices x trainer.num_nodes`` ranks."""
    wanted = devices * num_nodes
    asked = f"trainer.devices={devices} x trainer.num_nodes={num_nodes} = {wanted} rank{'s' if wanted != 1 else ''}"
    if launch.launcher is Launcher.torchrun and launch.world_size != wanted:
        raise ConfigError(f"{asked}, but torchrun started {launch.world_size} processes; "
                          f"run torchrun --nnodes={num_nodes} --nproc-per-node={devices}, or set trainer.devices and trainer.num_nodes to match")  # fmt: skip
    if launch.launcher in (Launcher.mpirun, Launcher.jsrun) and launch.world_size != wanted:
        raise ConfigError(f"{asked}, but {launch.launcher.value} started {launch.world_size} processes; start {wanted}, "
                          f"or set trainer.devices and trainer.num_nodes to match")  # fmt: skip
    if launch.launcher is Launcher.srun and launch.world_size != wanted:
        raise ConfigError(f"{asked}, but srun started {launch.world_size} task{'s' if launch.world_size != 1 else ''}; "
                          f"run srun --nodes={num_nodes} --ntasks-per-node={devices}, or set trainer.devices and trainer.num_nodes to match")  # fmt: skip
    if launch.launcher is Launcher.alone and launch.slurm_job and wanted > 1:
        raise ConfigError(f"{asked}, but this is one process inside SLURM job {launch.slurm_job} ({launch.slurm_tasks} task{'s' if launch.slurm_tasks != 1 else ''}, no srun step); "
                          f"start it as srun --nodes={num_nodes} --ntasks-per-node={devices} {command()} YOUR-OVERRIDES inside an allocation of that many tasks "
                          f"(sbatch --nodes={num_nodes} --ntasks-per-node={devices})")  # fmt: skip
