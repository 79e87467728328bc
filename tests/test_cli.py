"""What users reported about the command line, each checked through the real ``run_eval.py``.

Every test runs the tool on the session's synthetic sample, under a project root of this module's own, and
checks the exit status and the exact line or output a user sees. A real subprocess (tests/cli.py) where the
process is the point: the exit status and everything a fresh interpreter prints (the first refusal, the
quiet offline run), signals and the run-folder lock held by another process. The other findings go through
the same entry point in this process (tests/inprocess.py), without a new interpreter's start-up.
Runs are kept few and small: XS on protocol 1 (23 images) wherever the finding allows.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path

import pytest
from cli import finish, reaped, run_cli, start_cli, wait_for
from doc_commands import page_command
from inprocess import run_in_process

pytestmark = pytest.mark.slow

LOCK_FILE = ".convnextpose_eval.lock"
# The sample's test images (protocol 2): 49 with ground-truth boxes (one annotation box is empty),
# 50 with RootNet's boxes; 23 on protocol 1 (S11 only).
SAMPLE_P2_GT, SAMPLE_P2_ROOTNET, SAMPLE_P1_GT = 49, 50, 23


@pytest.fixture(scope="module")
def cli_root(eval_root_with_sample) -> Path:
    """This module's project root: the shared sample, and nothing else under outputs/ until a run makes it."""
    return eval_root_with_sample("cli")


@pytest.fixture(scope="module")
def sample_dir(cli_root) -> Path:
    return cli_root / "outputs" / "sample"


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def assert_refused(done, expected_line: str) -> None:
    """Exit 2 and stderr holding exactly ``expected_line``, nothing else: no traceback, no Hydra chatter."""
    assert done.returncode == 2, done.describe()
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [expected_line], done.describe()


# --------------------------------------------------------------------------- the help page


def test_help_says_what_the_tool_does_and_lists_the_commands(cli_root):
    done = run_cli(cli_root, *page_command("python run_eval.py --help")[2:])
    assert done.returncode == 0, done.describe()
    page = done.stdout
    assert page.startswith("convnextpose-eval: evaluate released ConvNeXtPose checkpoints (XS, S, M, L) on Human3.6M")
    # Commands the docs give (docs/getting-started.md, docs/real-data.md, docs/speed.md), as a user would copy them.
    for command in (
        "python run_eval.py -m experiment=demo",
        "python run_eval.py experiment=demo variant=S",
        "python run_eval.py variant=L data.root=DATA",
        "python run_eval.py variant=L data.root=DATA data.protocol=1",
        "python run_eval.py variant=auto ckpt_path=",
        "python run_eval.py -m variant=XS,S,M,L paths.checkpoint_dir=CKPTS data.root=DATA",
        "python run_eval.py variant=L data.root=DATA oracle=true",
        "python -m convnextpose_eval.inspect",
        "python -m convnextpose_eval.bench experiment=demo variant=XS",
    ):
        assert command in page, command
    groups = {line.split(":")[0]: line for line in page.splitlines() if re.match(r"^(variant|trainer|data): ", line)}
    assert all(name in groups["variant"] for name in ("XS", "S", "M", "L", "auto"))
    assert all(name in groups["trainer"] for name in ("cpu", "gpu", "ddp"))
    assert not (cli_root / "outputs" / "runs").exists(), "--help must not start a run"


# --------------------------------------------------------------------------- refused before anything runs


def test_flip_test_maybe_is_refused_in_one_line(cli_root):
    done = run_cli(cli_root, "experiment=demo", "variant=XS", "flip_test=maybe", fresh=True)
    assert_refused(done, "error: flip_test: Value 'maybe' is not a valid bool (type str)")


def test_forced_architecture_key_is_refused_by_name(cli_root, tmp_path, monkeypatch):
    done = run_in_process(monkeypatch, cli_root, "experiment=demo", "variant=XS", "+variant.head_channels=384", f"hydra.run.dir={tmp_path / 'run'}",
                          shared_exports=True)  # fmt: skip
    assert_refused(done, "error: variant.head_channels: no such setting; did you mean variant.head.channels? (`python run_eval.py --help` lists them all)")
    assert not (tmp_path / "run" / "results.json").exists()


