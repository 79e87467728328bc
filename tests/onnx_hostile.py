"""Hostile ONNX files the tests build themselves, for the provenance checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def hand_made_graph(real: Path, out: Path, input_size: int, offset_range: tuple[float, float]) -> Path:
    """No network at all: the mean of the image, tiled, plus a constant in ``offset_range`` heatmap units,
    carrying the real export's metadata (its source checkpoint's sha256 included)."""
    model = onnx.load(real)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["mean", "shape"], ["column"]),
            helper.make_node("Tile", ["column", "repeats"], ["tiled"]),
            helper.make_node("Add", ["tiled", "offset"], ["coords"]),
        ],
        "not_a_network",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", 3, input_size, input_size])],
        [helper.make_tensor_value_info("coords", onnx.TensorProto.FLOAT, ["batch", 18, 3])],
        [
            numpy_helper.from_array(np.array([-1, 1, 1], dtype=np.int64), "shape"),
            numpy_helper.from_array(np.array([1, 18, 3], dtype=np.int64), "repeats"),
            numpy_helper.from_array(np.random.default_rng(0).uniform(*offset_range, (18, 3)).astype(np.float32), "offset"),
        ],
    )
    fake = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(fake, {p.key: p.value for p in model.metadata_props})
    onnx.save(fake, out)
    return out
