"""Checkpoints that would load into a quietly different network, or cost far more memory than their size, are refused.

Weights must be floating point: integer, bool or complex tensors are refused;
float16, bfloat16 and float64 become float32 only when every value survives the
trip, and the conversion is recorded. Crafted files (a zip bomb, a zero-stride
view, a storage smaller than its view, an unzipped folder with a huge stray file)
fail with one line while the process stays within a fixed margin of the memory
a good small checkpoint needs; the margin is measured per process with wait4.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import PROJECT_ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convnextpose_eval.checkpoint.architecture import (
    infer_arch,
    load_weights,
    resolve_arch,
)
from convnextpose_eval.checkpoint.reader import LoadedCheckpoint, read_checkpoint
from convnextpose_eval.common.errors import CheckpointError
from convnextpose_eval.config.compose import released_variants
from convnextpose_eval.network import ArchSpec, ConvNeXtPose
from convnextpose_eval.network.spec import specs_of

# A network of no released variant, small enough that a process holding it is mostly the interpreter and torch.
SMALL = ArchSpec(depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), head_channels=8, head_upsample=(True, True, False), depth_dim=32, joint_num=18)
STEM = "backbone.downsample_layers.0.0.weight"
HUGE_STEM = (8192, 3, 4, 4)  # a stem this wide implies a network of about 2 GB
MEMORY_MARGIN_MIB = 256  # every attack below would need at least 512 MiB more than a good checkpoint
SPARSE_SIZE = 1_500_000_000


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message, repr(message)
    return message


def _floating_as(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every floating tensor converted to ``dtype``; the BatchNorm step counters stay int64."""
    return {k: v.to(dtype) if v.is_floating_point() else v.clone() for k, v in state.items()}


def _save(path: Path, state: dict[str, torch.Tensor], epoch: int = 1) -> Path:
    torch.save({"epoch": epoch, "network": state, "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    return {k: v.clone() for k, v in ConvNeXtPose(SMALL).state_dict().items()}


@pytest.fixture()
def xs_state(source_networks) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in source_networks["XS"].state_dict().items()}


def _output(state: dict[str, torch.Tensor], spec: ArchSpec, images: torch.Tensor) -> torch.Tensor:
    model = ConvNeXtPose(spec)
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model.eval()(images)


def _loaded_output(path: Path, variant_cfg: dict, known, images: torch.Tensor) -> tuple[torch.Tensor, LoadedCheckpoint]:
    ckpt = read_checkpoint(path)
    model = ConvNeXtPose(resolve_arch(ckpt, variant_cfg, known))
    load_weights(model, ckpt)
    with torch.no_grad():
        return model.eval()(images), ckpt


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.bool, torch.complex64], ids=str)
def test_weights_that_are_not_floating_point_are_refused(tmp_path, xs_state, dtype) -> None:
    path = _save(tmp_path / "ConvNeXtPose_XS.tar", _floating_as(xs_state, dtype))
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = _one_line(error)
    first_weight = next(iter(xs_state))  # state dict order: the first tensor is the first offender
    assert str(path) in message and first_weight in message, message
    assert str(dtype).removeprefix("torch.") in message, message


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_weights_load_exactly_and_the_conversion_is_recorded(
    tmp_path, xs_state, dtype, variant_cfgs, known_specs, sample_images
) -> None:
    path = _save(tmp_path / "half.pth", _floating_as(xs_state, dtype))
    output, ckpt = _loaded_output(path, variant_cfgs["XS"], known_specs, sample_images)
    rounded = {k: v.to(dtype).float() if v.is_floating_point() else v for k, v in xs_state.items()}
    for key, value in rounded.items():
        assert ckpt.state_dict[key].dtype == value.dtype and torch.equal(ckpt.state_dict[key], value), key
    assert torch.equal(output, _output(rounded, known_specs["XS"], sample_images))
    assert ckpt.dtype_note is not None and str(dtype).removeprefix("torch.") in ckpt.dtype_note and "float32" in ckpt.dtype_note


def test_float32_weights_carry_no_dtype_note(released_files) -> None:
    assert read_checkpoint(released_files["XS"]).dtype_note is None


def test_float64_weights_that_float32_holds_exactly_give_the_float32_network(
    tmp_path, xs_state, variant_cfgs, known_specs, sample_images, source_outputs
) -> None:
    path = _save(tmp_path / "double.pth", _floating_as(xs_state, torch.float64))
    output, ckpt = _loaded_output(path, variant_cfgs["XS"], known_specs, sample_images)
    assert torch.equal(output, source_outputs["XS"])
    assert ckpt.dtype_note is not None and "float64" in ckpt.dtype_note


