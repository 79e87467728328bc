"""Find, download, load, remap and inspect ConvNeXtPose checkpoints, whatever shape the user has them in.

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
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import torch

from .data.skeleton import JOINT_NUM
from .errors import CheckpointError
from .model.spec import ArchSpec, upsample_for_depth_dim

_WRAPPER_PREFIXES = ("module.", "model.", "net.", "network.")
_LEGACY_HEAD = re.compile(r"^(head\.deconv_layers_\d+)\.([012])\.")
_LEGACY_NAMES = {"0": "dwconv", "1": "norm", "2": "pwconv"}
_STAGE_BLOCK = re.compile(r"^backbone\.stages\.(\d+)\.(\d+)\.")


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint's weights with canonical key names, and what is known about where they came from."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    epoch: int | None
    key_style: str
    sha256: str


# --------------------------------------------------------------------------- reading


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
        state = {_LEGACY_HEAD.sub(lambda m: f"{m.group(1)}.{_LEGACY_NAMES[m.group(2)]}.", k): v for k, v in state.items()}
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


# --------------------------------------------------------------------------- architecture


def _shape(path: Path, state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{path}: has no '{key}', so it is not a ConvNeXtPose network")
    return tuple(state[key].shape)


def infer_arch(
    ckpt: LoadedCheckpoint,
    known: Mapping[str, ArchSpec] | None = None,
    joint_num: int | None = None,
    input_size: int = 256,
) -> ArchSpec:
    """Read the architecture off the tensor shapes.

    The final layer has joint_num * depth_dim channels; the joint count is the
    evaluator's 18 unless given. Upsampling has no weights: it is taken from the
    released variant of the same shape, else chosen so the heatmap side equals depth_dim.
    """
    path, state = ckpt.path, ckpt.state_dict
    dims = [_shape(path, state, "backbone.downsample_layers.0.0.weight")[0]]
    index = 1
    while f"backbone.downsample_layers.{index}.1.weight" in state:
        dims.append(_shape(path, state, f"backbone.downsample_layers.{index}.1.weight")[0])
        index += 1
    blocks: dict[int, set[int]] = {}
    for key in state:
        match = _STAGE_BLOCK.match(key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    depths = tuple(len(blocks.get(stage, ())) for stage in range(len(dims)))
    block_kernel = _shape(path, state, "backbone.stages.0.0.dwconv.weight")[-1]
    head_kernels = []
    layer = 1
    while f"head.deconv_layers_{layer}.dwconv.weight" in state:
        head_kernels.append(_shape(path, state, f"head.deconv_layers_{layer}.dwconv.weight")[-1])
        layer += 1
    head_channels = _shape(path, state, "head.deconv_layers_1.pwconv.weight")[0]
    out_channels = _shape(path, state, "head.final_layer.weight")[0]
    joints = joint_num or JOINT_NUM
    if out_channels % joints:
        raise CheckpointError(
            f"{path}: final layer has {out_channels} channels, not a multiple of {joints} joints"
        )
    spec = ArchSpec(
        depths=depths,
        dims=tuple(dims),
        head_channels=head_channels,
        head_upsample=(),
        depth_dim=out_channels // joints,
        joint_num=joints,
        head_kernels=tuple(head_kernels),
        block_kernel=block_kernel,
        input_size=input_size,
    )
    name = match_variant(spec, known or {})
    if name is not None:
        return replace(spec, head_upsample=known[name].head_upsample)
    try:
        upsample = upsample_for_depth_dim(spec.depth_dim, input_size, len(head_kernels))
    except ValueError as exc:
        raise CheckpointError(f"{path}: depth_dim {spec.depth_dim}: {exc}; set variant.head.upsample") from None
    return replace(spec, head_upsample=upsample)


_SHAPE_FIELDS = ("depths", "dims", "head_channels", "depth_dim", "joint_num", "head_kernels", "block_kernel")


def match_variant(spec: ArchSpec, known: Mapping[str, ArchSpec]) -> str | None:
    """The released variant whose weights have this shape, if any (upsampling is not part of the shape)."""
    for name, candidate in known.items():
        if all(getattr(candidate, f) == getattr(spec, f) for f in _SHAPE_FIELDS):
            return name
    return None


def _format_field(field: str, value: Any) -> str:
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    return f"{field.replace('_', ' ')} {value}"


def check_arch(
    found: ArchSpec,
    requested: Mapping[str, Any],
    variant_name: str,
    path: Path,
    known: Mapping[str, ArchSpec],
) -> None:
    """Fail with one line if the checkpoint's shapes differ from any field the config fixes."""
    differing = [f for f in _SHAPE_FIELDS if requested.get(f) is not None and as_tuple(requested[f]) != getattr(found, f)]
    if not differing:
        return
    fit = match_variant(found, known)
    article = "an" if fit and fit[0] in "ASLMX" else "a"
    shape = f"{article} {fit}-shaped network" if fit else "a network of no released variant"
    asked = ", ".join(_format_field(f, as_tuple(requested[f])) for f in differing)
    if fit and fit == variant_name:
        advice = "drop the variant.* overrides, or run with variant=auto"
    elif fit:
        advice = f"run with variant={fit} or variant=auto"
    else:
        advice = "run with variant=auto"
    raise CheckpointError(f"{path.name} holds {shape} ({found.describe()}) but variant={variant_name} asks for {asked}; {advice}")


