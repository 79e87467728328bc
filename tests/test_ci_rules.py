"""What CI must not skip: a ``required_in_ci`` test that skips fails under ``CI=true`` (conftest.py), and
only there; a test without the marker (a GPU test on a CPU machine) still skips. And the order the
workers get the files in names real files."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cli import PROJECT_ROOT
from conftest import LONGEST_FILES

PROBE = '''
import pytest

@pytest.mark.required_in_ci
def test_needs_the_cluster():
    pytest.skip("no cluster here")

def test_needs_a_gpu():
    pytest.skip("no GPU")
'''


def _run_probe(tmp_path, ci: str | None) -> str:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT / "tests"), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                           "-o", "markers=required_in_ci", str(tmp_path / "test_probe.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    return done.stdout


@pytest.mark.slow
def test_a_required_test_that_skips_fails_under_ci(tmp_path):
    out = _run_probe(tmp_path, "true")
    assert "1 failed, 1 skipped" in out, out
    assert "must run in CI but skipped: Skipped: no cluster here" in out, out


@pytest.mark.slow
def test_on_a_laptop_both_skip_and_say_why(tmp_path):
    out = _run_probe(tmp_path, None)
    assert "2 skipped" in out and "failed" not in out, out


def test_the_files_handed_out_first_are_files_of_this_suite():
    """conftest.py's LONGEST_FILES orders the suite for the workers; a renamed file would drop out unseen."""
    missing = [name for name in LONGEST_FILES if not (PROJECT_ROOT / "tests" / name).is_file()]
    assert not missing, f"conftest.LONGEST_FILES names files that are not in tests/: {missing}"
    assert len(set(LONGEST_FILES)) == len(LONGEST_FILES)
