"""One evaluation from a composed Hydra config: checkpoint -> module + datamodule -> trainer.test -> files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from .atomic import atomic_write_json, atomic_write_text, check_writable
from .checkpoint.fetch import locate_checkpoint
from .config.variants import released_variants
from .data.datamodule import H36MDataModule
from .errors import ConfigError, EvalError, one_line
from .evaluator import PoseEvaluator
from .report.summary import format_summary
from .results.files import FAILURE_FILE, PREDICTIONS_FILE, RESULTS_FILE
from .results.records import ResultWriter
from .sample.generator import MARKER as SAMPLE_MARKER
from .sample.generator import ensure_sample


def _externally_launched() -> bool:
    """True when a cluster launcher (torchrun, SLURM's srun, LSF, MPI) already started one process per rank."""
    from lightning_fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    return any(env.detect() for env in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment)) or (
        "OMPI_COMM_WORLD_SIZE" in os.environ and MPIEnvironment.detect()
    )


def build_trainer(trainer_cfg: DictConfig) -> pl.Trainer:
    """A test-only Trainer. ``ddp`` launched from a plain shell uses spawned processes.

    Lightning's default DDP launcher re-runs ``sys.argv`` for each extra rank; under
    Hydra that re-runs a ``-m`` sweep in every child and puts them in the wrong
    folder. Spawning starts the ranks from this process instead, so a single run
    and a sweep job behave the same; under torchrun or SLURM the ranks already exist.
    """
    import torch

    if trainer_cfg.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ConfigError(f"trainer.accelerator={trainer_cfg.accelerator}: no CUDA GPU is visible (torch {torch.__version__}, {build}); use trainer=cpu")
    strategy: Any = trainer_cfg.strategy
    if strategy == "ddp" and not _externally_launched():
        from pytorch_lightning.strategies import DDPStrategy

        strategy = DDPStrategy(start_method="spawn")
    return pl.Trainer(
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=strategy,
        precision=trainer_cfg.precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=trainer_cfg.progress_bar,
        use_distributed_sampler=False,
        inference_mode=True,
        benchmark=trainer_cfg.get("cudnn_benchmark"),
    )


def uses_gpu(cfg: DictConfig) -> bool:
    """Whether the configured trainer will run on CUDA devices."""
    import torch

    return torch.cuda.is_available() and cfg.trainer.accelerator in ("gpu", "cuda", "auto")


def _pin_memory(cfg: DictConfig) -> bool:
    return bool(cfg.data.pin_memory) if cfg.data.pin_memory is not None else uses_gpu(cfg)


def _meta(cfg: DictConfig, detected_variant: str | None) -> dict[str, Any]:
    """Run settings for results.json. With ``variant=auto`` the detected variant names the run and
    brings its paper figures, so an auto run is compared with the paper like a named one."""
    name = str(cfg.variant.name)
    paper = OmegaConf.to_container(cfg.variant.paper, resolve=True) if cfg.variant.get("paper") is not None else None
    if name == "auto" and detected_variant:
        name, paper = detected_variant, released_variants()[detected_variant]["paper"]
    return {
        "variant": name,
        "protocol": int(cfg.data.protocol),
        "flip_test": bool(cfg.flip_test),
        "use_gt_info": bool(cfg.data.use_gt_info),
        "synthetic": bool(cfg.data.synthetic) or (Path(cfg.data.root).expanduser() / SAMPLE_MARKER).is_file(),
        "oracle": bool(cfg.oracle),
        "paper": paper,
        "data_root": str(Path(cfg.data.root).expanduser().resolve()),
    }


def build_evaluator(cfg: DictConfig) -> PoseEvaluator:
    """Find the checkpoint (downloading it if needed), load it and check it against the config.

    Everything about the checkpoint fails here, before any data is read.
    """
    if OmegaConf.is_missing(cfg.data, "root"):
        raise ConfigError("data.root is not set: pass data.root=DIR (the folder with annotations/ and images/), or run experiment=demo")
    if cfg.data.synthetic:
        ensure_sample(Path(cfg.data.root))
    ckpt_path = None
    if not (cfg.oracle and not cfg.ckpt_path):
        ckpt_path = locate_checkpoint(
            cfg.ckpt_path,
            cfg.variant.checkpoint.file,
            Path(cfg.paths.checkpoint_dir),
            cfg.checkpoint_source.drive_folder_id,
            download=cfg.download,
        )
    module = PoseEvaluator(
        variant=OmegaConf.to_container(cfg.variant, resolve=True),
        ckpt_path=str(ckpt_path) if ckpt_path else None,
        flip_test=cfg.flip_test,
        channels_last=cfg.channels_last,
        fold_batchnorm=cfg.fold_batchnorm,
        oracle=cfg.oracle,
    )
    module.configure_network()
    return module


