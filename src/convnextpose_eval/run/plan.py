"""A run's decisions, made once from its checked config and passed on as data.

Which engine runs the network, which checkpoint (path, sha256, architecture) it scores or proves an
exported file against, which ONNX file runs and what will be proven about it, how the run was launched,
and where it writes. Evaluation, resume, the bench, the export and the API read a :class:`RunPlan`; none
of them decides any of this again. Files are read through ``common/read_once.py``, so planning costs no
second read of the checkpoint when the engine then loads it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..backends import CheckCrops, ForwardSource
from ..backends.onnx_checks import (
    onnx_file_for,
    onnx_packages_installed,
    require_onnx_packages,
)
from ..checkpoint.architecture import resolve_arch
from ..checkpoint.fetch import locate_checkpoint
from ..checkpoint.reader import read_checkpoint
from ..common.errors import ConfigError
from ..common.launch import Launch, detect_launch
from ..config.compose import as_plain, variant_table
from ..config.schema import Accelerator, Backend, EvalConfig
from ..network import ArchSpec
from ..sample.generator import ensure_sample

PYTORCH = "pytorch"
ONNXRUNTIME = "onnxruntime"


@dataclass(frozen=True)
class CheckpointPlan:
    """The checkpoint a run scores, or proves its ONNX file against: read once, checked against the variant."""

    path: Path
    sha256: str
    arch: ArchSpec


@dataclass(frozen=True)
class OnnxPlan:
    """The exported file that runs. ``path`` None: the checkpoint's own export, made once into the cache.
    ``proven_against``: the sha256 of the checkpoint the file is run beside on scored batches; None when
    no checkpoint is known (the file is scored unproven, and results.json says so)."""

    path: Path | None
    proven_against: str | None


@dataclass(frozen=True)
class RunPlan:
    """Everything about a run that is decided before any data is read."""

    settings: EvalConfig
    engine: str
    checkpoint: CheckpointPlan | None
    onnx: OnnxPlan | None
    launch: Launch
    run_dir: Path | None

    def forward_source(self, check_crops: CheckCrops | None = None) -> ForwardSource:
        """What the engine is built from (``backends.build_forward``)."""
        settings = self.settings
        return ForwardSource(
            variant=as_plain(settings.variant),
            known=known_architectures(settings),
            ckpt_path=str(self.checkpoint.path) if self.checkpoint else None,
            onnx_path=str(self.onnx.path) if self.onnx and self.onnx.path else None,
            cache_dir=str(settings.paths.cache_dir),
            channels_last=settings.channels_last,
            fold_batchnorm=settings.fold_batchnorm,
            provider=settings.onnx_provider.value,
            opset=settings.export.opset,
            check_crops=check_crops,
            check_share=settings.onnx_check.share,
            check_min_batches=settings.onnx_check.min_batches,
        )

    def with_cached_export(self) -> "RunPlan":
        """The same run on ONNX Runtime over the checkpoint's cached export (the bench's (e) and (f))."""
        if self.checkpoint is None:
            raise ConfigError("an ONNX Runtime run of the checkpoint's export needs a checkpoint")
        require_onnx_packages(exporting=True)
        return replace(self, engine=ONNXRUNTIME, onnx=OnnxPlan(path=None, proven_against=self.checkpoint.sha256))


def known_architectures(settings: EvalConfig) -> dict[str, ArchSpec]:
    """The released variants' architectures, by name: what a checkpoint is matched against."""
    return {name: ArchSpec.from_variant(node) for name, node in variant_table(settings).items()}


def uses_gpu(settings: EvalConfig) -> bool:
    """Whether the configured trainer will run on CUDA devices."""
    return torch.cuda.is_available() and settings.trainer.accelerator in (Accelerator.gpu, Accelerator.cuda, Accelerator.auto)


