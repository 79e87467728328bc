"""Hostile ONNX files the tests build themselves, for the provenance and structure checks.

Each carries a real export's metadata (its architecture and source checkpoint), so only what it computes,
or how, tells it from the real file.
"""

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
            helper.make_node("Expand", ["column", "repeats"], ["tiled"]),
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


def _metadata(real: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(real, load_external_data=False).metadata_props}


def graph_file(real: Path, out: Path, nodes: list, initializers: list, input_size: int,
               opsets: list | None = None, functions: list | None = None) -> Path:
    """``nodes`` from ``images`` (B, 3, S, S) to ``coords`` (B, 18, 3), saved with ``real``'s metadata, unchecked."""
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", 3, input_size, input_size])],
        [helper.make_tensor_value_info("coords", onnx.TensorProto.FLOAT, ["batch", 18, 3])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", 17)], functions=functions or [])
    helper.set_model_props(model, _metadata(real))
    onnx.save(model, out)
    return out


def _to_coords(source: str) -> tuple[list, list]:
    """Nodes turning any (B, ...) float tensor ``source`` into (B, 18, 3) coordinates (its per-image mean, repeated)."""
    nodes = [
        helper.make_node("ReduceMean", [source], ["hostile_mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["hostile_mean", "hostile_column"], ["hostile_col"]),
        helper.make_node("Expand", ["hostile_col", "hostile_shape"], ["coords"]),
    ]
    inits = [numpy_helper.from_array(np.array([-1, 1, 1], dtype=np.int64), "hostile_column"),
             numpy_helper.from_array(np.array([1, 18, 3], dtype=np.int64), "hostile_shape")]
    return nodes, inits


def endless_loop(real: Path, out: Path, input_size: int) -> Path:
    """A ``Loop`` with no trip limit whose condition stays true: it never ends once run."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["state_in"], ["state_out"])],
        "forever",
        [helper.make_tensor_value_info("iteration", onnx.TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_in", onnx.TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_out", onnx.TensorProto.FLOAT, None)],
    )
    tail, inits = _to_coords("looped")
    loop = helper.make_node("Loop", ["", "always", "images"], ["looped"], body=body, name="the_endless_loop")
    inits.append(numpy_helper.from_array(np.array(True), "always"))
    return graph_file(real, out, [loop, *tail], inits, input_size)


def branch(real: Path, out: Path, input_size: int) -> Path:
    """An ``If`` choosing between two constant results: control flow an export of the network never has."""
    def constant_graph(name: str, value: float):
        tensor = numpy_helper.from_array(np.full((1, 18, 3), value, dtype=np.float32))
        return helper.make_graph([helper.make_node("Constant", [], [name], value=tensor)], name, [],
                                 [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, 18, 3])])
    nodes = [helper.make_node("If", ["flag"], ["chosen"], then_branch=constant_graph("a", 1.0), else_branch=constant_graph("b", 2.0), name="the_branch"),
             helper.make_node("Add", ["chosen", "zero"], ["coords"])]
    inits = [numpy_helper.from_array(np.array(True), "flag"), numpy_helper.from_array(np.zeros((1, 18, 3), np.float32), "zero")]
    return graph_file(real, out, nodes, inits, input_size)


def custom_domain_only(real: Path, out: Path, input_size: int) -> Path:
    """A graph whose only opset import is a custom domain, its one node an operator of that domain."""
    nodes = [helper.make_node("Pose", ["images"], ["coords"], domain="com.example.hostile")]
    return graph_file(real, out, nodes, [], input_size, opsets=[helper.make_opsetid("com.example.hostile", 1)])


def fails_when_run(real: Path, out: Path, input_size: int) -> Path:
    """Allowed operators only, loadable, but the Reshape cannot succeed on any real batch: 3 x S x S values per
    image do not split into rows of 18 x 3 (checked only when it runs, the batch axis being symbolic)."""
    nodes = [helper.make_node("Reshape", ["images", "rows"], ["coords"], name="the_bad_reshape")]
    inits = [numpy_helper.from_array(np.array([-1, 18, 3], dtype=np.int64), "rows")]
    return graph_file(real, out, nodes, inits, input_size)


def slow_graph(real: Path, out: Path, input_size: int, steps: int) -> Path:
    """Allowed operators only, and legal, but slow: ``steps`` (B, 3, S, S) x (S, S) products in a row, each a
    fraction of a second on a CPU, so one batch runs for minutes inside ONNX Runtime."""
    nodes, current = [], "images"
    for step in range(steps):
        nodes.append(helper.make_node("MatMul", [current, "identity"], [f"product_{step}"]))
        current = f"product_{step}"
    tail, inits = _to_coords(current)
    inits.append(numpy_helper.from_array(np.eye(input_size, dtype=np.float32), "identity"))
    return graph_file(real, out, [*nodes, *tail], inits, input_size)
