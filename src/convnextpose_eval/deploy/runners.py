"""One runner per runtime: normalized float32 crops (B, 3, S, S) in, heatmap coordinates (B, J, 3) out.

Every runner is given the same thread count, so that the matrix compares the formats and not how
many cores each runtime grabs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backends.base import Forward
from ..network import ArchSpec

Runner = Callable[[np.ndarray], np.ndarray]


def pytorch_runner(network: torch.nn.Module, channels_last: bool) -> Runner:
    """The project's PyTorch engine's forward pass (inference mode, channels_last as configured)."""

    def run(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(images)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return network(batch).float().numpy()

    return run


def onnxruntime_runner(path: Path, threads: int, providers: list[Any] | None = None) -> Runner:
    """An ONNX Runtime session of ``path`` (CPU unless ``providers`` says otherwise) with ``threads`` threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    def run(images: np.ndarray) -> np.ndarray:
        return np.asarray(session.run([output_name], {input_name: images})[0], dtype=np.float32)

    return run


def tflite_runner(path: Path, threads: int) -> Runner:
    """LiteRT's interpreter on ``path``. A batch the file does not hold runs one crop at a time: the converter
    bakes the traced batch into its reshapes, and XNNPACK refuses to resize them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    held = int(source["shape"][0])

    def invoke(images: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source["index"], np.ascontiguousarray(images, dtype=np.float32))
        interpreter.invoke()
        return np.array(interpreter.get_tensor(target["index"]), dtype=np.float32)

    def run(images: np.ndarray) -> np.ndarray:
        if images.shape[0] == held:
            return invoke(images)
        if held != 1:
            raise RuntimeError(f"{path.name} holds batch {held}; it cannot run a batch of {images.shape[0]}")
        return np.concatenate([invoke(images[i : i + 1]) for i in range(images.shape[0])])

    return run


def openvino_runner(path: Path, threads: int, float_hint: bool) -> Runner:
    """OpenVINO's CPU plugin on an IR ``.xml``; ``float_hint``: ask for float32 arithmetic (the plugin may
    otherwise pick bf16 on CPUs that have it, which is not the format being measured)."""
    import openvino as ov

    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if float_hint:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()

    def run(images: np.ndarray) -> np.ndarray:
        result = request.infer({0: images})
        return np.asarray(next(iter(result.values())), dtype=np.float32)

    return run


class RunnerForward(Forward):
    """A runner behind the project's Forward interface, so the evaluator's own flip test and
    normalization run every format exactly as they run the checkpoint."""

    engine = "deploy"

    def __init__(self, arch: ArchSpec, runner: Runner, name: str) -> None:
        super().__init__(arch)
        self.runner = runner
        self.name = name

    def run(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runner(images.detach().cpu().numpy()))

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}
