"""Export a ConvNeXtPose network to ONNX, written only when ONNX Runtime reproduces PyTorch on check images.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` plus onnxscript), with the batch axis
declared through ``dynamic_shapes``. The graph is the network with its soft-argmax in the one-pass
arrangement (:func:`~convnextpose_eval.network.soft_argmax_3d_moments`), which ONNX Runtime runs faster;
the file is still checked against the network as PyTorch runs it. With torch 2.13 it exports every
variant, folded or not, with a batch axis that runs at any size (1 included), agreeing with PyTorch to
about 1e-5 heatmap units. It emits opset 18 natively and converts down (onnx's version converter) when
an older opset is asked for; the opset the file really holds is checked and reported. The TorchScript
exporter (``dynamo=False``) also exports this network correctly, at opset 17 natively and in about a
quarter of the time, but it is deprecated since torch 2.9, so it is not used. The example batch used for
tracing has two images: ``torch.export`` would specialize a batch of one to a constant.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.atomic import atomic_write_bytes
from ..common.errors import BackendError
from ..network import ConvNeXtPose, moment_table, soft_argmax_3d_moments
from .onnx_checks import (
    INPUT_NAME,
    METADATA_PREFIX,
    OUTPUT_NAME,
    arch_metadata,
    first_line,
    model_opset,
    require,
)
from .ort_session import PROVIDERS, make_session, run_session

# A refusal gate, not an accuracy claim (the measured difference is reported). Float32 reordering
# between PyTorch's and ONNX Runtime's kernels moves the coordinates by about 1e-5 heatmap units on
# every variant; the gate leaves two orders of magnitude for other CPUs' kernels. A wrongly exported
# operator (align_corners, softmax axis, a BatchNorm in training mode), or weights that are not the
# checkpoint's, move them by tenths of a unit or more. 1e-3 units is at most 0.07 mm for a joint:
# 2000 mm / 32 depth bins = 62.5 mm per depth unit, and about as much per x/y unit for a 2.2 m box on a
# 32-pixel heatmap.
DEFAULT_TOLERANCE = 1e-3
EXPORTER = "torch.onnx.export(dynamo=True)"
# How the exported graph arranges the network (part of the export cache's key): the soft-argmax as moments.
GRAPH_FORM = "soft-argmax-moments"

# The metadata_props entry every file this tool writes carries: how an earlier export is told from a user's file.
TOOL_KEY = METADATA_PREFIX + "tool"
TOOL_NAME = "convnextpose-eval"

_CHECK_SEED = 20230601
_CHECK_BATCH = 3
_TRACE_BATCH = 2


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
    """The exporter logs optional-package notes (torchvision ops, opset conversion) on every call, and its
    optimizer prints its passes on stdout, where a run's summary and a tool's JSON line go."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class ExportedGraph(torch.nn.Module):
    """What is exported: ``network``'s function, with the soft-argmax read in one pass over the volume."""

    def __init__(self, network: ConvNeXtPose) -> None:
        super().__init__()
        self.network = network
        size = network.spec.heatmap_size
        self.register_buffer("moment_table", moment_table(size, size).to(next(network.parameters()).device), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        spec = self.network.spec
        return soft_argmax_3d_moments(self.network.heatmaps(images), spec.joint_num, spec.depth_dim, self.moment_table)


def written_by_this_tool(path: Path) -> bool:
    """Whether ``path`` is an ONNX model this tool exported: its metadata names the tool (files exported before
    the tool recorded its name carry the architecture entries only, which nothing else writes)."""
    onnx = require("onnx")
    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except Exception:  # noqa: BLE001 - unreadable, not protobuf, not ONNX: in any case not ours
        return False
    props = {entry.key: entry.value for entry in model.metadata_props}
    return props.get(TOOL_KEY) == TOOL_NAME or f"{METADATA_PREFIX}depths" in props


def check_replaceable(path: Path, overwrite: bool) -> None:
    """Refuse, in one line, to replace anything at ``path`` but an export of this tool (unless ``overwrite``)."""
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir():
        raise BackendError(f"{path}: is a folder; not replaced by an ONNX file")
    if not path.is_file():
        raise BackendError(f"{path}: exists and is not a regular file; not replaced")
    if not overwrite and not written_by_this_tool(path):
        raise BackendError(
            f"{path}: exists and was not written by {TOOL_NAME} (no {TOOL_KEY} entry in its metadata); not replaced: "
            "choose another export.path, or set export.overwrite=true to replace it"
        )


def check_images(path: Path, check_inputs: torch.Tensor | None, size: int) -> torch.Tensor:
    """``check_inputs`` as contiguous CPU float32, or three seeded random images when none are given."""
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
                ExportedGraph(network).eval(),
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
        raise BackendError(f"{path}: not written: torch.onnx.export (dynamo) failed ({first_line(exc)})") from exc


def export_onnx(
    network: ConvNeXtPose,
    path: Path,
    opset: int = 17,
    check_inputs: torch.Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    source: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> ExportReport:
    """Export ``network`` in eval mode (folded or not) and write it only if ONNX Runtime reproduces it.

    The file holds normalized float32 ``images`` (B, 3, S, S) -> ``coords`` (B, J, 3) in heatmap
    units with a dynamic batch axis, and the architecture in its metadata_props. ONNX Runtime (CPU)
    runs ``check_inputs`` (default: three seeded random images) as one batch and the first image
    alone; if any coordinate differs from PyTorch's by more than ``tolerance`` heatmap units, or
    is not finite, nothing is written. The write is atomic. ``source`` (``file``, ``sha256`` of the
    checkpoint) is stored in the metadata too, so a results.json can name the weights behind a file. An
    existing file at ``path`` is replaced only when this tool wrote it, or with ``overwrite``.
    """
    path = Path(path)
    check_replaceable(path, overwrite)
    onnx = require("onnx")
    ort = require("onnxruntime")
    require("onnxscript")
    arch = network.spec
    check = check_images(path, check_inputs, arch.input_size)
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    try:
        model = _export_proto(network, path, opset)
        with torch.inference_mode():
            expected = network(check.to(device)).float().cpu().numpy()
    finally:
        network.train(was_training)
    produced = model_opset(model)
    if produced != opset:
        raise BackendError(
            f"{path}: not written: asked for opset {opset} but the exporter produced opset {produced}; ask for opset {produced}"
        )
    props = {entry.key: entry.value for entry in model.metadata_props}
    provenance = {f"{METADATA_PREFIX}source.{key}": str(value) for key, value in (source or {}).items()}
    onnx.helper.set_model_props(model, {**props, **arch_metadata(arch), **provenance, TOOL_KEY: TOOL_NAME})
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError
        raise BackendError(f"{path}: not written: the exported model fails onnx's checker ({first_line(exc)})") from exc
    data = model.SerializeToString()
    try:
        session = make_session(ort, data, [PROVIDERS["cpu"]])
    except Exception as exc:  # onnxruntime's Fail / InvalidGraph / NotImplemented ...
        raise BackendError(f"{path}: not written: onnxruntime cannot load the exported model ({first_line(exc)})") from exc
    got_batch = run_session(session, ort, [OUTPUT_NAME], {INPUT_NAME: check.numpy()}, path)[0]
    got_single = run_session(session, ort, [OUTPUT_NAME], {INPUT_NAME: check[:1].numpy()}, path)[0]
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
    check_replaceable(path, overwrite)  # again: a file may have appeared there while the network was exported
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
        exporter=EXPORTER,
        check_batch_sizes=(check.shape[0], 1),
    )
