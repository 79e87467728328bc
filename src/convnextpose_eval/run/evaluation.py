"""One evaluation from a composed config: checks -> checkpoint -> evaluator + datamodule -> trainer.test -> results."""

from __future__ import annotations

import gc
import logging
import os
import shlex
import signal
import sys
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from ..backends import CheckCrops
from ..backends.onnx_checks import (
    onnx_file_for,
    onnx_packages_installed,
    require_onnx_packages,
)
from ..checkpoint.fetch import locate_checkpoint
from ..common.atomic import atomic_write_json, atomic_write_text
from ..common.errors import ConfigError, EvalError, one_line
from ..common.launch import Launch, Launcher, check_launch, detect_launch
from ..config.checks import checked_config
from ..config.compose import as_plain, variant_table
from ..config.schema import SAMPLE_MARKER, Accelerator, Backend, EvalConfig, Strategy
from ..data.datamodule import H36MDataModule
from ..model.evaluator import PoseEvaluator
from ..report.summary import format_summary, oracle_verdict
from ..results.files import FAILURE_FILE, RESULTS_FILE, TRACEBACK_FILE
from ..results.records import TOOL_NAME, InferenceSettings, RunSettings
from ..results.writer import ResultsWriter
from ..sample.generator import ensure_sample
from .folder import RunFolder
from .resume import config_digest, kept_results
from .tracking import RunTracker, trainer_logger

log = logging.getLogger("convnextpose_eval")


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT arrived: the run stops, writes no results and exits non-zero."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# Signals received by this process's run: RunInterrupted raised inside library code can surface as that
# code's own error when its clean-up fails half-way (OmegaConf does), so the record says what happened.
_received: list[int] = []


def _interrupt(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise RunInterrupted(signum)


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


def uses_gpu(settings: EvalConfig) -> bool:
    """Whether the configured trainer will run on CUDA devices."""
    return torch.cuda.is_available() and settings.trainer.accelerator in (Accelerator.gpu, Accelerator.cuda, Accelerator.auto)


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


def resolve_backend(settings: EvalConfig) -> Backend:
    """The engine a run uses. ``auto``: ONNX Runtime (the same numbers, faster on CPUs) on a CPU trainer in
    exact float32 with its packages installed, or whenever ``onnx_path`` is given; PyTorch otherwise."""
    if settings.backend is not Backend.auto:
        return settings.backend
    if settings.onnx_path is not None:
        return Backend.onnxruntime
    trainer = settings.trainer
    on_cpu = trainer.accelerator is Accelerator.cpu or (trainer.accelerator is Accelerator.auto and not uses_gpu(settings))
    exact = trainer.precision.startswith("32") and not trainer.tf32
    if on_cpu and exact and not settings.oracle and onnx_packages_installed():
        return Backend.onnxruntime
    return Backend.pytorch


def located_checkpoint(settings: EvalConfig) -> Path | None:
    """The checkpoint a run scores (or proves an exported file against): ``ckpt_path``, or the variant's file
    in the checkpoint folder, downloaded there if missing. None for an oracle run without one, and for an
    ONNX file given without ``ckpt_path``."""
    backend = resolve_backend(settings)
    if settings.ckpt_path is not None:
        return settings.ckpt_path
    if (backend is Backend.pytorch and settings.oracle) or (backend is Backend.onnxruntime and settings.onnx_path is not None):
        return None
    return locate_checkpoint(
        None,
        settings.variant.checkpoint.file,
        settings.data.checkpoint_dir or settings.paths.checkpoint_dir,
        settings.checkpoint_source.drive_folder_id,
        download=settings.download,
    )


def export_hint(settings: EvalConfig) -> str:
    """Overrides that let a printed export command find this run's checkpoint and check crops."""
    file = settings.variant.checkpoint.file
    ckpt = settings.ckpt_path or ((settings.data.checkpoint_dir or settings.paths.checkpoint_dir) / file if file else None)
    parts = [f"ckpt_path={ckpt}"] if ckpt is not None and Path(ckpt).exists() else []
    return shlex.join([*parts, f"data.root={settings.data.root}"])


def check_crops_from(datamodule: H36MDataModule, count: int = CHECK_CROPS) -> torch.Tensor:
    """``count`` test crops spread evenly over the test set, as the data path gives them (uint8, (N, 3, S, S))."""
    dataset = datamodule.dataset
    picks = np.unique(np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int))
    return torch.stack([dataset[int(i)]["image"] for i in picks])


