"""OmegaConf resolvers the shipped configs use: values that depend on the launch or on other settings.

``cnp.on_rank_zero`` gives Hydra's per-job files (``.hydra/``, ``run_eval.log``) to global rank 0 only,
so ranks started by torchrun or srun leave the run folder to rank 0; the ``cnp.slurm_*`` ones derive the
SLURM launcher's requests from the trainer and data settings (``conf/hydra/launcher/slurm.yaml``).
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from ..common.launch import is_rank_zero

GPU_ACCELERATORS = ("gpu", "cuda")
MEMORY_GB_PER_TASK = 4


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))


def on_rank_zero(value: Any, other: Any) -> Any:
    """``value`` in global rank 0 of a launch (or a process started alone), ``other`` in every other rank."""
    return value if is_rank_zero() else other


def slurm_gpus(accelerator: Any, devices: int) -> int | None:
    """GPUs per node: the devices for a GPU trainer, no request at all (not even 0) for any other."""
    return int(devices) if _name(accelerator) in GPU_ACCELERATORS else None


def slurm_cpus(num_workers: int) -> int:
    """CPUs per task: one per DataLoader worker (they decode and crop), at least one for the rank itself."""
    return max(1, int(num_workers))


def slurm_mem_gb(devices: int) -> int:
    """Memory per node: a fixed share per task (one task per device)."""
    return MEMORY_GB_PER_TASK * int(devices)


def register_resolvers() -> None:
    """Register once per process (Hydra composes in the launching process and again in each job)."""
    for name, function in (("cnp.on_rank_zero", on_rank_zero), ("cnp.slurm_gpus", slurm_gpus),
                           ("cnp.slurm_cpus", slurm_cpus), ("cnp.slurm_mem_gb", slurm_mem_gb)):  # fmt: skip
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
