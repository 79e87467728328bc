"""Evaluation framework for ConvNeXtPose checkpoints on Human3.6M.

    from convnextpose_eval import evaluate
    result = evaluate("experiment=demo", "variant=S")   # the command line's overrides
    result.to_dict()                                     # the run's results.json

The API (``evaluate``, ``evaluate_sweep``, ``Results``, ``SweepResults``) is imported on first use, so
``import convnextpose_eval`` stays cheap and the command line's one-line refusals stay fast.
"""

from typing import TYPE_CHECKING, Any

from .common.errors import (
    BackendError,
    CheckpointError,
    ConfigError,
    DataError,
    EvalError,
    SweepError,
)

__version__ = "0.1.0"

_API = ("evaluate", "evaluate_sweep", "Results", "SweepResults")
__all__ = [*_API, "EvalError", "ConfigError", "CheckpointError", "DataError", "BackendError", "SweepError"]

if TYPE_CHECKING:
    from .api import Results, SweepResults, evaluate, evaluate_sweep


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