def test_batch_size_zero_is_refused(cli_root, tmp_path, monkeypatch):
    done = run_in_process(monkeypatch, cli_root, "experiment=demo", "variant=XS", "data.batch_size=0", f"hydra.run.dir={tmp_path / 'run'}",
                          shared_exports=True)  # fmt: skip
    assert_refused(done, "error: data.batch_size=0: must be at least 1")


def test_missing_data_root_is_refused_before_any_download(cli_root, tmp_path, monkeypatch):
    """No checkpoint is looked for, let alone downloaded, while the data root is wrong."""
    missing = Path("/nonexistent")
    assert not missing.exists()
    done = run_in_process(monkeypatch, cli_root, f"data.root={missing}", "variant=XS", f"hydra.run.dir={tmp_path / 'run'}", shared_exports=True)
    assert_refused(done, f"error: {missing}: data root does not exist (data.root must hold annotations/ and images/)")
    # The download would first create the checkpoint cache (paths.checkpoint_dir).
    assert not (cli_root / "outputs" / "checkpoints").exists()


# --------------------------------------------------------------------------- runs that must work


def test_sample_alone_runs_offline_quietly_and_logs_the_table(cli_root, sample_dir):
    """``data=sample variant=XS``: the sample's own checkpoint, no download, no tips or deprecation noise."""
    out = cli_root / "sample_alone"
    done = run_cli(cli_root, "data=sample", "variant=XS", "data.protocol=1", f"hydra.run.dir={out}", fresh=True)
    assert done.returncode == 0, done.describe()
    results = read_json(out / "results.json")
    assert results["num_samples"] == SAMPLE_P1_GT and results["variant"] == "XS"
    assert Path(results["checkpoint"]["path"]).resolve() == (sample_dir / "checkpoints" / "ConvNeXtPose_XS.tar").resolve()
    assert not (cli_root / "outputs" / "checkpoints").exists(), "no download may be attempted"
    printed = done.stdout + done.stderr
    for noise in ("litlogger", "DeprecationWarning", "Traceback"):
        assert noise not in printed, f"{noise!r} printed:\n{done.describe()}"
    assert "metric (mm)" in done.stdout and f"results: {out / 'results.json'}" in done.stdout
    log = (out / "run_eval.log").read_text(encoding="utf-8")
    assert "metric (mm)" in log and re.search(r"^MPJPE +\d+\.\d\d", log, flags=re.MULTILINE), log
    assert f"results: {out / 'results.json'}" in log


def test_one_variant_of_the_demo_without_multirun(cli_root, monkeypatch):
    done = run_in_process(monkeypatch, cli_root, *page_command("python run_eval.py experiment=demo variant=S")[2:], shared_exports=True)
    assert done.returncode == 0, done.describe()
    runs = sorted((cli_root / "outputs" / "runs").iterdir())
    assert [p.name.endswith("_S") for p in runs] == [True], runs
    results = read_json(runs[0] / "results.json")
    assert results["variant"] == "S" and results["num_samples"] == SAMPLE_P2_GT and results["synthetic"] is True
    assert not (cli_root / "outputs" / "sweeps").exists(), "a single variant is a single run, not a sweep"


def test_boolean_words_and_a_home_relative_data_root(cli_root, sample_dir, tmp_path, monkeypatch):
    """``flip_test=no data.use_gt_info=no data.root=~/h36m``: flip off, RootNet's boxes, the home folder expanded."""
    home = tmp_path / "home"
    shutil.copytree(sample_dir, home / "h36m", ignore=shutil.ignore_patterns("checkpoints"))
    out = tmp_path / "run"
    monkeypatch.setenv("HOME", str(home))
    done = run_in_process(
        monkeypatch, cli_root, "variant=XS", f"ckpt_path={sample_dir / 'checkpoints' / 'ConvNeXtPose_XS.tar'}", "data.root=~/h36m",
        "flip_test=no", "data.use_gt_info=no", f"hydra.run.dir={out}", shared_exports=True,
    )  # fmt: skip
    assert done.returncode == 0, done.describe()
    results = read_json(out / "results.json")
    assert results["flip_test"] is False and results["use_gt_info"] is False
    assert results["num_samples"] == SAMPLE_P2_ROOTNET  # RootNet's boxes: the image with an empty GT box counts too
    assert Path(results["data_root"]) == (home / "h36m").resolve()
    assert "flip test off" in done.stdout


