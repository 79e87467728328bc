"""Read ConvNeXtPose checkpoints safely, whatever shape the user has them in, with canonical key names.

The released ``ConvNeXtPose_{V}.tar`` files are PyTorch's own zip serialization
(``torch.save`` of ``{'epoch', 'network', 'optimizer'}``), saved from a
DataParallel model on ``cuda:0``. Users also hold them renamed to
``snapshot_N.pth(.tar)``, unzipped into a ``snapshot_N.pth/`` folder, or as a
bare state dict. Everything is read with ``weights_only=True``: a pickle that
asks for anything beyond tensors and plain containers is refused unexecuted.

A crafted file must not cost more memory than its real size: the zip's
directory is checked before torch reads it, an unzipped folder is checked
against what its ``data.pkl`` declares before it is packed (into a temporary
file, never in memory), and every weight must own its slice of storage before
anything computes on it. Weights end up float32, or the file is refused.

Why one module of this length: every form a checkpoint arrives in passes through the same guarded
steps (container, pickle, keys, storages, dtypes), and each step's guard relies on the one before it;
split apart, a form could reach a later step without the guard before it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import itertools
import os
import pickle
import re
import shutil
import stat
import tarfile
import tempfile
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from ..common.errors import CheckpointError
from ..common.files import special_kind
from ..common.read_once import FILES

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
    dtype_note: str | None = None  # set when weights were converted to float32, e.g. from float16; None if they were float32


def sha256_of(path: Path) -> str:
    """Hash of a file, or of a folder's relative paths and contents in sorted order (once per process per
    version of the file: see ``common/read_once.py``)."""
    return FILES.get("sha256", Path(path), lambda: _hash_file(Path(path)))


def _hash_file(path: Path) -> str:
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
    if os.path.lexists(folder / "data.pkl"):
        return folder
    candidates = [child for child in folder.iterdir() if child.is_dir() and os.path.lexists(child / "data.pkl")]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(sorted(c.name for c in candidates))
        raise CheckpointError(f"{folder}: holds several unzipped checkpoints ({names}); point ckpt_path at one of them")
    raise CheckpointError(
        f"{folder}: is a directory without data.pkl, so it is not an unzipped PyTorch checkpoint "
        "(pass the .tar/.pth file itself, or the snapshot_N.pth/ folder that unzipping it produced)"
    )


def _file_kind(mode: int) -> str:
    kind = special_kind(mode)
    return f"a {kind}" if kind else "not a regular file"


def _entry_status(path: Path, root: Path, file: Path) -> os.stat_result:
    """The status of a regular file of the folder; a symlink counts only if it stays inside the folder.

    A FIFO would block the read forever and a link to ``/dev/zero`` would never
    end, so both are refused before anything is opened.
    """
    shown = file.relative_to(path).as_posix()
    status = file.lstat()
    if stat.S_ISLNK(status.st_mode):
        target = file.resolve()
        if not target.is_relative_to(root.resolve()):
            raise CheckpointError(f"{path}: '{shown}' is a symlink to {target}, outside the checkpoint folder; refusing to follow it")
        status = target.stat()
    if not stat.S_ISREG(status.st_mode):
        raise CheckpointError(f"{path}: '{shown}' is {_file_kind(status.st_mode)}; an unzipped checkpoint holds only regular files")
    return status


@contextlib.contextmanager
def _opened_entry(path: Path, root: Path, file: Path, status: os.stat_result) -> Iterator[io.BufferedReader]:
    """``file`` opened without blocking, and only if it is still the regular file ``status`` describes."""
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (status.st_dev, status.st_ino):
            raise CheckpointError(f"{path}: '{file.relative_to(path).as_posix()}' changed while it was being read; try again")
        yield handle


def _read_exactly(path: Path, handle: io.BufferedReader, size: int, shown: str, sink: Callable[[bytes], Any]) -> None:
    """Copy exactly ``size`` bytes to ``sink``: a file that grows or shrinks while it is read is refused."""
    left = size
    while left > 0:
        chunk = handle.read(min(left, 1 << 20))
        if not chunk:
            raise CheckpointError(f"{path}: '{shown}' shrank while it was being read; try again")
        sink(chunk)
        left -= len(chunk)
    if handle.read(1):
        raise CheckpointError(f"{path}: '{shown}' grew while it was being read; try again")


# Entries torch.save writes besides data.pkl and the data/<n> storages; each holds a few bytes.
_ARCHIVE_METADATA = frozenset({"version", ".format_version", ".storage_alignment", "byteorder", ".data/version", ".data/serialization_id"})
_METADATA_MAX_BYTES = 4096
# A checkpoint's pickle holds names, shapes and small numbers; the tensors live in data/<n>.
_PICKLE_MAX_BYTES = 64 << 20
_STEP_COUNTER = "num_batches_tracked"  # BatchNorm's only integer buffer


class _Inert:
    """Whatever a checkpoint pickle builds while only its storages are listed: accepts every call and does nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


