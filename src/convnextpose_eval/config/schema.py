"""The typed schema of the whole configuration, as Hydra structured configs.

The YAML files under ``conf/`` hold the values; these dataclasses hold the types. Registered in Hydra's
ConfigStore as ``eval_schema`` and named first in ``eval.yaml``'s defaults, they make OmegaConf parse
every override by its type (``flip_test=no`` is False, ``flip_test=maybe`` is refused, ``data.batch_size=x``
is refused) and refuse keys that do not exist. :func:`~convnextpose_eval.config.checks.checked_config` then checks what a type cannot say
(ranges, choices, paths that must exist) before any download or data reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from .resolvers import register_resolvers


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
    """What runs the network's forward pass (an engine of ``backends/``); everything around it is shared.

    ``auto``: ONNX Runtime on a CPU trainer in exact float32 when its packages are installed (the
    checkpoint exported once into ``paths.cache_dir``), PyTorch otherwise (GPUs, reduced precision, oracle).
    """

    auto = "auto"
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
# The file that marks a folder as a generated synthetic sample (convnextpose_eval.sample writes it).
SAMPLE_MARKER = "SYNTHETIC_SAMPLE.json"


def setting(doc: str, default: Any = MISSING, factory: Any = None) -> Any:
    """A schema field with its one-line description: the one source of ``--help``'s settings list."""
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class BackboneConfig:
    name: Optional[str] = setting("the paper's name for the backbone (Atto, Femto-L); informational", None)
    depths: Optional[List[int]] = setting("blocks per stage, e.g. [3, 3, 9, 3]", None)
    dims: Optional[List[int]] = setting("channels per stage, e.g. [48, 96, 192, 384]", None)
    block_kernel: Optional[int] = setting("depthwise kernel size of the backbone blocks", None)


@dataclass
class HeadConfig:
    channels: Optional[int] = setting("channels of the three head layers (128, 256 or 512 in the releases)", None)
    kernels: Optional[List[int]] = setting("depthwise kernel of each head layer", None)
    upsample: Optional[List[bool]] = setting("bilinear x2 after each head layer or not (the heatmap side must equal depth_dim)", None)


@dataclass
class CheckpointFileConfig:
    file: Optional[str] = setting("the released file name, looked up in paths.checkpoint_dir (ConvNeXtPose_<V>.tar)", None)
    epoch: Optional[int] = setting("the epoch stored in the released file", None)


@dataclass
class PaperConfig:
    params_m: float = setting("parameters in millions, as the paper gives them")
    gflops: float = setting("GFLOPs per image, as the paper gives them")
    mpjpe_p2: Optional[float] = setting("the paper's MPJPE on protocol 2 (mm)", None)
    pa_mpjpe_p1: Optional[float] = setting("the paper's PA-MPJPE on protocol 1 (mm)", None)


@dataclass
class VariantConfig:
    """One architecture; ``auto`` leaves the shape fields null and takes them from the checkpoint."""

    name: str = setting("the variant's name (XS, S, M, L; auto: read from the checkpoint)")
    backbone: BackboneConfig = setting("the ConvNeXt backbone", factory=BackboneConfig)
    head: HeadConfig = setting("the upsampling head", factory=HeadConfig)
    depth_dim: Optional[int] = setting("heatmap depth bins: 32 for XS and S, 64 for M and L", None)
    joint_num: Optional[int] = setting("joints the network predicts (18)", None)
    input_size: int = setting("side of the square input crop in pixels", 256)
    key_style: Optional[KeyStyle] = setting("head key names in the file: modern (dwconv/norm/pwconv) or legacy (0/1/2)", None)
    checkpoint: CheckpointFileConfig = setting("the released checkpoint file", factory=CheckpointFileConfig)
    paper: Optional[PaperConfig] = setting("the paper's figures for this variant (null: none)", None)


