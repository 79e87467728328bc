"""The backend room: one forward interface, ONNX provenance decided by computation, external data, cached exports.

The files an attacker would hand the tool are built here, from a real export of a small network and
its checkpoint: a hand-made graph with no network in it carrying the real export's metadata, one middle
convolution's weights scaled by 1.5, float16 weights behind Cast nodes, and weights saved as external
data then swapped for another file of the same size. With the checkpoint given, each is refused in one
line naming the file and what differs; without it, a file is scored but recorded as unverified. The
small network (64x64 input) exports in a second or two; the real variants run through the command line
in ``test_onnx_cache.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx  # noqa: E402
import pytest
import torch
from onnx import helper, numpy_helper  # noqa: E402
from onnx_hostile import hand_made_graph  # noqa: E402

from convnextpose_eval.backends import ForwardSource, build_forward  # noqa: E402
from convnextpose_eval.backends.onnx_cache import export_key  # noqa: E402
from convnextpose_eval.backends.onnxruntime import OnnxRuntimeForward  # noqa: E402
from convnextpose_eval.backends.pytorch import PyTorchForward  # noqa: E402
from convnextpose_eval.common.errors import BackendError  # noqa: E402
from convnextpose_eval.network import ArchSpec, ConvNeXtPose  # noqa: E402
from convnextpose_eval.report.summary import format_summary  # noqa: E402

TINY = ArchSpec(
    depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), head_channels=16, head_upsample=(True, True, False),
    depth_dim=8, joint_num=18, input_size=64,
)  # fmt: skip


# --------------------------------------------------------------------------- a small network, its checkpoint, its export


def _tiny_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    network = ConvNeXtPose(TINY).eval()
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return network.state_dict()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, auto_variant_cfg) -> dict:
    """A checkpoint of the small network, a second checkpoint of other weights, and a real export of the first."""
    folder = tmp_path_factory.mktemp("tiny_backend")
    ckpt, other = folder / "tiny.pth", folder / "other.pth"
    torch.save({"epoch": 3, "network": _tiny_state(0)}, ckpt)
    torch.save({"epoch": 4, "network": _tiny_state(1)}, other)
    variant = {**auto_variant_cfg, "input_size": TINY.input_size}
    reference = PyTorchForward.build(ForwardSource(variant=variant, ckpt_path=str(ckpt)))
    assert reference.arch == TINY
    # The one export of this module: made through the cache, then copied out as a file a user would hold.
    cache = folder / "cache"
    first = OnnxRuntimeForward.build(ForwardSource(variant=variant, ckpt_path=str(ckpt), cache_dir=str(cache)))
    assert first.cache["hit"] is False
    export = folder / "tiny.onnx"
    shutil.copy(first.cache["path"], export)
    return {"ckpt": ckpt, "other": other, "variant": variant, "export": export, "sha256": reference.checkpoint_info["sha256"],
            "cache": cache, "first": first}  # fmt: skip


def _source(tiny: dict, **fields) -> ForwardSource:
    return ForwardSource(variant=tiny["variant"], **fields)


def _one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message and str(path) in message, message
    return message


def test_both_engines_compute_the_same_coordinates_from_crops(tiny):
    crops = torch.randint(0, 256, (3, 3, 64, 64), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    by_torch = build_forward("pytorch", _source(tiny, ckpt_path=str(tiny["ckpt"])))
    by_onnx = build_forward("onnxruntime", _source(tiny, ckpt_path=str(tiny["ckpt"]), onnx_path=str(tiny["export"])))
    with torch.inference_mode():
        a, b = by_torch(crops), by_onnx(crops)
    assert a.shape == b.shape == (3, 18, 3) and (a - b).abs().max() < 1e-3 and a.std() > 0.01
    assert by_torch.describe() == {"backend": "pytorch"}
    described = by_onnx.describe()
    assert described["backend"] == "onnxruntime" and described["precision"] == "32-true"
    onnx_info = described["onnx"]
    assert onnx_info["source_verified"] is True and onnx_info["verification"]["checkpoint_sha256"] == tiny["sha256"]
    assert 0 <= onnx_info["verification"]["max_abs_diff"] <= 1e-3 and onnx_info["verification"]["precheck_images"] == 8
    assert by_onnx.checkpoint_info == by_torch.checkpoint_info and by_onnx.model_info() == by_torch.model_info()


def test_normalization_in_place_gives_the_plain_formulas_values_bit_for_bit(tiny):
    crops = torch.randint(0, 256, (2, 3, 64, 64), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    plain = (crops.float() - mean) / std
    forward = build_forward("pytorch", _source(tiny, ckpt_path=str(tiny["ckpt"])))
    assert torch.equal(forward.normalize(crops), plain)
    assert torch.equal(forward.normalize(crops.float()), plain)
    out = torch.full((2, 3, 64, 64), float("nan"))
    assert forward.normalize(crops, out=out) is out and torch.equal(out, plain)
    for wrong in (torch.empty(4, 3, 64, 64), torch.empty(2, 3, 64, 64, dtype=torch.float64)):
        with pytest.raises(ValueError, match="normalize: out is"):
            forward.normalize(crops, out=wrong)


def test_the_onnx_engine_reuses_its_input_buffer_without_mixing_batches(tiny):
    """Batches of one size reuse one buffer, in and out of inference mode; each batch, of whatever size,
    gives what a fresh engine gives it."""
    generator = torch.Generator().manual_seed(6)
    batches = [torch.randint(0, 256, (n, 3, 64, 64), generator=generator, dtype=torch.uint8) for n in (3, 3, 3, 1, 1, 2)]
    source = _source(tiny, onnx_path=str(tiny["export"]))
    reused = build_forward("onnxruntime", source)
    got, buffers = [], []
    for index, batch in enumerate(batches):
        with torch.inference_mode(index % 2 == 0):
            got.append(reused(batch))
        buffers.append(reused._input)
    assert buffers[0] is buffers[1] is buffers[2] and buffers[3] is buffers[4] and buffers[2] is not buffers[3]
    for batch, coords in zip(batches, got):
        with torch.no_grad():
            assert torch.equal(coords, build_forward("onnxruntime", source)(batch))
    assert not torch.equal(got[0], got[1])


# --------------------------------------------------------------------------- the four hostile files


def _hand_made(real: Path, out: Path) -> Path:
    return hand_made_graph(real, out, input_size=64, offset_range=(0, 7))


def _scaled_middle_conv(real: Path, out: Path) -> Path:
    model = onnx.load(real)
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    name = convs[len(convs) // 2].input[1]
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name == name:
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(1.5), name))
    onnx.save(model, out)
    return out


def _float16_behind_casts(real: Path, out: Path) -> Path:
    model = onnx.load(real)
    casts, kept = [], []
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT:
            half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), f"{tensor.name}__f16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [tensor.name], to=onnx.TensorProto.FLOAT))
        else:
            kept.append(tensor)
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, out)
    return out


def _with_external_data(source: Path, folder: Path, location: str = "weights.bin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(source)
    target = folder / "model.onnx"
    onnx.save_model(model, target, save_as_external_data=True, all_tensors_to_one_file=True, location=location, size_threshold=0)
    return target


def _swapped_external_data(real: Path, base: Path) -> Path:
    """Saved with external weights, then the weights file replaced by another of the same size."""
    good = _with_external_data(real, base / "good")
    other = _with_external_data(_scaled_middle_conv(real, base / "scaled.onnx"), base / "other")
    assert (good.parent / "weights.bin").stat().st_size == (other.parent / "weights.bin").stat().st_size
    shutil.copy(other.parent / "weights.bin", good.parent / "weights.bin")
    return good


HOSTILE = {
    "hand_made": (lambda real, base: _hand_made(real, base / "hand_made.onnx"), "does not compute the network of"),
    "scaled_conv": (lambda real, base: _scaled_middle_conv(real, base / "scaled.onnx"), "does not compute the network of"),
    "float16": (lambda real, base: _float16_behind_casts(real, base / "half.onnx"), "float16 tensors, but"),
    "swapped_external": (_swapped_external_data, "does not compute the network of"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_file_that_is_not_the_checkpoints_network_is_refused(case, tiny, tmp_path):
    make, problem = HOSTILE[case]
    hostile = make(tiny["export"], tmp_path)
    with pytest.raises(BackendError) as exc:
        OnnxRuntimeForward.build(_source(tiny, ckpt_path=str(tiny["ckpt"]), onnx_path=str(hostile)))
    message = _one_line(exc, hostile)
    assert any(fragment in message for fragment in problem.split("|")), message
    if "compute" in problem:
        assert str(tiny["ckpt"].resolve()) in message and "differ by up to" in message


def test_the_real_export_passes_where_each_hostile_file_fails(tiny):
    forward = OnnxRuntimeForward.build(_source(tiny, ckpt_path=str(tiny["ckpt"]), onnx_path=str(tiny["export"])))
    assert forward.source_verified and forward.verification["max_abs_diff"] <= 1e-4


def _stored_float_values(path: Path) -> tuple[int, set[str]]:
    """Independent count: numpy sizes and dtypes of the file's floating initializers."""
    arrays = [numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer]
    floats = [a for a in arrays if np.issubdtype(a.dtype, np.floating)]
    return sum(a.size for a in floats), {a.dtype.name for a in floats}