class _StorageKind(_Inert):
    """A storage class named by the pickle, reduced to the one fact needed: bytes per element."""

    def __init__(self, itemsize: int) -> None:
        self.itemsize = itemsize


def _storage_itemsize(module: str, name: str) -> int | None:
    if name == "UntypedStorage" and module in ("torch", "torch.storage"):
        return 1
    storage_class = getattr(torch, name, None) if module == "torch" and name.endswith("Storage") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy typed storage classes warn on any use
        dtype = getattr(storage_class, "dtype", None)
    return dtype.itemsize if isinstance(dtype, torch.dtype) else None


class _StorageLister(pickle.Unpickler):
    """Lists the ``data/<key>`` records a data.pkl refers to and their sizes, without building or importing anything.

    Every global the pickle names becomes an inert stand-in, so this is as safe as
    ``weights_only`` and allocates nothing beyond the pickle's own size.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.records: dict[str, int] = {}

    def find_class(self, module: str, name: str) -> Any:
        itemsize = _storage_itemsize(module, name)
        return _StorageKind(itemsize) if itemsize is not None else _Inert

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:60]}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageKind) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"storage {key!r} has no known type or size")
        name = f"data/{key.decode() if isinstance(key, bytes) else key}"
        if self.records.setdefault(name, numel * kind.itemsize) != numel * kind.itemsize:
            raise pickle.UnpicklingError(f"storage {key!r} is declared twice with different sizes")
        return _Inert()


def _declared_records(path: Path, root: Path, status: os.stat_result) -> dict[str, int]:
    size = status.st_size
    if size > _PICKLE_MAX_BYTES:
        raise CheckpointError(f"{path}: data.pkl is {size} bytes, far more than a checkpoint's names and shapes need; crafted or corrupt")
    data = bytearray()
    with _opened_entry(path, root, root / "data.pkl", status) as handle:
        _read_exactly(path, handle, size, "data.pkl", data.extend)
    lister = _StorageLister(bytes(data))
    try:
        lister.load()
    except Exception as exc:  # a damaged pickle fails in many ways (EOFError, UnpicklingError, ValueError, ...)
        text = " ".join(str(exc).split())[:120]
        raise CheckpointError(
            f"{path}: data.pkl is not a readable checkpoint pickle ({type(exc).__name__}: {text}); unzip the file again"
        ) from None
    return lister.records


def _folder_entries(path: Path) -> tuple[Path, list[tuple[str, Path, os.stat_result]]]:
    """The archive root and the files torch needs from it, each a regular file checked against what data.pkl declares.

    Anything else in the folder is refused rather than skipped: a stray file means
    the folder is not what unzipping a checkpoint produced.
    """
    root = _archive_root(path)
    files: dict[str, tuple[Path, os.stat_result]] = {}
    for folder, subfolders, names in os.walk(root):
        for name in subfolders:
            if (Path(folder) / name).is_symlink():
                shown = (Path(folder) / name).relative_to(path).as_posix()
                raise CheckpointError(f"{path}: '{shown}' is a symlink to a folder; an unzipped checkpoint holds only regular files")
        for name in names:
            file = Path(folder) / name
            files[file.relative_to(root).as_posix()] = (file, _entry_status(path, root, file))
    if "data.pkl" not in files:
        raise CheckpointError(f"{path}: data.pkl is not a file; unzip the file again")
    pickle_file, pickle_status = files.pop("data.pkl")
    records = _declared_records(path, root, pickle_status)
    entries = [("data.pkl", pickle_file, pickle_status)]
    for name, (file, status) in sorted(files.items()):
        size = status.st_size
        shown = file.relative_to(path).as_posix()
        if name in records:
            if size != records[name]:
                raise CheckpointError(f"{path}: '{shown}' is {size} bytes but data.pkl declares {records[name]}; unzip the file again")
        elif name not in _ARCHIVE_METADATA:
            raise CheckpointError(
                f"{path}: holds a stray file '{shown}' ({size} bytes); an unzipped checkpoint holds only data.pkl, data/<n>, "
                "version, byteorder and .data/serialization_id: remove it, or unzip the file again into an empty folder"
            )
        elif size > _METADATA_MAX_BYTES:
            raise CheckpointError(f"{path}: '{shown}' is {size} bytes; torch writes a few bytes there, so the folder is crafted or corrupt")
        entries.append((name, file, status))
    missing = sorted(set(records) - set(files))
    if missing:
        more = f" and {len(missing) - 1} more records" if len(missing) > 1 else ""
        raise CheckpointError(f"{path}: lacks '{missing[0]}'{more}, which data.pkl refers to; unzip the file again")
    return root, entries


@contextlib.contextmanager
def _folder_as_zip(path: Path) -> Iterator[Path]:
    """Rebuild the zip that ``torch.save`` wrote, from the folder a user got by unzipping it.

    It goes to a temporary file in the system temp folder, deleted afterwards:
    memory stays flat however large the checkpoint is, and the file holds
    exactly the sizes checked above (each entry is copied up to its checked size,
    never further), so it is refused up front when the temp folder lacks the room.
    """
    root, entries = _folder_entries(path)
    needed = sum(status.st_size for _, _, status in entries)
    scratch_root = Path(tempfile.gettempdir())
    free = shutil.disk_usage(scratch_root).free
    if needed > free:
        raise CheckpointError(f"{path}: repacking it for reading needs {needed} bytes in {scratch_root}, which has {free} free; set TMPDIR to a larger folder")
    with tempfile.TemporaryDirectory(prefix="convnextpose-checkpoint-") as scratch:
        archive_path = Path(scratch) / f"{root.name}.zip"
        try:
            with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                for name, file, status in entries:
                    info = zipfile.ZipInfo(f"{root.name}/{name}")
                    info.file_size = status.st_size
                    with _opened_entry(path, root, file, status) as source, archive.open(info, "w") as target:
                        _read_exactly(path, source, status.st_size, file.relative_to(path).as_posix(), target.write)
        except OSError as exc:
            reason = f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}" if exc.errno else str(exc)
            raise CheckpointError(f"{path}: could not be repacked for reading into {archive_path} ({reason}); set TMPDIR to a folder with room") from None
        yield archive_path


def _container(path: Path) -> str:
    """'zip' or 'legacy' (a pre-1.6 torch pickle); a one-line CheckpointError for anything plainly not a checkpoint."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: is empty (0 bytes); the download or copy did not complete")
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80":
        return "legacy"
    if len(head) >= 262 and head[257:262] == b"ustar":
        try:
            with tarfile.open(path) as archive:
                names = archive.getnames()[:5]
        except (tarfile.TarError, OSError):
            names = []
        shown = ", ".join(names) if names else "unreadable members"
        raise CheckpointError(f"{path}: is a real tar archive ({shown}), not a PyTorch checkpoint; extract the checkpoint from it first")
    raise CheckpointError(f"{path}: is not a PyTorch checkpoint (neither a torch zip archive nor a legacy torch pickle)")


