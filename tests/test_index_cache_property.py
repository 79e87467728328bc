"""Property: whatever single byte of an annotation, camera or RootNet file changes, in place or as a new
file, with its size and modification time kept, the cached index is what a fresh parse gives, or both are
refused with the same line. Never a stale index."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convnextpose_eval.common.errors import DataError
from convnextpose_eval.data import h36m
from convnextpose_eval.data.h36m import load_test_index

# Protocol 2 with RootNet boxes reads every one of these.
SOURCES = tuple(f"annotations/Human36M_subject{s}_{kind}.json" for s in (9, 11) for kind in ("data", "camera", "joint_3d")) + (
    "bbox_root/bbox_root_human36m_output.json",
)
FIELDS = ("image_id", "file_name", "action", "subject", "bbox", "root_cam", "joint_cam", "focal", "center", "image_size")


@pytest.fixture(scope="module")
def warm(synthetic_sample, tmp_path_factory) -> tuple[Path, Path, dict[str, bytes]]:
    """A private copy of the sample, an index cache that holds its protocol-2 index, and the files' bytes."""
    import shutil

    root = tmp_path_factory.mktemp("index_property") / "data"
    shutil.copytree(synthetic_sample, root, ignore=shutil.ignore_patterns("checkpoints", "images"))
    (root / "images").symlink_to(synthetic_sample / "images")
    cache = root.parent / "cache"
    load_test_index(root, 2, False, cache)
    return root, cache, {name: (root / name).read_bytes() for name in SOURCES}


def _outcome(root: Path, cache: Path | None) -> h36m.TestIndex | str:
    try:
        return load_test_index(root, 2, False, cache)
    except DataError as exc:
        return str(exc)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(SOURCES), where=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255), in_place=st.booleans())
def test_a_single_byte_change_is_never_served_stale(warm, name: str, where: float, mask: int, in_place: bool) -> None:
    root, cache, pristine = warm
    path = root / name
    original = pristine[name]
    position = int(where * len(original))
    changed = bytearray(original)
    changed[position] ^= mask
    status = path.stat()
    try:
        if in_place:
            with open(path, "r+b") as handle:
                handle.seek(position)
                handle.write(bytes([changed[position]]))
        else:
            staged = path.with_name(path.name + ".new")
            staged.write_bytes(bytes(changed))
            staged.replace(path)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
        assert path.stat().st_size == status.st_size and path.stat().st_mtime_ns == status.st_mtime_ns
        cached, fresh = _outcome(root, cache), _outcome(root, None)
        if isinstance(fresh, str) or isinstance(cached, str):
            assert cached == fresh, f"cached: {cached if isinstance(cached, str) else 'an index'}; fresh: {fresh if isinstance(fresh, str) else 'an index'}"
        else:
            for field in FIELDS:
                np.testing.assert_array_equal(getattr(cached, field), getattr(fresh, field), err_msg=field)
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
