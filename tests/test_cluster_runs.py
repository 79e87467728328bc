"""Real launchers: torchrun (one node x 2 ranks, two nodes x 1 rank on 127.0.0.1) and a real SLURM cluster.

The commands are docs/clusters.md's, quoted as the page shows them (``doc_commands.page_command``), with
``OUT``/``SWEEP`` replaced by folders of the test. Every figure of results.json must equal the single-process run of the same command (the session's
``default_engine_p1``) to 1e-6 mm; only global rank 0 may write the run folder. The SLURM tests need a cluster
that answers ``sinfo`` with a ``debug`` partition (``scripts/slurm-local.sh up``; ``.ci/run`` starts one)
and skip, saying so, where there is none.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cli import PROJECT_ROOT, cli_env, run_cli, share_exports, wait_for
from doc_commands import page_command
from figures import assert_same_figures

pytestmark = pytest.mark.slow

TOLERANCE_MM = 1e-6
# docs/clusters.md's commands, as the page shows them.
TORCHRUN_ONE_NODE = ("torchrun --standalone --nproc-per-node=2 run_eval.py experiment=demo variant=XS data.protocol=1 trainer=ddp "
                     "trainer.devices=2 hydra.run.dir=OUT")
TORCHRUN_NODE_0 = ("torchrun --nnodes=2 --node-rank=0 --nproc-per-node=1 --master-addr=127.0.0.1 --master-port=29431 run_eval.py "
                   "experiment=demo variant=XS data.protocol=1 trainer=ddp trainer.devices=1 trainer.num_nodes=2 hydra.run.dir=OUT")
TORCHRUN_NODE_1 = ("torchrun --nnodes=2 --node-rank=1 --nproc-per-node=1 --master-addr=127.0.0.1 --master-port=29431 run_eval.py "
                   "experiment=demo variant=XS data.protocol=1 trainer=ddp trainer.devices=1 trainer.num_nodes=2 hydra.run.dir=OUT")
SLURM_SWEEP = ("python run_eval.py -m hydra/launcher=slurm hydra.launcher.partition=debug experiment=demo variant=XS,S data.protocol=1 "
               "data.num_workers=1 hydra.sweep.dir=SWEEP")
SLURM_DDP_SWEEP = ("python run_eval.py -m hydra/launcher=slurm hydra.launcher.partition=debug experiment=demo variant=XS,S "
                   "data.protocol=1 data.num_workers=1 trainer=ddp trainer.devices=2 hydra.sweep.dir=SWEEP")
SRUN = ("srun --ntasks-per-node=2 python run_eval.py experiment=demo variant=XS data.protocol=1 data.num_workers=1 trainer=ddp "
        "trainer.devices=2 hydra.run.dir=OUT")
SLURM_RESUME = ("python run_eval.py -m hydra/launcher=slurm hydra.launcher.partition=debug experiment=demo variant=XS,S "
                "data.protocol=1 data.num_workers=1 hydra.sweep.dir=SWEEP sweep.resume=true")
RUN_FILES = [".convnextpose_eval.lock", ".hydra", "predictions.json", "report.html", "results.json", "run_eval.log", "worst_cases.png"]


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def run(command: list[str], root: Path, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a page's command. A SLURM sweep's own process (``python run_eval.py -m hydra/launcher=slurm ...``,
    which submits the jobs and waits for them) is forked like every ``run_cli`` run; the jobs, tasks, srun,
    salloc and torchrun start their own interpreters."""
    if command[:3] == ["python", "run_eval.py", "-m"] and "hydra/launcher=slurm" in command:
        done = run_cli(root, *command[2:], env=env, timeout=timeout, as_written=True)
        return subprocess.CompletedProcess(list(done.command), done.returncode, done.stdout, done.stderr)
    return subprocess.run(command, cwd=PROJECT_ROOT, env=cli_env(root, env), capture_output=True, text=True, timeout=timeout)


def describe(done: subprocess.CompletedProcess) -> str:
    return f"{' '.join(map(str, done.args))}\nexit {done.returncode}\n--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-4000:]}"


