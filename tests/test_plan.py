"""A run's plan: every decision made once, from the checked config (docs/code-tour.md, the run room).

The checks use independent facts: the sha256 of the checkpoint file computed here with hashlib, the
released architectures from the variant configs, and what the resume rules of the run room say of ONNX runs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from convnextpose_eval.common.errors import ConfigError
from convnextpose_eval.common.read_once import FILES
from convnextpose_eval.config.checks import checked_config
from convnextpose_eval.network import ArchSpec
from convnextpose_eval.run.plan import ONNXRUNTIME, PYTORCH, plan_run


@pytest.fixture()
def settings_for(compose, sample_eval_root, monkeypatch):
    """``settings_for(*overrides)``: the checked config of a run on the session's sample."""
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(sample_eval_root))

    def make(*overrides: str):
        return checked_config(compose("experiment=demo", *overrides))

    return make


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_default_cpu_run_is_planned_on_onnx_runtime_over_the_checkpoints_export(settings_for, synthetic_sample, variant_cfgs):
    plan = plan_run(settings_for("variant=XS"))
    ckpt = synthetic_sample / "checkpoints" / "ConvNeXtPose_XS.tar"
    assert plan.engine == ONNXRUNTIME
    assert plan.checkpoint is not None and plan.checkpoint.path.resolve() == ckpt.resolve()
    assert plan.checkpoint.sha256 == _sha256(ckpt)
    assert plan.checkpoint.arch == ArchSpec.from_variant(variant_cfgs["XS"])
    assert plan.onnx is not None and plan.onnx.path is None and plan.onnx.proven_against == _sha256(ckpt)
    assert plan.launch.world_size == 1


def test_each_engine_setting_and_the_oracle(settings_for):
    torch_plan = plan_run(settings_for("variant=S", "backend=pytorch"))
    assert torch_plan.engine == PYTORCH and torch_plan.onnx is None and torch_plan.checkpoint is not None
    oracle = plan_run(settings_for("variant=S", "backend=pytorch", "oracle=true"))
    assert oracle.engine == PYTORCH and oracle.checkpoint is None
    assert plan_run(settings_for("variant=S", "oracle=true")).engine == PYTORCH, "the oracle runs no exported file"


def test_a_command_that_needs_one_engine_refuses_a_setting_asking_for_another(settings_for):
    with pytest.raises(ConfigError, match=r"^backend=onnxruntime: the bench needs PyTorch$"):
        plan_run(settings_for("variant=XS", "backend=onnxruntime"), engine=PYTORCH, purpose="the bench needs PyTorch")
    assert plan_run(settings_for("variant=XS"), engine=PYTORCH, purpose="x").engine == PYTORCH


def test_a_mismatched_checkpoint_is_refused_by_the_plan_before_any_data(settings_for, synthetic_sample):
    with pytest.raises(Exception, match=r"ConvNeXtPose_L\.tar holds an L-shaped network .* run with variant=L or variant=auto"):
        plan_run(settings_for("variant=S", f"ckpt_path={synthetic_sample / 'checkpoints' / 'ConvNeXtPose_L.tar'}"))


def test_a_file_is_read_again_only_when_it_changed(tmp_path):
    """The per-process memory of reads keys on the file's identity: an in-place edit with the size and the
    modification time restored is still a new read (its status-change time moved)."""
    FILES.clear()
    path = tmp_path / "blob.bin"
    path.write_bytes(b"a" * 64)
    stamp = os.stat(path)
    calls = []

    def read() -> bytes:
        calls.append(1)
        return path.read_bytes()

    assert FILES.get("test", path, read) == b"a" * 64
    assert FILES.get("test", path, read) == b"a" * 64
    assert len(calls) == 1
    path.write_bytes(b"b" * 64)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert FILES.get("test", path, read) == b"b" * 64
    assert len(calls) == 2 and FILES.reads[("test", str(path.resolve()))] == 2


@pytest.mark.slow
def test_one_run_reads_and_hashes_each_input_file_once(sample_eval_root, synthetic_sample, tmp_path, monkeypatch):
    """An ONNX file scored beside its checkpoint: the plan, the engine, the provenance check and the results
    all need the checkpoint's bytes and the file's; each is read (and hashed) once in the process."""
    from convnextpose_eval import evaluate
    from convnextpose_eval.cli.export import main as export_main

    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(sample_eval_root))
    ckpt = synthetic_sample / "checkpoints" / "ConvNeXtPose_XS.tar"
    onnx_file = tmp_path / "xs.onnx"
    assert export_main(["variant=XS", f"ckpt_path={ckpt}", f"export.path={onnx_file}"]) == 0
    FILES.clear()
    result = evaluate("experiment=demo", "variant=XS", "data.protocol=1", f"ckpt_path={ckpt}", f"onnx_path={onnx_file}",
                      f"paths.cache_dir={tmp_path / 'cache'}", run_dir=tmp_path / "run")  # fmt: skip
    assert result.to_dict()["inference"]["onnx"]["source_verified"] is True
    reads = {(kind, Path(path).name): count for (kind, path), count in FILES.reads.items()}
    assert reads[("checkpoint", ckpt.name)] == 1 and reads[("sha256", ckpt.name)] == 1, reads
    assert reads[("onnx", onnx_file.name)] == 1, reads
