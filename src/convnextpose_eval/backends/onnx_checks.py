"""What an ONNX file is, read as untrusted input: its bytes and external weights, its graph, and whether it fits.

A file is read once, with every external-data file it names resolved beside it (never against the
working directory), confined to its folder and hashed with it, so the recorded sha256 covers every byte
the runtime will execute, and the session is built from those same bytes. Then its signature, stored
architecture and first and last convolution are checked against the architecture the run asks for,
all before any data is read. These checks are cheap filters, not proof: whether a file computes its
checkpoint's network is decided by running both (``onnxruntime.py``).

onnx, onnxruntime and onnxscript are imported only inside the functions that need them.

Why one module of this length: the checks run in order on one parsed file, each trusting only what the
ones before it established (bytes, external data, opsets, signature, architecture).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import shlex
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

from ..common.errors import BackendError, ConfigError, command
from ..common.read_once import FILES
from ..config.compose import released_variants
from ..network import ArchSpec
from ..network.spec import specs_of

INPUT_NAME = "images"
OUTPUT_NAME = "coords"
METADATA_PREFIX = "convnextpose."
# Where the weights came from, written by the export command beside the architecture.
SOURCE_SHA256_KEY = "source.sha256"
SOURCE_FILE_KEY = "source.file"
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")

_FLOAT = 1  # onnx.TensorProto.FLOAT
# onnx.TensorProto's floating types: FLOAT, FLOAT16, DOUBLE, BFLOAT16 (and the float8 family).
_FLOATING = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 17: "float8", 18: "float8", 19: "float8", 20: "float8"}


def require(module: str) -> Any:
    """An optional package, or one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendError(
            f"the ONNX backend needs the package {module}, which is not installed: pip install onnx onnxruntime onnxscript"
        ) from None


def require_onnx_packages(exporting: bool = True) -> None:
    """Fail in one line, before any checkpoint or data is read, when a package the ONNX path needs is missing
    (onnxscript only matters to an export, and is looked up without the second its import takes)."""
    for module in ONNX_PACKAGES[:2]:
        require(module)
    if exporting and importlib.util.find_spec("onnxscript") is None:
        require("onnxscript")


def onnx_packages_installed() -> bool:
    """Whether onnx, onnxruntime and onnxscript are installed (what backend=auto needs to choose ONNX Runtime),
    found without importing them."""
    return all(importlib.util.find_spec(module) is not None for module in ONNX_PACKAGES)


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"


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
    name = released_name(arch)
    if name is not None:
        entries[f"{METADATA_PREFIX}variant"] = name
    return entries


def arch_from_metadata(path: Path, metadata: dict[str, str]) -> ArchSpec | None:
    """The ArchSpec stored by ``arch_metadata``; None when the file carries none."""
    ours = {k[len(METADATA_PREFIX) :]: v for k, v in metadata.items() if k.startswith(METADATA_PREFIX)}
    if not any(f.name in ours for f in fields(ArchSpec)):
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


def released_name(arch: ArchSpec) -> str | None:
    """XS, S, M or L when ``arch`` is a released variant's architecture."""
    try:
        known = specs_of(released_variants())
    except ConfigError:
        return None
    return next((name for name, spec in known.items() if spec == arch), None)


def describe_arch(arch: ArchSpec) -> str:
    name = released_name(arch)
    shape = (
        f"{arch.describe()}, heatmap {arch.heatmap_size}x{arch.heatmap_size}, {arch.joint_num} joints, input {arch.input_size}"
    )
    return f"ConvNeXtPose-{name} ({shape})" if name else f"a ConvNeXtPose network ({shape})"


# --------------------------------------------------------------------------- reading a file


@dataclass(frozen=True)
class ExternalData:
    """One external-data file a model names, as read: its name (relative to the model's folder), size and hash."""

    location: str
    size: int
    sha256: str


