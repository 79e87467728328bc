"""Export ConvNeXtPose to ONNX and run the exported file with ONNX Runtime in place of the PyTorch forward pass.

Only the network call changes: normalization, the flip test, back-projection and
the metrics stay in PyTorch, so an exported model is scored by the same code.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` plus
onnxscript), with the batch axis declared through ``dynamic_shapes``. With
torch 2.13 it exports every variant, folded or not, with a batch axis that
runs at any size (1 included), agreeing with PyTorch to about 1e-5 heatmap
units. It emits opset 18 natively and converts down (onnx's version
converter) when an older opset is asked for; the opset the file really holds
is checked and reported. The TorchScript exporter (``dynamo=False``) also
exports this network correctly, at opset 17 natively and in about a quarter
of the time (1.5 to 2 s of CPU per variant against 5 to 6 s, 8 s for the
first export in a process), but it is deprecated since torch 2.9, so it is
not used. The example batch used for tracing has two
images: ``torch.export`` would specialize a batch of one to a constant.

onnx, onnxruntime and onnxscript are optional (``pip install -e ".[onnx]"``)
and imported only inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write_bytes
from .config.compose import released_variants
from .errors import BackendError, ConfigError
from .network import ArchSpec, ConvNeXtPose
from .network.spec import specs_of

INPUT_NAME = "images"
OUTPUT_NAME = "coords"
METADATA_PREFIX = "convnextpose."
# Where the weights came from, written by the export command beside the architecture.
SOURCE_SHA256_KEY = "source.sha256"
SOURCE_FILE_KEY = "source.file"

# A refusal gate, not an accuracy claim (the measured difference is reported).
# Float32 reordering between PyTorch's and ONNX Runtime's kernels moves the
# coordinates by about 1e-5 heatmap units on every variant; the gate leaves
# two orders of magnitude for other CPUs' kernels (AVX2 / AVX-512 sum in other
# orders). A wrongly exported operator (align_corners, softmax axis, a BatchNorm
# in training mode) moves them by tenths of a unit or more. 1e-3 units is at
# most 0.07 mm for a joint: 2000 mm / 32 depth bins = 62.5 mm per depth unit,
# and about as much per x/y unit for a 2.2 m box on a 32-pixel heatmap.
DEFAULT_TOLERANCE = 1e-3

_CHECK_SEED = 20230601
_CHECK_BATCH = 3
_TRACE_BATCH = 2
_ONNX_FLOAT = 1  # onnx.TensorProto.FLOAT
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendError(
            f'the ONNX backend needs the optional package {module}, which is not installed: pip install -e ".[onnx]"'
        ) from None


def require_onnx_packages() -> None:
    """Fail in one line, before any checkpoint or data is read, when the optional packages are missing."""
    for module in ("onnx", "onnxruntime", "onnxscript"):
        _require(module)


# --------------------------------------------------------------------------- architecture <-> metadata


def _encode(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(_encode(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def arch_metadata(arch: ArchSpec) -> dict[str, str]:
    """metadata_props that identify the architecture (every ArchSpec field, the heatmap side, and the
    released variant it equals, if any), so a file can be matched to a variant without running it."""
    entries = {f"{METADATA_PREFIX}{f.name}": _encode(getattr(arch, f.name)) for f in fields(ArchSpec)}
    entries[f"{METADATA_PREFIX}heatmap_size"] = str(arch.heatmap_size)
    name = _released_name(arch)
    if name is not None:
        entries[f"{METADATA_PREFIX}variant"] = name
    return entries


def arch_from_metadata(path: Path, metadata: dict[str, str]) -> ArchSpec | None:
    """The ArchSpec stored by ``arch_metadata``; None when the file carries none."""
    ours = {k[len(METADATA_PREFIX) :]: v for k, v in metadata.items() if k.startswith(METADATA_PREFIX)}
    if not ours:
        return None
    values: dict[str, Any] = {}
    try:
        for field in fields(ArchSpec):
            text = ours[field.name]
            if field.name == "head_upsample":
                values[field.name] = tuple(_parse_bool(t) for t in text.split(",") if t)
            elif field.name in ("depths", "dims", "head_kernels"):
                values[field.name] = tuple(int(t) for t in text.split(","))
            else:
                values[field.name] = int(text)
    except (KeyError, ValueError) as exc:
        raise BackendError(f"{path}: its {METADATA_PREFIX}* metadata is incomplete or unreadable ({exc})") from None
    return ArchSpec(**values)


def _parse_bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"{text!r} is not true/false")
    return text == "true"


def _released_name(arch: ArchSpec) -> str | None:
    try:
        known = specs_of(released_variants())
    except ConfigError:
        return None
    return next((name for name, spec in known.items() if spec == arch), None)


def _describe(arch: ArchSpec) -> str:
    name = _released_name(arch)
    shape = (
        f"{arch.describe()}, heatmap {arch.heatmap_size}x{arch.heatmap_size}, {arch.joint_num} joints, input {arch.input_size}"
    )
    return f"ConvNeXtPose-{name} ({shape})" if name else f"a ConvNeXtPose network ({shape})"


# --------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportReport:
    """What was written and how closely ONNX Runtime reproduced PyTorch on the check inputs."""

    path: Path
    opset: int
    max_abs_diff: float
    tolerance: float
    sha256: str
    onnxruntime_version: str
    onnx_version: str
    torch_version: str
    exporter: str
    check_batch_sizes: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["check_batch_sizes"] = list(self.check_batch_sizes)
        return out


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs optional-package notes (torchvision ops, opset conversion) on every call."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"


def _model_opset(model: Any) -> int:
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def _check_images(path: Path, check_inputs: torch.Tensor | None, size: int) -> torch.Tensor:
    if check_inputs is None:
        generator = torch.Generator().manual_seed(_CHECK_SEED)
        return torch.randn(_CHECK_BATCH, 3, size, size, generator=generator)
    if check_inputs.ndim != 4 or tuple(check_inputs.shape[1:]) != (3, size, size) or check_inputs.shape[0] < 1:
        raise BackendError(
            f"{path}: check_inputs must be (B, 3, {size}, {size}) normalized images, got {tuple(check_inputs.shape)}"
        )
    return check_inputs.detach().to(device="cpu", dtype=torch.float32).contiguous()


def _export_proto(network: ConvNeXtPose, path: Path, opset: int) -> Any:
    size = network.spec.input_size
    device = next(network.parameters()).device
    example = torch.zeros(_TRACE_BATCH, 3, size, size, device=device)
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                network,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
            return program.model_proto
    except Exception as exc:  # the exporter raises many types; the cause stays attached
        raise BackendError(f"{path}: not written: torch.onnx.export (dynamo) failed ({_first_line(exc)})") from exc


def export_onnx(
    network: ConvNeXtPose,
    path: Path,
    opset: int = 17,
    check_inputs: torch.Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    source: Mapping[str, str] | None = None,
) -> ExportReport:
    """Export ``network`` in eval mode (folded or not) and write it only if ONNX Runtime reproduces it.

    The file holds normalized float32 ``images`` (B, 3, S, S) -> ``coords`` (B, J, 3) in heatmap
    units with a dynamic batch axis, and the architecture in its metadata_props. ONNX Runtime (CPU)
    runs ``check_inputs`` (default: three seeded random images) as one batch and the first image
    alone; if any coordinate differs from PyTorch's by more than ``tolerance`` heatmap units, or
    is not finite, nothing is written. The write is atomic. ``source`` (``file``, ``sha256`` of the
    checkpoint) is stored in the metadata too, so a results.json can name the weights behind a file.
    """
    path = Path(path)
    onnx = _require("onnx")
    ort = _require("onnxruntime")
    _require("onnxscript")
    arch = network.spec
    check = _check_images(path, check_inputs, arch.input_size)
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    try:
        model = _export_proto(network, path, opset)
        with torch.inference_mode():
            expected = network(check.to(device)).float().cpu().numpy()
    finally:
        network.train(was_training)
    produced = _model_opset(model)
    if produced != opset:
        raise BackendError(
            f"{path}: not written: asked for opset {opset} but the exporter produced opset {produced}; ask for opset {produced}"
        )
    props = {entry.key: entry.value for entry in model.metadata_props}
    provenance = {f"{METADATA_PREFIX}source.{key}": str(value) for key, value in (source or {}).items()}
    onnx.helper.set_model_props(model, {**props, **arch_metadata(arch), **provenance})
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError
        raise BackendError(f"{path}: not written: the exported model fails onnx's checker ({_first_line(exc)})") from exc
    data = model.SerializeToString()
    try:
        session = _session(ort, data, [_PROVIDERS["cpu"]])
    except Exception as exc:  # onnxruntime's Fail / InvalidGraph / NotImplemented ...
        raise BackendError(f"{path}: not written: onnxruntime cannot load the exported model ({_first_line(exc)})") from exc
    got_batch = session.run([OUTPUT_NAME], {INPUT_NAME: check.numpy()})[0]
    got_single = session.run([OUTPUT_NAME], {INPUT_NAME: check[:1].numpy()})[0]
    if not (np.isfinite(expected).all() and np.isfinite(got_batch).all() and np.isfinite(got_single).all()):
        raise BackendError(f"{path}: not written: PyTorch or ONNX Runtime produced non-finite coordinates on the check inputs")
    if got_batch.shape != expected.shape or got_single.shape != expected[:1].shape:
        raise BackendError(f"{path}: not written: ONNX Runtime returned {got_batch.shape}, PyTorch {expected.shape}")
    max_diff = float(max(np.abs(got_batch - expected).max(), np.abs(got_single - expected[:1]).max()))
    if not max_diff <= tolerance:
        raise BackendError(
            f"{path}: not written: ONNX Runtime's coordinates differ from PyTorch's by up to {max_diff:.3g} "
            f"heatmap units (tolerance {tolerance:g})"
        )
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise BackendError(f"{path}: cannot write the ONNX file ({exc.strerror or exc})") from None
    return ExportReport(
        path=path,
        opset=produced,
        max_abs_diff=max_diff,
        tolerance=tolerance,
        sha256=hashlib.sha256(data).hexdigest(),
        onnxruntime_version=ort.__version__,
        onnx_version=onnx.__version__,
        torch_version=torch.__version__,
        exporter="torch.onnx.export(dynamo=True)",
        check_batch_sizes=(check.shape[0], 1),
    )


# --------------------------------------------------------------------------- checks on a file


def _read_model_bytes(path: Path) -> bytes:
    if not path.exists():
        raise BackendError(f"{path}: no such ONNX file")
    if path.is_dir():
        raise BackendError(f"{path}: is a directory, not an ONNX file")
    if not path.is_file():
        raise BackendError(f"{path}: is not a regular file, so not an ONNX file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BackendError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if not data:
        raise BackendError(f"{path}: is empty (0 bytes); the export or copy did not complete")
    if data.startswith(b"PK\x03\x04"):
        raise BackendError(
            f"{path}: is a zip archive (a PyTorch checkpoint?), not an ONNX model; "
            "export it first with python -m convnextpose_eval.export"
        )
    return data


def _parse_model(onnx: Any, path: Path, data: bytes) -> Any:
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends all mean the same to a user
        raise BackendError(f"{path}: is truncated or not an ONNX model (it does not parse: {_first_line(exc)})") from None
    if not model.graph.node or not model.opset_import:
        raise BackendError(f"{path}: is truncated or not an ONNX model (it parses to no graph or no opset)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx's ValidationError and C++ checker errors
        raise BackendError(f"{path}: is truncated or not a valid ONNX model ({_first_line(exc)})") from None
    return model


def _dims(value_info: Any) -> list[int | str | None]:
    """Each dimension as its size, its symbolic name, or None when the file leaves it open."""
    out: list[int | str | None] = []
    for dim in value_info.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            out.append(dim.dim_value)
        else:
            out.append(dim.dim_param or None)
    return out


def _check_signature(path: Path, model: Any, arch: ArchSpec) -> tuple[str, str]:
    """One float32 (B, 3, S, S) input and one float32 (B, J, 3) output, B left dynamic."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise BackendError(
            f"{path}: has {len(inputs)} inputs and {len(outputs)} outputs; a ConvNeXtPose export has one of each (images -> coords)"
        )
    image, coords = inputs[0], outputs[0]
    size, joints = arch.input_size, arch.joint_num
    image_dims, coord_dims = _dims(image), _dims(coords)

    def fits(dims: list[int | str | None], expected: tuple[int, ...]) -> bool:
        return len(dims) == len(expected) + 1 and all(not isinstance(d, int) or d == e for d, e in zip(dims[1:], expected))

    if image.type.tensor_type.elem_type != _ONNX_FLOAT or not fits(image_dims, (3, size, size)):
        raise BackendError(
            f"{path}: takes input '{image.name}' of shape {image_dims}, but the requested architecture "
            f"takes float32 (B, 3, {size}, {size})"
        )
    if coords.type.tensor_type.elem_type != _ONNX_FLOAT or not fits(coord_dims, (joints, 3)):
        raise BackendError(
            f"{path}: returns '{coords.name}' of shape {coord_dims}, but the requested architecture "
            f"returns float32 (B, {joints}, 3) joint coordinates"
        )
    for name, dims in ((image.name, image_dims), (coords.name, coord_dims)):
        if isinstance(dims[0], int):
            raise BackendError(
                f"{path}: '{name}' has a fixed batch size of {dims[0]}; export it again with a dynamic batch axis "
                "(python -m convnextpose_eval.export)"
            )
    return image.name, coords.name