@pytest.mark.parametrize("case", ["hand_made", "float16"])
def test_without_a_checkpoint_a_file_is_scored_as_unverified(case, tiny, tmp_path):
    hostile = HOSTILE[case][0](tiny["export"], tmp_path)
    forward = OnnxRuntimeForward.build(_source(tiny, onnx_path=str(hostile)))
    info = forward.describe()
    count, dtypes = _stored_float_values(hostile)
    assert info["onnx"]["source_verified"] is False and info["onnx"]["verification"] is None
    assert forward.model_info()["params"] == info["onnx"]["stored_params"] == count
    assert info["precision"] == ("32-true" if dtypes == {"float32"} else "weights float16")
    assert forward.checkpoint_info is None
    # The metadata's claim is passed on as a claim, and the summary says nothing vouched for it.
    assert info["onnx"]["source_checkpoint_sha256"] == tiny["sha256"]
    summary = format_summary({"variant": "XS", "inference": info, "metrics": {}, "per_action": {}})
    assert "not checked against a checkpoint" in summary
    assert "not checked" not in format_summary({"inference": OnnxRuntimeForward.build(
        _source(tiny, ckpt_path=str(tiny["ckpt"]), onnx_path=str(tiny["export"]))).describe()})  # fmt: skip


def test_a_file_recording_another_checkpoint_is_refused_before_running(tiny):
    with pytest.raises(BackendError) as exc:
        OnnxRuntimeForward.build(_source(tiny, ckpt_path=str(tiny["other"]), onnx_path=str(tiny["export"])))
    assert "was exported from a checkpoint with sha256 " + tiny["sha256"][:16] in _one_line(exc, tiny["export"])


