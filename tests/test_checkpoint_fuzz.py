"""Mutated checkpoint bytes: the loader either loads them or raises its own one-line CheckpointError."""

from __future__ import annotations

import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convnextpose_eval.checkpoint.architecture import infer_arch
from convnextpose_eval.checkpoint.reader import read_checkpoint
from convnextpose_eval.common.errors import CheckpointError
from convnextpose_eval.config.compose import released_variants
from convnextpose_eval.network import ArchSpec, ConvNeXtPose
from convnextpose_eval.network.spec import specs_of
from convnextpose_eval.sample.released_format import write_released_checkpoint


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> bytes:
    spec = ArchSpec(depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), head_channels=8, head_upsample=(True, True, False), depth_dim=4, joint_num=18)
    path = tmp_path_factory.mktemp("fuzz") / "snapshot_1.pth.tar"
    write_released_checkpoint(ConvNeXtPose(spec).state_dict(), path, epoch=1, key_style="legacy")
    return path.read_bytes()


def _pickle_span(data: bytes) -> tuple[int, int]:
    """Where data.pkl's bytes sit in the archive: the part whose mutations reach the unpickler."""
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    return start, start + info.compress_size


mutation = st.one_of(
    st.tuples(st.just("flip_pickle"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("flip_any"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("insert"), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=64))),
)


def _mutate(data: bytes, how: tuple) -> bytes:
    kind, arg = how
    buffer = bytearray(data)
    if kind in ("flip_pickle", "flip_any"):
        lo, hi = _pickle_span(data) if kind == "flip_pickle" else (0, len(data))
        for where, value in arg:
            buffer[lo + int(where * (hi - lo))] = value
        return bytes(buffer)
    if kind == "truncate":
        return data[: int(arg * len(data))]
    where, blob = arg
    cut = int(where * len(data))
    return data[:cut] + blob + data[cut:]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=mutation)
def test_mutated_bytes_give_only_our_error(original, tmp_path, how):
    path = tmp_path / "ConvNeXtPose_XS.tar"
    path.write_bytes(_mutate(original, how))
    try:
        ckpt = read_checkpoint(path)
        infer_arch(ckpt, specs_of(released_variants()))
    except CheckpointError as exc:
        message = str(exc)
        assert "\n" not in message
        assert path.name in message
    else:
        assert all(isinstance(v, torch.Tensor) for v in ckpt.state_dict.values())
