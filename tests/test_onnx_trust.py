"""What a run's ``source_verified`` rests on, and ONNX files that attack the runtime or the user's files.

Written from the behaviour docs/onnx-trust.md promises:
- a file is proven on a random share of the very batches it scores (a fresh seed each run, recorded), so a
  graph right only at the pre-check's batch size, only on a batch's first rows, or put into the export cache
  with its record rewritten to match, stops the run in one line with no results;
- a graph's structure is refused before anything runs (control flow, custom domains, operators no export of
  this network needs), while exports of the network by other exporters and opsets still run;
- Ctrl-C and SIGTERM stop a run inside ONNX Runtime, and an export, within 10 s, in one line (exit 130/143);
- the export never replaces a file the tool did not write, and an interrupted export leaves no file.

The runs of the evaluation are in-process (``inprocess.py``) except where a signal must reach a process.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import time
import warnings
from collections.abc import Iterator
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from cli import finish, share_exports, start_cli
from inprocess import read_json, run_in_process
from onnx import helper, numpy_helper
from onnx_hostile import (
    branch,
    custom_domain_only,
    endless_loop,
    fails_when_run,
    graph_file,
    slow_graph,
)

from convnextpose_eval.backends.base import ForwardSource
from convnextpose_eval.backends.onnx_checks import read_onnx_file
from convnextpose_eval.backends.onnx_export import (
    DEFAULT_TOLERANCE,
    TOOL_KEY,
    export_onnx,
)
from convnextpose_eval.backends.onnxruntime import OnnxRuntimeForward
from convnextpose_eval.common.errors import BackendError
from convnextpose_eval.network import ArchSpec, ConvNeXtPose

XS_INPUT = 256
# Protocol 1 (S11 only) in batches of 8: a few batches, each scored in seconds.
DEMO_XS = ("experiment=demo", "variant=XS", "data.protocol=1", "data.batch_size=8", "data.num_workers=0")
# A signal must end the process within this (the contract), measured from the moment it is sent.
SIGNAL_DEADLINE_S = 10.0
# Four processes share the machine while one waits for its signal: one thread each, so none starves the others.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
TINY = ArchSpec(
    depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), head_channels=16, head_upsample=(True, True, False),
    depth_dim=8, joint_num=18, input_size=64,
)  # fmt: skip


# --------------------------------------------------------------------------- shared runs and files


@pytest.fixture(scope="module")
def root(eval_root_with_sample) -> Path:
    return eval_root_with_sample("onnx_trust")


@pytest.fixture(scope="module")
def ckpt_xs(root) -> Path:
    return root / "outputs" / "sample" / "checkpoints" / "ConvNeXtPose_XS.tar"


@pytest.fixture(scope="module")
def in_process(root) -> Iterator:
    """``run(*args)``: run_eval.py in this process under ``root``."""
    with pytest.MonkeyPatch.context() as patch:
        yield lambda *args: run_in_process(patch, root, *args)


@pytest.fixture(scope="module")
def honest(root, in_process, ckpt_xs) -> dict:
    """The default command (the checkpoint exported into the cache, then scored), and the same file given
    as ``onnx_path`` with its ``ckpt_path``: both honest, each with its own run's draw."""
    cache = root / "cache"
    share_exports(root, (f"paths.cache_dir={cache}",))  # the session's export of the sample's XS, if made
    default = in_process(*DEMO_XS, f"paths.cache_dir={cache}", f"hydra.run.dir={root / 'default'}")
    assert default.returncode == 0, default.describe()
    first = read_json(root / "default" / "results.json")
    real = Path(first["inference"]["onnx"]["path"])
    given = in_process(*DEMO_XS, "backend=onnxruntime", f"onnx_path={real}", f"ckpt_path={ckpt_xs}",
                       f"paths.cache_dir={cache}", f"hydra.run.dir={root / 'given'}")  # fmt: skip
    assert given.returncode == 0, given.describe()
    return {"cache": cache, "real": real, "default": first, "given": read_json(root / "given" / "results.json")}


