"""One evaluation from a composed config: checks -> plan -> evaluator + datamodule -> trainer.test -> results.

The run's decisions come from its plan (``plan.py``); how it fails or is interrupted, from ``failures.py``.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from ..backends import CheckCrops
from ..common.errors import ConfigError, EvalError, one_line
from ..common.launch import Launch, Launcher, check_launch, detect_launch
from ..config.checks import checked_config
from ..config.compose import as_plain
from ..config.schema import SAMPLE_MARKER, Accelerator, EvalConfig, Strategy
from ..data.datamodule import H36MDataModule
from ..model.evaluator import PoseEvaluator
from ..report.html import run_page_files
from ..report.summary import format_summary, oracle_verdict
from ..results.files import RESULTS_FILE
from ..results.records import InferenceSettings, RunSettings
from ..results.writer import ResultsWriter
from .failures import (
    drop_empty_log,
    failure_reason,
    interrupt_signal,
    leave_no_empty_folder,
    on_signal,
    received_signals,
    record_failure,
)
from .folder import RunFolder
from .plan import RunPlan, plan_run, uses_gpu
from .resume import config_digest, kept_results
from .tracking import RunTracker, trainer_logger

log = logging.getLogger("convnextpose_eval")


def quiet_lightning() -> None:
    """Lightning's tips and the deprecation notices of its dependencies say nothing about the results."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*litlogger.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Printed wherever an srun binary exists (every SLURM login node); this tool starts or finds its ranks itself.
    warnings.filterwarnings("ignore", message=".*srun.*command is available.*")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")


def build_trainer(settings: EvalConfig, callbacks: list[pl.Callback], launch: Launch | None = None) -> pl.Trainer:
    """A test-only Trainer. ``ddp`` launched from a plain shell uses spawned processes.

    Lightning's default DDP launcher re-runs ``sys.argv`` for each extra rank; under Hydra that re-runs a
    ``-m`` sweep in every child and puts them in the wrong folder. Spawning starts the ranks from this
    process instead, so a single run and a sweep job behave the same. Under torchrun or srun the ranks
    exist: their count must match ``devices x num_nodes`` (:func:`check_launch`), and the cluster
    environment is named explicitly rather than left to Lightning's guess (which ignores srun steps whose
    job is called ``bash``). Every rank gives up after ``trainer.timeout_s`` waiting for the others.
    """
    launch = launch or detect_launch()
    trainer_cfg = settings.trainer
    accelerator = trainer_cfg.accelerator.value
    if trainer_cfg.accelerator in (Accelerator.gpu, Accelerator.cuda) and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ConfigError(f"trainer.accelerator={accelerator}: no CUDA GPU is visible (torch {torch.__version__}, {build}); use trainer=cpu")
    check_launch(launch, trainer_cfg.devices, trainer_cfg.num_nodes)
    strategy: Any = trainer_cfg.strategy.value
    plugins: list[Any] = []
    if trainer_cfg.strategy is Strategy.ddp:
        from pytorch_lightning.strategies import DDPStrategy

        timeout = timedelta(seconds=trainer_cfg.timeout_s)
        strategy = DDPStrategy(timeout=timeout) if launch.external else DDPStrategy(start_method="spawn", timeout=timeout)
    if launch.launcher is Launcher.srun:
        from lightning_fabric.plugins.environments import SLURMEnvironment

        plugins.append(SLURMEnvironment(auto_requeue=False))
    elif launch.launcher is Launcher.torchrun:
        from lightning_fabric.plugins.environments import TorchElasticEnvironment

        plugins.append(TorchElasticEnvironment())
    # Under mpirun and jsrun Lightning's own detection (MPIEnvironment, LSFEnvironment) finds the ranks.
    return pl.Trainer(
        accelerator=accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=strategy,
        plugins=plugins or None,
        precision=trainer_cfg.precision,
        logger=trainer_logger(callbacks),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=trainer_cfg.progress_bar,
        use_distributed_sampler=False,
        inference_mode=True,
        benchmark=trainer_cfg.cudnn_benchmark,
    )


# Real test crops, spread over the test set, that an exported file and its checkpoint both run before scoring.
CHECK_CROPS = 4


def check_crops_from(datamodule: H36MDataModule, count: int = CHECK_CROPS) -> torch.Tensor:
    """``count`` test crops spread evenly over the test set, as the data path gives them (uint8, (N, 3, S, S))."""
    dataset = datamodule.dataset
    picks = np.unique(np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int))
    return torch.stack([dataset[int(i)]["image"] for i in picks])


