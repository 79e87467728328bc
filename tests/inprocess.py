"""Run ``run_eval.py`` inside the test process: the real Hydra entry point and ``run_job``, without the
eight seconds of interpreter and library start-up a subprocess costs. For failures that happen before
any process is spawned, and for reruns whose numbers are compared with a clean run's."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli import PROJECT_ROOT, RUN_EVAL, RUN_EVAL_QUIET, share_exports


@dataclass(frozen=True)
class InProcessRun:
    """The exit status run_eval.py would have had, and what it printed on stderr (and stdout)."""

    returncode: int
    stderr: str
    stdout: str = ""

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    @property
    def last_line(self) -> str:
        """The last non-blank line on stderr: where the one-line reason must be."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-4000:]}"


def _script():
    spec = importlib.util.spec_from_file_location("run_eval", RUN_EVAL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(monkeypatch: pytest.MonkeyPatch, root: Path, *args: str, shared_exports: bool = False) -> InProcessRun:
    """``python run_eval.py ARGS trainer.progress_bar=false`` with CONVNEXTPOSE_EVAL_ROOT=root, in this process.

    What the run prints to ``sys.stderr`` (its ``error:`` line included) and ``sys.stdout`` is collected; the
    patches are undone by ``monkeypatch``. ``shared_exports``: reuse the session's ONNX exports, as ``cli.run_cli``
    does by default, so that a default-engine run exports nothing of its own.
    """
    from hydra.core.global_hydra import GlobalHydra

    from convnextpose_eval.common import errors
    from convnextpose_eval.config.schema import register_schema

    if shared_exports:
        share_exports(root, args)
    stderr, previous = io.StringIO(), sys.stderr
    stdout, previous_stdout = io.StringIO(), sys.stdout
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(root))
    monkeypatch.setattr(sys, "argv", [str(RUN_EVAL), *args, *RUN_EVAL_QUIET])
    sys.stderr, sys.stdout = stderr, stdout
    monkeypatch.chdir(PROJECT_ROOT)
    # The command name a run sets for its hints is process-wide: undone with the test's other patches.
    monkeypatch.setattr(errors, "_command", [errors.command()])
    register_schema()
    GlobalHydra.instance().clear()
    try:
        code = int(_script().main() or 0)  # a refusal before Hydra starts is returned, not raised
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        GlobalHydra.instance().clear()
        sys.stderr, sys.stdout = previous, previous_stdout
    return InProcessRun(code, stderr.getvalue(), stdout.getvalue())


def read_json(path: Path) -> dict:
    with open(path) as handle:
        return json.load(handle)
