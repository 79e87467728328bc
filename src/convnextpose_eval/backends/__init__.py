"""What runs the network's forward pass. The evaluator sees only :class:`Forward`; each engine is one module here.

Adding an engine: a module with a ``Forward`` subclass and its ``build(source)``, an entry in
:data:`ENGINES`, and its name in the schema's ``Backend``.
"""

from __future__ import annotations

import importlib

from .base import PIXEL_MEAN, PIXEL_STD, CheckCrops, Forward, ForwardSource

# engine name -> (module, class); imported on use, so optional packages are needed only by their engine.
ENGINES: dict[str, tuple[str, str]] = {
    "pytorch": (".pytorch", "PyTorchForward"),
    "onnxruntime": (".onnxruntime", "OnnxRuntimeForward"),
}


def build_forward(engine: str, source: ForwardSource) -> Forward:
    """The forward pass of ``engine`` built from ``source``: every check of the weights happens here."""
    module_name, class_name = ENGINES[engine]
    engine_class = getattr(importlib.import_module(module_name, __name__), class_name)
    return engine_class.build(source)


__all__ = ["ENGINES", "PIXEL_MEAN", "PIXEL_STD", "CheckCrops", "Forward", "ForwardSource", "build_forward"]