def build_evaluator(plan: RunPlan, check_crops: CheckCrops | None = None) -> PoseEvaluator:
    """The configured engine's forward pass, built from the plan's checkpoint or exported file: every check of
    the weights and the architecture happens here or in the plan, before any data is read.

    ``check_crops(arch)`` gives the real test crops an exported file is then run on beside its checkpoint
    (seeded random crops when None).
    """
    settings = plan.settings
    module = PoseEvaluator(plan.forward_source(check_crops), plan.engine, flip_test=settings.flip_test,
                           oracle=settings.oracle, tf32=settings.trainer.tf32)  # fmt: skip
    module.configure_network()
    return module


def build_datamodule(settings: EvalConfig, input_size: int) -> H36MDataModule:
    """The test set, read and checked (annotations, every image present) before any process is spawned."""
    data = settings.data
    pin_memory = data.pin_memory if data.pin_memory is not None else uses_gpu(settings)
    datamodule = H36MDataModule(
        root=str(data.root),
        protocol=data.protocol,
        use_gt_info=data.use_gt_info,
        input_size=input_size,
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        pin_memory=pin_memory,
        crop_cache_dir=str(data.crop_cache_dir) if data.crop_cache else None,
        index_cache_dir=str(data.index_cache_dir),
        skip_sequences=tuple(data.corrupt_s9_sequences) if data.skip_corrupt_s9 else (),
    )
    datamodule.setup("test")
    return datamodule


def run_settings(settings: EvalConfig, detected_variant: str | None, config_sha256: str | None = None) -> RunSettings:
    """What results.json records of the request. With ``variant=auto`` the detected variant names the run
    and brings its paper figures, so an auto run is compared with the paper like a named one."""
    name = settings.variant.name
    paper = as_plain(settings.variant.paper) if settings.variant.paper is not None else None
    if name == "auto" and detected_variant:
        name, paper = detected_variant, as_plain(settings.released[detected_variant].paper)
    data = settings.data
    return RunSettings(
        variant=name,
        protocol=data.protocol,
        flip_test=settings.flip_test,
        use_gt_info=data.use_gt_info,
        synthetic=data.synthetic or (data.root / SAMPLE_MARKER).is_file(),
        oracle=settings.oracle,
        data_root=str(data.root.resolve()),
        paper=paper,
        bands=tuple((float(limit), str(label)) for limit, label in settings.report.tolerance_bands),
        skip_corrupt_s9=data.skip_corrupt_s9,
        dropped_sequences=tuple(data.corrupt_s9_sequences) if data.skip_corrupt_s9 else (),
        config_sha256=config_sha256,
    )


def inference_settings(settings: EvalConfig, engine: dict[str, Any]) -> InferenceSettings:
    """The numeric settings of the forward pass; ``engine``: what the engine says of itself (``Forward.describe``):
    its name, an exported file's record and, for a file, the precision its weights have."""
    return InferenceSettings(
        precision=engine.get("precision", settings.trainer.precision),
        tf32=settings.trainer.tf32,
        channels_last=settings.channels_last,
        fold_batchnorm=settings.fold_batchnorm,
        backend=engine["backend"],
        onnx=engine.get("onnx"),
    )


def evaluate(plan: RunPlan, output_dir: Path, config_sha256: str | None = None) -> dict[str, Any] | None:
    """Run one evaluation as planned; raise EvalError with a one-line reason on any user-facing failure.

    Returns the results in the launching process, None on the other ranks of an external launch.
    ``config_sha256`` (the composed config's digest) is recorded for ``sweep.resume``.
    """
    settings = plan.settings
    tracker = RunTracker(settings, output_dir)
    datamodules: dict[int, H36MDataModule] = {}

    def datamodule_for(input_size: int) -> H36MDataModule:
        if input_size not in datamodules:
            datamodules[input_size] = build_datamodule(settings, input_size)
        return datamodules[input_size]

    module = build_evaluator(plan, check_crops=lambda arch: check_crops_from(datamodule_for(arch.input_size)))
    record = run_settings(settings, module.detected_variant, config_sha256)
    writer = ResultsWriter(output_dir, record, inference_settings(settings, module.describe_engine()),
                           extra_files=run_page_files(record.bands), worst_frames=settings.report.worst_frames)  # fmt: skip
    datamodule = datamodule_for(module.arch.input_size)
    trainer = build_trainer(settings, [writer, tracker], plan.launch)
    try:
        trainer.test(module, datamodule=datamodule, verbose=False)
    except Exception as exc:  # spawned ranks and DataLoader workers re-raise our errors wrapped
        if isinstance(exc, EvalError) or "convnextpose_eval.common.errors" in str(exc):
            raise EvalError(one_line(exc)) from None
        raise
    if trainer.global_rank != 0:
        return None
    results = writer.collect(trainer)
    if results is None:
        raise EvalError(f"{output_dir / RESULTS_FILE}: the run finished without writing results")
    return results