def as_tuple(value: Any) -> Any:
    """Lists from configs compare equal to the tuples in an ArchSpec."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def requested_fields(variant: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture fields a composed ``variant`` config fixes (``auto`` leaves them null)."""
    backbone, head = variant.get("backbone") or {}, variant.get("head") or {}
    return {
        "depths": backbone.get("depths"),
        "dims": backbone.get("dims"),
        "block_kernel": backbone.get("block_kernel"),
        "head_channels": head.get("channels"),
        "head_kernels": head.get("kernels"),
        "depth_dim": variant.get("depth_dim"),
        "joint_num": variant.get("joint_num"),
    }


def resolve_arch(
    ckpt: LoadedCheckpoint, variant: Mapping[str, Any], known: Mapping[str, ArchSpec]
) -> ArchSpec:
    """The architecture to build: the checkpoint's shapes, checked against what the config fixes.

    Upsampling flags, which no weights record, come from the config when it sets them.
    """
    requested = requested_fields(variant)
    found = infer_arch(ckpt, known, joint_num=requested["joint_num"], input_size=int(variant.get("input_size") or 256))
    check_arch(found, requested, str(variant.get("name")), ckpt.path, known)
    upsample = (variant.get("head") or {}).get("upsample")
    return replace(found, head_upsample=tuple(bool(u) for u in upsample)) if upsample is not None else found


def load_weights(model: torch.nn.Module, ckpt: LoadedCheckpoint) -> None:
    """Strict load: every key present, none extra, every shape equal, every value finite."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in ckpt.state_dict]
    extra = [k for k in ckpt.state_dict if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} unexpected keys (first: {', '.join(extra[:3])})")
        raise CheckpointError(f"{ckpt.path}: does not fit the network: {'; '.join(parts)}")
    for key, tensor in expected.items():
        if tuple(ckpt.state_dict[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{ckpt.path}: size mismatch for {key}: checkpoint {list(ckpt.state_dict[key].shape)} "
                f"vs network {list(tensor.shape)}"
            )
    bad = [k for k, v in ckpt.state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{ckpt.path}: non-finite (NaN/Inf) weights in {len(bad)} tensors (first: {', '.join(bad[:3])})")
    model.load_state_dict(ckpt.state_dict, strict=True)


# --------------------------------------------------------------------------- finding and downloading


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


# --------------------------------------------------------------------------- writing (sample data and tests)


def _legacy_head_key(key: str) -> str:
    reverse = {name: index for index, name in _LEGACY_NAMES.items()}
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
