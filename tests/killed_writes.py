"""A child process that writes a run's result files with the tool's own writer, to be killed while it does.

The child imports only the writing code (a fraction of a second to start), so a test can kill it at many
random moments, or let the kernel kill it when it reaches a file size limit, and then check what the
next run of the same command finds in the folder.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from cli import cli_env

from convnextpose_eval.results.files import (
    PREDICTIONS_FILE,
    REPORT_HTML,
    RESULTS_FILE,
    WORST_CASES_PNG,
)

# The order a run writes its files in (results.json last), with the clean run's bytes.
RUN_FILES = (PREDICTIONS_FILE, WORST_CASES_PNG, REPORT_HTML, RESULTS_FILE)

_CHILD = """
import json, signal, sys
from convnextpose_eval.common.atomic import write_file_set
from convnextpose_eval.results.files import PENDING_FILE
from convnextpose_eval.results.records import TOOL_NAME

signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # the shell's default: the kernel kills the process
folder, sources = sys.argv[1], json.loads(sys.argv[2])
files = [(name, open(path, "rb").read()) for name, path in sources]
print("ready", flush=True)
sys.stdin.readline()
write_file_set(folder, files, PENDING_FILE, TOOL_NAME)
"""


def clean_files(clean_folder: Path) -> list[tuple[str, Path]]:
    """(name, path of the clean run's copy) for each file a run writes, in writing order."""
    return [(name, clean_folder / name) for name in RUN_FILES]


def start_writer(folder: Path, sources: list[tuple[str, Path]], file_size_limit: int | None = None) -> subprocess.Popen[str]:
    """The child, started and ready: it writes when a line arrives on its stdin."""

    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(folder), json.dumps([(name, str(path)) for name, path in sources])],
        env=cli_env(None), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=limit,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def go(process: subprocess.Popen[str]) -> float:
    """Let the child write; the time it was told to."""
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()
    return time.monotonic()


def write_killed_by_file_size_limit(folder: Path, sources: list[tuple[str, Path]], limit_bytes: int = 1000 * 1024) -> int:
    """Write with `ulimit -f` in force: the kernel kills the writer (SIGXFSZ) at the first file too large."""
    process = start_writer(folder, sources, limit_bytes)
    go(process)
    return process.wait(timeout=60)
