"""The export command and ``run_eval.py backend=onnxruntime`` end to end, on the generated sample.

Each variant is exported once per module by the command a user runs; the ONNX Runtime sweep is then
held against the PyTorch demo sweep (the session's ``demo_sweep_p1``): the same images, and figures
equal to 0.001 mm overall and 0.005 mm per action (float32 reordering between the two runtimes moves
them by about 1e-4 mm). Commands that do not depend on each other run two at a time: most of their
time is Python's single-threaded start-up.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from cli import run_cli
from conftest import VARIANTS
from doc_commands import page_command

pytestmark = pytest.mark.slow

METRICS = ("mpjpe", "pa_mpjpe", "pa_mpjpe_scaled", "n_mpjpe", "pck3d_150", "auc3d")
ONNX = ("backend=onnxruntime",)


def read(path: Path) -> dict:
    with open(path) as handle:
        return json.load(handle)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def onnx_root(eval_root_with_sample) -> Path:
    return eval_root_with_sample("onnx_root")


@pytest.fixture(scope="module")
def sample_checkpoints(onnx_root) -> Path:
    return onnx_root / "outputs" / "sample" / "checkpoints"


@pytest.fixture(scope="module")
def exports(onnx_root, sample_checkpoints) -> dict[str, dict]:
    """variant -> the export command's JSON line. XS is exported by docs/onnx.md's command as the page shows it
    (a checkpoint, no data named: the bundled sample's crops check it); the others with experiment=demo."""
    folder = onnx_root / "exported"

    def export(variant: str) -> dict:
        module = "convnextpose_eval.export"
        if variant == "XS":
            command = "python -m convnextpose_eval.export variant=XS ckpt_path=ConvNeXtPose_XS.tar export.path=ConvNeXtPose_XS.onnx"
            words = page_command(command, {"ConvNeXtPose_XS.tar": sample_checkpoints / "ConvNeXtPose_XS.tar",
                                           "ConvNeXtPose_XS.onnx": folder / "ConvNeXtPose_XS.onnx"})  # fmt: skip
            module, args = words[2], tuple(words[3:])
        else:
            args = ("experiment=demo", f"variant={variant}", f"export.path={folder}")
        done = run_cli(onnx_root, *args, module=module)
        assert done.returncode == 0, done.describe()
        return {**json.loads(done.stdout.strip().splitlines()[-1]), "stdout": done.stdout}

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(VARIANTS, pool.map(export, VARIANTS)))


