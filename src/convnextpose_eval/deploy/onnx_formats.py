"""ONNX float16 and int8 from the checked float32 export, with what ONNX Runtime ships.

float16: ``onnxruntime.transformers.float16.convert_float_to_float16`` with the graph's inputs and
outputs kept float32 and the soft-argmax nodes blocked. int8: ``quantize_static`` in QDQ form, weights
per output channel (int8, symmetric), activations uint8 calibrated with min/max over training-subject
crops (:mod:`.calibration`), the soft-argmax nodes excluded. Why the soft-argmax stays float: it is a
softmax over every joint's whole heatmap volume followed by expectations; int8 activations there
flatten the distribution and the coordinates collapse towards the volume's centre (docs/deployment.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..common.atomic import atomic_write_bytes
from ..common.errors import BackendError


def soft_argmax_nodes(model: Any) -> list[str]:
    """Names of the nodes after the network's last convolution (head.final_layer): the soft-argmax.

    The export is a chain ending in that 1x1 convolution, then reshape/softmax/products; every node
    that reads, directly or not, the last Conv's output belongs to the soft-argmax.
    """
    nodes = list(model.graph.node)
    convs = [node for node in nodes if node.op_type == "Conv"]
    if not convs:
        raise BackendError("the ONNX graph has no Conv node: not a ConvNeXtPose export")
    reached = set(convs[-1].output)
    names: list[str] = []
    for node in nodes:  # graph order is topological
        if reached & set(node.input):
            reached |= set(node.output)
            names.append(node.name)
    return names


def _named(model: Any) -> Any:
    """Give unnamed nodes names (the exclusion lists are by name)."""
    for position, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"node_{position}_{node.op_type}"
    return model


def write_float16(source: Path, target: Path) -> list[str]:
    """``source`` (float32 ONNX) converted to float16 at ``target``, its soft-argmax and I/O in float32; returns
    the nodes kept in float."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = _named(onnx.load(str(source)))
    kept = soft_argmax_nodes(model)
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=kept, disable_shape_infer=False)
    atomic_write_bytes(target, converted.SerializeToString())
    return kept


class _Crops:
    """ONNX Runtime's CalibrationDataReader protocol over normalized crops, one at a time."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter([{input_name: images[i : i + 1]} for i in range(len(images))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)

    def rewind(self) -> None:  # quantize_static may call it between passes
        pass


def write_int8(source: Path, target: Path, calibration: np.ndarray) -> dict[str, Any]:
    """Static QDQ int8 of ``source`` at ``target``, calibrated on ``calibration`` (normalized float32 crops);
    returns the settings and the nodes kept in float."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = _named(onnx.load(str(source)))
    kept = soft_argmax_nodes(model)
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="convnextpose-int8-") as scratch:
        named, prepared, quantized = (Path(scratch) / name for name in ("named.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save(model, str(named))
        quant_pre_process(str(named), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(quantized), _Crops(input_name, calibration),
            quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=kept,
        )  # fmt: skip
        atomic_write_bytes(target, quantized.read_bytes())
    return {"method": "onnxruntime.quantization.quantize_static", "format": "QDQ", "per_channel": True,
            "weights": "int8 symmetric", "activations": "uint8", "calibration": "min/max",
            "nodes_kept_float": kept}  # fmt: skip