# --------------------------------------------------------------------------- external data


def test_external_weights_are_read_beside_the_model_never_from_the_working_directory(tiny, tmp_path, monkeypatch):
    model = _with_external_data(tiny["export"], tmp_path / "model_dir")
    weights = model.parent / "weights.bin"
    decoy = tmp_path / "cwd"
    decoy.mkdir()
    (decoy / "weights.bin").write_bytes(b"\0" * weights.stat().st_size)
    monkeypatch.chdir(decoy)
    forward = OnnxRuntimeForward.build(_source(tiny, ckpt_path=str(tiny["ckpt"]), onnx_path=str(model)))
    assert forward.source_verified
    info = forward.describe()["onnx"]
    # The recorded sha256 covers every byte the session was built from: the model file, then its weights.
    expected = hashlib.sha256(model.read_bytes() + weights.read_bytes()).hexdigest()
    assert info["sha256"] == expected != hashlib.sha256(model.read_bytes()).hexdigest()
    assert info["external_data"] == [{"location": "weights.bin", "size": weights.stat().st_size,
                                      "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}]  # fmt: skip


def test_swapped_external_weights_change_the_recorded_sha256(tiny, tmp_path):
    good = _with_external_data(tiny["export"], tmp_path / "good")
    before = OnnxRuntimeForward.build(_source(tiny, onnx_path=str(good))).sha256
    swapped = _swapped_external_data(tiny["export"], tmp_path / "swap")
    after = OnnxRuntimeForward.build(_source(tiny, onnx_path=str(swapped))).sha256
    assert good.read_bytes() == swapped.read_bytes() and before != after


def _relocated(model: Path, location: str) -> Path:
    proto = onnx.load(model, load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    model.write_bytes(proto.SerializeToString())
    return model


def test_external_data_outside_the_models_folder_is_refused(tiny, tmp_path):
    model = _with_external_data(tiny["export"], tmp_path / "inner")
    shutil.move(model.parent / "weights.bin", tmp_path / "weights.bin")
    for location, problem in (("../weights.bin", "outside its own folder"), (str(tmp_path / "weights.bin"), "outside its own folder")):
        _relocated(model, location)
        with pytest.raises(BackendError) as exc:
            OnnxRuntimeForward.build(_source(tiny, onnx_path=str(model)))
        assert problem in _one_line(exc, model)
    _relocated(model, "weights.bin")
    os.symlink(tmp_path / "weights.bin", model.parent / "weights.bin")
    with pytest.raises(BackendError) as exc:
        OnnxRuntimeForward.build(_source(tiny, onnx_path=str(model)))
    assert "leads outside its own folder" in _one_line(exc, model)


def test_missing_or_short_external_data_is_named_and_not_called_truncated(tiny, tmp_path):
    model = _with_external_data(tiny["export"], tmp_path / "m")
    weights = model.parent / "weights.bin"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(BackendError) as exc:
        OnnxRuntimeForward.build(_source(tiny, onnx_path=str(model)))
    message = _one_line(exc, model)
    assert f"holds {len(data) // 2} bytes" in message and "'weights.bin'" in message and "truncated" not in message
    weights.unlink()
    with pytest.raises(BackendError) as exc:
        OnnxRuntimeForward.build(_source(tiny, onnx_path=str(model)))
    message = _one_line(exc, model)
    assert "'weights.bin', which is not a file beside it" in message and "truncated" not in message


# --------------------------------------------------------------------------- cached exports


def _cached(tiny: dict, cache: Path) -> OnnxRuntimeForward:
    return OnnxRuntimeForward.build(_source(tiny, ckpt_path=str(tiny["ckpt"]), cache_dir=str(cache)))


def test_a_checkpoint_is_exported_once_then_reused(tiny):
    first = tiny["first"]
    path = Path(first.cache["path"])
    assert first.cache["hit"] is False and path.parent == tiny["cache"] / "onnx" and first.source_verified
    stat = path.stat()
    second = _cached(tiny, tiny["cache"])
    assert second.cache == {**first.cache, "hit": True} and second.sha256 == first.sha256
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert {p.name for p in path.parent.iterdir() if not p.name.startswith(".")} == {path.name, path.with_suffix(".json").name}


def test_a_damaged_or_replaced_cached_export_is_a_miss_and_is_rebuilt(tiny, tmp_path):
    shutil.copytree(tiny["cache"], tmp_path, dirs_exist_ok=True)
    path = tmp_path / Path(tiny["first"].cache["path"]).relative_to(tiny["cache"])
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # damaged: the record's sha256 no longer matches
    rebuilt = _cached(tiny, tmp_path)
    assert rebuilt.cache["hit"] is False and path.read_bytes() == good and rebuilt.source_verified
    # Replaced by other weights, record rewritten to match: the computation check catches it, and it is rebuilt.
    _scaled_middle_conv(path, path)
    record = path.with_suffix(".json")
    entry = json.loads(record.read_text())
    record.write_text(json.dumps({**entry, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))
    again = _cached(tiny, tmp_path)
    assert again.cache["hit"] is False and again.source_verified and path.read_bytes() == good


def test_the_cache_key_holds_everything_the_graph_depends_on(tiny):
    base = export_key("ab" * 32, TINY, 17, True, True)
    changed = [
        export_key("cd" * 32, TINY, 17, True, True),
        export_key("ab" * 32, dataclasses.replace(TINY, head_channels=32), 17, True, True),
        export_key("ab" * 32, TINY, 18, True, True),
        export_key("ab" * 32, TINY, 17, False, True),
        export_key("ab" * 32, TINY, 17, True, False),
    ]
    assert all(key != base for key in changed)
    assert {"torch", "onnx", "onnxscript", "exporter", "graph", "opset", "checkpoint_sha256"} <= set(base)
