"""Each input file is read and hashed once per process, however many steps of a run need it.

A run's plan hashes the checkpoint, the engine loads it, resume and the results record its sha256; an
exported ONNX file is checked, parsed and hashed before its session opens. Each of these asks here, and
the file is read again only when it changed: the key is the file's identity as the kernel reports it
(device, inode, size, modification and status-change times; for a folder, every file below it), so an
edit made in place, even with its times restored, is a new read (the status-change time cannot be set back).
"""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Kept results per kind of read: a sweep holds at most a few checkpoints and exports at once.
_KEEP = 4


def file_identity(path: Path) -> tuple[Any, ...]:
    """What changes whenever the content of ``path`` (a file, or a folder's files) may have changed."""
    def one(status: os.stat_result) -> tuple[int, ...]:
        return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)

    if path.is_dir():
        return tuple(sorted((str(p.relative_to(path)), one(p.stat())) for p in path.rglob("*") if p.is_file()))
    return one(path.stat())


def _identities(paths: list[Path]) -> tuple[Any, ...]:
    try:
        return tuple(file_identity(p) for p in paths)
    except OSError:
        return ("gone",)


class ReadOnce:
    """Results of reading files, by kind of read and file identity; ``reads`` counts the real reads made."""

    def __init__(self) -> None:
        self._kept: dict[str, OrderedDict[tuple[Any, ...], Any]] = {}
        self._lock = threading.Lock()
        self.reads: Counter[tuple[str, str]] = Counter()

    def get(self, kind: str, path: Path, read: Callable[[], T], also_read: Callable[[T], list[Path]] | None = None) -> T:
        """``read()``'s result for ``path`` as it is now: computed on the first ask, or after the file changed.

        ``also_read(result)``: other files the result was read from (an ONNX model's external data); a change
        to any of them is a change too.
        """
        resolved = Path(path).resolve()
        try:
            key = (str(resolved), file_identity(resolved))
        except OSError:
            return read()  # missing or unreadable: the reader says so in its own words
        with self._lock:
            kept = self._kept.setdefault(kind, OrderedDict())
            found = kept.get(key)
        if found is not None and _identities(found[1]) == found[2]:
            with self._lock:
                kept.move_to_end(key)
            return found[0]
        value = read()
        extra = also_read(value) if also_read else []
        with self._lock:
            self.reads[(kind, str(resolved))] += 1
            kept[key] = (value, extra, _identities(extra))
            while len(kept) > _KEEP:
                kept.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self.reads.clear()


FILES = ReadOnce()