def _check_zip_directory(path: Path) -> None:
    """Refuse, before torch reads it, an archive whose directory promises more bytes than the file holds.

    torch allocates an entry's declared size and inflates into it before it can
    notice a lie. ``torch.save`` stores entries uncompressed, so an honest archive's
    entries add up to less than the file; a compressed entry (a zip bomb) or a
    larger total is crafted or damaged.
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            entries = zipfile.ZipFile(handle).infolist()
        except Exception as exc:  # zipfile raises BadZipFile, NotImplementedError, struct.error, ... for damaged directories
            text = " ".join(str(exc).split())[:120]
            raise CheckpointError(f"{path}: is truncated or corrupt ({type(exc).__name__}: {text}); download it again") from None
    declared = 0
    for info in entries:
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"{path}: entry '{info.filename}' is compressed (zip method {info.compress_type}); torch.save stores entries "
                "uncompressed, so the file was repacked or crafted: pass the unzipped folder instead"
            )
        if info.file_size != info.compress_size or info.file_size > size:
            raise CheckpointError(
                f"{path}: entry '{info.filename}' declares {info.file_size} bytes but stores {info.compress_size} "
                f"in a file of {size}; crafted or corrupt"
            )
        declared += info.file_size
    if declared > size:
        raise CheckpointError(f"{path}: its entries declare {declared} bytes in all, more than the file's {size}; crafted or corrupt")


def _explain_load_failure(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        found = re.search(r"(Unsupported global: GLOBAL [\w.]+|Unsupported operand \d+|Trying to [^.]+)", text)
        detail = found.group(1) if found else text[:160]
        return (
            f"refused: its pickle asks for more than tensors and plain containers ({detail}); "
            "nothing in it was executed. Only load it with weights_only=False if you trust where it came from"
        )
    if "resize storage that is not resizable" in text:
        return "a tensor in it needs more bytes than its storage holds; crafted or corrupt"
    if "central directory" in text or "zip archive" in text or isinstance(exc, (EOFError, zipfile.BadZipFile)):
        return f"is truncated or corrupt ({text[:160]}); download it again"
    return f"could not be read as a PyTorch checkpoint ({type(exc).__name__}: {text[:160]})"


def _load(path: Path, source: Path) -> Any:
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad bytes
        raise CheckpointError(f"{path}: {_explain_load_failure(exc)}") from None


def _torch_load(path: Path) -> Any:
    if path.is_dir():
        with _folder_as_zip(path) as archive:
            return _load(path, archive)
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path}: is {_file_kind(mode)}, not a checkpoint file")
    if _container(path) == "zip":
        _check_zip_directory(path)
    return _load(path, path)


_WEIGHT_ENTRIES = ("network", "state_dict", "model")


def _holds_weights(value: Any) -> bool:
    return isinstance(value, Mapping) and any(isinstance(v, torch.Tensor) for v in value.values())


def _extract_state_dict(path: Path, obj: Any) -> tuple[Mapping[str, Any], int | None]:
    """The one weight set in the file; two (say ``network`` and ``state_dict``) are refused, since which
    one the authors meant cannot be told from the file."""
    epoch = None
    if isinstance(obj, Mapping):
        found = [key for key in _WEIGHT_ENTRIES if _holds_weights(obj.get(key))]
        if len(found) > 1:
            names = " and ".join(f"'{key}'" for key in found)
            raise CheckpointError(
                f"{path}: holds two weight sets, {names}; refusing to guess which one to evaluate: save the one you mean alone"
            )
        if not found:
            found = [key for key in _WEIGHT_ENTRIES if isinstance(obj.get(key), Mapping)][:1]
        if found:
            raw_epoch = obj.get("epoch")
            epoch = int(raw_epoch) if isinstance(raw_epoch, int) else None
            return obj[found[0]], epoch
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, None
        keys = ", ".join(map(str, list(obj)[:6]))
        raise CheckpointError(f"{path}: holds a dict ({keys}) without 'network' or 'state_dict' weights")
    raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict or state dict")


def _renamed(
    path: Path, state: Mapping[str, torch.Tensor], in_file: dict[str, str], rename: Callable[[str], str], step: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``state`` with every key renamed, and each new key's name in the file; two keys that would become
    one are refused, naming both as the file spells them.

    Otherwise the later key would silently replace the earlier one, and the
    result would depend on the order of the keys in the file.
    """
    renamed: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        new = rename(key)
        if new in renamed:
            raise CheckpointError(
                f"{path}: keys '{origin[new]}' and '{in_file[key]}' both name the weight '{new}' ({step}); "
                "the file holds two values for one weight, so it is refused"
            )
        renamed[new], origin[new] = value, in_file[key]
    return renamed, origin