def test_oracle_prints_its_verdict(cli_root, monkeypatch):
    out = cli_root / "oracle"
    done = run_in_process(monkeypatch, cli_root, "experiment=demo", "variant=XS", "data.protocol=1", "oracle=true", f"hydra.run.dir={out}",
                          shared_exports=True)  # fmt: skip
    assert done.returncode == 0, done.describe()
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("oracle check:")]
    assert len(verdicts) == 1, done.describe()
    assert re.fullmatch(r"oracle check: PASS \(largest error \d+\.\d{4} mm, must be < 1 mm\)", verdicts[0]), verdicts[0]
    assert read_json(out / "results.json")["num_samples"] == SAMPLE_P1_GT


# --------------------------------------------------------------------------- the run folder


def test_foreign_results_file_is_left_alone(cli_root, tmp_path, monkeypatch):
    out = tmp_path / "theirs"
    out.mkdir()
    foreign = out / "results.json"
    foreign.write_text('{"model": "someone else\'s", "mpjpe": 42.0}\n', encoding="utf-8")
    before = foreign.read_bytes()
    done = run_in_process(monkeypatch, cli_root, "experiment=demo", "variant=XS", "data.protocol=1", f"hydra.run.dir={out}", shared_exports=True)
    assert_refused(done, f"error: {foreign}: exists and was not written by this tool; choose another hydra.run.dir")
    assert foreign.read_bytes() == before
    assert not (out / "predictions.json").exists() and not (out / "failure.json").exists(), "nothing is written into their folder"


def test_second_run_into_a_busy_folder_is_refused_and_sigterm_stops_the_first(cli_root, tmp_path, monkeypatch):
    """One long run holds the folder: a second run there is refused; SIGTERM then ends the first without results.

    The first run (L, one image per step, a cold crop cache) keeps to one thread, so that the second one
    starts on the other core while the first is still busy.
    """
    out = tmp_path / "shared"
    first = start_cli(
        cli_root, "experiment=demo", "variant=L", "data.batch_size=1", "data.num_workers=0",
        f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={out}", env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )  # fmt: skip
    with reaped(first):
        wait_for(lambda: (out / LOCK_FILE).is_file() and (out / LOCK_FILE).stat().st_size > 0, first, "the run's lock file")
        second = run_in_process(monkeypatch, cli_root, "experiment=demo", "variant=XS", "data.protocol=1", f"hydra.run.dir={out}", shared_exports=True)
        assert first.poll() is None, "the first run ended before the second was refused: the check proves nothing"
        assert second.returncode == 2, second.describe()
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, second.describe()
        assert lines[0].startswith(f"error: {out}: another run is writing here (pid {first.pid} on "), lines[0]
        assert lines[0].endswith("; give this run its own hydra.run.dir"), lines[0]
        first.send_signal(signal.SIGTERM)
        stopped = finish(first, timeout=120)
    assert stopped.returncode == 128 + signal.SIGTERM == 143, stopped.describe()
    assert stopped.error_lines == [f"error: {out}: interrupted by SIGTERM; no results written"], stopped.describe()
    assert "Traceback" not in stopped.stderr
    assert not (out / "results.json").exists() and not (out / "predictions.json").exists()


def test_sigterm_to_a_sweep_reports_the_interrupted_job_and_exits_non_zero(cli_root, tmp_path):
    """The finished job is reported ok, the interrupted one as failed with its reason; later jobs never start."""
    sweep = tmp_path / "sweep"
    process = start_cli(
        cli_root, "-m", "experiment=demo", "variant=XS,L", "data.protocol=1", "data.batch_size=1", "data.num_workers=0",
        f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}", env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    with reaped(process):
        wait_for(lambda: (sweep / "1_L" / LOCK_FILE).is_file(), process, "the second job's lock file")
        process.send_signal(signal.SIGTERM)
        stopped = finish(process, timeout=120)
    assert stopped.returncode == 143, stopped.describe()
    assert f"error: {sweep / '1_L'}: interrupted by SIGTERM; no results written" in stopped.error_lines, stopped.describe()
    report = read_json(sweep / "benchmark_results.json")
    states = {entry["variant"]: (entry["status"], entry.get("error")) for entry in report["entries"]}
    assert states == {"XS": ("ok", None), "L": ("failed", "interrupted by SIGTERM; no results written")}
    assert "FAILED" in (sweep / "BENCHMARK_REPORT.md").read_text()
    assert not (sweep / "1_L" / "results.json").exists()