@dataclass(frozen=True)
class OnnxFile:
    """A parsed model with its external weights inlined, and the identity of every byte it was read from.

    ``sha256`` hashes the model file's bytes followed by each external-data file's bytes in the order the
    model first names them; for a self-contained file it is the file's own sha256. ``session_bytes`` is
    the self-contained model the runtime is given: nothing else is read when the session is built.
    """

    path: Path
    model: Any
    session_bytes: bytes
    sha256: str
    external: tuple[ExternalData, ...]

    @property
    def metadata(self) -> dict[str, str]:
        return {entry.key: entry.value for entry in self.model.metadata_props}

    @property
    def opset(self) -> int:
        return model_opset(self.model)


def model_opset(model: Any) -> int:
    """The standard (``ai.onnx``) opset; 0 for a model that imports none (refused by :func:`check_structure`)."""
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)


# --------------------------------------------------------------------------- structure: what may run at all

# Every operator an export of ConvNeXtPose needs, and nothing that loops, branches or calls out. Measured
# (2026-12-07, torch 2.13, tiny and released-shape networks, folded and not): torch.onnx.export with
# dynamo=True at opsets 17-20 emits Add, BatchNormalization, Concat, Conv, Gather, MatMul, ReduceSum, Relu,
# Reshape, Resize, Slice, Softmax, Unsqueeze; the TorchScript exporter (dynamo=False) at opsets 13-20 adds
# Cast, Constant, Identity, Mul, Range and Shape. The rest are the same layers written another way by
# other exporters and graph optimizers: a Softmax decomposed (Exp, ReduceMax, Sub, Div), a head as
# Gemm/Flatten/Transpose, shapes built with ConstantOfShape/Expand/Squeeze, a mean as ReduceMean.
# docs/onnx-trust.md lists the set and why.
ALLOWED_OPS = frozenset({
    "Add", "BatchNormalization", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Div", "Exp", "Expand",
    "Flatten", "Gather", "Gemm", "Identity", "MatMul", "Mul", "Range", "ReduceMax", "ReduceMean", "ReduceSum",
    "Relu", "Reshape", "Resize", "Shape", "Slice", "Softmax", "Squeeze", "Sub", "Transpose", "Unsqueeze",
})  # fmt: skip
CONTROL_FLOW_OPS = frozenset({"Loop", "If", "Scan"})
# Exporters write the standard domain as "" (or its long name); no export of this network needs another.
_STANDARD_DOMAINS = ("", "ai.onnx")
# The opsets the allowed operators are checked at: ONNX Runtime runs them all, and third-party exports of
# this network use them (13 is the oldest with the Softmax, Squeeze and Unsqueeze forms exporters emit).
MIN_OPSET, MAX_OPSET = 13, 21


def check_structure(path: Path, model: Any) -> None:
    """Refuse, in one line naming the node, a graph that could do more than this network's arithmetic.

    Checked on the parsed file before anything runs: a standard opset in the supported range, no local
    functions, no node of another domain, no control flow (a ``Loop`` need never end), no subgraph, and
    only operators of :data:`ALLOWED_OPS`. Whether the arithmetic is the checkpoint's is decided by
    running it (``onnxruntime.py``); this only bounds what a file can make the runtime do.
    """
    domains = [entry.domain or "ai.onnx" for entry in model.opset_import]
    opset = model_opset(model)
    if opset == 0:
        raise BackendError(
            f"{path}: imports no standard ONNX opset (only {', '.join(domains) or 'none'}); "
            "a ConvNeXtPose export uses standard operators only"
        )
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BackendError(f"{path}: uses ONNX opset {opset}; exports of this network are read at opsets {MIN_OPSET} to {MAX_OPSET}")
    if len(model.functions):
        function = model.functions[0]
        raise BackendError(f"{path}: defines its own function '{function.domain}.{function.name}'; refused (no export of this network needs one)")
    for index, node in enumerate(model.graph.node):
        where = f"node {index} '{node.name}'" if node.name else f"node {index}"
        if node.domain not in _STANDARD_DOMAINS:
            raise BackendError(f"{path}: {where} is {node.domain}.{node.op_type}, an operator outside the standard ONNX domain; refused")
        if node.op_type in CONTROL_FLOW_OPS:
            raise BackendError(f"{path}: {where} is a {node.op_type} (control flow); refused before running it: a ConvNeXtPose export has none")
        if any(attribute.HasField("g") or len(attribute.graphs) for attribute in node.attribute):
            raise BackendError(f"{path}: {where} ({node.op_type}) carries a subgraph; refused")
        if node.op_type not in ALLOWED_OPS:
            raise BackendError(
                f"{path}: {where} is a {node.op_type}, an operator no export of this network needs; refused "
                "(the allowed set is in docs/onnx-trust.md)"
            )


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