@dataclass
class DataConfig:
    name: str = setting("the data set's name (h36m, sample)")
    root: Path = setting("the folder with annotations/, images/ and (use_gt_info=false) bbox_root/")
    protocol: int = setting("1: test on S11 (PA-MPJPE); 2: S9 and S11 (MPJPE); every metric is computed either way")
    use_gt_info: bool = setting("true: ground-truth boxes and root depth; false: RootNet's")
    synthetic: bool = setting("the root is the generated synthetic sample (made on first use at paths.sample_dir)", False)
    skip_corrupt_s9: bool = setting("leave out the three S9 sequences with corrupt ground truth (the paper keeps them)", False)
    corrupt_s9_sequences: List[str] = setting("the sequences skip_corrupt_s9 leaves out", factory=list)
    batch_size: int = setting("images per step (each step runs twice that with the flip test)")
    num_workers: int = setting("DataLoader worker processes")
    pin_memory: Optional[bool] = setting("pinned host memory for the batches (null: on when the run uses a GPU)", None)
    checkpoint_dir: Optional[Path] = setting("checkpoints that come with the data (the sample's), used instead of paths.checkpoint_dir", None)
    crop_cache: bool = setting("keep decoded crops in a memory-mapped store under crop_cache_dir (false: decode every run)", True)
    crop_cache_dir: Path = setting("where the crop store lives")
    index_cache_dir: Path = setting("where the parsed annotation index is cached")


@dataclass
class TrainerConfig:
    accelerator: Accelerator = setting("cpu, gpu, cuda or auto (Lightning's names)")
    devices: int = setting("devices (processes under ddp)")
    num_nodes: int = setting("machines; start one copy per node (SLURM, torchrun)", 1)
    strategy: Strategy = setting("auto (one process) or ddp (one process per device, each image scored once)", Strategy.auto)
    precision: str = setting("32-true (the authors' float32), 32, bf16-mixed or 16-mixed (autocast: faster, inexact)", "32-true")
    tf32: bool = setting("allow TF32 on Ampere and newer GPUs (faster, up to 0.08 mm off)", False)
    progress_bar: bool = setting("show Lightning's progress bar", True)
    cudnn_benchmark: Optional[bool] = setting("let cuDNN pick the fastest convolution algorithms (null: Lightning's default)", None)
    timeout_s: int = setting("seconds every rank waits for the others (process-group set-up, each collective) before all give up", 300)


@dataclass
class PathsConfig:
    root_dir: Path = setting("the project root: $CONVNEXTPOSE_EVAL_ROOT, else the current folder")
    output_root: Path = setting("runs, sweeps, caches and the sample go under here")
    checkpoint_dir: Path = setting("the checkpoint cache: ConvNeXtPose_<V>.tar is looked up and downloaded here")
    cache_dir: Path = setting("the annotation index, the crop store and the ONNX export cache, shared by all runs")
    sample_dir: Path = setting("the generated synthetic sample (data and synthetic-weight checkpoints)")


@dataclass
class CheckpointSourceConfig:
    drive_folder_id: str = setting("the authors' Google Drive folder the released files are downloaded from")


@dataclass
class ReportConfig:
    tolerance_bands: List[Any] = setting("[mm, name] pairs rating |ours - paper| (excellent < 1, ...)", factory=list)
    worst_frames: int = setting("highest-error frames report.html shows with their crop and both skeletons in 2D and 3D", 24)


@dataclass
class BenchConfig:
    images: Optional[int] = setting("test images the bench times (null: all)", None)
    repeats: int = setting("timed repeats of each measurement; the fastest counts", 3)


@dataclass
class ExportConfig:
    path: Optional[Path] = setting("the ONNX file (FILE.onnx) or folder to write (null: <output_root>/onnx/)", None)
    opset: int = setting("the ONNX opset", 17)
    overwrite: bool = setting("replace an existing file this tool did not write (a file it exported is always replaced)", False)


@dataclass
class OnnxCheckConfig:
    """Proof of an exported file on the scored batches (docs/onnx-trust.md)."""

    share: float = setting("share of scored batches also run through the checkpoint's PyTorch network, drawn at random each run", 0.0625)
    min_batches: int = setting("fewest batches cross-checked in a run (all of them when it has fewer)", 2)


@dataclass
class DeployConfig:
    formats: List[str] = setting("the formats to build and score (pytorch-fp32, onnx-fp32/fp16/int8, tflite-fp32/int8, openvino-fp32/int8, ort-cuda-fp32/fp16, tensorrt-fp16/int8); the reference pytorch-fp32 always runs", factory=list)
    files: List[Path] = setting("your own deployed files (.onnx, .tflite, OpenVINO .xml) to score beside them, as rows user:<file name>", factory=list)
    images: Optional[int] = setting("test images scored by every format (null: all)", None)
    calibration_images: int = setting("training-subject crops the int8 formats are calibrated on (each also mirrored)", 32)
    runs: int = setting("timed batch-1 runs per format (warm-up excluded); the latency percentiles come from these", 50)
    warmup: int = setting("untimed batch-1 runs per format before timing", 5)
    throughput_batches: int = setting("timed batches of data.batch_size per format for the throughput (one warm-up batch before)", 5)
    threads: Optional[int] = setting("threads every runtime is given (null: torch's default here)", None)
    bootstrap_resamples: int = setting("paired-bootstrap resamples of the difference from pytorch-fp32", 10000)
    bootstrap_seed: int = setting("the bootstrap's seed", 0)