def _conv_weight_shapes(model: Any) -> list[tuple[int, ...]]:
    """Weight shapes of the Conv nodes whose weights are stored in the file, in graph (topological) order."""
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    return [
        shapes[node.input[1]]
        for node in model.graph.node
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in shapes
    ]


def _check_weights(path: Path, model: Any, arch: ArchSpec, has_metadata: bool) -> None:
    """The stem and the final layer fix dims[0], head channels and joint_num x depth_dim."""
    convs = _conv_weight_shapes(model)
    if not convs:
        if has_metadata:
            return
        raise BackendError(
            f"{path}: carries no {METADATA_PREFIX}* metadata and no convolution weights to check against "
            f"the requested architecture ({_describe(arch)}); export it with python -m convnextpose_eval.export"
        )
    stem, final = convs[0], convs[-1]
    expected_final = (arch.joint_num * arch.depth_dim, arch.head_channels)
    if stem[:2] != (arch.dims[0], 3) or final[:2] != expected_final:
        raise BackendError(
            f"{path}: its first convolution makes {stem[0]} channels and its last makes {final[0]} from {final[1]}, "
            f"but the requested architecture ({_describe(arch)}) has {arch.dims[0]}, and {expected_final[0]} "
            f"(= {arch.joint_num} joints x depth_dim {arch.depth_dim}) from {arch.head_channels}; "
            "run the variant it was exported from, or export this variant"
        )