def evaluate_in_folder(cfg: DictConfig, output_dir: Path, in_sweep: bool = False) -> dict[str, Any] | None:
    """Check the config and the launch, take the run folder, evaluate; raise the tool's errors (EvalError) as they come.

    Only global rank 0 of a torchrun or srun launch locks, clears and writes the run folder; the other
    ranks compute their shard and return None. With ``sweep.resume`` a job whose results.json matches its
    config and checkpoint is kept, not rerun. What a failure leaves: once the folder is this run's
    (locked, and cleared of this tool's earlier files), ``failure.json`` saying why and no empty log;
    before that, nothing (the folder Hydra made is removed) unless the job is part of a sweep, whose
    report lists every job. The Python API and :func:`run_job` both run through here.
    """
    variant = str(cfg.variant.name)
    launch = detect_launch()
    owner = launch.rank == 0
    folder = RunFolder(output_dir)
    taken = False
    try:
        settings = checked_config(cfg)
        check_launch(launch, settings.trainer.devices, settings.trainer.num_nodes)
        digest = config_digest(cfg)
        if owner:
            folder.acquire()
        try:
            plan = plan_run(settings, output_dir)
        except BaseException:  # a bad input, or a signal while planning: the run is this folder's now, its failure is recorded there
            if owner:
                folder.clear_previous_results()
                taken = True
            raise
        if settings.sweep.resume:
            kept, why = kept_results(plan, digest)
            log.info(f"sweep.resume: {'kept' if kept else 'running'} {output_dir.name}: {why}")
            if kept is not None:
                return kept if owner else None
        if owner:
            folder.clear_previous_results()  # refuses a folder holding someone else's files: nothing is written there
            taken = True
        return evaluate(plan, output_dir, digest)
    except BaseException as exc:
        if isinstance(exc, SystemExit) and interrupt_signal(exc) is None:
            raise
        keeps_record = owner and (taken or in_sweep)
        reason = failure_reason(exc, output_dir if keeps_record else None, cfg)
        if keeps_record:
            record_failure(output_dir, variant, reason)
            drop_empty_log(output_dir)
        elif owner and isinstance(exc, EvalError):
            leave_no_empty_folder(output_dir)
        raise
    finally:
        folder.release()


def run_job(cfg: DictConfig) -> dict[str, Any] | None:
    """Hydra task: check, evaluate, print the summary; on failure print one line and exit non-zero.

    Inside a ``-m`` sweep run by Hydra's own launcher an ordinary failure is recorded in ``failure.json``
    and the sweep goes on, so the report lists it; a job of the submitit launcher is a process (a SLURM
    job) of its own and exits non-zero, so SLURM and submitit see it failed too. SIGTERM, SIGINT or
    SIGUSR2 (SLURM's warning before the time limit) stops a run or a whole sweep: the job is recorded as
    failed, a sweep writes its report of the jobs so far, and the exit status is 128 + the signal number.
    Ranks other than global rank 0 print their one line, prefixed with their rank, and exit non-zero.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    quiet_lightning()
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    job_is_process = "SUBMITIT_FOLDER" in os.environ  # set by submitit in the process running a launcher job
    launch = detect_launch()
    owner = launch.rank == 0
    who = "" if launch.world_size == 1 else f"rank {launch.rank} of {launch.world_size}: "
    received_signals.clear()
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)}
    try:
        try:
            results = evaluate_in_folder(cfg, output_dir, in_sweep)
        except BaseException as exc:
            signum = interrupt_signal(exc)
            if signum is None:
                if not isinstance(exc, Exception):
                    raise
                print(f"error: {who}{failure_reason(exc, None, cfg)}", file=sys.stderr)
                if not (owner and in_sweep) or job_is_process:
                    sys.exit(2)
                return None
            print(f"error: {who}{output_dir}: {failure_reason(exc, None, cfg)}", file=sys.stderr)
            if owner and in_sweep:
                from .sweep import report_sweep

                report_sweep(Path(str(hydra_cfg.sweep.dir)), cfg)
            # Skip the final full garbage collection of a large heap (seconds on a loaded machine): stop now.
            gc.freeze()
            sys.exit(128 + int(signum))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        received_signals.clear()
    if results is not None:
        log_summary(results, output_dir)
    return results


def log_summary(results: dict[str, Any], output_dir: Path) -> None:
    """The summary table, the oracle verdict and where results.json is: on the console and in the run's log."""
    log.info(format_summary(results))
    if results.get("oracle"):
        log.info(oracle_verdict(results))
    log.info(f"results: {output_dir / RESULTS_FILE}")