def _engine(settings: EvalConfig) -> str:
    """``backend=auto``: ONNX Runtime (the same numbers, faster on CPUs) on a CPU trainer in exact float32
    with its packages installed, or whenever ``onnx_path`` is given; PyTorch otherwise."""
    if settings.backend is not Backend.auto:
        return settings.backend.value
    if settings.onnx_path is not None:
        return ONNXRUNTIME
    trainer = settings.trainer
    on_cpu = trainer.accelerator is Accelerator.cpu or (trainer.accelerator is Accelerator.auto and not uses_gpu(settings))
    exact = trainer.precision.startswith("32") and not trainer.tf32
    return ONNXRUNTIME if on_cpu and exact and not settings.oracle and onnx_packages_installed() else PYTORCH


def export_hint(settings: EvalConfig) -> str:
    """Overrides that let a printed export command find this run's checkpoint and data."""
    file = settings.variant.checkpoint.file
    ckpt = settings.ckpt_path or ((settings.data.checkpoint_dir or settings.paths.checkpoint_dir) / file if file else None)
    parts = [f"ckpt_path={ckpt}"] if ckpt is not None and Path(ckpt).exists() else []
    return shlex.join([*parts, f"data.root={settings.data.root}"])


def _checkpoint_path(settings: EvalConfig, engine: str, download: bool) -> Path | None:
    """``ckpt_path``, or the variant's file in the checkpoint folder (downloaded there if missing and allowed).
    None for an oracle run without one, and for an ONNX file given without ``ckpt_path``."""
    if settings.ckpt_path is not None:
        return settings.ckpt_path
    if (engine == PYTORCH and settings.oracle) or (engine == ONNXRUNTIME and settings.onnx_path is not None):
        return None
    return Path(locate_checkpoint(None, settings.variant.checkpoint.file, settings.data.checkpoint_dir or settings.paths.checkpoint_dir,
                                  settings.checkpoint_source.drive_folder_id, download=download))  # fmt: skip


def plan_run(settings: EvalConfig, run_dir: Path | None = None, engine: str | None = None, purpose: str = "",
             download: bool | None = None) -> RunPlan:  # fmt: skip
    """The run's plan; every check that needs no data happens here (files found, hashed, architecture fits).

    ``engine``: a command that needs one engine (the bench times PyTorch beside ONNX Runtime, the export
    reads a PyTorch checkpoint); a setting asking for another is refused with ``purpose`` as the reason.
    ``download``: whether a missing official checkpoint may be fetched (default: the ``download`` setting).
    """
    if settings.data.synthetic:  # the bundled sample, data and checkpoints, is generated on first use
        ensure_sample(settings.data.root, variants=variant_table(settings))
    if engine is not None and (settings.onnx_path is not None or settings.backend.value not in ("auto", engine)):
        asked = f"onnx_path={settings.onnx_path}" if settings.onnx_path is not None else f"backend={settings.backend.value}"
        raise ConfigError(f"{asked}: {purpose}")
    chosen = engine or _engine(settings)
    onnx = None
    if chosen == ONNXRUNTIME:
        require_onnx_packages(exporting=settings.onnx_path is None)
        if settings.onnx_path is not None:
            onnx = OnnxPlan(onnx_file_for(settings.onnx_path, settings.variant.name, export_hint(settings)), None)
    path = _checkpoint_path(settings, chosen, settings.download if download is None else download)
    checkpoint = None
    if path is not None:
        loaded = read_checkpoint(path)
        arch = resolve_arch(loaded, as_plain(settings.variant), known_architectures(settings))
        checkpoint = CheckpointPlan(path=path, sha256=loaded.sha256, arch=arch)
    if chosen == ONNXRUNTIME:
        onnx = OnnxPlan(onnx.path if onnx else None, checkpoint.sha256 if checkpoint else None)
    return RunPlan(settings=settings, engine=chosen, checkpoint=checkpoint, onnx=onnx, launch=detect_launch(), run_dir=run_dir)
