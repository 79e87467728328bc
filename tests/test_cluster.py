"""Launch detection and its checks, the SLURM launcher's requests, resume digests and Hydra's flags: no processes started."""

from __future__ import annotations

import os
import re
import warnings

import pytest
from omegaconf import OmegaConf

from convnextpose_eval.common.errors import ConfigError
from convnextpose_eval.common.launch import Launcher, check_launch, detect_launch
from convnextpose_eval.config.compose import overrides_of

TORCHRUN_RANK1 = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "TORCHELASTIC_RUN_ID": "x"}
SRUN_TASK1 = {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2"}
# What `env` shows inside `sbatch -n1 --wrap ...` on the local cluster: no step, one task.
BATCH_SHELL = {"SLURM_JOB_ID": "8", "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "wrap"}


@pytest.mark.parametrize(
    "env,expected",
    [
        ({}, (Launcher.alone, 0, 1)),
        (TORCHRUN_RANK1, (Launcher.torchrun, 1, 2)),
        (SRUN_TASK1, (Launcher.srun, 1, 2)),
        (BATCH_SHELL, (Launcher.alone, 0, 1)),
        ({**SRUN_TASK1, **TORCHRUN_RANK1, "RANK": "3", "WORLD_SIZE": "4"}, (Launcher.torchrun, 3, 4)),  # torchrun under srun
        ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4"}, (Launcher.mpirun, 2, 4)),
        ({"JSM_NAMESPACE_RANK": "1", "JSM_NAMESPACE_SIZE": "3"}, (Launcher.jsrun, 1, 3)),
    ],
)
def test_launch_is_read_from_the_launchers_variables(env, expected):
    launch = detect_launch(env)
    assert (launch.launcher, launch.rank, launch.world_size) == expected


def test_a_one_task_allocation_asked_for_two_devices_is_refused_naming_both_counts():
    with pytest.raises(ConfigError) as refused:
        check_launch(detect_launch(BATCH_SHELL), devices=2, num_nodes=1)
    message = str(refused.value)
    assert "trainer.devices=2 x trainer.num_nodes=1 = 2 ranks" in message and "one process inside SLURM job 8 (1 task, no srun step)" in message
    assert "srun --nodes=1 --ntasks-per-node=2" in message
    check_launch(detect_launch(BATCH_SHELL), devices=1, num_nodes=1)  # one device in one task is fine


@pytest.mark.parametrize(
    "env,devices,nodes,fix",
    [
        (SRUN_TASK1, 1, 1, "srun started 2 tasks; run srun --nodes=1 --ntasks-per-node=1"),
        (SRUN_TASK1, 2, 2, "srun started 2 tasks; run srun --nodes=2 --ntasks-per-node=2"),
        (TORCHRUN_RANK1, 4, 1, "torchrun started 2 processes; run torchrun --nnodes=1 --nproc-per-node=4"),
    ],
)
def test_launched_process_counts_must_match_the_trainer(env, devices, nodes, fix):
    with pytest.raises(ConfigError, match=f"= {devices * nodes} ranks?, but {re.escape(fix)}"):
        check_launch(detect_launch(env), devices=devices, num_nodes=nodes)
    check_launch(detect_launch(env), devices=2, num_nodes=1)


def _launcher(compose, *overrides):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose("hydra/launcher=slurm", "variant=L", "data.root=/d", *overrides, hydra=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_slurm_requests_follow_a_cpu_trainer(compose):
    launcher = _launcher(compose, "data.num_workers=3")
    assert launcher["gpus_per_node"] is None  # no gres request at all: a CPU partition accepts the job
    assert (launcher["tasks_per_node"], launcher["nodes"], launcher["cpus_per_task"], launcher["mem_gb"]) == (1, 1, 3, 4)
    assert launcher["timeout_min"] <= 30 and launcher["_target_"] == "hydra_plugins.convnextpose_eval_slurm.SlurmLauncher"


def test_slurm_requests_follow_ddp_and_gpus(compose):
    cpu_ddp = _launcher(compose, "trainer=ddp", "trainer.devices=2", "data.num_workers=0")
    assert (cpu_ddp["gpus_per_node"], cpu_ddp["tasks_per_node"], cpu_ddp["cpus_per_task"], cpu_ddp["mem_gb"]) == (None, 2, 1, 8)
    gpu_ddp = _launcher(compose, "trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=4", "trainer.num_nodes=2")
    assert (gpu_ddp["gpus_per_node"], gpu_ddp["tasks_per_node"], gpu_ddp["nodes"]) == (4, 4, 2)
    assert _launcher(compose, "trainer=gpu")["gpus_per_node"] == 1
    assert _launcher(compose, "trainer=gpu", "hydra.launcher.mem_gb=100")["mem_gb"] == 100  # overridable


def test_hydra_flags_and_their_values_are_not_overrides():
    assert overrides_of(["--cfg", "job", "variant=L", "--resolve", "-c", "hydra", "data.root=/d"]) == ["variant=L", "data.root=/d"]
    assert overrides_of(["--info", "config", "variant=L"]) == ["variant=L"]
    assert overrides_of(["variant=L", "--info"]) == ["variant=L"]
    assert overrides_of(["--cfg=job", "-m", "variant=XS,S"]) == ["variant=XS,S"]


def test_config_digest_ignores_what_cannot_change_a_figure(compose):
    from convnextpose_eval.run.resume import config_digest

    base = config_digest(compose("experiment=demo", "variant=XS"))
    assert config_digest(compose("experiment=demo", "variant=XS", "trainer.progress_bar=false", "data.num_workers=0",
                                 "sweep.resume=true", "trainer.timeout_s=5", "logger=csv")) == base  # fmt: skip
    for changed in ("variant=S", "data.protocol=1", "flip_test=false", "data.batch_size=4", "trainer.precision=bf16-mixed"):
        assert config_digest(compose("experiment=demo", "variant=XS", changed)) != base, changed


def test_lightning_srun_hint_is_not_printed(compose, tmp_path, monkeypatch):
    """Lightning warns wherever an ``srun`` binary is on PATH; the tool silences it where it builds the trainer."""
    from convnextpose_eval.config.checks import checked_config
    from convnextpose_eval.run.evaluation import build_trainer, quiet_lightning

    stub = tmp_path / "bin" / "srun"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}:{os.environ['PATH']}")
    for name in [k for k in os.environ if k.startswith(("SLURM_", "TORCHELASTIC"))] + ["RANK", "WORLD_SIZE"]:
        monkeypatch.delenv(name, raising=False)
    settings = checked_config(compose("experiment=demo", "variant=XS", "trainer.progress_bar=false"))

    def srun_hints(quiet: bool) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if quiet:
                quiet_lightning()
            build_trainer(settings, [])
        return [str(w.message) for w in caught if "srun" in str(w.message)]

    assert srun_hints(quiet=False), "Lightning no longer warns about srun: this test checks nothing"
    assert srun_hints(quiet=True) == []