def _legacy_to_modern(key: str) -> str:
    return _LEGACY_HEAD.sub(lambda m: f"{m.group(1)}.{LEGACY_NAMES[m.group(2)]}.", key)


def _canonical_keys(path: Path, raw: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """Strip wrapper prefixes (DataParallel's ``module.``) and rename legacy head keys, refusing any collision."""
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry '{key}' is a {type(value).__name__}, not a tensor")
        if str(key) in state:  # e.g. the integer 1 and the string "1"
            raise CheckpointError(f"{path}: two keys both read as the weight '{key}'; the file holds two values for one weight")
        state[str(key)] = value
    in_file = {key: key for key in state}
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state, in_file = _renamed(path, state, in_file, lambda k, n=len(prefix): k[n:], f"after removing the '{prefix}' prefix")
                changed = True
    key_style = "legacy" if any(_LEGACY_HEAD.match(k) for k in state) else "modern"
    if key_style == "legacy":
        state, in_file = _renamed(path, state, in_file, _legacy_to_modern, "after renaming the legacy head names")
    return state, key_style


def _is_dense(shape: torch.Size, strides: tuple[int, ...]) -> bool:
    """True when the elements fill one run of memory exactly once, in any dimension order (channels_last included)."""
    expected = 1
    for size, stride in sorted(((size, stride) for size, stride in zip(shape, strides) if size != 1), key=lambda pair: pair[1]):
        if stride != expected:
            return False
        expected *= size
    return True


def _check_storage_slices(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """Every weight must own a dense, in-bounds slice of its storage that no other weight shares.

    A view with zero strides makes a few stored bytes look like a huge tensor, and
    aliased slices make one storage count many times: the first conversion or
    check would then cost far more memory than the file holds.
    """
    slices: dict[int, list[tuple[int, int, str]]] = {}
    for key, tensor in state.items():
        if tensor.layout != torch.strided:
            raise CheckpointError(f"{path}: '{key}' is a {tensor.layout} tensor; weights are dense tensors")
        if tensor.numel() == 0:
            continue
        if not _is_dense(tensor.shape, tensor.stride()):
            raise CheckpointError(
                f"{path}: '{key}' is a view of shape {list(tensor.shape)} with strides {list(tensor.stride())} (zero or overlapping), "
                "not a tensor of its own; crafted or corrupt"
            )
        start = tensor.storage_offset() * tensor.element_size()
        end = start + tensor.numel() * tensor.element_size()
        storage = tensor.untyped_storage()
        if end > storage.nbytes():
            raise CheckpointError(
                f"{path}: '{key}' needs more bytes than its storage holds ({end} > {storage.nbytes()}); crafted or corrupt"
            )
        slices.setdefault(storage.data_ptr(), []).append((start, end, key))
    for claimed in slices.values():
        claimed.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(claimed):
            if start < end:
                raise CheckpointError(f"{path}: '{first}' and '{second}' share the same stored bytes; every weight must have its own")


def dtype_name(dtype: torch.dtype) -> str:
    """``int8`` for ``torch.int8``: how messages name a dtype."""
    return str(dtype).removeprefix("torch.")


def _holds_exactly(original: torch.Tensor, converted: torch.Tensor) -> bool:
    """Whether every value, NaN and infinities included, survived the conversion unchanged."""
    before, after = original.to(torch.float64), converted.to(torch.float64)
    return bool(((before == after) | (before.isnan() & after.isnan())).all())


def _as_float32(path: Path, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    """Weights as float32, and a note on any conversion; refuse what float32 would change.

    ``load_state_dict`` casts whatever it gets into the network's float32, so int8
    weights or rounded float64 ones would load without a word and give a
    different number. float16 and bfloat16 always convert exactly; float64 only
    when every value round-trips. Integers are allowed only as BatchNorm's step counter.
    """
    converted: Counter[str] = Counter()
    weights: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = dtype_name(tensor.dtype)
        if key.rsplit(".", 1)[-1] == _STEP_COUNTER:
            if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
                raise CheckpointError(f"{path}: '{key}' is {name}; BatchNorm's step counter is an integer")
        elif not tensor.is_floating_point():
            raise CheckpointError(f"{path}: '{key}' is {name}; weights must be floating point (float32), so this is no usable checkpoint")
        elif tensor.dtype != torch.float32:
            as_float32 = tensor.to(torch.float32)
            if not _holds_exactly(tensor, as_float32):
                raise CheckpointError(f"{path}: '{key}' is {name} with values float32 cannot hold exactly; refusing to round the weights")
            converted[name] += 1
            tensor = as_float32
        weights[key] = tensor
    if not converted:
        return weights, None
    parts = ", ".join(f"{count} {name} tensors" for name, count in sorted(converted.items()))
    return weights, f"{parts} converted to float32 exactly"


def read_checkpoint(path: str | os.PathLike[str]) -> LoadedCheckpoint:
    """Load any supported checkpoint form safely; keys come back without prefixes, in modern style, weights in float32.

    Read once per process per version of the file (``common/read_once.py``): the plan, the engine and the
    bench share one load. Callers must not change the returned tensors.
    """
    return FILES.get("checkpoint", Path(path), lambda: _read_checkpoint(Path(path)))


def _read_checkpoint(path: Path) -> LoadedCheckpoint:
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
    _check_storage_slices(path, state)
    weights, dtype_note = _as_float32(path, state)
    return LoadedCheckpoint(path=path, state_dict=weights, epoch=epoch, key_style=key_style, sha256=digest, dtype_note=dtype_note)
