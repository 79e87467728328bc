"""The results contract as data: the JSON Schemas the package ships, and the one guarded way to read a run's files.

Every JSON file the tool writes (``results.json``, ``predictions.json``, ``benchmark_results.json``) has a
schema in ``schemas/<file name without .json>.schema.json``, whose version (``x-schema-version``) the
files carry: results.json and benchmark_results.json as ``schema_version``, predictions.json (a list) in
results.json's record of it. Readers of run folders someone else may have touched (compare, resume, the
sweep report) go through :func:`load_checked`: a regular file only, within a size bound, opened so that a
FIFO cannot block, strict JSON (no NaN), checked against its schema; every problem is one line naming the
file and the first failing JSON path. See docs/results-contract.md.
"""

from __future__ import annotations

import json
import os
import stat
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..common.errors import EvalError
from ..common.files import special_kind
from .files import BENCHMARK_JSON, PREDICTIONS_FILE, RESULTS_FILE

SCHEMA_SUFFIX = ".schema.json"
SCHEMA_FILES = (RESULTS_FILE, PREDICTIONS_FILE, BENCHMARK_JSON)
_MIB = 1 << 20
# The largest file each reader accepts: far above what a run on the whole Human3.6M test set writes
# (results.json about 9 KB, predictions.json about 2.6 KB per image, so about 25 MB for protocol 2's
# 8695 images; measured on the bundled sample, 2026-12-07), far below what would exhaust memory.
MAX_BYTES = {RESULTS_FILE: 16 * _MIB, PREDICTIONS_FILE: 512 * _MIB, BENCHMARK_JSON: 256 * _MIB}
DEFAULT_MAX_BYTES = 256 * _MIB
_SHOWN_CHARS = 120


class ContractError(EvalError):
    """A run's file is not what the tool writes: not a regular file, too large, not JSON, or not its schema's shape."""


@cache
def schema(file_name: str) -> dict[str, Any]:
    """The shipped schema of ``file_name`` (``results.json`` -> ``schemas/results.schema.json``)."""
    stem = file_name.removesuffix(".json")
    text = resources.files(__package__).joinpath("schemas", f"{stem}{SCHEMA_SUFFIX}").read_text(encoding="utf-8")
    return json.loads(text)


def schema_version(file_name: str) -> int:
    """The version of ``file_name``'s schema, which the files written now carry."""
    return int(schema(file_name)["x-schema-version"])


@cache
def _validator(file_name: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    registry: Registry = Registry().with_resources(
        (schema(name)["$id"], Resource.from_contents(schema(name))) for name in SCHEMA_FILES
    )
    return Draft202012Validator(schema(file_name), registry=registry)


@cache
def _fast_validator(file_name: str) -> Any:
    """The same schema compiled to Python code: about 40 times faster than the reference validator on a whole
    test set's predictions.json (8694 images: 1.7 s instead of 64 s, measured 2026-12-07 on a loaded 2-core
    machine); it only decides valid or not, the reference validator then says where."""
    import fastjsonschema

    by_id = {schema(name)["$id"]: schema(name) for name in SCHEMA_FILES}
    return fastjsonschema.compile(schema(file_name), handlers={"urn": by_id.__getitem__})


def json_path(parts: Any) -> str:
    """``["per_action", "Directions", "mpjpe"]`` -> ``$.per_action.Directions.mpjpe``; list positions as ``[3]``."""
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


def check(content: Any, file_name: str, where: str | os.PathLike[str]) -> None:
    """Raise ContractError (naming ``where`` and the first failing JSON path) unless ``content`` fits ``file_name``'s schema."""
    import fastjsonschema
    from jsonschema.exceptions import best_match

    try:
        _fast_validator(file_name)(content)
        return
    except fastjsonschema.JsonSchemaValueException as exc:
        fast_finding, fast_path = " ".join(exc.message.split()), list(exc.path or [])
    validator, prefix, part = _validator(file_name), [], content
    # A list's first bad entry is where the compiled check stopped: only that entry is described (the reference
    # validator would otherwise walk every other image too).
    position = fast_path[1] if len(fast_path) > 1 else None
    if isinstance(content, list) and isinstance(position, str) and position.isdigit() and int(position) < len(content):
        validator, prefix, part = validator.evolve(schema=schema(file_name)["items"]), [int(position)], content[int(position)]
    errors = list(validator.iter_errors(part))
    version = schema_version(file_name)
    if not errors:  # the two validators disagree: the file is still refused, with the finding there is
        raise ContractError(f"{where}: not a {file_name} this tool writes (schema version {version}): {fast_finding}")
    # The first failing place in the file (list positions in order), described by its most telling error.
    error = best_match([min(errors, key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in e.absolute_path])])
    message = " ".join(error.message.split())
    if len(message) > _SHOWN_CHARS:
        message = message[: _SHOWN_CHARS - 3] + "..."
    raise ContractError(f"{where}: not a {file_name} this tool writes (schema version {version}): "
                        f"at {json_path([*prefix, *error.absolute_path])}, {message}")  # fmt: skip


def read_regular(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a regular file (a link to one is followed) of at most ``max_bytes``; anything else is one line.

    Opened non-blocking, so a FIFO is refused instead of waiting for a writer; a device (a link to
    /dev/zero) or a file over the bound is refused before anything is read.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ContractError(f"{path}: no such file") from None
    except OSError as exc:
        raise ContractError(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ContractError(f"{path}: not a regular file (a {special_kind(info.st_mode) or 'special file'}); a run's files are plain files")
        if info.st_size > max_bytes:
            raise ContractError(f"{path}: {info.st_size} bytes, more than the {max_bytes} this reader accepts")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ContractError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ContractError(f"{path}: grew past the {max_bytes} bytes this reader accepts while it was read")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Strict JSON (no NaN or Infinity) from a regular file within ``max_bytes``."""
    data = read_regular(path, max_bytes)
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError(f"{path}: not valid JSON ({' '.join(str(exc).split())})") from None


def load_checked(path: str | os.PathLike[str], file_name: str | None = None) -> Any:
    """A run's JSON file read through :func:`read_regular` and checked against its schema (by default the one
    named like the file)."""
    name = file_name or Path(path).name
    content = load_json(path, MAX_BYTES.get(name, DEFAULT_MAX_BYTES))
    check(content, name, path)
    return content
