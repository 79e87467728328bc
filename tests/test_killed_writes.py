"""Property: a run killed (SIGKILL) at any moment while it writes its results leaves only what the next
run of the same command recognises and clears, never a partial file and never a folder it refuses.

The kills hit the tool's own writer in a child process (tests/killed_writes.py), at a seeded random moment
spread over the whole write, of files the size of a sample run's.
"""

from __future__ import annotations

import random
import re
import signal
import time
from pathlib import Path

import pytest
from killed_writes import RUN_FILES, go, start_writer, write_killed_by_file_size_limit

from convnextpose_eval.common.atomic import write_file_set
from convnextpose_eval.results.files import PENDING_FILE
from convnextpose_eval.results.records import TOOL_NAME
from convnextpose_eval.run.folder import RunFolder

SEEDS = range(16)


@pytest.fixture(scope="module")
def run_files(tmp_path_factory) -> list[tuple[str, Path]]:
    """A run's files as the tool writes them: a picture and a page of the sample's sizes, real JSON documents."""
    import numpy as np

    folder = tmp_path_factory.mktemp("clean_files")
    contents = {
        RUN_FILES[0]: b"[" + b",".join(b'{"image_id": %d, "joint_cam": [[0.5, 1.5, 2.5]]}' % i for i in range(600)) + b"]\n",
        RUN_FILES[1]: np.random.default_rng(0).integers(0, 256, 1_400_000, dtype=np.uint8).tobytes(),
        RUN_FILES[2]: b"<!DOCTYPE html>\n" + b"<p>page</p>" * 35_000,
        RUN_FILES[3]: b'{"tool": "%s", "metrics": {"mpjpe": 754.7312}}\n' % TOOL_NAME.encode(),
    }
    for name, content in contents.items():
        (folder / name).write_bytes(content)
    return [(name, folder / name) for name in RUN_FILES]


def _write_seconds(folder: Path, files: list[tuple[str, Path]]) -> float:
    process = start_writer(folder, files)
    started = go(process)
    assert process.wait(timeout=60) == 0
    return time.monotonic() - started


def test_a_run_killed_at_any_moment_of_its_writes_never_blocks_the_same_command(tmp_path, run_files) -> None:
    clean = {name: path.read_bytes() for name, path in run_files}
    # The quickest of three writes: one slowed by a busy moment of the machine would put every kill after the write.
    window = min(_write_seconds(tmp_path / f"calibration_{i}", run_files) for i in range(3))
    states: dict[tuple[str, ...], int] = {}
    for seed in SEEDS:
        out = tmp_path / f"run_{seed}"
        out.mkdir()
        # What an earlier successful run left: the new run clears it before it writes (as run_job does).
        write_file_set(out, [(name, clean[name]) for name in RUN_FILES], PENDING_FILE, TOOL_NAME)
        folder = RunFolder(out)
        folder.clear_previous_results()
        process = start_writer(out, run_files)
        go(process)
        time.sleep(random.Random(seed).uniform(0, window))
        process.send_signal(signal.SIGKILL)
        process.wait()
        present = tuple(sorted(re.sub(r"\.[^.]+\.tmp$", ".tmp", p.name) for p in out.iterdir()))
        states[present] = states.get(present, 0) + 1
        for name in RUN_FILES:  # every file is whole or absent; results.json only once the others are in place
            if (out / name).exists():
                assert (out / name).read_bytes() == clean[name], f"seed {seed}: partial {name}"
        if (out / RUN_FILES[-1]).exists():
            assert all((out / name).exists() for name in RUN_FILES), f"seed {seed}: {present}"
        # The same command again: it must accept the folder, clear what the kill left, and write its files.
        folder.clear_previous_results()
        assert sorted(p.name for p in out.iterdir()) == [], f"seed {seed}: left after clearing {sorted(p.name for p in out.iterdir())}"
        write_file_set(out, [(name, clean[name]) for name in RUN_FILES], PENDING_FILE, TOOL_NAME)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == clean
    print(f"write window {window * 1000:.0f} ms; folder states after the kills: {states}")
    assert len(states) > 1, f"every kill left the same state {states}: the moments did not spread over the write"


def test_someone_elses_file_is_still_refused_beside_a_killed_runs_manifest(tmp_path, run_files) -> None:
    from convnextpose_eval.common.errors import ConfigError

    out = tmp_path / "out"
    out.mkdir()
    assert write_killed_by_file_size_limit(out, run_files, 1000 * 1024) == -signal.SIGXFSZ  # killed writing the picture
    assert (out / PENDING_FILE).exists() and (out / RUN_FILES[0]).exists()
    (out / RUN_FILES[0]).write_text("[]\n")  # not the content the manifest announced
    with pytest.raises(ConfigError, match="not written by this tool"):
        RunFolder(out).clear_previous_results()