def build_evaluator(settings: EvalConfig, check_crops: CheckCrops | None = None) -> PoseEvaluator:
    """Find the checkpoint (downloading it if needed) and build the configured engine's forward pass from it,
    or from the exported file: every check of the weights and the architecture happens here.

    Everything that needs no data fails before any data is read; ``check_crops(arch)`` gives the real test
    crops an exported file is then run on beside its checkpoint (seeded random crops when None).
    """
    data = settings.data
    if data.synthetic:
        ensure_sample(data.root, variants=variant_table(settings))
    backend = resolve_backend(settings)
    onnx_file = None
    if backend is Backend.onnxruntime:
        require_onnx_packages(exporting=settings.onnx_path is None)
        if settings.onnx_path is not None:
            onnx_file = onnx_file_for(settings.onnx_path, settings.variant.name, export_hint(settings))
    ckpt_path = located_checkpoint(settings)
    module = PoseEvaluator(
        variant=as_plain(settings.variant),
        ckpt_path=str(ckpt_path) if ckpt_path else None,
        flip_test=settings.flip_test,
        channels_last=settings.channels_last,
        fold_batchnorm=settings.fold_batchnorm,
        oracle=settings.oracle,
        tf32=settings.trainer.tf32,
        known_variants=variant_table(settings),
        onnx_path=str(onnx_file) if onnx_file else None,
        onnx_provider=settings.onnx_provider.value,
        backend=backend.value,
        cache_dir=str(settings.paths.cache_dir),
        opset=settings.export.opset,
        check_crops=check_crops,
        check_share=settings.onnx_check.share,
        check_min_batches=settings.onnx_check.min_batches,
    )
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


def inference_settings(settings: EvalConfig, engine: dict[str, Any] | None = None) -> InferenceSettings:
    """The numeric settings of the forward pass; ``engine``: what the engine says of itself (``Forward.describe``):
    its name, an exported file's record and, for a file, the precision its weights have."""
    engine = engine or {"backend": resolve_backend(settings).value}
    return InferenceSettings(
        precision=engine.get("precision", settings.trainer.precision),
        tf32=settings.trainer.tf32,
        channels_last=settings.channels_last,
        fold_batchnorm=settings.fold_batchnorm,
        backend=engine["backend"],
        onnx=engine.get("onnx"),
    )


def evaluate(settings: EvalConfig, output_dir: Path, config_sha256: str | None = None) -> dict[str, Any] | None:
    """Run one evaluation; raise EvalError with a one-line reason on any user-facing failure.

    Returns the results in the launching process, None on the other ranks of an external launch.
    ``config_sha256`` (the composed config's digest) is recorded for ``sweep.resume``.
    """
    tracker = RunTracker(settings, output_dir)
    datamodules: dict[int, H36MDataModule] = {}

    def datamodule_for(input_size: int) -> H36MDataModule:
        if input_size not in datamodules:
            datamodules[input_size] = build_datamodule(settings, input_size)
        return datamodules[input_size]

    module = build_evaluator(settings, check_crops=lambda arch: check_crops_from(datamodule_for(arch.input_size)))
    writer = ResultsWriter(output_dir, run_settings(settings, module.detected_variant, config_sha256),
                           inference_settings(settings, module.describe_backend()))  # fmt: skip
    datamodule = datamodule_for(module.arch.input_size)
    trainer = build_trainer(settings, [writer, tracker])
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


def _record_failure(output_dir: Path, variant: str, reason: str) -> None:
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


def _interrupt_signal(exc: BaseException) -> int | None:
    """The signal a run was stopped by (SIGINT for Ctrl-C, SIGTERM for an exit request), or None for a failure."""
    if isinstance(exc, RunInterrupted):
        return exc.signum
    if _received:
        return _received[-1]
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
    signum = _interrupt_signal(exc)
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


def _leave_no_empty_folder(output_dir: Path) -> None:
    """Remove the folder of a run that failed before it took it, when Hydra's ``.hydra/`` and an empty log
    are all it holds: a refused run leaves nothing behind (any other file, a lock included, keeps it)."""
    import shutil

    log_file = _log_file(output_dir)
    try:
        if {p.name for p in output_dir.iterdir()} <= {".hydra", log_file.name} and not (log_file.is_file() and log_file.stat().st_size):
            shutil.rmtree(output_dir)
    except OSError:
        pass


def _drop_empty_log(output_dir: Path) -> None:
    log_file = _log_file(output_dir)
    if log_file.is_file() and log_file.stat().st_size == 0:
        log_file.unlink(missing_ok=True)


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
        if settings.sweep.resume:
            kept, why = kept_results(settings, output_dir, digest)
            log.info(f"sweep.resume: {'kept' if kept else 'running'} {output_dir.name}: {why}")
            if kept is not None:
                return kept if owner else None
        if owner:
            folder.clear_previous_results()  # refuses a folder holding someone else's files: nothing is written there
            taken = True
        return evaluate(settings, output_dir, digest)
    except BaseException as exc:
        if isinstance(exc, SystemExit) and _interrupt_signal(exc) is None:
            raise
        keeps_record = owner and (taken or in_sweep)
        reason = failure_reason(exc, output_dir if keeps_record else None, cfg)
        if keeps_record:
            _record_failure(output_dir, variant, reason)
            _drop_empty_log(output_dir)
        elif owner and isinstance(exc, EvalError):
            _leave_no_empty_folder(output_dir)
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
    _received.clear()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)}
    try:
        try:
            results = evaluate_in_folder(cfg, output_dir, in_sweep)
        except BaseException as exc:
            signum = _interrupt_signal(exc)
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
        _received.clear()
    if results is not None:
        log_summary(results, output_dir)
    return results


def log_summary(results: dict[str, Any], output_dir: Path) -> None:
    """The summary table, the oracle verdict and where results.json is: on the console and in the run's log."""
    log.info(format_summary(results))
    if results.get("oracle"):
        log.info(oracle_verdict(results))
    log.info(f"results: {output_dir / RESULTS_FILE}")
