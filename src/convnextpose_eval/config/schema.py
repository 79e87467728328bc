"""The typed schema of the whole configuration, as Hydra structured configs.

The YAML files under ``conf/`` hold the values; these dataclasses hold the types. Registered in Hydra's
ConfigStore as ``eval_schema`` and named first in ``eval.yaml``'s defaults, they make OmegaConf parse
every override by its type (``flip_test=no`` is False, ``flip_test=maybe`` is refused, ``data.batch_size=x``
is refused) and refuse keys that do not exist. :func:`check_values` then checks what a type cannot say
(ranges, choices, paths that must exist) before any download or data reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Accelerator(Enum):
    """Where the network runs (Lightning's accelerator names)."""

    cpu = "cpu"
    gpu = "gpu"
    cuda = "cuda"
    auto = "auto"


class Strategy(Enum):
    """One process (auto) or one process per device with every image scored once (ddp)."""

    auto = "auto"
    ddp = "ddp"


class Backend(Enum):
    """What runs the network's forward pass; everything around it is shared."""

    pytorch = "pytorch"
    onnxruntime = "onnxruntime"


class OnnxProvider(Enum):
    """ONNX Runtime's execution provider for backend=onnxruntime."""

    cpu = "cpu"
    cuda = "cuda"


class LoggerKind(Enum):
    """Where a run is tracked besides its folder (Lightning's loggers): nowhere, CSV, TensorBoard or MLflow."""

    none = "none"
    csv = "csv"
    tensorboard = "tensorboard"
    mlflow = "mlflow"


class KeyStyle(Enum):
    """Head layer key names in a released file: dwconv/norm/pwconv (modern) or 0/1/2 (legacy, M and L)."""

    modern = "modern"
    legacy = "legacy"


PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed")


@dataclass
class BackboneConfig:
    name: Optional[str] = None
    depths: Optional[List[int]] = None
    dims: Optional[List[int]] = None
    block_kernel: Optional[int] = None


@dataclass
class HeadConfig:
    channels: Optional[int] = None
    kernels: Optional[List[int]] = None
    upsample: Optional[List[bool]] = None


@dataclass
class CheckpointFileConfig:
    file: Optional[str] = None
    epoch: Optional[int] = None


@dataclass
class PaperConfig:
    params_m: float = MISSING
    gflops: float = MISSING
    mpjpe_p2: Optional[float] = None
    pa_mpjpe_p1: Optional[float] = None


@dataclass
class VariantConfig:
    """One architecture; ``auto`` leaves the shape fields null and takes them from the checkpoint."""

    name: str = MISSING
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    depth_dim: Optional[int] = None
    joint_num: Optional[int] = None
    input_size: int = 256
    key_style: Optional[KeyStyle] = None
    checkpoint: CheckpointFileConfig = field(default_factory=CheckpointFileConfig)
    paper: Optional[PaperConfig] = None


@dataclass
class DataConfig:
    name: str = MISSING
    root: Path = MISSING
    protocol: int = MISSING
    use_gt_info: bool = MISSING
    synthetic: bool = False
    skip_corrupt_s9: bool = False
    corrupt_s9_sequences: List[str] = field(default_factory=list)
    batch_size: int = MISSING
    num_workers: int = MISSING
    pin_memory: Optional[bool] = None
    # Checkpoints that come with the data set (the synthetic sample's), used instead of paths.checkpoint_dir.
    checkpoint_dir: Optional[Path] = None
    crop_cache: bool = True
    crop_cache_dir: Path = MISSING
    index_cache_dir: Path = MISSING


@dataclass
class TrainerConfig:
    accelerator: Accelerator = MISSING
    devices: int = MISSING
    num_nodes: int = 1
    strategy: Strategy = Strategy.auto
    precision: str = "32-true"
    tf32: bool = False
    progress_bar: bool = True
    cudnn_benchmark: Optional[bool] = None


@dataclass
class PathsConfig:
    root_dir: Path = MISSING
    output_root: Path = MISSING
    checkpoint_dir: Path = MISSING
    cache_dir: Path = MISSING
    sample_dir: Path = MISSING


@dataclass
class CheckpointSourceConfig:
    drive_folder_id: str = MISSING


@dataclass
class ReportConfig:
    tolerance_bands: List[Any] = field(default_factory=list)


@dataclass
class BenchConfig:
    images: Optional[int] = None
    repeats: int = 3


@dataclass
class ExportConfig:
    path: Optional[Path] = None
    opset: int = 17


@dataclass
class LoggerConfig:
    """Run tracking: the config, every figure of results.json and the pictures, sent to one logger."""

    name: LoggerKind = LoggerKind.none
    # csv, tensorboard: the folder their versioned logs go under (<save_dir>/<name>/version_N); null: the run folder.
    save_dir: Optional[Path] = None
    # mlflow: a tracking server or store URI; null: $MLFLOW_TRACKING_URI, else <run or sweep folder>/mlflow/mlflow.db.
    tracking_uri: Optional[str] = None
    # mlflow: the experiment the runs are filed under.
    experiment_name: str = "convnextpose-eval"
    # mlflow: the run's name; null: the run folder's name.
    run_name: Optional[str] = None


@dataclass
class EvalConfig:
    """The composed configuration of ``run_eval.py`` (and of bench, export and inspect)."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    variant: VariantConfig = field(default_factory=VariantConfig)
    released: Dict[str, VariantConfig] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    ckpt_path: Optional[Path] = None
    download: bool = True
    checkpoint_source: CheckpointSourceConfig = field(default_factory=CheckpointSourceConfig)
    flip_test: bool = True
    oracle: bool = False
    channels_last: bool = True
    fold_batchnorm: bool = True
    backend: Backend = Backend.pytorch
    onnx_path: Optional[Path] = None
    onnx_provider: OnnxProvider = OnnxProvider.cpu
    report: ReportConfig = field(default_factory=ReportConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register_schema() -> None:
    """Make ``eval_schema`` known to Hydra; ``conf/eval.yaml`` names it first in its defaults."""
    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)


register_schema()
