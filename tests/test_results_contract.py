"""The results contract (docs/results-contract.md): every file a run and a sweep write satisfies its shipped
JSON Schema, hand-made wrong files do not, and ``compare`` answers a hostile run folder (a copy of a real
run, then broken: edited figures, malformed fields, a FIFO, a link to /dev/zero, a huge file) in one line."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from convnextpose_eval.cli.compare import main

pytestmark = pytest.mark.slow  # the session's demo sweep (shared with the sweep-report and tracking tests)

JOBS = ("0_XS", "1_S", "2_M", "3_L")
SCHEMA_NAMES = ("results.json", "predictions.json", "benchmark_results.json")


def _validate(content, name: str) -> None:
    """Validation by the jsonschema library alone, against the schema file read from the installed package."""
    folder = resources.files("convnextpose_eval.results") / "schemas"
    schemas = {n: json.loads((folder / f"{n.removesuffix('.json')}.schema.json").read_text()) for n in SCHEMA_NAMES}
    from referencing import Registry, Resource

    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    jsonschema.Draft202012Validator.check_schema(schemas[name])
    jsonschema.Draft202012Validator(schemas[name], registry=registry).validate(content)


def test_every_file_the_demo_sweep_wrote_satisfies_its_schema(demo_sweep_p1):
    from convnextpose_eval.results.contract import schema

    for name in SCHEMA_NAMES:
        assert schema(name)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    benchmark = json.loads((demo_sweep_p1 / "benchmark_results.json").read_text())
    _validate(benchmark, "benchmark_results.json")
    assert benchmark["schema_version"] == schema("benchmark_results.json")["x-schema-version"] == 1
    assert [entry["status"] for entry in benchmark["entries"]] == ["ok"] * 4
    for job in JOBS:
        results = json.loads((demo_sweep_p1 / job / "results.json").read_text())
        predictions = json.loads((demo_sweep_p1 / job / "predictions.json").read_text())
        _validate(results, "results.json")
        _validate(predictions, "predictions.json")
        assert results["schema_version"] == 1 and results["files"]["predictions.json"]["schema_version"] == 1
        # results.json records every other file the run wrote, by its sha256 (computed here independently).
        assert set(results["files"]) == {"predictions.json", "report.html", "worst_cases.png"}
        for name, record in results["files"].items():
            assert record["sha256"] == hashlib.sha256((demo_sweep_p1 / job / name).read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("name", "break_it", "where"),
    [
        ("results.json", lambda r: r["metrics"].__setitem__("mpjpe", "754.73"), "$.metrics.mpjpe"),
        ("results.json", lambda r: r.__setitem__("per_action", list(r["per_action"].values())), "$.per_action"),
        ("results.json", lambda r: r.__setitem__("per_subject", None), "$.per_subject"),
        ("results.json", lambda r: r.pop("files"), "$"),
        ("predictions.json", lambda p: p[4]["joint_cam"][2].pop(), "$[4].joint_cam[2]"),
        ("predictions.json", lambda p: p[0].__setitem__("bbox", "10 20 30 40"), "$[0].bbox"),
    ],
)
def test_hand_made_wrong_files_fail_validation(demo_sweep_p1, name, break_it, where):
    from convnextpose_eval.results.contract import ContractError, check

    content = json.loads((demo_sweep_p1 / "0_XS" / name).read_text())
    check(content, name, "intact")
    break_it(content)
    with pytest.raises(jsonschema.ValidationError):
        _validate(content, name)
    with pytest.raises(ContractError, match="^" + re.escape(f"broken: not a {name} this tool writes (schema version 1): at {where},")):
        check(content, name, "broken")


def _hostile_copy(demo_sweep_p1: Path, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(demo_sweep_p1 / "0_XS", folder, ignore=shutil.ignore_patterns(".hydra", "*.log", "*.lock"))
    return folder


def _edit(path: Path, change) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def _compare_refuses(capsys, a: Path, b: Path, *extra: str) -> str:
    code = main([str(a), str(b), *extra])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", captured
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: "), captured.err
    return captured.err


def test_compare_refuses_figures_that_are_not_the_means_of_the_images(capsys, demo_sweep_p1, tmp_path):
    honest = demo_sweep_p1 / "0_XS"
    edited = _hostile_copy(demo_sweep_p1, tmp_path, "edited")
    _edit(edited / "results.json", lambda r: r["metrics"].__setitem__("mpjpe", r["metrics"]["mpjpe"] - 200.0))
    err = _compare_refuses(capsys, honest, edited)
    assert "metrics.mpjpe" in err and str(edited / "results.json") in err
    # An edit of one image's figure alone: the totals are no longer its means either.
    one_image = _hostile_copy(demo_sweep_p1, tmp_path, "one_image")
    _edit(one_image / "predictions.json", lambda p: p[0].__setitem__("pa_mpjpe", p[0]["pa_mpjpe"] + 50.0))
    assert "pa_mpjpe" in _compare_refuses(capsys, one_image, honest)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("metric_string", "$.metrics.mpjpe"),
        ("per_action_list", "$.per_action"),
        ("per_subject_null", "$.per_subject"),
        ("ragged_joints", "$[3].joint_cam[16]"),
        ("ragged_joint_errors", "$[5].joint_mpjpe"),
        ("bbox_string", "$[0].bbox"),
        ("nan_metric", "NaN is not a number JSON allows"),
        ("fifo", "not a regular file (a FIFO)"),
        ("dev_zero", "not a regular file (a character device)"),
        ("huge", "more than the"),
        ("folder", "not a regular file (a folder)"),
    ],
)
def test_compare_answers_every_malformed_run_folder_in_one_line(capsys, demo_sweep_p1, tmp_path, case, expected):
    honest = demo_sweep_p1 / "0_XS"
    bad = _hostile_copy(demo_sweep_p1, tmp_path, case)
    results, predictions = bad / "results.json", bad / "predictions.json"
    if case == "metric_string":
        _edit(results, lambda r: r["metrics"].__setitem__("mpjpe", str(r["metrics"]["mpjpe"])))
    elif case == "per_action_list":
        _edit(results, lambda r: r.__setitem__("per_action", list(r["per_action"].values())))
    elif case == "per_subject_null":
        _edit(results, lambda r: r.__setitem__("per_subject", None))
    elif case == "ragged_joints":
        _edit(predictions, lambda p: p[3]["joint_cam"][16].append(1.0))
    elif case == "ragged_joint_errors":
        _edit(predictions, lambda p: p[5]["joint_mpjpe"].pop())
    elif case == "bbox_string":
        _edit(predictions, lambda p: p[0].__setitem__("bbox", " ".join(map(str, p[0]["bbox"]))))
    elif case == "nan_metric":
        results.write_text(results.read_text().replace(f'"mpjpe": {json.loads(results.read_text())["metrics"]["mpjpe"]}', '"mpjpe": NaN', 1))
        assert "NaN" in results.read_text()
    elif case == "fifo":
        predictions.unlink()
        os.mkfifo(predictions)
    elif case == "dev_zero":
        predictions.unlink()
        predictions.symlink_to("/dev/zero")
    elif case == "huge":
        with open(results, "r+b") as handle:  # sparse: 17 MiB of nothing after the real content
            handle.truncate(17 << 20)
    elif case == "folder":
        results.unlink()
        results.mkdir()
    started = time.monotonic()
    err = _compare_refuses(capsys, honest, bad)
    assert time.monotonic() - started < 30, "no hang"
    assert expected in err, err


def test_compare_refuses_a_negative_seed_in_one_line(capsys, demo_sweep_p1):
    err = _compare_refuses(capsys, demo_sweep_p1 / "0_XS", demo_sweep_p1 / "1_S", "--seed", "-1")
    assert "--seed" in err


def test_the_schema_versions_agree_with_what_files_carry():
    from convnextpose_eval.results.contract import schema, schema_version

    for name in ("results.json", "benchmark_results.json"):
        assert schema(name)["properties"]["schema_version"]["const"] == schema_version(name)
    assert isinstance(schema_version("predictions.json"), int)


def test_reading_the_real_files_through_the_guarded_reader(demo_sweep_p1):
    from convnextpose_eval.results.contract import load_checked

    results = load_checked(demo_sweep_p1 / "2_M" / "results.json")
    predictions = load_checked(demo_sweep_p1 / "2_M" / "predictions.json")
    assert len(predictions) == results["num_samples"] == 23
    assert np.mean([entry["mpjpe"] for entry in predictions]) == pytest.approx(results["metrics"]["mpjpe"], rel=1e-12)