def test_float64_weights_that_float32_cannot_hold_are_refused(tmp_path, xs_state) -> None:
    double = _floating_as(xs_state, torch.float64)
    key = "head.final_layer.weight"
    double[key][3, 5, 0, 0] += 2.0**-40  # far below float32's resolution at this magnitude
    assert double[key].float().double()[3, 5, 0, 0] != double[key][3, 5, 0, 0]
    path = _save(tmp_path / "double.pth", double)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = _one_line(error)
    assert str(path) in message and key in message and "float64" in message, message


def test_load_weights_refuses_a_dtype_the_network_does_not_hold(tmp_path, xs_state, known_specs) -> None:
    """A LoadedCheckpoint built by other code is checked too: load_state_dict would cast int8 silently."""
    key = "backbone.stages.1.0.pwconv2.weight"
    state = dict(xs_state, **{key: xs_state[key].to(torch.int8)})
    ckpt = LoadedCheckpoint(path=tmp_path / "made.pth", state_dict=state, epoch=None, key_style="modern", sha256="0" * 64)
    with pytest.raises(CheckpointError) as error:
        load_weights(ConvNeXtPose(known_specs["XS"]), ckpt)
    message = _one_line(error)
    assert key in message and "int8" in message and "made.pth" in message, message


# --------------------------------------------------------------------------- views and storages


def test_a_zero_stride_view_is_refused(tmp_path, small_state) -> None:
    key = "head.final_layer.bias"
    state = dict(small_state, **{key: torch.full((1,), 0.25).as_strided(small_state[key].shape, (0,))})
    path = _save(tmp_path / "zero_stride.pth", state)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = _one_line(error)
    assert str(path) in message and key in message and "stride" in message, message


def test_two_weights_sharing_their_bytes_are_refused(tmp_path, small_state) -> None:
    state = dict(small_state)
    state["backbone.norm.bias"] = state["backbone.norm.weight"]  # torch.save keeps the sharing
    path = _save(tmp_path / "shared.pth", state)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = _one_line(error)
    assert "backbone.norm.bias" in message and "backbone.norm.weight" in message, message


def test_channels_last_weights_are_dense_and_load(tmp_path, small_state, sample_images) -> None:
    """A network saved in channels_last memory format owns dense, non-overlapping slices: not a crafted view."""
    model = ConvNeXtPose(SMALL)
    model.load_state_dict(small_state)
    model = model.to(memory_format=torch.channels_last)
    assert not model.state_dict()[STEM].is_contiguous()
    path = _save(tmp_path / "channels_last.pth", model.state_dict())
    ckpt = read_checkpoint(path)
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in small_state.items())


class _Storage:
    """Stands for a storage in a hand-made checkpoint pickle: ``numel`` float32 values in record ``data/<key>``."""

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _View:
    """A tensor in a hand-made checkpoint pickle, rebuilt by torch from (storage, offset, size, stride)."""

    def __init__(self, storage: _Storage, size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0) -> None:
        self.storage, self.size, self.stride, self.offset = storage, size, stride, offset

    def __reduce__(self) -> tuple[Any, ...]:
        return (torch._utils._rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()))


class _CheckpointPickler(pickle.Pickler):
    """Writes storages as persistent ids, the way torch.save does."""

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def _checkpoint_pickle(network: dict[str, _View]) -> bytes:
    buffer = io.BytesIO()
    _CheckpointPickler(buffer, protocol=2).dump({"epoch": 1, "network": network})
    return buffer.getvalue()


def write_zip(path: Path, entries: list[tuple[str, int, bytes, int, int]]) -> Path:
    """A zip written field by field: (name, method, stored bytes, crc32, declared uncompressed size) per entry.

    zipfile cannot store an already-deflated stream or declare a size other than
    the data's, which is exactly what a crafted archive does.
    """
    local, central = bytearray(), bytearray()
    for name, method, data, crc, size in entries:
        encoded = name.encode()
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data), size, len(encoded), 0, 0, 0, 0, 0, len(local)
        )
        central += encoded
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(encoded), 0) + encoded + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))
    return path


def _stored(name: str, data: bytes) -> tuple[str, int, bytes, int, int]:
    return (name, zipfile.ZIP_STORED, data, zlib.crc32(data), len(data))


def _archive_head(network: dict[str, _View]) -> list[tuple[str, int, bytes, int, int]]:
    """The entries torch needs besides the storages: the pickle, the format version and the byte order."""
    return [
        _stored("archive/data.pkl", _checkpoint_pickle(network)), _stored("archive/version", b"3\n"), _stored("archive/byteorder", b"little")
    ]


