"""``python -m convnextpose_eval.inspect FILE [--json]`` on hand-written released-style files (docs/getting-started.md, docs/protocol.md "Checkpoints").

The damaged file goes through the real command, a subprocess (its exit status and stderr); the others through
the same ``main`` in this process, without a new interpreter's start-up each.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch
from conftest import PROJECT_ROOT, RELEASED_EPOCH, VARIANTS
from test_checkpoint_safety import write_undersized_storage

# docs/protocol.md, "The four architectures".
EXPECTED = {
    "XS": {"depths": [2, 2, 6, 2], "dims": [40, 80, 160, 320], "head_channels": 128, "depth_dim": 32, "key_style": "modern", "num_params": 3_528_008},
    "S": {"depths": [3, 3, 9, 3], "dims": [48, 96, 192, 384], "head_channels": 256, "depth_dim": 32, "key_style": "modern", "num_params": 7_438_976},
    "M": {"depths": [3, 3, 9, 3], "dims": [48, 96, 192, 384], "head_channels": 256, "depth_dim": 64, "key_style": "legacy", "num_params": 7_587_008},
    "L": {"depths": [3, 3, 9, 3], "dims": [48, 96, 192, 384], "head_channels": 512, "depth_dim": 64, "key_style": "legacy", "num_params": 8_380_352},
}
JSON_KEYS = {"variant", "depths", "dims", "head_channels", "depth_dim", "joint_num", "epoch", "key_style", "dtype_note", "num_params"}
# Crafted files: each must give one ``error:`` line naming the file and this problem, exit status 2, no traceback.
# (test_checkpoint_safety.py runs the zip bomb, zero-stride and stray-file cases through the same main(), measuring memory.)
CRAFTED = {"int8_weights": r"int8", "undersized_storage": r"storage"}


def _inspect_in_process(args: list[str]) -> tuple[int, str, str]:
    """``convnextpose_eval.inspect``'s ``main(args)`` in this process: its exit status, stdout and stderr."""
    from convnextpose_eval.cli.inspect import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = int(main(args) or 0)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def inspect_runs(tmp_path_factory, released_files, source_networks):
    """name -> (code, out, err, path): the damaged file through the real command (a subprocess, started first),
    every other invocation through ``main`` in this process while it runs."""
    folder = tmp_path_factory.mktemp("inspect")
    unzipped = folder / "unzipped_M"
    with zipfile.ZipFile(released_files["M"]) as archive:
        archive.extractall(unzipped)
    bad = folder / "ConvNeXtPose_L.tar"
    bad.write_text("<!DOCTYPE html><html>Google Drive: too many users have viewed this file</html>\n")
    state = source_networks["S"].state_dict()
    half = folder / "snapshot_67_half.pth"
    torch.save({"epoch": 67, "network": {k: v.half() if v.is_floating_point() else v for k, v in state.items()}}, half)
    crafted = {"int8_weights": folder / "int8.pth", "undersized_storage": folder / "undersized.pth"}
    torch.save({"epoch": 67, "network": {k: v.to(torch.int8) if v.is_floating_point() else v for k, v in state.items()}}, crafted["int8_weights"])
    write_undersized_storage(crafted["undersized_storage"])
    jobs = {f"json_{name}": [str(released_files[name]), "--json"] for name in VARIANTS}
    jobs["text_unzipped_M"] = [str(unzipped / f"snapshot_{RELEASED_EPOCH['M']}.pth")]
    jobs["bad_json"] = [str(bad), "--json"]
    jobs["json_half"] = [str(half), "--json"]
    jobs.update({name: [str(path)] for name, path in crafted.items()})
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT / "src"))
    real = "bad_json"
    process = subprocess.Popen(
        [sys.executable, "-m", "convnextpose_eval.inspect", *jobs[real]],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    results = {key: (*_inspect_in_process(args), args[0]) for key, args in jobs.items() if key != real}
    out, err = process.communicate(timeout=300)
    results[real] = (process.returncode, out, err, jobs[real][0])
    return results


@pytest.mark.parametrize("name", VARIANTS)
def test_json_describes_the_checkpoint(name, inspect_runs):
    code, out, err, _ = inspect_runs[f"json_{name}"]
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out  # one JSON object
    info = json.loads(lines[0])
    assert isinstance(info, dict)
    assert JSON_KEYS <= info.keys()
    expected = dict(EXPECTED[name], variant=name, joint_num=18, epoch=RELEASED_EPOCH[name], dtype_note=None)
    assert {k: info[k] for k in JSON_KEYS} == expected


def test_half_precision_weights_are_described_with_their_conversion(inspect_runs):
    code, out, err, _ = inspect_runs["json_half"]
    assert code == 0, err
    info = json.loads(out)
    assert {k: info[k] for k in JSON_KEYS} == dict(EXPECTED["S"], variant="S", joint_num=18, epoch=67, dtype_note=info["dtype_note"])
    assert "float16" in info["dtype_note"] and "float32" in info["dtype_note"]


def test_text_form_names_the_variant(inspect_runs):
    code, out, err, _ = inspect_runs["text_unzipped_M"]
    assert code == 0, err
    variant_lines = [line for line in out.splitlines() if line.lower().startswith("variant")]
    assert len(variant_lines) == 1 and variant_lines[0].split()[-1] == "M", out
    tokens = {token.replace(",", "").replace("_", "") for token in out.split()}
    assert {"64", "legacy", "7587008"} <= tokens, out  # depth_dim, key style, parameter count
    (weights_line,) = [line for line in out.splitlines() if line.startswith("weights")]
    assert weights_line.split()[-1] == "float32", out  # stored as float32: nothing converted


def test_bad_file_exits_non_zero_with_one_line(inspect_runs):
    code, out, err, _ = inspect_runs["bad_json"]
    assert code != 0
    assert out.strip() == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "ConvNeXtPose_L.tar" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_file_gives_one_error_line(inspect_runs, name):
    code, out, err, path = inspect_runs[name]
    assert code == 2 and out.strip() == "", (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and path in lines[0] and re.search(CRAFTED[name], lines[0]), lines[0]
    assert "Traceback" not in err and "unexpected" not in err
