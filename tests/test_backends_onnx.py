"""ONNX export and the ONNX Runtime forward pass: same coordinates as PyTorch, bad files refused before any inference.

XS (BatchNorm folded, channels_last) and L (BatchNorm nodes in the graph) are exported here, once per
module (the dynamo exporter takes five to ten seconds per network on two cores), from random networks;
all four released variants are exported by the command line and scored against PyTorch in
``test_onnx_eval.py``. The refusal tests export a tiny network instead. The second tiny export is
marked ``slow``: ``-m "not slow"`` leaves it out.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
import sys
from pathlib import Path

import numpy as np
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pytest
import torch

from convnextpose_eval.backends.onnx_checks import (
    arch_from_metadata,
    arch_metadata,
    onnx_file_for,
    read_onnx_arch,
)
from convnextpose_eval.backends.onnx_export import DEFAULT_TOLERANCE, export_onnx
from convnextpose_eval.backends.onnxruntime import OnnxRuntimeForward as OnnxForward
from convnextpose_eval.common.errors import BackendError
from convnextpose_eval.network import ArchSpec, ConvNeXtPose
from convnextpose_eval.network.fuse import fold_batchnorm

# docs/protocol.md, "The four architectures": heatmap side, depth bins and head width of each released variant.
HEATMAP_SIDE = {"XS": 32, "L": 64}
DEPTH_DIM = {"XS": 32, "L": 64}
HEAD_CHANNELS = {"XS": 128, "L": 512}
# Each file holds the network as the evaluator runs it (BatchNorm folded, channels_last) or as loaded
# (BatchNorm nodes in the graph); XS and L between them cover both.
FOLDED = {"XS": True, "L": False}

EXPORTED_HERE = ("XS", "L")

TINY = ArchSpec(
    depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), head_channels=16, head_upsample=(True, True, False),
    depth_dim=8, joint_num=18, input_size=64,
)  # fmt: skip


def _images(batch: int, seed: int, size: int = 256) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _as_run(network: ConvNeXtPose, folded: bool) -> ConvNeXtPose:
    network = copy.deepcopy(network).eval()
    if folded:
        network = fold_batchnorm(network).to(memory_format=torch.channels_last)
    return network


@pytest.fixture(scope="module")
def exported(tmp_path_factory, source_networks):
    """variant -> (the network as exported, its ExportReport); each exported on first use."""
    folder = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(variant: str):
        if variant not in cache:
            network = _as_run(source_networks[variant], FOLDED[variant])
            cache[variant] = (network, export_onnx(network, folder / f"{variant}.onnx"))
        return cache[variant]

    return get


def _one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# --------------------------------------------------------------------------- every variant


@pytest.mark.parametrize("variant", EXPORTED_HERE)
def test_exported_variant_reproduces_pytorch(variant, exported, known_specs):
    network, report = exported(variant)
    forward = OnnxForward(report.path, known_specs[variant])
    images = _images(2, seed=11)
    with torch.inference_mode():
        expected = network(images)
    got = forward.run(images)
    assert got.dtype == torch.float32 and got.shape == (2, 18, 3)
    diff = (got - expected).abs().max().item()
    assert diff <= DEFAULT_TOLERANCE, diff
    # The coordinates must not be trivially equal: they spread over the heatmap volume.
    assert got.std().item() > 0.01
    assert report.max_abs_diff <= report.tolerance == DEFAULT_TOLERANCE


@pytest.mark.parametrize("variant", EXPORTED_HERE)
def test_export_report_and_metadata_describe_the_file(variant, exported, known_specs):
    _, report = exported(variant)
    data = report.path.read_bytes()
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    model = onnx.load_from_string(data)
    assert report.opset == 17 == next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert report.onnxruntime_version == ort.__version__
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["coords"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["convnextpose.variant"] == variant
    assert meta["convnextpose.heatmap_size"] == str(HEATMAP_SIDE[variant])
    assert meta["convnextpose.depth_dim"] == str(DEPTH_DIM[variant])
    assert meta["convnextpose.head_channels"] == str(HEAD_CHANNELS[variant])
    assert meta["convnextpose.joint_num"] == "18"
    assert read_onnx_arch(report.path) == known_specs[variant]
    assert not [p for p in report.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_metadata_round_trips_every_released_architecture(known_specs):
    for spec in known_specs.values():
        assert arch_from_metadata(Path("x.onnx"), arch_metadata(spec)) == spec
    assert arch_from_metadata(Path("x.onnx"), {"producer": "other"}) is None
    broken = {**arch_metadata(known_specs["XS"]), "convnextpose.depth_dim": "thirty-two"}
    with pytest.raises(BackendError, match="x.onnx: its convnextpose"):
        arch_from_metadata(Path("x.onnx"), broken)


# --------------------------------------------------------------------------- one file, any batch


def test_one_file_runs_batches_of_one_and_five(exported, known_specs):
    network, report = exported("XS")
    forward = OnnxForward(report.path, known_specs["XS"])
    images = _images(5, seed=3)
    five = forward.run(images)
    one = forward.run(images[2:3])
    assert five.shape == (5, 18, 3) and one.shape == (1, 18, 3)
    with torch.inference_mode():
        expected = network(images)
    assert (five - expected).abs().max().item() <= DEFAULT_TOLERANCE
    assert (one[0] - expected[2]).abs().max().item() <= DEFAULT_TOLERANCE


def test_forward_refuses_images_of_the_wrong_size(exported, known_specs):
    _, report = exported("XS")
    forward = OnnxForward(report.path, known_specs["XS"])
    with pytest.raises(BackendError) as exc:
        forward.run(torch.zeros(1, 3, 128, 128))
    assert "(B, 3, 256, 256)" in _one_line_naming(exc, report.path)


def test_pickled_forward_reopens_the_same_file(exported, known_specs):
    _, report = exported("XS")
    forward = OnnxForward(report.path, known_specs["XS"])
    clone = pickle.loads(pickle.dumps(forward))
    images = _images(1, seed=5)
    assert clone.sha256 == forward.sha256 == report.sha256
    assert torch.equal(clone.run(images), forward.run(images))


# --------------------------------------------------------------------------- files refused when opened


@pytest.mark.parametrize("keep", [0.5, 0.999, 100])
def test_truncated_file_is_refused(keep, exported, known_specs, tmp_path):
    _, report = exported("XS")
    data = report.path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(BackendError) as exc:
        OnnxForward(cut, known_specs["XS"])
    assert "truncated" in _one_line_naming(exc, cut)


def test_files_that_are_not_onnx_are_refused(known_specs, tmp_path):
    checkpoint = tmp_path / "ConvNeXtPose_XS.tar"
    torch.save({"epoch": 1, "network": _tiny_network(3).state_dict()}, checkpoint)
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    cases = {checkpoint: "zip archive", noise: "not an ONNX model", empty: "empty", tmp_path: "directory"}
    for path, reason in cases.items():
        with pytest.raises(BackendError) as exc:
            OnnxForward(path, known_specs["XS"])
        assert reason in _one_line_naming(exc, path)


def _no_session(*args, **kwargs):
    raise AssertionError("an inference session was created for a file that should have been refused")


def test_l_export_with_xs_architecture_is_refused_before_any_session(exported, known_specs, monkeypatch):
    _, report = exported("L")
    monkeypatch.setattr(ort, "InferenceSession", _no_session)
    with pytest.raises(BackendError) as exc:
        OnnxForward(report.path, known_specs["XS"])
    message = _one_line_naming(exc, report.path)
    assert "ConvNeXtPose-L" in message and "ConvNeXtPose-XS" in message
    assert "heatmap 64x64" in message and "depth_dim 32" in message and "variant=L" in message


def test_without_metadata_the_weights_still_tell_l_from_xs(exported, known_specs, monkeypatch, tmp_path):
    _, report = exported("L")
    model = onnx.load(report.path)
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, bare)
    monkeypatch.setattr(ort, "InferenceSession", _no_session)
    with pytest.raises(BackendError) as exc:
        OnnxForward(bare, known_specs["XS"])
    # L's final layer: 18 joints x 64 depth bins from 512 head channels; XS wants 18 x 32 from 128.
    assert "1152 from 512" in _one_line_naming(exc, bare) and "576" in str(exc.value)
    monkeypatch.undo()
    assert read_onnx_arch(bare) is None
    assert OnnxForward(bare, known_specs["L"]).sha256 != report.sha256


def test_fixed_batch_file_is_refused(exported, known_specs, tmp_path):
    _, report = exported("XS")
    model = onnx.load(report.path)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 4
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, fixed)
    with pytest.raises(BackendError) as exc:
        OnnxForward(fixed, known_specs["XS"])
    assert "fixed batch size of 4" in _one_line_naming(exc, fixed)


def test_unavailable_cuda_provider_is_one_line(exported, known_specs):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    _, report = exported("XS")
    with pytest.raises(BackendError, match="no CUDAExecutionProvider") as exc:
        OnnxForward(report.path, known_specs["XS"], provider="cuda")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime", "onnxscript"])
def test_missing_optional_package_says_how_to_install(missing, source_networks, known_specs, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(BackendError, match=r"pip install onnx onnxruntime onnxscript") as exc:
        export_onnx(source_networks["XS"], tmp_path / "x.onnx")
    assert missing in str(exc.value)
    assert not list(tmp_path.iterdir())
    if missing != "onnxscript":
        with pytest.raises(BackendError, match=r"pip install onnx onnxruntime onnxscript"):
            OnnxForward(tmp_path / "x.onnx", known_specs["XS"])


# --------------------------------------------------------------------------- export refuses to write


def _tiny_network(seed: int) -> ConvNeXtPose:
    torch.manual_seed(seed)
    return ConvNeXtPose(TINY).eval()


def test_export_writes_nothing_when_the_runtime_disagrees(tmp_path, monkeypatch):
    real_session = ort.InferenceSession

    class DriftingSession(real_session):
        """A runtime whose coordinates drift by 0.01 heatmap units: ten times the tolerance."""

        def run(self, output_names, feeds, run_options=None):
            return [out + np.float32(0.01) for out in super().run(output_names, feeds, run_options)]

    monkeypatch.setattr(ort, "InferenceSession", DriftingSession)
    target = tmp_path / "out" / "tiny.onnx"
    network = _tiny_network(0).train()
    with pytest.raises(BackendError) as exc:
        export_onnx(network, target, check_inputs=_images(2, seed=1, size=64))
    message = _one_line_naming(exc, target)
    assert "not written" in message and "0.01" in message
    assert network.training, "export must hand the network back in the mode it came in"
    assert not target.exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_export_writes_nothing_for_non_finite_coordinates(tmp_path):
    network = _tiny_network(1)
    with torch.no_grad():
        network.head.final_layer.bias[0] = float("nan")
    target = tmp_path / "tiny.onnx"
    with pytest.raises(BackendError) as exc:
        export_onnx(network, target)
    assert "non-finite" in _one_line_naming(exc, target)
    assert not list(tmp_path.iterdir())


def test_export_refuses_check_inputs_of_the_wrong_size(tmp_path):
    target = tmp_path / "tiny.onnx"
    with pytest.raises(BackendError) as exc:
        export_onnx(_tiny_network(2), target, check_inputs=torch.zeros(2, 3, 32, 32))
    assert "(B, 3, 64, 64)" in _one_line_naming(exc, target)
    assert not target.exists()


# --------------------------------------------------------------------------- files for a run


def test_a_folder_gives_the_variant_file_and_a_file_is_taken_as_it_is(tmp_path):
    (tmp_path / "ConvNeXtPose_S.onnx").write_bytes(b"written by the export command")
    assert onnx_file_for(tmp_path, "S") == tmp_path / "ConvNeXtPose_S.onnx"
    elsewhere = tmp_path / "renamed.onnx"
    assert onnx_file_for(elsewhere, "XS") == elsewhere
    with pytest.raises(BackendError, match=r"holds no ConvNeXtPose_M\.onnx for variant=M; write it with `python -m convnextpose_eval export variant=M"):
        onnx_file_for(tmp_path, "M")
    with pytest.raises(BackendError, match=r"variant=auto needs onnx_path=FILE\.onnx"):
        onnx_file_for(tmp_path, "auto")


@pytest.fixture(scope="module")
def tiny_with_source(tmp_path_factory) -> Path:
    """The tiny network exported with the checkpoint it came from recorded in its metadata."""
    path = tmp_path_factory.mktemp("tiny_source") / "tiny.onnx"
    export_onnx(_tiny_network(3), path, source={"file": "snapshot_7.pth.tar", "sha256": "ab" * 32})
    return path


def test_info_names_the_file_the_runtime_and_the_weights_behind_it(tiny_with_source, exported):
    info = OnnxForward(tiny_with_source, TINY).info()
    assert info["sha256"] == hashlib.sha256(tiny_with_source.read_bytes()).hexdigest()
    assert info["path"] == str(tiny_with_source.resolve())
    assert (info["provider"], info["opset"], info["onnxruntime_version"]) == ("cpu", 17, ort.__version__)
    assert (info["source_checkpoint_file"], info["source_checkpoint_sha256"]) == ("snapshot_7.pth.tar", "ab" * 32)
    _, report = exported("XS")  # written without a source
    xs_info = OnnxForward(report.path, report_arch(report.path)).info()
    assert xs_info["source_checkpoint_sha256"] is None and xs_info["source_checkpoint_file"] is None


def report_arch(path: Path) -> ArchSpec:
    arch = read_onnx_arch(path)
    assert arch is not None
    return arch


def test_evaluator_with_variant_auto_takes_the_architecture_from_the_file(tiny_with_source, auto_variant_cfg, variant_cfgs, tmp_path):
    from convnextpose_eval.backends import ForwardSource
    from convnextpose_eval.model.evaluator import PoseEvaluator

    known = {name: ArchSpec.from_variant(cfg) for name, cfg in variant_cfgs.items()}
    module = PoseEvaluator(ForwardSource(variant=auto_variant_cfg, known=known, onnx_path=str(tiny_with_source)), "onnxruntime")
    module.configure_network()
    assert module.arch == TINY and module.detected_variant is None and module.checkpoint_info == {}
    assert module.onnx_info is not None and module.onnx_info["source_checkpoint_file"] == "snapshot_7.pth.tar"
    with torch.inference_mode():
        coords = module.predict_coords(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    assert coords.shape == (2, TINY.joint_num, 3) and torch.isfinite(coords).all()

    bare = tmp_path / "bare.onnx"
    model = onnx.load(str(tiny_with_source))
    del model.metadata_props[:]
    bare.write_bytes(model.SerializeToString())
    stranger = PoseEvaluator(ForwardSource(variant=auto_variant_cfg, known=known, onnx_path=str(bare)), "onnxruntime")
    with pytest.raises(BackendError, match=r"bare\.onnx: records no architecture .* name the variant"):
        stranger.configure_network()
