"""Find the official checkpoint file in the checkpoint cache, or fetch it from the authors' Drive folder with gdown."""

from __future__ import annotations

import os
from pathlib import Path

from ..common.errors import CheckpointError
from .reader import read_checkpoint


def _offline_message(filename: str, folder: Path, folder_id: str, reason: str) -> str:
    return (
        f"{filename}: not in {folder} and the download failed ({reason}); download it by hand from "
        f"https://drive.google.com/drive/folders/{folder_id} and put it at {folder / filename}, or pass ckpt_path=FILE"
    )


def download_official(filename: str, folder: Path, folder_id: str) -> Path:
    """Fetch one released file from the authors' Drive folder into ``folder``.

    The bytes land under a temporary name, are checked to be a loadable
    checkpoint, and only then renamed: an interrupted download is never used.
    """
    import gdown

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    try:
        listing = gdown.download_folder(id=folder_id, skip_download=True, quiet=True)
    except Exception as exc:  # gdown raises many kinds for no network / quota / HTML pages
        raise CheckpointError(_offline_message(filename, folder, folder_id, " ".join(str(exc).split())[:120])) from None
    entry = next((f for f in listing or [] if Path(f.path).name == filename), None)
    if entry is None:
        raise CheckpointError(_offline_message(filename, folder, folder_id, "the folder listing has no such file"))
    partial = folder / f".{filename}.{os.getpid()}.part"
    try:
        try:
            result = gdown.download(id=entry.id, output=str(partial), quiet=False)
        except Exception as exc:
            raise CheckpointError(_offline_message(filename, folder, folder_id, " ".join(str(exc).split())[:120])) from None
        if result is None or not partial.is_file():
            raise CheckpointError(_offline_message(filename, folder, folder_id, "gdown returned no file"))
        try:
            read_checkpoint(partial)
        except CheckpointError as exc:
            raise CheckpointError(f"{filename}: the downloaded file is not a usable checkpoint ({exc}); it was discarded") from None
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def locate_checkpoint(
    ckpt_path: str | None, filename: str | None, folder: Path, folder_id: str, download: bool = True
) -> Path:
    """The checkpoint to use: ``ckpt_path`` if given, else the cached official file, else a fresh download."""
    if ckpt_path:
        path = Path(ckpt_path).expanduser()
        if not path.exists():
            raise CheckpointError(f"{path}: no such file or directory (ckpt_path)")
        return path
    if not filename:
        raise CheckpointError("variant=auto needs ckpt_path=FILE_OR_DIR (or choose variant=XS|S|M|L to use the official file)")
    cached = folder / filename
    if cached.exists():
        return cached
    if not download:
        raise CheckpointError(_offline_message(filename, folder, folder_id, "downloads are disabled"))
    return download_official(filename, folder, folder_id)


