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