def write_undersized_storage(path: Path) -> Path:
    """One weight of 4 values on a storage that holds 2."""
    network = {"backbone.norm.weight": _View(_Storage("0", 2), (4,), (1,))}
    return write_zip(path, [*_archive_head(network), _stored("archive/data/0", bytes(8))])


def write_deflate_bomb(path: Path, mib: int) -> Path:
    """A record of ``mib`` MiB of zeros deflated into a few kB (the stream repeats one fully flushed block)."""
    numel = mib * 2**20 // 4
    chunk = bytes(2**20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = block * mib + compressor.flush()
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    network = {"backbone.norm.weight": _View(_Storage("0", numel), (numel,), (1,))}
    return write_zip(path, [*_archive_head(network), ("archive/data/0", zipfile.ZIP_DEFLATED, stream, crc, numel * 4)])


def test_a_tensor_larger_than_its_storage_is_refused(tmp_path) -> None:
    path = write_undersized_storage(tmp_path / "undersized.pth")
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = _one_line(error)
    assert str(path) in message and re.search(r"more bytes than its storage", message), message


def test_a_compressed_entry_is_refused(tmp_path, small_state) -> None:
    original = _save(tmp_path / "stored.pth", small_state)
    path = tmp_path / "deflated.pth"
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = _one_line(error)
    assert str(path) in message and "compress" in message, message


def test_an_entry_declaring_more_bytes_than_the_file_is_refused(tmp_path) -> None:
    network = {"backbone.norm.weight": _View(_Storage("0", 4), (4,), (1,))}
    data = bytes(16)
    liar = ("archive/data/0", zipfile.ZIP_STORED, data, zlib.crc32(data), 3 * 2**30)
    path = write_zip(tmp_path / "liar.pth", [*_archive_head(network), liar])
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = _one_line(error)
    assert str(path) in message and "archive/data/0" in message, message


# --------------------------------------------------------------------------- unzipped folders


def _unzip(archive_path: Path, into: Path) -> Path:
    """The snapshot folder unzipping a torch.save archive produces."""
    with zipfile.ZipFile(archive_path) as archive:
        archive.extractall(into)
        (top,) = {name.split("/")[0] for name in archive.namelist()}
    return into / top


def test_an_unzipped_folder_goes_through_a_temporary_file_that_is_removed(tmp_path, small_state, monkeypatch) -> None:
    folder = _unzip(_save(tmp_path / "snapshot_1.pth", small_state), tmp_path / "unzipped")
    private_tmp = tmp_path / "system_tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    seen: list[tuple[Any, list[str]]] = []
    real_load = torch.load

    def spy(source: Any, *args: Any, **kwargs: Any) -> Any:
        names = []
        if isinstance(source, (str, os.PathLike)):
            with zipfile.ZipFile(source) as archive:
                names = archive.namelist()
        seen.append((source, names))
        return real_load(source, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    ckpt = read_checkpoint(folder)
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in small_state.items())
    ((source, names),) = seen
    assert isinstance(source, (str, os.PathLike)), f"the folder was re-zipped in memory ({type(source).__name__})"
    assert Path(source).parent.parent == private_tmp or Path(source).parent == private_tmp, source
    allowed = re.compile(r"[^/]+/(data\.pkl|data/\d+|version|\.format_version|\.storage_alignment|byteorder|\.data/(serialization_id|version))")
    assert names and all(allowed.fullmatch(name) for name in names), names
    assert list(private_tmp.iterdir()) == [], "the temporary zip must be deleted"


def test_a_folder_with_a_stray_file_is_refused(tmp_path, small_state) -> None:
    folder = _unzip(_save(tmp_path / "snapshot_1.pth", small_state), tmp_path / "unzipped")
    (folder / "notes.txt").write_text("what I changed\n")
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(folder)
    message = _one_line(error)
    assert str(folder) in message and "notes.txt" in message, message


def test_a_folder_with_an_oversized_record_is_refused(tmp_path, small_state) -> None:
    folder = _unzip(_save(tmp_path / "snapshot_1.pth", small_state), tmp_path / "unzipped")
    with open(folder / "data" / "0", "ab") as record:
        record.write(bytes(64))
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(folder)
    message = _one_line(error)
    assert str(folder) in message and "data/0" in message, message


# --------------------------------------------------------------------------- truncation


@pytest.fixture(scope="module")
def small_file(tmp_path_factory, small_state) -> bytes:
    return _save(tmp_path_factory.mktemp("small") / "snapshot_1.pth.tar", small_state).read_bytes()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1, exclude_max=True))