@pytest.fixture(scope="module")
def onnx_sweep(onnx_root, exports, side_runs) -> Path:
    """The ONNX Runtime demo sweep; ``side_runs`` (requested first) run beside it."""
    sweep = onnx_root / "onnx_sweep"
    done = run_cli(onnx_root, "-m", "experiment=demo", "data.protocol=1", *ONNX, f"onnx_path={onnx_root / 'exported'}", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.describe()
    return sweep


def test_export_writes_one_checked_file_per_variant(exports, onnx_root, sample_checkpoints):
    for variant, line in exports.items():
        path = Path(line["path"])
        assert path == onnx_root / "exported" / f"ConvNeXtPose_{variant}.onnx"
        assert line["sha256"] == sha256(path)
        assert line["opset"] == 17 and line["check_batch_sizes"] == [16, 1]
        assert 0 <= line["max_abs_diff"] <= line["tolerance"] == 1e-3
        assert line["checkpoint_sha256"] == sha256(sample_checkpoints / f"ConvNeXtPose_{variant}.tar")
    assert "the bundled synthetic sample" in exports["XS"]["stdout"]
    assert not list((onnx_root / "exported").glob("*.tmp")) and not list((onnx_root / "exported").glob(".*"))


def test_every_variant_scores_as_pytorch(onnx_sweep, demo_sweep_p1, exports):
    for job, variant in enumerate(VARIANTS):
        ours = read(onnx_sweep / f"{job}_{variant}" / "results.json")
        torch_run = read(demo_sweep_p1 / f"{job}_{variant}" / "results.json")
        assert ours["variant"] == torch_run["variant"] == variant
        assert ours["num_samples"] == torch_run["num_samples"] == 23
        # The bar the CPU default (ONNX Runtime) stands on: 0.001 mm overall, 0.005 mm per action.
        for name in METRICS:
            assert abs(ours["metrics"][name] - torch_run["metrics"][name]) < 1e-3, (variant, name)
        assert ours["per_action"].keys() == torch_run["per_action"].keys()
        for action, scores in ours["per_action"].items():
            assert scores["num_samples"] == torch_run["per_action"][action]["num_samples"]
            for name in METRICS:
                assert abs(scores[name] - torch_run["per_action"][action][name]) < 5e-3, (variant, action, name)
        onnx = ours["inference"]["onnx"]
        assert ours["inference"]["backend"] == "onnxruntime" and torch_run["inference"]["backend"] == "pytorch"
        assert onnx["sha256"] == exports[variant]["sha256"] and onnx["provider"] == "cpu"
        assert onnx["source_checkpoint_sha256"] == torch_run["checkpoint"]["sha256"]
        assert ours["checkpoint"] is None
        # The run's page names the ONNX file by its sha256 and says what was (not) proven about it (docs/report.md).
        page = (onnx_sweep / f"{job}_{variant}" / "report.html").read_text(encoding="utf-8")
        assert onnx["sha256"] in page and ("NOT checked against a checkpoint" in page) is (not onnx["source_verified"])
        predictions = read(onnx_sweep / f"{job}_{variant}" / "predictions.json")
        assert [p["image_id"] for p in predictions] == [p["image_id"] for p in read(demo_sweep_p1 / f"{job}_{variant}" / "predictions.json")]
    report = (onnx_sweep / "BENCHMARK_REPORT.md").read_text()
    assert report.count("(onnxruntime)") == 4


def _refused(done, *fragments: str) -> str:
    assert done.returncode == 2, done.describe()
    assert len(done.error_lines) == 1 and "Traceback" not in done.stderr, done.describe()
    line = done.error_lines[0]
    assert all(fragment in line for fragment in fragments), line
    return line


@pytest.fixture(scope="module")
def side_runs(onnx_root, exports, sample_checkpoints, tmp_path_factory) -> dict[str, tuple[Future, dict]]:
    """Case -> (Future of the command's run, facts): every way a user can hand the tool the wrong file.
    Started as soon as the files exist, two at a time, beside the sweep. (ONNX Runtime under DDP, on the
    cached export: test_evaluate.py and test_onnx_cache.py.)"""
    base = tmp_path_factory.mktemp("onnx_side_runs")
    xs_file, l_file = Path(exports["XS"]["path"]), Path(exports["L"]["path"])
    truncated, foreign, empty = base / "truncated.onnx", base / "checkpoint.onnx", base / "empty.onnx"
    truncated.write_bytes(xs_file.read_bytes()[: xs_file.stat().st_size // 3])
    shutil.copy(sample_checkpoints / "ConvNeXtPose_XS.tar", foreign)
    empty.write_bytes(b"")
    only_xs = base / "only_xs"
    only_xs.mkdir()
    shutil.copy(xs_file, only_xs / "ConvNeXtPose_XS.onnx")
    demo_xs = ("experiment=demo", "variant=XS", *ONNX)
    cases = {
        "l_as_xs": ((*demo_xs, f"onnx_path={l_file}", f"paths.cache_dir={base / 'l_as_xs_cache'}"), {}),
        "truncated": ((*demo_xs, f"onnx_path={truncated}"), {"fragments": (str(truncated), "truncated")}),
        "checkpoint": ((*demo_xs, f"onnx_path={foreign}"), {"fragments": (str(foreign), "zip archive")}),
        "empty": ((*demo_xs, f"onnx_path={empty}"), {"fragments": (str(empty), "is empty")}),
        "folder_without_s": (("experiment=demo", "variant=S", *ONNX, f"onnx_path={only_xs}"),
                             {"fragments": (str(only_xs), "ConvNeXtPose_S.onnx", "`python run_eval.py export variant=S")}),
        # ckpt_path beside onnx_path must be the checkpoint the file was exported from.
        "other_checkpoint": ((*demo_xs, f"onnx_path={xs_file}", f"ckpt_path={sample_checkpoints / 'ConvNeXtPose_S.tar'}"),
                             # The plan checks the checkpoint against the variant before the file's recorded source.
                             {"fragments": ("ConvNeXtPose_S.tar holds an S-shaped network", "run with variant=S")}),
        "export_misfit": (("experiment=demo", "variant=XS", f"ckpt_path={sample_checkpoints / 'ConvNeXtPose_L.tar'}",
                           f"export.path={base / 'misfit' / 'out.onnx'}"), {"fragments": ("ConvNeXtPose_L.tar",), "module": "convnextpose_eval.export"}),
    }  # fmt: skip
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {}
    for name, (args, facts) in cases.items():
        out = base / name / "run"
        facts = {**facts, "out": out, "base": base / name}
        if "module" in facts:
            futures[name] = (pool.submit(run_cli, onnx_root, *args, module=facts["module"]), facts)
        else:
            futures[name] = (pool.submit(run_cli, onnx_root, *args, f"hydra.run.dir={out}"), facts)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def test_an_l_export_run_as_xs_is_refused_before_any_data_is_read(side_runs, exports, onnx_root):
    future, facts = side_runs["l_as_xs"]
    _refused(future.result(), exports["L"]["path"], "holds ConvNeXtPose-L", "variant=L")
    assert not (facts["base"].parent / "l_as_xs_cache").exists(), "the test set was read before the file was refused"
    assert not (facts["out"] / "results.json").exists()


@pytest.mark.parametrize("case", ["truncated", "checkpoint", "empty", "folder_without_s", "other_checkpoint"])
def test_a_wrong_file_is_refused_in_one_line_with_no_results(side_runs, case):
    future, facts = side_runs[case]
    _refused(future.result(), *facts["fragments"])
    assert not (facts["out"] / "results.json").exists() and not (facts["out"] / "predictions.json").exists()


def test_export_of_a_checkpoint_that_does_not_fit_writes_nothing(side_runs):
    future, facts = side_runs["export_misfit"]
    _refused(future.result(), *facts["fragments"])
    misfit = facts["base"].parent / "misfit"
    assert not misfit.exists() or not list(misfit.iterdir())


def printed_command(line: str) -> str:
    """The one command a message suggests, written between backticks."""
    commands = re.findall(r"`([^`]+)`", line)
    assert len(commands) == 1, line
    return commands[0]


def test_the_evaluate_command_printed_after_an_export_runs_as_printed(exports, onnx_root):
    line = next(line for line in exports["XS"]["stdout"].splitlines() if line.strip().startswith("evaluate "))
    command = shlex.split(printed_command(line))
    assert command[:3] == ["python", "-m", "convnextpose_eval"]
    out = onnx_root / "printed_evaluate"
    done = run_cli(onnx_root, *command[3:], f"hydra.run.dir={out}", module="convnextpose_eval")
    assert done.returncode == 0, done.describe()
    results = read(out / "results.json")
    assert results["inference"]["backend"] == "onnxruntime" and results["inference"]["onnx"]["source_verified"] is True
    assert results["inference"]["onnx"]["sha256"] == exports["XS"]["sha256"]


def test_the_export_command_suggested_for_a_missing_file_runs_as_printed(side_runs, onnx_root):
    future, _ = side_runs["folder_without_s"]
    line = future.result().error_lines[0]
    command = shlex.split(printed_command(line))
    # Hints name the command the user ran: here run_eval.py, whose first argument picks the subcommand.
    assert command[:3] == ["python", "run_eval.py", "export"], command
    done = run_cli(onnx_root, *command[2:])
    assert done.returncode == 0, done.describe()
    assert (Path(command[-1].split("=", 1)[1]) / "ConvNeXtPose_S.onnx").is_file()
