"""Write weights in the released files' on-disk form: for the synthetic sample and for tests."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

import torch

from ..checkpoint.reader import LEGACY_NAMES


def _legacy_head_key(key: str) -> str:
    reverse = {name: index for index, name in LEGACY_NAMES.items()}
    return re.sub(
        r"^(head\.deconv_layers_\d+)\.(dwconv|norm|pwconv)\.", lambda m: f"{m.group(1)}.{reverse[m.group(2)]}.", key
    )


def _retag_storages(path: Path, location: str) -> None:
    """Rewrite the storages' device tag in data.pkl ('cpu' as pickled by protocol 2 -> ``location``)."""
    tag = location.encode()
    old, new = b"X\x03\x00\x00\x00cpu", b"X" + len(tag).to_bytes(4, "little") + tag
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for info, data in entries:
            archive.writestr(info, data.replace(old, new) if info.filename.endswith("/data.pkl") else data)


def write_released_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    epoch: int,
    key_style: str = "modern",
    storage_location: str = "cuda:0",
) -> Path:
    """Write weights the way the authors' files are: ``torch.save`` of ``{'epoch','network','optimizer'}``
    from a DataParallel model (``module.`` keys), with storages tagged as saved from ``storage_location``.

    The archive's inner folder is named after ``path`` as torch names it; renaming the file afterwards
    (snapshot_83.pth.tar -> ConvNeXtPose_L.tar) keeps that inner name, as in the released files.
    """
    path = Path(path)
    network = {}
    for key, value in state_dict.items():
        name = _legacy_head_key(key) if key_style == "legacy" else key
        network[f"module.{name}"] = value.detach().cpu().clone()
    payload = {"epoch": int(epoch), "network": network, "optimizer": {"state": {}, "param_groups": []}}
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under the same name in a private folder (torch names the inner folder after it), then moved.
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        staged = staging / path.name
        torch.save(payload, staged)
        if storage_location != "cpu":
            _retag_storages(staged, storage_location)
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
