"""Write files so that a reader sees either the old content or the whole new content, never a part."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    """Write to a uniquely named temporary file in the same folder, then rename it over the target.

    ``durable`` fsyncs before the rename, so a crash cannot leave an empty file under the final name;
    caches that can be rebuilt skip it. The file gets the usual umask permissions, not mkstemp's 0600.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """atomic_write_bytes of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """atomic_write_bytes of indented JSON (NaN allowed, as Python writes it)."""
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Raise OSError now if ``folder`` cannot take new files, before any compute is spent."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=target)
    os.close(fd)
    os.unlink(tmp)