def _graph_tensors(graph: Any) -> list[Any]:
    """Every TensorProto a graph holds: initializers, sparse initializers' values, node attributes, subgraphs."""
    tensors = list(graph.initializer)
    tensors += [sparse.values for sparse in graph.sparse_initializer]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                tensors.append(attribute.t)
            tensors += list(attribute.tensors)
            if attribute.HasField("g"):
                tensors += _graph_tensors(attribute.g)
            for sub in attribute.graphs:
                tensors += _graph_tensors(sub)
    return tensors


def _external_file(path: Path, location: str) -> Path:
    """``location`` resolved beside the model and confined to its folder (symbolic links followed)."""
    folder = path.resolve().parent
    relative = PurePosixPath(location)
    if not location or relative.is_absolute() or ".." in relative.parts or "\\" in location:
        raise BackendError(f"{path}: names external data '{location}' outside its own folder; refused")
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder):
        raise BackendError(f"{path}: its external data '{location}' leads outside its own folder (to {target}); refused")
    if not target.is_file():
        raise BackendError(f"{path}: its weights are stored in '{location}', which is not a file beside it ({folder / relative})")
    return target


def _inline_external_data(path: Path, model: Any) -> dict[str, bytes]:
    """Read every external tensor's bytes from beside ``path`` into the model; each file read, in order."""
    contents: dict[str, bytes] = {}
    for tensor in _graph_tensors(model.graph):
        if tensor.data_location != 1:  # onnx.TensorProto.EXTERNAL
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if location not in contents:
            target = _external_file(path, location)
            try:
                contents[location] = target.read_bytes()
            except OSError as exc:
                raise BackendError(f"{path}: its external data '{location}' is unreadable ({exc.strerror or exc})") from None
        blob = contents[location]
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else len(blob) - offset
        except ValueError:
            raise BackendError(f"{path}: tensor '{tensor.name}' has an unreadable external-data offset or length") from None
        if offset < 0 or length < 0 or offset + length > len(blob):
            raise BackendError(
                f"{path}: tensor '{tensor.name}' needs bytes {offset}..{offset + length} of '{location}', "
                f"which holds {len(blob)} bytes: a shortened or different weights file"
            )
        tensor.raw_data = blob[offset : offset + length]
        del tensor.external_data[:]
        tensor.data_location = 0  # onnx.TensorProto.DEFAULT
    return contents


def read_onnx_file(path: Path) -> OnnxFile:
    """Read, hash, parse and validate ``path`` (external data included); every failure is one line naming the file.

    Once per process per version of the file (``common/read_once.py``); the key covers the model file, and
    the recorded sha256 covers its external data too, which the runtime gets inlined from this one read.
    """
    return FILES.get("onnx", Path(path), lambda: _read_onnx_file(Path(path)),
                     lambda file: [_external_file(file.path, e.location) for e in file.external])


def _read_onnx_file(path: Path) -> OnnxFile:
    onnx = require("onnx")
    data = _read_model_bytes(path)
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends all mean the same to a user
        raise BackendError(f"{path}: is truncated or not an ONNX model (it does not parse: {first_line(exc)})") from None
    if not model.graph.node or not model.opset_import:
        raise BackendError(f"{path}: is truncated or not an ONNX model (it parses to no graph or no opset)")
    check_structure(path, model)
    contents = _inline_external_data(path, model)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx's ValidationError and C++ checker errors
        raise BackendError(f"{path}: is not a valid ONNX model ({first_line(exc)})") from None
    digest = hashlib.sha256(data)
    for blob in contents.values():
        digest.update(blob)
    external = tuple(ExternalData(name, len(blob), hashlib.sha256(blob).hexdigest()) for name, blob in contents.items())
    session_bytes = model.SerializeToString() if external else data
    return OnnxFile(path=path, model=model, session_bytes=session_bytes, sha256=digest.hexdigest(), external=external)