def test_a_truncated_checkpoint_gives_checkpoint_error(tmp_path, small_file: bytes, where: float) -> None:
    path = tmp_path / "ConvNeXtPose_XS.tar"
    path.write_bytes(small_file[: int(where * len(small_file))])
    with pytest.raises(CheckpointError) as error:
        infer_arch(read_checkpoint(path), specs_of(released_variants()))
    assert path.name in _one_line(error)


# --------------------------------------------------------------------------- memory, through the command line


_MEASURE = r"""
import json, os, sys
from convnextpose_eval import inspect as cli  # torch is imported once, before the forks

results = {}
for name, path in json.loads(sys.argv[1]).items():
    out, err = (os.path.join(sys.argv[2], f"{name}.{kind}") for kind in ("out", "err"))
    pid = os.fork()
    if pid == 0:
        for stream, target in ((1, out), (2, err)):
            os.dup2(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), stream)
        try:
            code = cli.main([path])
        except SystemExit as exc:
            code = exc.code
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)
    _, status, usage = os.wait4(pid, 0)
    with open(out) as printed, open(err) as complained:
        results[name] = {"code": os.waitstatus_to_exitcode(status), "peak_kib": usage.ru_maxrss, "out": printed.read(), "err": complained.read()}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def memory_runs(tmp_path_factory, small_state) -> dict[str, dict[str, Any]]:
    """``inspect`` on a good small checkpoint and on each attack, one forked process each, with its peak RSS."""
    base = tmp_path_factory.mktemp("memory")
    cases: dict[str, Path] = {"good": _save(base / "good.pth", small_state)}
    cases["deflate_bomb"] = write_deflate_bomb(base / "bomb.pth", mib=512)
    zero_stride = dict(small_state, **{STEM: torch.zeros(1).as_strided(HUGE_STEM, (0, 0, 0, 0))})
    cases["zero_stride_stem"] = _save(base / "zero_stride.pth", zero_stride)
    cases["shapes_imply_a_huge_network"] = _save(base / "wide_stem.pth", dict(small_state, **{STEM: torch.randn(HUGE_STEM)}))
    stray = _unzip(cases["good"], base / "stray")
    with open(stray / "stray.bin", "wb") as handle:
        handle.truncate(SPARSE_SIZE)  # sparse: costs no disk
    cases["folder_with_stray_file"] = stray
    oversized = _unzip(cases["good"], base / "oversized")
    with open(oversized / "data" / "0", "r+b") as handle:
        handle.truncate(SPARSE_SIZE)
    cases["folder_with_oversized_record"] = oversized
    system_tmp = base / "system_tmp"
    system_tmp.mkdir()
    logs = base / "logs"
    logs.mkdir()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT / "src"), TMPDIR=str(system_tmp))
    done = subprocess.run(  # noqa: PLW1510 (the exit status is asserted below, with stderr)
        [sys.executable, "-c", _MEASURE, json.dumps({k: str(v) for k, v in cases.items()}), str(logs)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for name, path in cases.items():
        results[name]["path"] = path
    results["good"]["system_tmp_left"] = sorted(p.name for p in system_tmp.iterdir())
    return results


ATTACKS = {
    "deflate_bomb": r"compress",
    "zero_stride_stem": r"stride",
    "shapes_imply_a_huge_network": r"does not fit",
    "folder_with_stray_file": r"stray\.bin",
    "folder_with_oversized_record": r"data/0",
}


def test_the_good_checkpoint_is_described(memory_runs) -> None:
    good = memory_runs["good"]
    assert good["code"] == 0, good["err"]
    assert "8,8,8,8" in good["out"].replace(" ", "")
    assert good["system_tmp_left"] == []


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_an_attack_fails_in_one_line_within_the_memory_margin(memory_runs, name: str) -> None:
    run, good = memory_runs[name], memory_runs["good"]
    lines = [line for line in run["err"].splitlines() if line.strip()]
    assert run["code"] == 2 and run["out"] == "", run
    assert len(lines) == 1 and lines[0].startswith("error:"), run["err"]
    assert "Traceback" not in run["err"] and "unexpected" not in run["err"]
    assert run["path"].name in lines[0] and re.search(ATTACKS[name], lines[0]), lines[0]
    grown_mib = (run["peak_kib"] - good["peak_kib"]) / 1024
    assert grown_mib < MEMORY_MARGIN_MIB, f"{name}: peak {grown_mib:.0f} MiB above a good checkpoint's"