def _check_metadata(path: Path, model: Any, arch: ArchSpec) -> bool:
    stored = arch_from_metadata(path, {entry.key: entry.value for entry in model.metadata_props})
    if stored is None:
        return False
    if stored != arch:
        differing = ", ".join(
            f"{f.name} {_encode(getattr(arch, f.name))}"
            for f in fields(ArchSpec)
            if getattr(stored, f.name) != getattr(arch, f.name)
        )
        asked_name = _released_name(arch)
        asked = f"ConvNeXtPose-{asked_name}" if asked_name else "a network"
        stored_name = _released_name(stored)
        advice = f"run with variant={stored_name}" if stored_name else "run with the architecture it was exported from"
        raise BackendError(
            f"{path}: holds {_describe(stored)} but the run asks for {asked} with {differing}; "
            f"{advice}, or export the checkpoint you mean to evaluate"
        )
    return True


def _check_model(path: Path, model: Any, arch: ArchSpec) -> tuple[str, str]:
    """Check a parsed ONNX model against ``arch``; returns its (input, output) names."""
    names = _check_signature(path, model, arch)
    has_metadata = _check_metadata(path, model, arch)
    _check_weights(path, model, arch, has_metadata)
    return names


def onnx_file_name(variant: str) -> str:
    """The name the export command gives a variant's file, and a sweep looks for in a folder."""
    return f"ConvNeXtPose_{variant}.onnx"


