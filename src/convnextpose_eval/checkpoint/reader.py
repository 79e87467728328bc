"""Read ConvNeXtPose checkpoints safely, whatever shape the user has them in, with canonical key names.

The released ``ConvNeXtPose_{V}.tar`` files are PyTorch's own zip serialization
(``torch.save`` of ``{'epoch', 'network', 'optimizer'}``), saved from a
DataParallel model on ``cuda:0``. Users also hold them renamed to
``snapshot_N.pth(.tar)``, unzipped into a ``snapshot_N.pth/`` folder, or as a
bare state dict. Everything is read with ``weights_only=True``: a pickle that
asks for anything beyond tensors and plain containers is refused unexecuted.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError

_WRAPPER_PREFIXES = ("module.", "model.", "net.", "network.")
_LEGACY_HEAD = re.compile(r"^(head\.deconv_layers_\d+)\.([012])\.")
LEGACY_NAMES = {"0": "dwconv", "1": "norm", "2": "pwconv"}


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint's weights with canonical key names, and what is known about where they came from."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    epoch: int | None
    key_style: str
    sha256: str



def sha256_of(path: Path) -> str:
    """Hash of a file, or of a folder's relative paths and contents in sorted order."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _archive_root(folder: Path) -> Path:
    """The folder that holds ``data.pkl``: the given one, or its single sub-folder that does."""
    if (folder / "data.pkl").is_file():
        return folder
    candidates = [child for child in folder.iterdir() if (child / "data.pkl").is_file()]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(sorted(c.name for c in candidates))
        raise CheckpointError(f"{folder}: holds several unzipped checkpoints ({names}); point ckpt_path at one of them")
    raise CheckpointError(
        f"{folder}: is a directory without data.pkl, so it is not an unzipped PyTorch checkpoint "
        "(pass the .tar/.pth file itself, or the snapshot_N.pth/ folder that unzipping it produced)"
    )


def _rezip_folder(folder: Path) -> io.BytesIO:
    """Rebuild the zip that ``torch.save`` wrote from the folder a user got by unzipping it."""
    root = _archive_root(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            archive.write(file, f"{root.name}/{file.relative_to(root).as_posix()}")
    buffer.seek(0)
    return buffer


def _describe_non_checkpoint(path: Path) -> str | None:
    """A reason why ``path`` is plainly not a PyTorch file, or None when it might be one."""
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes); the download or copy did not complete"
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head.startswith(b"PK\x03\x04"):
        return None
    if len(head) >= 262 and head[257:262] == b"ustar":
        try:
            with tarfile.open(path) as archive:
                names = archive.getnames()[:5]
        except (tarfile.TarError, OSError):
            names = []
        shown = ", ".join(names) if names else "unreadable members"
        return f"is a real tar archive ({shown}), not a PyTorch checkpoint; extract the checkpoint from it first"
    if head[:1] == b"\x80":
        return None  # legacy (pre-1.6) torch serialization starts with a pickle
    return "is not a PyTorch checkpoint (neither a torch zip archive nor a legacy torch pickle)"


def _explain_load_failure(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        found = re.search(r"(Unsupported global: GLOBAL [\w.]+|Unsupported operand \d+|Trying to [^.]+)", text)
        detail = found.group(1) if found else text[:160]
        return (
            f"refused: its pickle asks for more than tensors and plain containers ({detail}); "
            "nothing in it was executed. Only load it with weights_only=False if you trust where it came from"
        )
    if "central directory" in text or "zip archive" in text or isinstance(exc, (EOFError, zipfile.BadZipFile)):
        return f"is truncated or corrupt ({text[:160]}); download it again"
    return f"could not be read as a PyTorch checkpoint ({type(exc).__name__}: {text[:160]})"


def _torch_load(path: Path) -> Any:
    source: Any
    if path.is_dir():
        source = _rezip_folder(path)
    else:
        reason = _describe_non_checkpoint(path)
        if reason:
            raise CheckpointError(f"{path}: {reason}")
        source = path
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad bytes
        raise CheckpointError(f"{path}: {_explain_load_failure(exc)}") from None


def _extract_state_dict(path: Path, obj: Any) -> tuple[Mapping[str, Any], int | None]:
    epoch = None
    if isinstance(obj, Mapping):
        for key in ("network", "state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                raw_epoch = obj.get("epoch")
                epoch = int(raw_epoch) if isinstance(raw_epoch, int) else None
                return obj[key], epoch
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, None
        keys = ", ".join(map(str, list(obj)[:6]))
        raise CheckpointError(f"{path}: holds a dict ({keys}) without 'network' or 'state_dict' weights")
    raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict or state dict")


def _canonical_keys(path: Path, raw: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """Strip wrapper prefixes (DataParallel's ``module.``) and rename legacy head keys."""
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry '{key}' is a {type(value).__name__}, not a tensor")
        state[str(key)] = value
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    key_style = "legacy" if any(_LEGACY_HEAD.match(k) for k in state) else "modern"
    if key_style == "legacy":
        state = {_LEGACY_HEAD.sub(lambda m: f"{m.group(1)}.{LEGACY_NAMES[m.group(2)]}.", k): v for k, v in state.items()}
    return state, key_style


def read_checkpoint(path: str | os.PathLike[str]) -> LoadedCheckpoint:
    """Load any supported checkpoint form safely; keys come back without prefixes, in modern style."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    try:
        obj = _torch_load(path)
        digest = sha256_of(path)
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable ({exc.strerror or exc})") from None
    raw, epoch = _extract_state_dict(path, obj)
    state, key_style = _canonical_keys(path, raw)
    if not state:
        raise CheckpointError(f"{path}: holds no weights")
    return LoadedCheckpoint(path=path, state_dict=state, epoch=epoch, key_style=key_style, sha256=digest)
