"""Cached exports: each checkpoint exported once into ``paths.cache_dir``, then reused by runs, sweep jobs and ranks.

An entry is keyed by everything that decides the exported graph: the checkpoint's sha256, the
architecture, how the network is laid out (BatchNorm folding, channels_last) and arranged for export, the
opset, and the versions of torch, onnx and onnxscript. Next to each file a record holds the full key and
the file's sha256; an entry whose record is missing, foreign or does not match its file is a miss and is
rebuilt, never served. One process exports while the others wait on a file lock, so DDP ranks and parallel
sweep jobs share one export. The file and its record are written atomically.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..common.atomic import atomic_write_json
from ..common.errors import BackendError
from ..network import ArchSpec, ConvNeXtPose
from .onnx_checks import onnx_file_name, require
from .onnx_export import EXPORTER, GRAPH_FORM, export_onnx

CACHE_FORMAT = 1
CACHE_FOLDER = "onnx"
_TOOL = "convnextpose-eval"


@dataclass(frozen=True)
class CachedExport:
    """Where an export lies, whether this call found it there, and its key."""

    path: Path
    hit: bool
    key: str


def export_key(checkpoint_sha256: str, arch: ArchSpec, opset: int, fold_batchnorm: bool, channels_last: bool) -> dict[str, Any]:
    """Everything an exported graph depends on."""
    return {
        "format": CACHE_FORMAT,
        "checkpoint_sha256": checkpoint_sha256,
        "arch": {k: list(v) if isinstance(v, tuple) else v for k, v in arch.to_dict().items()},
        "fold_batchnorm": fold_batchnorm,
        "channels_last": channels_last,
        "opset": opset,
        "exporter": EXPORTER,
        "graph": GRAPH_FORM,
        "torch": torch.__version__,
        "onnx": _version("onnx"),
        "onnxscript": _version("onnxscript"),
    }


def _version(package: str) -> str:
    """An installed package's version, read without importing it (onnxscript alone takes a second)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        require(package)  # one line saying how to install it
        raise


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held while one process checks or writes an entry; the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _record_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _is_valid(path: Path, key: dict[str, Any]) -> bool:
    try:
        record = json.loads(_record_path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("key") == key and record.get("sha256") == _file_sha256(path)


def cached_export(
    network: ConvNeXtPose,
    cache_dir: Path,
    variant: str | None,
    key: dict[str, Any],
    source: dict[str, str],
    check_inputs: Callable[[], torch.Tensor],
    rebuild: bool = False,
) -> CachedExport:
    """The cached export of ``network`` under ``key``, exported (and checked by :func:`export_onnx`) on a miss.

    ``check_inputs()`` (normalized images) is called only when an export is made. ``rebuild`` discards
    the entry first: for a file that exists but failed a later check.
    """
    digest = _digest(key)
    stem = Path(onnx_file_name(variant)).stem if variant else "ConvNeXtPose"
    folder = Path(cache_dir) / CACHE_FOLDER
    path = folder / f"{stem}-{digest[:20]}.onnx"
    try:
        with _locked(folder / f".{digest[:20]}.lock"):
            if rebuild:
                path.unlink(missing_ok=True)
                _record_path(path).unlink(missing_ok=True)
            if _is_valid(path, key):
                return CachedExport(path, True, digest)
            _record_path(path).unlink(missing_ok=True)
            report = export_onnx(network, path, opset=int(key["opset"]), check_inputs=check_inputs(), source=source,
                                 overwrite=True)  # the cache folder is the tool's own
            atomic_write_json(_record_path(path), {"tool": _TOOL, "key": key, "sha256": report.sha256,
                                                   "max_abs_diff": report.max_abs_diff})  # fmt: skip
    except OSError as exc:
        raise BackendError(f"{folder}: cannot keep the ONNX export cache there ({exc.strerror or exc}); set paths.cache_dir") from None
    return CachedExport(path, False, digest)
