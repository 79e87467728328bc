"""The deployed formats the matrix knows: their names, what builds and runs them, what each keeps in float.

A format is ``ok`` (built, checked, scored and timed), ``skipped`` (its package or device is missing
here: the reason names the ``pip install`` or the hardware) or ``failed`` (the conversion failed or the
runtime lacks an operator: the reason is that one line). See docs/deployment.md.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

REFERENCE = "pytorch-fp32"
USER_PREFIX = "user:"
DEPLOY_EXTRA = 'pip install -e ".[deploy]"'


@dataclass(frozen=True)
class FormatSpec:
    """One row kind: the Python modules it needs (with the pip command that adds them), and the
    parts of the network it keeps in float32 (and why)."""

    name: str
    precision: str
    runtime: str
    modules: tuple[str, ...]
    install: str
    gpu: bool = False
    kept_in_float: str = ""


_SOFT_ARGMAX_FLOAT = ("the soft-argmax (softmax over each joint's volume and the expectation products) stays float32: "
                      "quantized or in float16 its exponentials and sums over 32x32x32 or 64x64x64 bins lose the "
                      "coordinates (whole-graph int8 collapses the output)")  # fmt: skip

FORMATS: tuple[FormatSpec, ...] = (
    FormatSpec(REFERENCE, "float32", "torch", ("torch",), "pip install torch", kept_in_float="everything (the reference)"),
    FormatSpec("onnx-fp32", "float32", "onnxruntime", ("onnx", "onnxruntime"), "pip install onnxruntime", kept_in_float="everything"),
    FormatSpec("onnx-fp16", "float16", "onnxruntime", ("onnx", "onnxruntime"), "pip install onnxruntime",
               kept_in_float="input and output; " + _SOFT_ARGMAX_FLOAT),
    FormatSpec("onnx-int8", "int8", "onnxruntime", ("onnx", "onnxruntime"), "pip install onnxruntime",
               kept_in_float="biases (int32); " + _SOFT_ARGMAX_FLOAT),
    FormatSpec("tflite-fp32", "float32", "ai-edge-litert", ("litert_torch", "ai_edge_litert"), DEPLOY_EXTRA, kept_in_float="everything"),
    FormatSpec("tflite-int8", "int8", "ai-edge-litert", ("litert_torch", "ai_edge_litert", "ai_edge_quantizer"), DEPLOY_EXTRA,
               kept_in_float="input and output; " + _SOFT_ARGMAX_FLOAT),
    FormatSpec("openvino-fp32", "float32", "openvino", ("openvino",), DEPLOY_EXTRA, kept_in_float="everything"),
    FormatSpec("openvino-int8", "int8", "openvino", ("openvino", "onnx", "onnxruntime"), DEPLOY_EXTRA,
               kept_in_float="as onnx-int8 (OpenVINO reads its quantize/dequantize pairs): " + _SOFT_ARGMAX_FLOAT),
    FormatSpec("ort-cuda-fp32", "float32", "onnxruntime-gpu", ("onnxruntime",), "pip install onnxruntime-gpu", gpu=True,
               kept_in_float="everything (TF32 off)"),
    FormatSpec("ort-cuda-fp16", "float16", "onnxruntime-gpu", ("onnxruntime",), "pip install onnxruntime-gpu", gpu=True,
               kept_in_float="as onnx-fp16"),
    FormatSpec("tensorrt-fp16", "float16", "onnxruntime-gpu (TensorRT provider)", ("onnxruntime",),
               "pip install onnxruntime-gpu tensorrt", gpu=True, kept_in_float="TensorRT's choice per layer"),
    FormatSpec("tensorrt-int8", "int8", "onnxruntime-gpu (TensorRT provider)", ("onnxruntime",),
               "pip install onnxruntime-gpu tensorrt", gpu=True, kept_in_float="as onnx-int8 (its quantize/dequantize pairs)"),
)
FORMAT_NAMES: tuple[str, ...] = tuple(spec.name for spec in FORMATS)
BY_NAME = {spec.name: spec for spec in FORMATS}


def missing_module(spec: FormatSpec) -> str | None:
    """The first Python module of ``spec`` that is not installed, or None."""
    for module in spec.modules:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):
            return module
    return None


def skip_reason(spec: FormatSpec) -> str | None:
    """Why ``spec`` cannot be built here (a missing package, with the pip command, or no GPU), or None."""
    module = missing_module(spec)
    if module is not None:
        return f"{module} is not installed; `{spec.install}` adds it"
    if spec.gpu:
        return gpu_skip_reason(spec)
    return None


def gpu_skip_reason(spec: FormatSpec) -> str | None:
    """None when ONNX Runtime here has the provider ``spec`` needs and a CUDA GPU is visible."""
    import onnxruntime as ort
    import torch

    provider = "TensorrtExecutionProvider" if spec.name.startswith("tensorrt") else "CUDAExecutionProvider"
    if not torch.cuda.is_available():
        return f"a GPU format: no CUDA GPU is visible on this machine (unmeasured here); needs {provider} ({spec.install})"
    if provider not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no {provider}; `{spec.install}` adds it"
    return None