def build_datamodule(cfg: DictConfig, input_size: int) -> H36MDataModule:
    """The test set, read and checked (annotations, every image present) before any process is spawned."""
    datamodule = H36MDataModule(
        root=cfg.data.root,
        protocol=cfg.data.protocol,
        use_gt_info=cfg.data.use_gt_info,
        input_size=input_size,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        pin_memory=_pin_memory(cfg),
        crop_cache_dir=cfg.data.crop_cache_dir if cfg.data.crop_cache else None,
        index_cache_dir=cfg.data.index_cache_dir,
    )
    datamodule.setup("test")
    return datamodule


def evaluate(cfg: DictConfig, output_dir: Path) -> dict[str, Any] | None:
    """Run one evaluation; raise EvalError with a one-line reason on any user-facing failure.

    Returns the results on the process that wrote them, None on the other ranks of an external launch.
    """
    try:
        check_writable(output_dir)
    except OSError as exc:
        raise ConfigError(f"{output_dir}: output folder not writable ({exc.strerror or exc})") from None
    for name in (RESULTS_FILE, PREDICTIONS_FILE, FAILURE_FILE):
        (output_dir / name).unlink(missing_ok=True)

    module = build_evaluator(cfg)
    bands = [tuple(band) for band in cfg.report.tolerance_bands]
    module.on_results = ResultWriter(str(output_dir), _meta(cfg, module.checkpoint_info.get("detected_variant")), bands)
    datamodule = build_datamodule(cfg, module.arch.input_size)
    trainer = build_trainer(cfg.trainer)
    try:
        trainer.test(module, datamodule=datamodule, verbose=False)
    except EvalError:
        raise
    except Exception as exc:  # spawned ranks and DataLoader workers re-raise our errors wrapped
        if "convnextpose_eval.errors" in str(exc):
            raise EvalError(one_line(exc)) from None
        raise
    if trainer.global_rank != 0:
        return None  # under torchrun/srun every rank runs this; rank 0 wrote and reports
    results_path = output_dir / RESULTS_FILE
    if not results_path.is_file():
        raise EvalError(f"{results_path}: the run finished without writing results")
    with open(results_path) as handle:
        return json.load(handle)


def _internal_error(exc: Exception, output_dir: Path) -> str:
    """A bug or an unforeseen failure: one line on the console, the traceback in the job folder."""
    import traceback

    text = "".join(traceback.format_exception(exc))
    try:
        atomic_write_text(output_dir / "traceback.txt", text)
        where = f"; traceback in {output_dir / 'traceback.txt'}"
    except OSError:
        where = ""
    return f"unexpected {type(exc).__name__}: {one_line(exc)}{where}"


def run_job(cfg: DictConfig) -> dict[str, Any] | None:
    """Hydra task: evaluate, print the summary; on failure print one line and exit non-zero.

    Inside a ``-m`` sweep a failure is recorded in ``failure.json`` instead of
    exiting, so the remaining jobs run and the sweep report lists it.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        results = evaluate(cfg, output_dir)
    except Exception as exc:
        reason = one_line(exc) if isinstance(exc, EvalError) else _internal_error(exc, output_dir)
        print(f"error: {reason}", file=sys.stderr)
        if not in_sweep:
            sys.exit(2)
        try:
            atomic_write_json(output_dir / FAILURE_FILE, {"variant": cfg.variant.name, "status": "failed", "error": reason})
        except OSError:
            pass  # the sweep report lists a job folder without results as failed anyway
        return None
    if results is None:
        return None
    print(format_summary(results))
    print(f"results: {output_dir / RESULTS_FILE}")
    return results
