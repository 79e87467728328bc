"""``sweep.resume=true`` keeps a job only when its folder re-proves itself (docs/results-contract.md): every
file results.json records is there with its sha256, and its figures are those of its predictions.json
rescored against the ground truth in ``data.root``. Hostile job folders are copies of a real job of the
session's demo sweep, then altered; every other kind of job is run again, the log saying why in one line."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from cli import run_cli

from convnextpose_eval.config.checks import checked_config
from convnextpose_eval.run.plan import ONNXRUNTIME, plan_run
from convnextpose_eval.run.resume import config_digest, kept_results

pytestmark = pytest.mark.slow  # the session's demo sweep

# The demo sweep fixture's own overrides (conftest.demo_sweep_p1), so a job composed here has its digest.
DEMO_P1 = ("experiment=demo", "data.protocol=1", "backend=pytorch")


def _overrides(sweep: Path, *extra: str) -> tuple[str, ...]:
    return (*DEMO_P1, *extra)


@pytest.fixture()
def job(demo_sweep_p1, compose, monkeypatch):
    """``job(variant, *overrides)``: (settings, digest) of a demo sweep job composed as its sweep composed it."""
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(demo_sweep_p1.parent))

    def composed(variant: str, *extra: str):
        cfg = compose(*_overrides(demo_sweep_p1, f"variant={variant}", *extra))
        return checked_config(cfg), config_digest(cfg)

    return composed


def _copy(demo_sweep_p1: Path, tmp_path: Path, name: str, job_dir: str = "0_XS") -> Path:
    folder = tmp_path / name
    shutil.copytree(demo_sweep_p1 / job_dir, folder, ignore=shutil.ignore_patterns("*.lock"))
    return folder


def _edit_json(path: Path, change) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content, indent=2))


def _record_sha(folder: Path, name: str) -> None:
    """What a careful forger does: results.json's record of ``name`` updated to the altered file's sha256."""
    digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    _edit_json(folder / "results.json", lambda r: r["files"][name].__setitem__("sha256", digest))


def test_an_intact_job_is_kept(demo_sweep_p1, tmp_path, job):
    settings, digest = job("XS")
    folder = _copy(demo_sweep_p1, tmp_path, "intact")
    assert json.loads((folder / "results.json").read_text())["config_sha256"] == digest, "composed as the sweep composed it"
    kept, why = kept_results(plan_run(settings, folder), digest)
    assert kept == json.loads((demo_sweep_p1 / "0_XS" / "results.json").read_text()), why


def test_altered_job_folders_are_run_again_saying_why(demo_sweep_p1, tmp_path, job):
    settings, digest = job("XS")

    def verdict(folder: Path) -> str:
        kept, why = kept_results(plan_run(settings, folder), digest)
        assert kept is None and "\n" not in why, why
        return why

    edited = _copy(demo_sweep_p1, tmp_path, "edited_total")
    _edit_json(edited / "results.json", lambda r: r["metrics"].__setitem__("mpjpe", 500.0))
    assert "metrics.mpjpe is 500.0" in verdict(edited)

    deleted = _copy(demo_sweep_p1, tmp_path, "deleted")
    (deleted / "predictions.json").unlink()
    (deleted / "worst_cases.png").unlink()
    assert "predictions.json is missing" in verdict(deleted)

    picture = _copy(demo_sweep_p1, tmp_path, "picture")
    (picture / "worst_cases.png").write_bytes(b"\x89PNG not the run's picture")
    assert "worst_cases.png is not the file its results.json records" in verdict(picture)

    swapped = _copy(demo_sweep_p1, tmp_path, "swapped")
    shutil.copy(demo_sweep_p1 / "1_S" / "predictions.json", swapped / "predictions.json")
    assert "predictions.json is not the file its results.json records" in verdict(swapped)

    # Another run's predictions.json with its sha256 recorded: the rescored figures are not this results.json's.
    forged = _copy(demo_sweep_p1, tmp_path, "forged")
    shutil.copy(demo_sweep_p1 / "1_S" / "predictions.json", forged / "predictions.json")
    _record_sha(forged, "predictions.json")
    assert "results.json: metrics.mpjpe is" in verdict(forged)

    # One predicted joint moved by 50 mm, its sha256 recorded: its image no longer scores what the file says.
    moved = _copy(demo_sweep_p1, tmp_path, "moved_joint")
    entries = json.loads((moved / "predictions.json").read_text())
    entries[7]["joint_cam"][13][2] += 50.0
    (moved / "predictions.json").write_text(json.dumps(entries))
    _record_sha(moved, "predictions.json")
    assert f"image {entries[7]['image_id']}: mpjpe" in verdict(moved)

    fifo = _copy(demo_sweep_p1, tmp_path, "fifo")
    (fifo / "predictions.json").unlink()
    os.mkfifo(fifo / "predictions.json")
    started = time.monotonic()
    assert "not a regular file (a FIFO)" in verdict(fifo)
    assert time.monotonic() - started < 30

    outside = _copy(demo_sweep_p1, tmp_path, "outside")
    _edit_json(outside / "results.json", lambda r: r["files"].__setitem__("../../etc/passwd", {"sha256": "ab" * 32}))
    assert "at $.files" in verdict(outside), "a record names files of the run folder only"

    malformed = _copy(demo_sweep_p1, tmp_path, "malformed")
    _edit_json(malformed / "results.json", lambda r: r.__setitem__("per_subject", None))
    assert "at $.per_subject" in verdict(malformed)


def test_a_default_run_that_resolves_to_onnx_runtime_is_not_kept(demo_sweep_p1, tmp_path, job):
    """backend=auto on this CPU resolves to ONNX Runtime: such a job is always run again, as its docstring says,
    even when everything else about the folder would let it be kept."""
    settings, digest = job("XS", "backend=auto")
    assert plan_run(settings).engine == ONNXRUNTIME, "the default engine on a CPU trainer with ONNX Runtime installed"
    folder = _copy(demo_sweep_p1, tmp_path, "auto")
    _edit_json(folder / "results.json", lambda r: r.__setitem__("config_sha256", digest))
    kept, why = kept_results(plan_run(settings, folder), digest)
    assert kept is None and "ONNX" in why, why


def test_a_resumed_sweep_reruns_an_edited_job_and_reports_its_honest_figures(demo_sweep_p1, tmp_path):
    """End to end: a sweep folder holding XS with an edited MPJPE is resumed; the job runs again, the log says
    why in one line, and the sweep report carries the figure the run computes, not the edited one."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    _copy(demo_sweep_p1, sweep, "0_XS")
    _edit_json(sweep / "0_XS" / "results.json", lambda r: r["metrics"].__setitem__("mpjpe", 111.0))
    done = run_cli(demo_sweep_p1.parent, "-m", *_overrides(demo_sweep_p1, "variant=XS", "sweep.resume=true", f"hydra.sweep.dir={sweep}"))
    assert done.returncode == 0, done.describe()
    said = done.stdout + done.stderr
    lines = [line for line in said.splitlines() if "sweep.resume:" in line]
    assert len(lines) == 1 and "running 0_XS" in lines[0] and "metrics.mpjpe is 111.0000 but the mean of" in lines[0], said
    report = json.loads((sweep / "benchmark_results.json").read_text())
    honest = json.loads((demo_sweep_p1 / "0_XS" / "results.json").read_text())["metrics"]["mpjpe"]
    assert [entry["results"]["metrics"]["mpjpe"] for entry in report["entries"]] == [pytest.approx(honest, abs=1e-9)]
    assert f"| {honest:.2f} |" in (sweep / "BENCHMARK_REPORT.md").read_text()
    printed = re.search(r"^MPJPE\s+([0-9.]+)", said, re.MULTILINE)
    assert printed is not None and printed.group(1) == f"{honest:.2f}", said
