"""Trackers bounded: an MLflow server that is not there, or never answers, is refused in one line within
``logger.connect_timeout_s`` and before any compute; a ``save_dir`` that is a file or cannot be written is one
line. Real MLflow clients and real sockets on 127.0.0.1 only."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import pytest
from inprocess import run_in_process

from convnextpose_eval.config.schema import LoggerConfig

XS = ("experiment=demo", "variant=XS", "data.protocol=1", "trainer.progress_bar=false")
# Composition and set-up of a run in this process on a loaded 2-core machine, on top of the bound under test;
# MLflow's own client retries an unreachable server for minutes.
SLACK_S = 45.0


@pytest.fixture(scope="module")
def root(eval_root_with_sample) -> Path:
    """A project root on the session's sample, with the libraries a tracked run imports already loaded, so that
    the timings below are of the run, not of the first import of MLflow and Lightning."""
    import mlflow  # noqa: F401

    import convnextpose_eval.run.evaluation  # noqa: F401

    return eval_root_with_sample("trackers")


@pytest.fixture()
def silent_server() -> Iterator[str]:
    """A TCP socket on 127.0.0.1 that accepts connections (the kernel's backlog) and never answers a byte."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def _nothing_computed(out: Path) -> bool:
    return not any((out / name).exists() for name in ("results.json", "predictions.json", "worst_cases.png"))


def test_the_default_bound_is_at_most_30_seconds():
    assert 0 < LoggerConfig().connect_timeout_s <= 30


def _tracked_run(monkeypatch, root: Path, out: Path, *extra: str):
    """``run_eval.py`` in this process (no interpreter start-up in the timing), its environment restored after
    (the run bounds MLflow's own retries through environment variables)."""
    with patch.dict(os.environ):
        started = time.monotonic()
        done = run_in_process(monkeypatch, root, *XS, "logger=mlflow", *extra, f"hydra.run.dir={out}")
        return done, time.monotonic() - started


def test_a_tracking_server_where_nothing_listens_is_refused_at_once(monkeypatch, root, tmp_path):
    pytest.importorskip("mlflow")
    out = tmp_path / "run"
    done, seconds = _tracked_run(monkeypatch, root, out, "logger.tracking_uri=http://127.0.0.1:1")
    assert done.returncode == 2, done.describe()
    assert len(done.error_lines) == 1 and "logger.tracking_uri=http://127.0.0.1:1" in done.error_lines[0], done.describe()
    assert "cannot be reached" in done.error_lines[0] and "unexpected" not in done.stderr, done.describe()
    assert seconds < SLACK_S and _nothing_computed(out)


def test_a_tracking_server_that_never_answers_is_refused_within_the_bound(monkeypatch, root, tmp_path, silent_server):
    pytest.importorskip("mlflow")
    out = tmp_path / "run"
    done, seconds = _tracked_run(monkeypatch, root, out, f"logger.tracking_uri={silent_server}", "logger.connect_timeout_s=3")
    assert done.returncode == 2, done.describe()
    assert len(done.error_lines) == 1 and "no answer within 3 s" in done.error_lines[0], done.describe()
    assert 3 <= seconds < 3 + SLACK_S and _nothing_computed(out)


def test_the_probe_alone_honours_its_bound(silent_server):
    """The same refusal measured without a process start: the bound itself, with MLflow's client importable."""
    from convnextpose_eval.common.errors import ConfigError
    from convnextpose_eval.run.tracking import probe_tracking_server

    pytest.importorskip("mlflow")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="no answer within 1.5 s"):
        probe_tracking_server(silent_server, 1.5)
    assert 1.4 < time.monotonic() - started < 5


def test_a_csv_save_dir_that_is_a_file_is_one_line(monkeypatch, root, tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("the user's own file")
    out = tmp_path / "run"
    done = run_in_process(monkeypatch, root, *XS, "logger=csv", f"logger.save_dir={blocker}", f"hydra.run.dir={out}")
    assert done.returncode == 2, done.describe()
    assert len(done.error_lines) == 1 and "unexpected" not in done.stderr, done.describe()
    assert f"logger.save_dir={blocker}: {blocker} is a file, not a folder" in done.error_lines[0]
    assert blocker.read_text() == "the user's own file" and _nothing_computed(out)


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in: permissions for a normal user; for root (whom permissions do not
    stop) a path under /sys, where nothing can be created."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
        return folder / "tb"
    folder = Path("/sys/convnextpose-eval-tensorboard")
    try:
        folder.mkdir()
    except OSError:
        return folder
    folder.rmdir()
    pytest.skip("this machine lets root create folders under /sys")


def test_a_tensorboard_save_dir_that_cannot_be_written_is_one_line(monkeypatch, root, tmp_path):
    pytest.importorskip("tensorboard")
    locked = _unwritable_folder(tmp_path)
    out = tmp_path / "run"
    done = run_in_process(monkeypatch, root, *XS, "logger=tensorboard", f"logger.save_dir={locked}", f"hydra.run.dir={out}")
    assert done.returncode == 2, done.describe()
    assert len(done.error_lines) == 1 and "unexpected" not in done.stderr, done.describe()
    assert f"logger.save_dir={locked}: cannot be written" in done.error_lines[0], done.describe()
    assert _nothing_computed(out)
