"""The Python API (``from convnextpose_eval import evaluate``) in this process: refusals, failures, sweeps.

A successful single run through the API, its summary and its quiet console are checked in a real Jupyter
kernel on an installed copy (test_notebook_install.py). Runs are XS on protocol 1 of the session's synthetic
sample (23 images); what results.json holds is read back with ``json``, independently of the API.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli import cli_env

import convnextpose_eval
from convnextpose_eval import (
    ConfigError,
    DataError,
    EvalError,
    SweepError,
    evaluate,
    evaluate_sweep,
)

SAMPLE_P1 = 23  # test images of the sample on protocol 1 (S11)
SMALL_RUN = ("experiment=demo", "variant=XS", "data.protocol=1", "trainer.progress_bar=false")
# What a quiet run must not print: Lightning's banners and tips, deprecation notices, Hydra's job error log.
NOISE = ("GPU available", "TPU available", "litlogger", "Tip:", "DeprecationWarning", "srun", "Error executing job", "Traceback")


@pytest.fixture(scope="module")
def api_root(eval_root_with_sample, monkeypatch_module) -> Path:
    root = eval_root_with_sample("api")
    monkeypatch_module.setenv("CONVNEXTPOSE_EVAL_ROOT", str(root))
    return root


@pytest.fixture(autouse=True)
def default_command_name(monkeypatch) -> None:
    """Hints name the command as ``python -m convnextpose_eval`` from Python, whatever another test's entry point set."""
    from convnextpose_eval.common import errors

    monkeypatch.setattr(errors, "_command", ["python -m convnextpose_eval"])


@pytest.fixture()
def empty_root(tmp_path, monkeypatch) -> Path:
    """A project root with nothing in it: refusals must leave it so."""
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# --------------------------------------------------------------------------- cheap: refusals and the import


def test_import_is_cheap_and_loads_no_framework():
    """The command line's one-line refusals depend on a fast start: the package import pulls in nothing heavy."""
    code = "import sys, convnextpose_eval; print(sorted(m for m in ('torch', 'hydra', 'omegaconf', 'pytorch_lightning', 'cv2') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], env=cli_env(None), capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    assert convnextpose_eval.evaluate is evaluate and callable(evaluate)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("varient=L",), "varient: no such setting; did you mean variant? (`python -m convnextpose_eval --help` lists them all)"),
        (("data.protocl=1",), "data.protocl: no such setting; did you mean data.protocol?"),
        (("variant=xs",), "variant=xs: no such option; did you mean variant=XS? (variant is one of XS, S, M, L, auto)"),
        (("experiment=demo", "variant=XS,S"), "variant=XS,S: several values make a sweep; run it with evaluate_sweep(...)"),
        (("-m", "experiment=demo"), "-m: pass settings as key=value"),
        (("flip_test=maybe",), "flip_test: Value 'maybe' is not a valid bool"),
    ],
)
def test_bad_overrides_raise_the_tools_error_not_system_exit(empty_root, overrides, expected):
    with pytest.raises(ConfigError) as caught:
        evaluate(*overrides)
    message = str(caught.value)
    assert message.startswith(expected) and "\n" not in message, message
    assert "EvalConfig" not in message and "DataConfig" not in message
    assert list(empty_root.iterdir()) == [], "a refused call may not leave anything behind"


def test_a_refused_run_raises_and_leaves_no_folder(empty_root):
    """Refused after composition (the data root does not exist): ConfigError, and no empty run folder behind."""
    run_dir = empty_root / "refused"
    with pytest.raises(ConfigError, match=r"^/nonexistent: data root does not exist"):
        evaluate("variant=XS", "data.root=/nonexistent", run_dir=run_dir)
    assert list(empty_root.iterdir()) == []


# --------------------------------------------------------------------------- runs


@pytest.mark.slow
def test_data_error_after_the_folder_is_taken_raises_and_leaves_failure_json(api_root, tmp_path, copy_sample_data):
    """A damaged sample copy (annotations emptied): DataError with the file's name; the folder keeps failure.json only."""
    data = copy_sample_data(tmp_path / "data")
    damaged = data / "annotations" / "Human36M_subject11_data.json"
    damaged.write_text("{}", encoding="utf-8")
    run_dir = tmp_path / "run"
    checkpoint = api_root / "outputs" / "sample" / "checkpoints" / "ConvNeXtPose_XS.tar"
    with pytest.raises(DataError) as caught:
        evaluate("variant=XS", f"ckpt_path={checkpoint}", f"data.root={data}", "data.protocol=1", run_dir=run_dir)
    assert str(damaged) in str(caught.value) and "\n" not in str(caught.value)
    visible = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
    assert visible == ["failure.json"], visible
    assert read_json(run_dir / "failure.json")["error"] == str(caught.value)


@pytest.mark.slow
def test_evaluate_sweep_runs_every_job_and_names_the_failed_one(api_root, tmp_path):
    """``variant=XS,auto``: XS runs; auto without ckpt_path fails in its job; SweepError carries XS's results."""
    sweep_dir = tmp_path / "sweep"
    with pytest.raises(SweepError) as caught:
        evaluate_sweep(*SMALL_RUN[:1], "variant=XS,auto", *SMALL_RUN[2:], sweep_dir=sweep_dir)
    message = str(caught.value)
    assert message.startswith("1 of 2 jobs failed: auto (") and "ckpt_path=FILE_OR_DIR" in message and "\n" not in message, message
    assert isinstance(caught.value, EvalError)
    [xs] = caught.value.completed
    assert xs.variant == "XS" and xs.to_dict() == read_json(sweep_dir / "0_XS" / "results.json")
    report = read_json(sweep_dir / "benchmark_results.json")
    assert [(e["variant"], e["status"]) for e in report["entries"]] == [("XS", "ok"), ("auto", "failed")]
