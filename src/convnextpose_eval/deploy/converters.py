"""Build each format's file from the checkpoint's network, and open it with its runtime.

ONNX float32 is the project's own checked export (``backends.onnx_export``); float16 and int8 derive
from it (:mod:`.onnx_formats`). TFLite comes from ``litert-torch`` (PyTorch to LiteRT directly; its int8
from ``ai-edge-quantizer``'s static recipe, calibrated on the same training-subject crops, the
soft-argmax left in float32). OpenVINO IR is ``openvino.convert_model`` of the ONNX files: float32 from
the float32 export, int8 from the QDQ int8 file (OpenVINO turns its quantize/dequantize pairs into its
own int8 kernels), so both int8 formats share one calibration.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backends.onnx_export import export_onnx
from ..common.atomic import atomic_write_bytes
from ..network import ConvNeXtPose
from . import onnx_formats
from .runners import Runner, onnxruntime_runner, openvino_runner, tflite_runner

_ORT_CUDA = ("CUDAExecutionProvider", {"use_tf32": "0"})
# The TFLite operators int8 covers: the network's body. Reshape, softmax, products and sums (the
# soft-argmax) and the layout transposes stay float32.
TFLITE_INT8_OPERATIONS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RESIZE_BILINEAR")


@dataclass
class Built:
    """A format ready to score: its runner, its file (None for PyTorch) and what its conversion recorded."""

    runner: Runner
    path: Path | None
    conversion: dict[str, Any] = field(default_factory=dict)


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


class Converter:
    """Builds formats into ``folder`` from ``network`` (eval mode, float32), sharing intermediate files."""

    def __init__(self, network: ConvNeXtPose, folder: Path, threads: int, check_inputs: torch.Tensor,
                 calibration: np.ndarray | None, source: dict[str, str], opset: int) -> None:  # fmt: skip
        self.network = network
        self.folder = folder
        self.threads = threads
        self.check_inputs = check_inputs
        self.calibration = calibration
        self.source = source
        self.opset = opset
        self._int8_record: dict[str, Any] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def _need_calibration(self) -> np.ndarray:
        if self.calibration is None:
            raise RuntimeError("no calibration crops were read")
        return self.calibration

    # ------------------------------------------------------------------ ONNX

    def onnx_fp32(self) -> Path:
        path = self.folder / "model_fp32.onnx"
        if not path.is_file():
            export_onnx(self.network, path, opset=self.opset, check_inputs=self.check_inputs, source=self.source)
        return path

    def onnx_fp16(self) -> Path:
        path = self.folder / "model_fp16.onnx"
        if not path.is_file():
            onnx_formats.write_float16(self.onnx_fp32(), path)
        return path

    def onnx_int8(self) -> tuple[Path, dict[str, Any]]:
        path = self.folder / "model_int8.onnx"
        if self._int8_record is None or not path.is_file():
            self._int8_record = onnx_formats.write_int8(self.onnx_fp32(), path, self._need_calibration())
        return path, self._int8_record

    # ------------------------------------------------------------------ TFLite

    def _sample(self) -> tuple[torch.Tensor]:
        return (self.check_inputs[:1].clone(),)

    def tflite_fp32(self) -> Path:
        path = self.folder / "model_fp32.tflite"
        if not path.is_file():
            import litert_torch

            edge = litert_torch.convert(self.network.eval(), self._sample())
            edge.export(str(path))
        return path

    def tflite_int8(self) -> tuple[Path, dict[str, Any]]:
        """Static int8 of the network's body (convolutions, residual adds, upsampling); the soft-argmax's
        operators (reshape, softmax, products, sums) and the layout transposes stay float32."""
        from ai_edge_quantizer import qtyping, quantizer

        path = self.folder / "model_int8.tflite"
        source = self.tflite_fp32()
        calibration = self._need_calibration()
        engine = quantizer.Quantizer(str(source))
        for operation in TFLITE_INT8_OPERATIONS:
            engine.add_static_config(regex=".*", operation_name=getattr(qtyping.TFLOperationName, operation), activation_num_bits=8,
                                     weight_num_bits=8, weight_granularity=qtyping.QuantGranularity.CHANNELWISE)  # fmt: skip
        signature, input_name = _tflite_signature(source)
        samples = {signature: [{input_name: calibration[i : i + 1]} for i in range(len(calibration))]}
        quantized = engine.quantize(engine.calibrate(samples, num_threads=self.threads))
        atomic_write_bytes(path, bytes(quantized.quantized_model))
        return path, {"method": "ai_edge_quantizer static: int8 weights per channel, int8 activations, min/max calibration",
                      "operations_int8": list(TFLITE_INT8_OPERATIONS)}  # fmt: skip

    # ------------------------------------------------------------------ OpenVINO

    def openvino(self, source: Path, name: str) -> Path:
        import openvino as ov

        path = self.folder / f"{name}.xml"
        if not path.is_file():
            ov.save_model(ov.convert_model(str(source)), str(path), compress_to_fp16=False)
        return path

    # ------------------------------------------------------------------ the formats

    def build(self, name: str) -> Built:
        """The named checkpoint format, built (or reused from this folder) and opened."""
        threads = self.threads
        if name == "onnx-fp32":
            path = self.onnx_fp32()
            return Built(onnxruntime_runner(path, threads), path, {"exporter": "torch.onnx.export(dynamo=True)", "opset": self.opset})
        if name == "onnx-fp16":
            path = self.onnx_fp16()
            return Built(onnxruntime_runner(path, threads), path, {"method": "onnxruntime.transformers.float16.convert_float_to_float16",
                                                                  "inputs_outputs": "float32"})  # fmt: skip
        if name == "onnx-int8":
            path, record = self.onnx_int8()
            return Built(onnxruntime_runner(path, threads), path, record)
        if name == "tflite-fp32":
            path = self.tflite_fp32()
            return Built(tflite_runner(path, threads), path, {"converter": f"litert-torch {version('litert-torch')}"})
        if name == "tflite-int8":
            path, record = self.tflite_int8()
            return Built(tflite_runner(path, threads), path, {"converter": f"litert-torch {version('litert-torch')}",
                                                             "quantizer": f"ai-edge-quantizer {version('ai-edge-quantizer')}", **record})  # fmt: skip
        if name == "openvino-fp32":
            path = self.openvino(self.onnx_fp32(), "model_fp32")
            return Built(openvino_runner(path, threads, float_hint=True), path, {"converter": f"openvino.convert_model {version('openvino')}"})
        if name == "openvino-int8":
            onnx_int8, record = self.onnx_int8()
            path = self.openvino(onnx_int8, "model_int8")
            return Built(openvino_runner(path, threads, float_hint=False), path,
                         {"converter": f"openvino.convert_model {version('openvino')} of the onnx-int8 file", "calibration": "as onnx-int8"})  # fmt: skip
        if name == "ort-cuda-fp32":
            path = self.onnx_fp32()
            return Built(onnxruntime_runner(path, threads, [_ORT_CUDA, "CPUExecutionProvider"]), path, {"provider": "CUDA, TF32 off"})
        if name == "ort-cuda-fp16":
            path = self.onnx_fp16()
            return Built(onnxruntime_runner(path, threads, [_ORT_CUDA, "CPUExecutionProvider"]), path, {"provider": "CUDA"})
        if name in ("tensorrt-fp16", "tensorrt-int8"):
            int8 = name.endswith("int8")
            path = self.onnx_int8()[0] if int8 else self.onnx_fp32()
            options = {"trt_fp16_enable": "1", "trt_int8_enable": "1" if int8 else "0"}
            providers = [("TensorrtExecutionProvider", options), _ORT_CUDA, "CPUExecutionProvider"]
            return Built(onnxruntime_runner(path, threads, providers), path, {"provider": "TensorRT", **options})
        raise ValueError(f"unknown format {name}")


def _tflite_signature(path: Path) -> tuple[str, str]:
    """The main signature of a TFLite file and its input's name (how calibration samples are keyed)."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]


def open_user_file(path: Path, threads: int) -> Built:
    """A user's own deployed file, opened with the runtime its suffix names (.onnx, .tflite, .xml)."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return Built(onnxruntime_runner(path, threads), path, {"runtime": f"onnxruntime {version('onnxruntime')}"})
    if suffix == ".tflite":
        return Built(tflite_runner(path, threads), path, {"runtime": f"ai-edge-litert {version('ai-edge-litert')}"})
    return Built(openvino_runner(path, threads, float_hint=True), path, {"runtime": f"openvino {version('openvino')}"})