def onnx_file_for(path: Path, variant: str) -> Path:
    """``path`` itself, or, when it is a folder, its ``ConvNeXtPose_<variant>.onnx`` (one file per variant for sweeps)."""
    path = Path(path)
    if not path.is_dir():
        return path
    if variant == "auto":
        raise BackendError(f"{path}: is a folder; variant=auto needs onnx_path=FILE.onnx (or name the variant)")
    found = path / onnx_file_name(variant)
    if not found.exists():
        raise BackendError(
            f"{path}: holds no {found.name} for variant={variant}; write it with "
            f"python -m convnextpose_eval.export variant={variant} export.path={path}"
        )
    return found


def read_onnx_arch(path: Path) -> ArchSpec | None:
    """The architecture an exported file records (None for a file exported elsewhere), for runs
    that take the architecture from the file, as variant=auto does from a checkpoint."""
    path = Path(path)
    onnx = _require("onnx")
    model = _parse_model(onnx, path, _read_model_bytes(path))
    return arch_from_metadata(path, {entry.key: entry.value for entry in model.metadata_props})


# --------------------------------------------------------------------------- running an exported file


def _providers(ort: Any, provider: str) -> list[str]:
    if provider not in _PROVIDERS:
        raise BackendError(f"onnx provider '{provider}' is not one of {', '.join(_PROVIDERS)}")
    wanted = _PROVIDERS[provider]
    available = ort.get_available_providers()
    if wanted not in available:
        raise BackendError(
            f"onnxruntime {ort.__version__} has no {wanted} here (it has {', '.join(available)}); "
            "install onnxruntime-gpu with a matching CUDA, or use the cpu provider"
        )
    return [wanted] if provider == "cpu" else [wanted, _PROVIDERS["cpu"]]


