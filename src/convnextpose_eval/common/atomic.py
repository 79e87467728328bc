"""Write files so that a reader sees either the old content or the whole new content, never a part.

A set of files written together (a run's results) is announced first in a manifest that holds each
file's SHA-256, so whatever a kill leaves behind, the next run can tell its own leftovers from anyone
else's files by their content.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
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


def json_bytes(obj: Any) -> bytes:
    """Indented JSON (NaN allowed, as Python writes it), as the tool writes every JSON file."""
    return (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode("utf-8")


def temporary_names(folder: Path, name: str) -> list[Path]:
    """The temporary files :func:`atomic_write_bytes` leaves for ``name`` when the process is killed mid-write."""
    return sorted(folder.glob(f".{name}.*.tmp"))


def errno_text(exc: OSError) -> str:
    """``ENOSPC: No space left on device``: how a write failure is named in one line."""
    name = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else type(exc).__name__
    return f"{name}: {exc.strerror or exc}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_file_set(folder: str | os.PathLike[str], files: Sequence[tuple[str, bytes]], manifest: str, owner: str) -> None:
    """Write ``files`` (name, content) into ``folder``, each atomically, in order, announced by ``manifest``.

    The manifest ({"tool": owner, "files": {name: sha256}}) is written durably before the first file and
    removed after the last, so a kill at any moment leaves only files whose content it vouches for. A
    failure (a full disk, a quota, a file size limit) or a signal removes what was written and raises; an
    OSError then carries the errno and the path of the file that could not be written.
    """
    folder = Path(folder)
    announced = folder / manifest
    written: list[Path] = []
    target = announced
    try:
        atomic_write_bytes(announced, json_bytes({"tool": owner, "files": {name: _sha256(data) for name, data in files}}))
        for name, data in files:
            target = folder / name
            atomic_write_bytes(target, data)
            written.append(target)
    except BaseException as exc:
        for path in [*written, announced]:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
        raise
    try:
        announced.unlink()
    except OSError:
        pass  # a manifest left beside complete files only tells the next run that they are its own


def announced_files(folder: str | os.PathLike[str], manifest: str, owner: str) -> dict[str, str]:
    """Name -> SHA-256 of the files an interrupted :func:`write_file_set` of ``owner`` meant to write; {} if none."""
    try:
        content = json.loads((Path(folder) / manifest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not (isinstance(content, dict) and content.get("tool") == owner and isinstance(content.get("files"), dict)):
        return {}
    return {str(name): str(digest) for name, digest in content["files"].items()}


def has_content(path: Path, sha256: str) -> bool:
    """Whether the file at ``path`` holds exactly the content of that SHA-256."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == sha256


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """atomic_write_bytes of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """atomic_write_bytes of indented JSON (NaN allowed, as Python writes it)."""
    atomic_write_bytes(path, json_bytes(obj))