@pytest.fixture(scope="module")
def xs_metadata(tmp_path_factory, known_specs) -> Path:
    """A file carrying only what an XS export records of itself (its architecture): the hostile graphs of
    the structure tests copy it, so that nothing but their structure is wrong."""
    from convnextpose_eval.backends.onnx_checks import arch_metadata

    path = tmp_path_factory.mktemp("xs_metadata") / "xs.onnx"
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "stub",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])  # fmt: skip
    model = helper.make_model(graph)
    helper.set_model_props(model, arch_metadata(known_specs["XS"]))
    onnx.save(model, path)
    return path


def _rewired(real: Path, out: Path, extra_nodes: list, extra_inits: list) -> Path:
    """``real`` with its output renamed ``raw`` and ``extra_nodes`` turning ``raw`` into ``coords``."""
    model = onnx.load(real)
    for node in model.graph.node:
        node.output[:] = ["raw" if name == "coords" else name for name in node.output]
    model.graph.node.extend(extra_nodes)
    model.graph.initializer.extend(extra_inits)
    onnx.save(model, out)
    return out


def right_only_at_batch_8(real: Path, out: Path) -> Path:
    """The real export times 1 + 0.01 (B - 8)^2: exact on a batch of 8 (the pre-check's four crops and their
    mirrors), wrong at any other batch size."""
    nodes = [
        helper.make_node("Shape", ["images"], ["hostile_shape"]),
        helper.make_node("Gather", ["hostile_shape", "hostile_zero"], ["hostile_b"], axis=0),
        helper.make_node("Cast", ["hostile_b"], ["hostile_bf"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Sub", ["hostile_bf", "hostile_eight"], ["hostile_d"]),
        helper.make_node("Mul", ["hostile_d", "hostile_d"], ["hostile_d2"]),
        helper.make_node("Mul", ["hostile_d2", "hostile_hundredth"], ["hostile_e"]),
        helper.make_node("Add", ["hostile_e", "hostile_one"], ["hostile_scale"]),
        helper.make_node("Mul", ["raw", "hostile_scale"], ["coords"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "hostile_zero"),
             numpy_helper.from_array(np.array(8, np.float32), "hostile_eight"),
             numpy_helper.from_array(np.array(0.01, np.float32), "hostile_hundredth"),
             numpy_helper.from_array(np.array(1, np.float32), "hostile_one")]  # fmt: skip
    return _rewired(real, out, nodes, inits)


def right_on_the_first_8_rows(real: Path, out: Path) -> Path:
    """The real export with row r scaled by 1 + 0.1 relu(r - 7): exact on a batch's first 8 rows only."""
    nodes = [
        helper.make_node("Shape", ["images"], ["hostile_shape"]),
        helper.make_node("Gather", ["hostile_shape", "hostile_zero"], ["hostile_b"], axis=0),
        helper.make_node("Range", ["hostile_start", "hostile_b", "hostile_step"], ["hostile_rows"]),
        helper.make_node("Cast", ["hostile_rows"], ["hostile_rf"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Sub", ["hostile_rf", "hostile_seven"], ["hostile_d"]),
        helper.make_node("Relu", ["hostile_d"], ["hostile_after"]),
        helper.make_node("Mul", ["hostile_after", "hostile_tenth"], ["hostile_e"]),
        helper.make_node("Add", ["hostile_e", "hostile_one"], ["hostile_scale"]),
        helper.make_node("Reshape", ["hostile_scale", "hostile_column"], ["hostile_col"]),
        helper.make_node("Mul", ["raw", "hostile_col"], ["coords"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "hostile_zero"),
             numpy_helper.from_array(np.array(0, np.int64), "hostile_start"),
             numpy_helper.from_array(np.array(1, np.int64), "hostile_step"),
             numpy_helper.from_array(np.array(7, np.float32), "hostile_seven"),
             numpy_helper.from_array(np.array(0.1, np.float32), "hostile_tenth"),
             numpy_helper.from_array(np.array(1, np.float32), "hostile_one"),
             numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "hostile_column")]  # fmt: skip
    return _rewired(real, out, nodes, inits)


def _stopped(done, run_dir: Path, *fragments: str) -> str:
    """A run refused in one line naming ``fragments``, leaving the failure record and no results."""
    assert done.returncode == 2, done.describe()
    assert len(done.error_lines) == 1 and "Traceback" not in done.stderr, done.describe()
    line = done.error_lines[0]
    assert all(fragment in line for fragment in fragments), line
    assert not (run_dir / "results.json").exists() and not (run_dir / "predictions.json").exists()
    assert read_json(run_dir / "failure.json")["status"] == "failed"
    return line


# --------------------------------------------------------------------------- 1. proof on the scored batches


@pytest.mark.slow
def test_an_honest_run_records_its_own_cross_check(honest):
    for name in ("default", "given"):
        onnx_info = honest[name]["inference"]["onnx"]
        check = onnx_info["verification"]
        assert onnx_info["source_verified"] is True, name
        # Batches of 8 test images: at least 2 of them drawn (about 1 in 16 otherwise), all their rows
        # checked, each image with its mirror in the same forward pass.
        images = honest[name]["num_samples"]
        sizes = [min(8, images - start) for start in range(0, images, 8)]
        assert check["batches_scored"] == len(sizes) >= 3 and check["batches_checked"] == 2
        assert check["inputs_checked"] == 2 * check["images_checked"]
        assert check["images_checked"] in {a + b for i, a in enumerate(sizes) for b in sizes[i + 1 :]}
        assert 0 <= check["max_abs_diff"] <= DEFAULT_TOLERANCE
        assert isinstance(check["seed"], int)
    # A fresh seed per run: the same file, checked twice, is not checked the same way twice.
    assert honest["default"]["inference"]["onnx"]["verification"]["seed"] != honest["given"]["inference"]["onnx"]["verification"]["seed"]


def test_a_graph_right_only_at_the_pre_check_batch_size_is_stopped_with_no_results(honest, in_process, root, ckpt_xs):
    fake = right_only_at_batch_8(honest["real"], root / "batch8.onnx")
    run_dir = root / "batch8_run"
    done = in_process(*DEMO_XS, "backend=onnxruntime", f"onnx_path={fake}", f"ckpt_path={ckpt_xs}",
                      f"paths.cache_dir={honest['cache']}", f"hydra.run.dir={run_dir}")  # fmt: skip
    _stopped(done, run_dir, str(fake), "scored batch", "no results written")


def test_a_consistently_rewritten_cache_entry_is_stopped_on_the_default_command(honest, in_process, root):
    """The cached export replaced by a graph exact at batch 8, its record's sha256 rewritten to match: a hit."""
    cache = root / "poisoned_cache"
    (cache / "onnx").mkdir(parents=True)
    entry = honest["real"]
    record = json.loads(entry.with_suffix(".json").read_text())
    poisoned = right_only_at_batch_8(entry, cache / "onnx" / entry.name)
    record["sha256"] = hashlib.sha256(poisoned.read_bytes()).hexdigest()
    (cache / "onnx" / entry.with_suffix(".json").name).write_text(json.dumps(record))
    run_dir = root / "poisoned_run"
    done = in_process(*DEMO_XS, f"paths.cache_dir={cache}", f"hydra.run.dir={run_dir}")
    _stopped(done, run_dir, str(poisoned), "scored batch")


def test_a_graph_right_only_on_a_batch_s_first_rows_is_stopped(honest, root, ckpt_xs, variant_cfgs, known_specs):
    fake = right_on_the_first_8_rows(honest["real"], root / "rows8.onnx")
    source = ForwardSource(variant=variant_cfgs["XS"], known=known_specs, ckpt_path=str(ckpt_xs), onnx_path=str(fake))
    forward = OnnxRuntimeForward.build(source)  # the pre-check (8 rows) passes
    forward.begin_scoring(num_batches=2, seed=1)  # two batches: both are cross-checked
    crops = torch.randint(0, 256, (10, 3, XS_INPUT, XS_INPUT), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    with pytest.raises(BackendError) as refused, torch.inference_mode():
        forward(crops)
    assert str(fake) in str(refused.value) and "\n" not in str(refused.value)


# --------------------------------------------------------------------------- 2. structure before data


@pytest.mark.parametrize(
    ("build", "fragments"),
    [
        (endless_loop, ("the_endless_loop", "Loop")),
        (branch, ("the_branch", "If")),
        (custom_domain_only, ("no standard ONNX opset", "com.example.hostile")),
    ],
)
def test_a_hostile_graph_is_refused_in_one_line_before_it_runs(build, fragments, xs_metadata, tmp_path):
    path = build(xs_metadata, tmp_path / "hostile.onnx", XS_INPUT)
    with pytest.raises(BackendError) as refused:
        read_onnx_file(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message and all(f in message for f in fragments), message


def test_an_operator_no_export_needs_is_refused_naming_the_node(xs_metadata, tmp_path):
    nodes = [helper.make_node("TopK", ["images", "k"], ["top", "where"], axis=3, name="the_topk"),
             helper.make_node("ReduceMean", ["top"], ["m"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Reshape", ["m", "col"], ["c"]), helper.make_node("Expand", ["c", "shape"], ["coords"])]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "k"), numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "col"),
             numpy_helper.from_array(np.array([1, 18, 3], np.int64), "shape")]  # fmt: skip
    path = graph_file(xs_metadata, tmp_path / "topk.onnx", nodes, inits, XS_INPUT)
    with pytest.raises(BackendError, match=r"node 0 'the_topk' is a TopK"):
        read_onnx_file(path)


def test_a_node_that_fails_only_when_run_is_one_line_naming_the_file(xs_metadata, tmp_path, known_specs):
    path = fails_when_run(xs_metadata, tmp_path / "fails.onnx", XS_INPUT)
    forward = OnnxRuntimeForward(path, known_specs["XS"])  # loads: the failure is in the data
    with pytest.raises(BackendError) as refused:
        forward.run(torch.zeros(2, 3, XS_INPUT, XS_INPUT))
    message = str(refused.value)
    assert message.startswith(f"{path}: onnxruntime failed while running it") and "\n" not in message, message


def _third_party(network: ConvNeXtPose, path: Path, opset: int, dynamo: bool) -> Path:
    example = torch.zeros(2, 3, TINY.input_size, TINY.input_size)
    with redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(network, (example,), input_names=["images"], output_names=["coords"],
                                        opset_version=opset, dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))  # fmt: skip
            program.save(str(path))
        else:
            torch.onnx.export(network, (example,), str(path), input_names=["images"], output_names=["coords"],
                              opset_version=opset, dynamo=False, dynamic_axes={"images": {0: "b"}, "coords": {0: "b"}})  # fmt: skip
    return path


@pytest.mark.parametrize(("opset", "dynamo"), [(13, False), (20, False), (18, True)])
def test_exports_of_the_network_by_other_exporters_still_run(opset, dynamo, tmp_path):
    network = ConvNeXtPose(TINY).eval()
    torch.manual_seed(0)
    for parameter in network.parameters():
        parameter.data.normal_(0, 0.2)
    path = _third_party(network, tmp_path / f"third_party_{opset}.onnx", opset, dynamo)
    assert read_onnx_file(path).opset == opset
    forward = OnnxRuntimeForward(path, TINY)
    images = torch.randn(3, 3, TINY.input_size, TINY.input_size, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = network(images)
    assert float((forward.run(images) - expected).abs().max()) <= DEFAULT_TOLERANCE


# --------------------------------------------------------------------------- 5. signals inside native code


@pytest.fixture(scope="module")
def interrupted(xs_metadata, root, ckpt_xs) -> dict[tuple[str, int], tuple]:
    """(what, signal) -> (the finished run, seconds from the signal to its end, its folder), for a run inside a
    slow but legal graph and for an export, each stopped by SIGINT and by SIGTERM. The four start together
    (most of their time is start-up); each is signalled once it is where the signal must reach it."""
    slow = slow_graph(xs_metadata, root / "slow.onnx", XS_INPUT, steps=600)
    started = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        run_dir = root / f"slow_run_{signum.name}"
        args = (*DEMO_XS, "backend=onnxruntime", f"onnx_path={slow}", "data.batch_size=4",
                f"paths.cache_dir={root / f'slow_cache_{signum.name}'}", f"hydra.run.dir={run_dir}")  # fmt: skip
        # The folder is taken just before the file is opened and the first batch read; a few seconds later
        # that batch (minutes of products) is inside ONNX Runtime.
        ready = lambda run_dir=run_dir: (run_dir / ".convnextpose_eval.lock").exists()  # noqa: E731
        started[("run", signum)] = (start_cli(root, *args, env=ONE_THREAD), ready, 8.0, run_dir)
        out = root / f"export_{signum.name}"
        index = root / f"export_cache_{signum.name}" / "index"
        args = ("variant=XS", f"ckpt_path={ckpt_xs}", f"export.path={out / 'XS.onnx'}", f"paths.cache_dir={index.parent}")
        # The check crops are read (the test-set index cached) just before the network is exported.
        ready = lambda index=index: index.is_dir() and any(index.iterdir())  # noqa: E731
        started[("export", signum)] = (start_cli(root, *args, module="convnextpose_eval.cli.export", env=ONE_THREAD, shared_exports=False), ready, 1.0, out)
    finished, due, sent = {}, {}, {}
    try:
        deadline = time.monotonic() + 300
        while len(sent) < len(started):  # each is signalled ``settle_s`` after it is seen under way
            assert time.monotonic() < deadline, f"not all under way after 300 s: {sorted(sent)}"
            for key, (process, ready, settle_s, _) in started.items():
                if key in sent:
                    continue
                assert process.poll() is None, f"the {key[0]} ended (exit {process.returncode}) before its signal"
                if key not in due and ready():
                    due[key] = time.monotonic() + settle_s
                if key in due and time.monotonic() >= due[key]:
                    process.send_signal(key[1])
                    sent[key] = time.monotonic()
            time.sleep(0.1)
        ended: dict[tuple[str, int], float] = {}
        while len(ended) < len(started) and time.monotonic() < max(sent.values()) + SIGNAL_DEADLINE_S + 5:
            ended.update({key: time.monotonic() for key, (process, *_) in started.items() if key not in ended and process.poll() is not None})
            time.sleep(0.05)
        for key, (process, _, _, folder) in started.items():
            done = finish(process, timeout=0.1)  # killed here if it is still running
            finished[key] = (done, ended.get(key, float("inf")) - sent[key], folder)
    finally:
        for process, *_ in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return finished


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_run_inside_onnx_runtime(signum, interrupted):
    done, seconds, run_dir = interrupted[("run", signum)]
    assert seconds <= SIGNAL_DEADLINE_S, done.describe()
    assert done.returncode == 128 + signum, done.describe()
    assert len(done.error_lines) == 1 and f"interrupted by {signum.name}" in done.error_lines[0], done.describe()
    assert "Traceback" not in done.stderr
    assert read_json(run_dir / "failure.json")["error"].startswith(f"interrupted by {signum.name}")
    assert not (run_dir / "results.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_export_leaves_nothing_and_says_so(signum, interrupted):
    done, seconds, out = interrupted[("export", signum)]
    assert seconds <= SIGNAL_DEADLINE_S, done.describe()
    assert done.returncode == 128 + signum, done.describe()
    assert done.error_lines == [f"error: interrupted by {signum.name}; no file written"], done.describe()
    assert "Traceback" not in done.stderr
    assert not out.exists() or not list(out.iterdir())


# --------------------------------------------------------------------------- 8. the export and the user's files


def _tiny_network() -> ConvNeXtPose:
    return ConvNeXtPose(TINY).eval()


@pytest.mark.slow
def test_the_export_never_replaces_a_file_it_did_not_write(tmp_path):
    notes = tmp_path / "notes.onnx"
    notes.write_text("my notes\n")
    with pytest.raises(BackendError, match="not written by convnextpose-eval.*export.overwrite=true") as refused:
        export_onnx(_tiny_network(), notes)
    assert str(notes) in str(refused.value) and notes.read_text() == "my notes\n"
    # Its own earlier export is recognized and replaced; with the opt-in, the user's file too.
    ours = tmp_path / "ours.onnx"
    export_onnx(_tiny_network(), ours)
    meta = {p.key: p.value for p in onnx.load(ours).metadata_props}
    assert meta[TOOL_KEY] == "convnextpose-eval"
    export_onnx(_tiny_network(), ours)
    export_onnx(_tiny_network(), notes, overwrite=True)
    assert onnx.load(notes).graph.output[0].name == "coords"
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_export_command_refuses_to_replace_the_user_s_file_in_one_line(root, ckpt_xs, tmp_path, monkeypatch, capsys):
    from convnextpose_eval.cli.export import main

    notes = tmp_path / "notes.onnx"
    notes.write_text("my notes\n")
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(root))
    code = main(["variant=XS", f"ckpt_path={ckpt_xs}", f"export.path={notes}"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and str(notes) in errors[0] and "export.overwrite=true" in errors[0], err
    assert notes.read_text() == "my notes\n"
