"""User-facing errors: each carries one line that says which file or setting is wrong and why."""

from __future__ import annotations

import re


class EvalError(Exception):
    """A failure the user can act on; its message is printed as one line, without a traceback."""


class CheckpointError(EvalError):
    """The checkpoint file is unreadable, unsafe, or does not fit the requested architecture."""


class DataError(EvalError):
    """The Human3.6M files are missing, malformed, or select nothing."""


class ConfigError(EvalError):
    """The composed configuration is inconsistent."""


class BackendError(EvalError):
    """An exported (ONNX) model cannot be written, read, or run for the requested architecture."""


class SweepError(EvalError):
    """Some jobs of a sweep failed; ``completed`` holds the results of those that did not."""

    def __init__(self, message: str, completed: list | None = None) -> None:
        super().__init__(message)
        self.completed = list(completed or [])


# How hints name the evaluation command (hints put a whole command in backticks, to be copied as it is). The entry points set it to what the user typed (``python run_eval.py``,
# ``convnextpose-eval``); elsewhere (the Python API, bench, export) it is the form that works from any folder.
_command = ["python -m convnextpose_eval"]


def command() -> str:
    """The evaluation command as hints print it (see :func:`set_command`)."""
    return _command[0]


def set_command(name: str) -> None:
    """Name the evaluation command in every hint this process prints (called once by each entry point)."""
    _command[0] = name


_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception): ")


def one_line(exc: BaseException) -> str:
    """The last meaningful line of an error, without a class-name prefix.

    DataLoader workers and spawned processes re-raise our errors wrapped in a
    multi-line message whose last line is ``module.ClassName: original text``.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return _CLASS_PREFIX.sub("", lines[-1])