@dataclass
class SweepConfig:
    resume: bool = setting("in an existing sweep folder, keep each job whose results.json matches its config and checkpoint; rerun the rest", False)


@dataclass
class LoggerConfig:
    """Run tracking: the config, every figure of results.json and the pictures, sent to one logger."""

    name: LoggerKind = setting("none, csv, tensorboard or mlflow", LoggerKind.none)
    save_dir: Optional[Path] = setting("csv, tensorboard: the folder their versioned logs go under (<save_dir>/<name>/version_N); null: the run folder", None)
    tracking_uri: Optional[str] = setting("mlflow: a tracking server or store URI; null: $MLFLOW_TRACKING_URI, else <run or sweep folder>/mlflow/mlflow.db", None)
    experiment_name: str = setting("mlflow: the experiment the runs are filed under", "convnextpose-eval")
    run_name: Optional[str] = setting("mlflow: the run's name; null: the run folder's name", None)
    connect_timeout_s: float = setting("mlflow: seconds a tracking server has to answer before the run is refused, before any compute (also bounds MLflow's own requests)", 10.0)


@dataclass
class EvalConfig:
    """The composed configuration of every command (evaluate, bench, export, inspect) and of the Python API."""

    paths: PathsConfig = setting("where things live", factory=PathsConfig)
    variant: VariantConfig = setting("the architecture to evaluate (variant=XS|S|M|L|auto)", factory=VariantConfig)
    released: Dict[str, VariantConfig] = setting("the four released variants, for checks and reports (same fields as variant)", factory=dict)
    data: DataConfig = setting("the test set (data=h36m|sample)", factory=DataConfig)
    trainer: TrainerConfig = setting("where and how the network runs (trainer=cpu|gpu|ddp)", factory=TrainerConfig)
    ckpt_path: Optional[Path] = setting("a checkpoint file or unzipped snapshot folder (null: paths.checkpoint_dir/<variant file>)", None)
    download: bool = setting("download a missing released checkpoint from the authors' folder", True)
    checkpoint_source: CheckpointSourceConfig = setting("where released checkpoints come from", factory=CheckpointSourceConfig)
    flip_test: bool = setting("average with the mirrored image's prediction (the paper's setting)", True)
    oracle: bool = setting("score ground truth pushed through the same back-projection: an install check (< 1 mm)", False)
    channels_last: bool = setting("channels_last memory layout (same numbers to float rounding, faster)", True)
    fold_batchnorm: bool = setting("fold BatchNorm into the neighbouring convolutions where exact (faster)", True)
    backend: Backend = setting("what runs the forward pass: auto (ONNX Runtime on a CPU trainer in float32, else PyTorch), pytorch or onnxruntime", Backend.auto)
    onnx_path: Optional[Path] = setting("an exported FILE.onnx, or a folder of ConvNeXtPose_<V>.onnx, to score (null: the checkpoint's cached export)", None)
    onnx_provider: OnnxProvider = setting("ONNX Runtime's execution provider: cpu or cuda", OnnxProvider.cpu)
    report: ReportConfig = setting("the comparison with the paper", factory=ReportConfig)
    bench: BenchConfig = setting("the speed measurement (convnextpose-eval bench)", factory=BenchConfig)
    export: ExportConfig = setting("the ONNX export (convnextpose-eval export)", factory=ExportConfig)
    deploy: DeployConfig = setting("the deployed-formats matrix (convnextpose-eval deploy)", factory=DeployConfig)
    onnx_check: OnnxCheckConfig = setting("cross-checks of an exported file against its checkpoint on the scored batches", factory=OnnxCheckConfig)
    sweep: SweepConfig = setting("sweep behaviour (sweep.resume)", factory=SweepConfig)
    logger: LoggerConfig = setting("run tracking (logger=none|csv|tensorboard|mlflow)", factory=LoggerConfig)


def register_schema() -> None:
    """Make ``eval_schema`` known to Hydra; ``conf/eval.yaml`` names it first in its defaults (and the
    resolvers the configs use, see :mod:`.resolvers`)."""
    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)
    register_resolvers()


register_schema()