def assert_written_by_rank_zero_only(folder: Path, world_size: int) -> None:
    """The run folder holds each file once, written by one process: rank 0's lock, log and results."""
    assert sorted(p.name for p in folder.iterdir()) == RUN_FILES
    assert sorted(p.name for p in (folder / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    assert re.fullmatch(r"pid \d+ on \S+, started .*", (folder / ".convnextpose_eval.lock").read_text())
    log = (folder / "run_eval.log").read_text()
    assert log.count("results: ") == 1 and log.count("ConvNeXtPose-") == 1, log
    results = read(folder / "results.json")
    assert results["throughput"]["world_size"] == results["throughput"]["devices"] == world_size
    assert len(read(folder / "predictions.json")) == results["num_samples"]


@pytest.fixture(scope="module")
def root(eval_root_with_sample) -> Path:
    """The launches' project root, its ONNX export cache the session's (``cli.share_exports``): every rank and
    job finds the sample's exports made, as the single runs they are compared with did."""
    folder = eval_root_with_sample("cluster_runs")
    share_exports(folder, ())
    return folder


@pytest.fixture(scope="module")
def single(default_engine_p1) -> dict[str, dict]:
    """The single-process results of XS and S on protocol 1, with the same (default) engine as the launches."""
    return {"XS": read(default_engine_p1 / "0_XS" / "results.json"), "S": read(default_engine_p1 / "1_S" / "results.json")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_port(command: list[str], port: int) -> list[str]:
    return [f"--master-port={port}" if word.startswith("--master-port=") else word for word in command]


# --------------------------------------------------------------------------- torchrun


def test_torchrun_one_node_two_ranks_gives_the_single_run(root, single, tmp_path):
    out = tmp_path / "out"
    done = run(page_command(TORCHRUN_ONE_NODE, OUT=out), root)
    assert done.returncode == 0, describe(done)
    assert_written_by_rank_zero_only(out, world_size=2)
    assert_same_figures(read(out / "results.json"), single["XS"], tolerance_mm=TOLERANCE_MM)
    assert "another run is writing here" not in done.stderr and not (out / "traceback.txt").exists()


def test_torchrun_two_nodes_sharing_one_run_dir_give_the_single_run(root, single, tmp_path):
    out = tmp_path / "out"
    port = free_port()
    node1 = subprocess.Popen(with_port(page_command(TORCHRUN_NODE_1, OUT=out), port), cwd=PROJECT_ROOT,
                             env=cli_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        node0 = run(with_port(page_command(TORCHRUN_NODE_0, OUT=out), port), root)
        out1, err1 = node1.communicate(timeout=120)
    finally:
        node1.kill()
    assert node0.returncode == 0, describe(node0)
    assert node1.returncode == 0, err1[-4000:]
    results = read(out / "results.json")
    assert results["throughput"]["num_nodes"] == 2
    assert_written_by_rank_zero_only(out, world_size=2)
    assert_same_figures(results, single["XS"], tolerance_mm=TOLERANCE_MM)


TIMEOUT_S = 10
FAILING = ("experiment=demo", "variant=XS", "data.protocol=1", "trainer=ddp", "trainer.progress_bar=false", f"trainer.timeout_s={TIMEOUT_S}")


def torchrun(*args: str, nodes: int, node_rank: int, per_node: int, port: int) -> list[str]:
    return [shutil.which("torchrun") or "torchrun", f"--nnodes={nodes}", f"--node-rank={node_rank}", f"--nproc-per-node={per_node}",
            "--master-addr=127.0.0.1", f"--master-port={port}", "run_eval.py", *args]  # fmt: skip


def test_a_rank_that_fails_on_bad_input_never_joins_and_every_rank_exits_within_the_timeout(root, tmp_path):
    """Node 1 is given a truncated checkpoint: it fails at once; rank 0 waits for it no longer than trainer.timeout_s."""
    out = tmp_path / "out"
    broken = tmp_path / "ConvNeXtPose_XS.tar"
    good = root / "outputs" / "sample" / "checkpoints" / "ConvNeXtPose_XS.tar"
    broken.write_bytes(good.read_bytes()[:5000])
    args = (*FAILING, "trainer.devices=1", "trainer.num_nodes=2", f"hydra.run.dir={out}")
    port = free_port()
    started = time.monotonic()
    node1 = subprocess.Popen(torchrun(*args, f"ckpt_path={broken}", nodes=2, node_rank=1, per_node=1, port=port), cwd=PROJECT_ROOT,
                             env=cli_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        node0 = run(torchrun(*args, f"ckpt_path={good}", nodes=2, node_rank=0, per_node=1, port=port), root, timeout=240)
        _, err1 = node1.communicate(timeout=120)
    finally:
        node1.kill()
    elapsed = time.monotonic() - started
    assert node0.returncode != 0 and node1.returncode != 0
    rank1 = [line for line in err1.splitlines() if line.startswith("error:")]
    assert len(rank1) == 1 and rank1[0].startswith(f"error: rank 1 of 2: {broken}: ") and "truncated" in rank1[0], err1[-3000:]
    rank0 = [line for line in node0.stderr.splitlines() if line.startswith("error:")]
    assert rank0 == [rank0[0]] and rank0[0].startswith("error: rank 0 of 2: another rank failed, was killed or did not answer "
                                                       f"within trainer.timeout_s={TIMEOUT_S} s"), describe(node0)  # fmt: skip
    assert elapsed < 120 + TIMEOUT_S, elapsed
    # Rank 1 touched nothing; rank 0 wrote no results.
    assert not (out / "results.json").exists() and not (out / "traceback.txt").exists()


def test_a_killed_rank_ends_every_rank_non_zero(root, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(torchrun(*FAILING, "trainer.devices=2", f"hydra.run.dir={out}", nodes=1, node_rank=0, per_node=2,
                                        port=free_port()),
                               cwd=PROJECT_ROOT, env=cli_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: (out / ".convnextpose_eval.lock").exists(), process, "rank 0's lock", timeout=120)
        rank1 = _rank_pids(process.pid)[1]
        os.kill(rank1, signal.SIGKILL)
        started = time.monotonic()
        _, err = process.communicate(timeout=TIMEOUT_S + 120)
    finally:
        process.kill()
    assert process.returncode != 0
    assert time.monotonic() - started < TIMEOUT_S + 60
    rank0 = [line for line in err.splitlines() if line.startswith("error: rank 0 of 2:")]
    assert len(rank0) == 1, err[-4000:]
    assert not (out / "results.json").exists()


def _rank_pids(agent: int) -> dict[int, int]:
    """Global rank -> pid of the workers torchrun's agent ``agent`` started (read from their environment)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            parent = int(re.search(r"^PPid:\s*(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
            environ = dict(item.split("=", 1) for item in (entry / "environ").read_bytes().decode(errors="replace").split("\0") if "=" in item)
        except (OSError, AttributeError, ValueError):
            continue
        if parent == agent and "RANK" in environ:
            found[int(environ["RANK"])] = int(entry.name)
    return found


# --------------------------------------------------------------------------- SLURM


def _cluster_problem() -> str | None:
    if shutil.which("sinfo") is None:
        return "no SLURM cluster: sinfo is not installed (scripts/slurm-local.sh up starts one)"
    try:
        done = subprocess.run(["sinfo", "--noheader", "--format=%P %a"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"no SLURM cluster answers: sinfo failed ({exc})"
    if done.returncode != 0:
        return f"no SLURM cluster answers: sinfo failed ({done.stderr.strip()[:200]}); scripts/slurm-local.sh up starts one"
    if not any(line.split()[0].rstrip("*") == "debug" and line.split()[1] == "up" for line in done.stdout.splitlines() if line.split()):
        return "the SLURM cluster has no 'debug' partition up (docs/clusters.md's commands use it)"
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return "hydra-submitit-launcher is not installed (pip install -e '.[slurm]')"
    return None


_problem = _cluster_problem()


def needs_slurm(test):
    """Runs on the local cluster; skips, saying why, where there is none (under CI=true the skip fails: conftest.py)."""
    return pytest.mark.required_in_ci(pytest.mark.skipif(_problem is not None, reason=str(_problem))(test))


def _job_states(sweep: Path) -> dict[str, tuple[str, str]]:
    """Array element -> (JobState, ExitCode) from ``scontrol show job`` (no accounting database needed)."""
    states = {}
    for folder in (sweep / ".submitit").iterdir():
        if not (re.fullmatch(r"\d+(_\d+)?", folder.name) and list(folder.glob("*_submitted.pkl"))):
            continue  # an array's own folder holds only its sbatch script
        text = subprocess.run(["scontrol", "show", "job", folder.name], capture_output=True, text=True, timeout=30).stdout
        state, code = re.search(r"JobState=(\S+)", text), re.search(r"ExitCode=(\S+)", text)
        states[folder.name] = (state.group(1) if state else "?", code.group(1) if code else "?")
    return states


def _entries(sweep: Path) -> dict[str, dict]:
    return {e["variant"]: e for e in read(sweep / "benchmark_results.json")["entries"]}


@needs_slurm
def test_slurm_ddp_sweep_with_the_shipped_defaults_gives_the_single_runs(root, single, tmp_path):
    """Two tasks per job; the one-task sweep of the same page is run by the failed-job test below."""
    sweep = tmp_path / "sweep"
    command = page_command(SLURM_DDP_SWEEP, SWEEP=sweep)
    assert "trainer=ddp" in command
    done = run(command, root, timeout=400)
    assert done.returncode == 0, describe(done)
    for job, variant in (("0_XS", "XS"), ("1_S", "S")):
        assert_written_by_rank_zero_only(sweep / job, world_size=2)
        assert_same_figures(read(sweep / job / "results.json"), single[variant], tolerance_mm=TOLERANCE_MM)
    assert {v: e["status"] for v, e in _entries(sweep).items()} == {"XS": "ok", "S": "ok"}
    # One log per task (rank) under .submitit/, and every SLURM job completed.
    logs = sorted(p.name for p in (sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2 * 2, logs
    assert all(state == ("COMPLETED", "0:0") for state in _job_states(sweep).values()), _job_states(sweep)


@needs_slurm
def test_srun_two_tasks_gives_the_single_run(root, single, tmp_path):
    out = tmp_path / "out"
    done = run(page_command(SRUN, OUT=out), root)
    assert done.returncode == 0, describe(done)
    assert_written_by_rank_zero_only(out, world_size=2)
    assert_same_figures(read(out / "results.json"), single["XS"], tolerance_mm=TOLERANCE_MM)


@needs_slurm
def test_a_one_task_allocation_refuses_two_devices_in_one_line(root, tmp_path):
    out = tmp_path / "out"
    # salloc runs the command in a shell of a one-task allocation, as a batch script would (no srun step).
    done = run(["salloc", "-n1", "--partition=debug", "python", "run_eval.py", *FAILING, "trainer.devices=2", f"hydra.run.dir={out}"], root)
    assert done.returncode == 2, describe(done)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "trainer.devices=2 x trainer.num_nodes=1 = 2 ranks, but this is one process inside SLURM job" in errors[0]
    assert "(1 task, no srun step)" in errors[0] and "--ntasks-per-node=2" in errors[0], errors
    assert not (out / "results.json").exists()


@needs_slurm
def test_sigusr2_before_the_time_limit_ends_the_job_with_one_line_and_failure_json(root, tmp_path):
    out = tmp_path / "out"
    name = f"usr2-{os.getpid()}"
    # A crash instead of the one line (seen once in many runs, 2026-12-07: "task 0: Segmentation fault", never
    # reproduced since) then shows where each thread was.
    process = subprocess.Popen(["srun", "-n1", "--partition=debug", f"--job-name={name}", "python", "run_eval.py", *FAILING,
                                "trainer=cpu", f"hydra.run.dir={out}"],
                               cwd=PROJECT_ROOT, env=cli_env(root, {"PYTHONFAULTHANDLER": "1"}), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: (out / ".convnextpose_eval.lock").exists(), process, "the run's lock", timeout=120)
        subprocess.run(["scancel", "--signal=USR2", f"--name={name}"], check=True, timeout=30)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGUSR2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {out}: interrupted by SIGUSR2 (SLURM's notice that the time limit is near); no results written"], err[-3000:]
    assert read(out / "failure.json")["status"] == "failed" and not (out / "results.json").exists()


@needs_slurm
def test_a_job_slurm_cannot_start_is_reported_with_its_pending_reason(root, tmp_path):
    sweep = tmp_path / "sweep"
    command = [*page_command(SLURM_SWEEP, SWEEP=sweep), "variant=XS", "hydra.launcher.timeout_min=120"]
    done = run(command, root, timeout=120)
    assert done.returncode == 1, describe(done)
    # SLURM names either reason for a time limit above the partition's (it depends on the other options).
    reason = re.search(r"pending with reason (PartitionTimeLimit|PartitionConfig) \(.*hydra\.launcher\.timeout_min", done.stderr)
    assert reason, describe(done)
    entry = _entries(sweep)["XS"]
    assert entry["status"] == "failed" and reason.group(1) in entry["error"]
    assert all(state[0] == "CANCELLED" for state in _job_states(sweep).values()), _job_states(sweep)


@needs_slurm
def test_a_failed_slurm_job_shows_failed_and_resume_reruns_only_it(root, single, tmp_path):
    """docs/clusters.md's one-task-per-job sweep, with the second job's checkpoint broken: SLURM says FAILED,
    the report says why, and the first job is the single run. Repaired, ``sweep.resume=true`` keeps the first
    job's results untouched, reruns the second, which is the single run too, and the report covers both."""
    sweep, checkpoints = tmp_path / "sweep", tmp_path / "checkpoints"
    shutil.copytree(root / "outputs" / "sample" / "checkpoints", checkpoints)
    good = (checkpoints / "ConvNeXtPose_S.tar").read_bytes()
    (checkpoints / "ConvNeXtPose_S.tar").write_bytes(good[:5000])
    resume = page_command(SLURM_RESUME, SWEEP=sweep)
    assert resume[:-1] == page_command(SLURM_SWEEP, SWEEP=sweep) and resume[-1] == "sweep.resume=true"
    first = run([*resume[:-1], f"data.checkpoint_dir={checkpoints}"], root, timeout=400)
    assert first.returncode == 1, describe(first)
    entries = _entries(sweep)
    assert entries["XS"]["status"] == "ok" and entries["S"]["status"] == "failed" and "truncated" in entries["S"]["error"]
    states = _job_states(sweep)
    assert sorted(state for state, _ in states.values()) == ["COMPLETED", "FAILED"], states
    assert_written_by_rank_zero_only(sweep / "0_XS", world_size=1)
    assert_same_figures(read(sweep / "0_XS" / "results.json"), single["XS"], tolerance_mm=TOLERANCE_MM)
    kept = (sweep / "0_XS" / "results.json").stat().st_mtime_ns

    (checkpoints / "ConvNeXtPose_S.tar").write_bytes(good)
    second = run([*resume, f"data.checkpoint_dir={checkpoints}"], root, timeout=400)
    assert second.returncode == 0, describe(second)
    assert (sweep / "0_XS" / "results.json").stat().st_mtime_ns == kept
    entries = _entries(sweep)
    assert {v: e["status"] for v, e in entries.items()} == {"XS": "ok", "S": "ok"}
    assert_written_by_rank_zero_only(sweep / "1_S", world_size=1)
    assert_same_figures(read(sweep / "1_S" / "results.json"), single["S"], tolerance_mm=TOLERANCE_MM)
    assert not (sweep / "1_S" / "failure.json").exists()
    # One log per task under .submitit/: both sweeps submit both jobs; the kept one finds its files proven and
    # stops. Every job but the first sweep's broken one completed.
    assert len(list((sweep / ".submitit").rglob("*_log.out"))) == 4
    states = sorted(_job_states(sweep).values())
    assert states == [("COMPLETED", "0:0")] * 3 + [("FAILED", states[-1][1])] and states[-1][1] != "0:0", states


@needs_slurm
def test_local_cluster_script_up_is_idempotent(root):
    if os.geteuid() != 0 or "slurm-local.sh" not in Path("/etc/slurm/slurm.conf").read_text(errors="replace"):
        pytest.skip("the cluster answering here was not started by scripts/slurm-local.sh as root")
    again = subprocess.run(page_command("scripts/slurm-local.sh up"), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "up: partition debug" in again.stderr, again.stderr
    status = subprocess.run(page_command("scripts/slurm-local.sh status"), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "slurmctld: running" in status.stdout and "slurmd: running" in status.stdout
    conf = Path("/etc/slurm/slurm.conf").read_text()
    assert "NodeAddr=127.0.0.1" in conf and "ProctrackType=proctrack/linuxproc" in conf and "TaskPlugin=task/none" in conf
    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
    daemons = [line for line in listening.splitlines() if "slurmctld" in line or '"slurmd"' in line]
    assert all(" 127.0.0.1:" in line for line in daemons), daemons


def test_hydra_inspection_flags_print_the_config(root):
    """``--cfg job|hydra|all``, ``--resolve`` and ``--info`` (docs/clusters.md's command, then its variants) run nothing."""
    base = page_command("python run_eval.py experiment=demo --cfg job")
    job = run(base, root, timeout=120)
    assert job.returncode == 0 and job.stdout.startswith("paths:") and "\nvariant:" in job.stdout and "\nhydra:" not in job.stdout, describe(job)
    hydra = run([*base[:-1], "hydra"], root, timeout=120)
    assert hydra.returncode == 0 and hydra.stdout.startswith("hydra:") and "\nvariant:" not in hydra.stdout, describe(hydra)
    both = run([*base[:-1], "all", "--resolve"], root, timeout=120)
    assert both.returncode == 0 and "hydra:" in both.stdout and "\nvariant:" in both.stdout and "${" not in both.stdout, describe(both)
    info = run([*base[:2], "--info"], root, timeout=120)
    assert info.returncode == 0 and "Installed Hydra Plugins" in info.stdout and "SlurmLauncher" in info.stdout, describe(info)
    assert not (root / "outputs" / "runs").exists()