def read_onnx_arch(path: Path) -> ArchSpec | None:
    """The architecture an exported file records (None for a file exported elsewhere), for runs
    that take the architecture from the file, as variant=auto does from a checkpoint."""
    file = read_onnx_file(Path(path))
    return arch_from_metadata(file.path, file.metadata)


# --------------------------------------------------------------------------- what the file holds


def stored_weights(model: Any) -> tuple[int, dict[str, int]]:
    """The number of floating-point values in the file's initializers, and how many tensors of each dtype."""
    count, dtypes = 0, {}
    for tensor in model.graph.initializer:
        name = _FLOATING.get(tensor.data_type)
        if name is None:
            continue
        size = 1
        for dim in tensor.dims:
            size *= dim
        count += size
        dtypes[name] = dtypes.get(name, 0) + 1
    return count, dtypes


def precision_of(dtypes: dict[str, int]) -> str:
    """results.json's ``precision`` for weights of these dtypes: ``32-true`` for float32 only."""
    if set(dtypes) <= {"float32"}:
        return "32-true"
    return "weights " + "+".join(sorted(dtypes))


# --------------------------------------------------------------------------- checks against an architecture


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

    if image.type.tensor_type.elem_type != _FLOAT or not fits(image_dims, (3, size, size)):
        raise BackendError(
            f"{path}: takes input '{image.name}' of shape {image_dims}, but the requested architecture "
            f"takes float32 (B, 3, {size}, {size})"
        )
    if coords.type.tensor_type.elem_type != _FLOAT or not fits(coord_dims, (joints, 3)):
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
            return  # nothing to compare shapes with; running the file against its checkpoint decides
        raise BackendError(
            f"{path}: carries no {METADATA_PREFIX}* metadata and no convolution weights to check against "
            f"the requested architecture ({describe_arch(arch)}); export it with python -m convnextpose_eval.export"
        )
    stem, final = convs[0], convs[-1]
    expected_final = (arch.joint_num * arch.depth_dim, arch.head_channels)
    if stem[:2] != (arch.dims[0], 3) or final[:2] != expected_final:
        raise BackendError(
            f"{path}: its first convolution makes {stem[0]} channels and its last makes {final[0]} from {final[1]}, "
            f"but the requested architecture ({describe_arch(arch)}) has {arch.dims[0]}, and {expected_final[0]} "
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
        asked_name = released_name(arch)
        asked = f"ConvNeXtPose-{asked_name}" if asked_name else "a network"
        stored_name = released_name(stored)
        advice = f"run with variant={stored_name}" if stored_name else "run with the architecture it was exported from"
        raise BackendError(
            f"{path}: holds {describe_arch(stored)} but the run asks for {asked} with {differing}; "
            f"{advice}, or export the checkpoint you mean to evaluate"
        )
    return True


def check_model(file: OnnxFile, arch: ArchSpec) -> tuple[str, str]:
    """Check a read file against ``arch``; returns its (input, output) names."""
    names = _check_signature(file.path, file.model, arch)
    has_metadata = _check_metadata(file.path, file.model, arch)
    _check_weights(file.path, file.model, arch, has_metadata)
    return names


def onnx_file_name(variant: str) -> str:
    """The name the export command gives a variant's file, and a sweep looks for in a folder."""
    return f"ConvNeXtPose_{variant}.onnx"


def onnx_file_for(path: Path, variant: str, export_hint: str = "") -> Path:
    """``path`` itself, or, when it is a folder, its ``ConvNeXtPose_<variant>.onnx`` (one file per variant for sweeps).

    ``export_hint``: overrides the suggested export command needs to find the same checkpoint and data.
    """
    path = Path(path)
    if not path.is_dir():
        return path
    if variant == "auto":
        raise BackendError(f"{path}: is a folder; variant=auto needs onnx_path=FILE.onnx (or name the variant)")
    found = path / onnx_file_name(variant)
    if not found.exists():
        extra = f" {export_hint}" if export_hint else ""
        raise BackendError(
            f"{path}: holds no {found.name} for variant={variant}; write it with "
            f"`{command()} export variant={variant}{extra} {shlex.quote(f'export.path={path}')}`"
        )
    return found