def _session(ort: Any, data: bytes, providers: list[str]) -> Any:
    """An InferenceSession whose idle threads sleep instead of spinning.

    Spinning buys microseconds per call, which batches of images taking tens of milliseconds do not
    need, and it takes CPU from the data-loading workers that run beside the network; on a loaded
    two-core machine the batch-16 XS forward ran 15-30 % faster without it.
    """
    options = ort.SessionOptions()
    # As many threads as PyTorch uses here (OMP_NUM_THREADS, or Lightning's share per DDP rank).
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(data, options, providers=providers)


class OnnxForward:
    """The network's forward pass from an ONNX file: normalized images (B, 3, S, S) -> coords (B, J, 3).

    Everything about the file is checked when it is constructed, before any evaluation data is
    read: that it is a whole ONNX model, that its input/output shapes and stored architecture fit
    ``arch``, and that the provider exists. Pickling keeps the path and re-opens (and re-checks)
    the file, so spawned workers get their own session.
    """

    def __init__(self, path: Path, arch: ArchSpec, provider: str = "cpu") -> None:
        self.path = Path(path)
        self.arch = arch
        self.provider = provider
        self._open()

    def _open(self) -> None:
        onnx = _require("onnx")
        ort = _require("onnxruntime")
        providers = _providers(ort, self.provider)
        data = _read_model_bytes(self.path)
        self.sha256 = hashlib.sha256(data).hexdigest()
        model = _parse_model(onnx, self.path, data)
        self._input_name, self._output_name = _check_model(self.path, model, self.arch)
        self._opset = _model_opset(model)
        self._metadata = {entry.key: entry.value for entry in model.metadata_props}
        self._runtime_version = ort.__version__
        try:
            self._session = _session(ort, data, providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's Fail / InvalidGraph / NotImplemented ...
            raise BackendError(f"{self.path}: onnxruntime cannot load it ({_first_line(exc)})") from None
        if providers[0] not in self._session.get_providers():
            raise BackendError(f"{self.path}: onnxruntime could not start {providers[0]} for it; use the cpu provider")

    def info(self) -> dict[str, Any]:
        """What results.json records of the file: its identity, the runtime, and the weights it came from."""
        return {
            "path": str(self.path.resolve()),
            "sha256": self.sha256,
            "provider": self.provider,
            "onnxruntime_version": self._runtime_version,
            "opset": self._opset,
            "source_checkpoint_sha256": self._metadata.get(METADATA_PREFIX + SOURCE_SHA256_KEY),
            "source_checkpoint_file": self._metadata.get(METADATA_PREFIX + SOURCE_FILE_KEY),
        }

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        size = self.arch.input_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise BackendError(f"{self.path}: takes (B, 3, {size}, {size}) images, got {tuple(images.shape)}")
        array = images.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
        coords = self._session.run([self._output_name], {self._input_name: array})[0]
        return torch.from_numpy(coords).to(images.device)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "arch": self.arch, "provider": self.provider, "sha256": self.sha256}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.arch, self.provider = state["path"], state["arch"], state["provider"]
        self._open()
        if self.sha256 != state["sha256"]:
            raise BackendError(f"{self.path}: changed on disk since it was first opened (sha256 differs)")


def time_forward(fn: Callable[[torch.Tensor], torch.Tensor], batches: Sequence[torch.Tensor], repeats: int = 3) -> float:
    """Images per second of ``fn`` over ``batches``: one warm-up call, then the best of ``repeats`` timed passes.

    Best-of rather than mean: on a shared machine the fastest pass is the one least disturbed by others.
    """
    images = sum(batch.shape[0] for batch in batches)
    fn(batches[0])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            fn(batch)
        best = min(best, time.perf_counter() - start)
    return images / best
