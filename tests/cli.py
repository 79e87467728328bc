"""The one way tests run the command-line tools: ``run_eval.py`` and ``python -m convnextpose_eval.<tool>``.

Every run is a process of its own running this checkout's code (``src/`` first on PYTHONPATH), started in
the checkout, with its outputs, caches and sample under a project root of the test's choosing
(``CONVNEXTPOSE_EVAL_ROOT``), so no test writes into the checkout or reads another test's files. Runs, to
completion or started and signalled (``start_cli``), are forked from a server that has the third-party
packages imported (``tests/forkserver.py``); ``fresh=True`` runs are new interpreters.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUN_EVAL = PROJECT_ROOT / "run_eval.py"
DEFAULT_TIMEOUT_S = 600.0
# A progress bar is redrawn on stderr many times a second: noise around the one error line tests look for.
RUN_EVAL_QUIET = ("trainer.progress_bar=false",)


@dataclass(frozen=True)
class CliRun:
    """A finished command: its exit status and everything it printed."""

    command: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        """The ``error: ...`` lines on stderr (the contract: exactly one on any failure)."""
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    @property
    def last_line(self) -> str:
        """The last non-blank line on stderr: where the one-line reason must be."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def describe(self) -> str:
        """The command, its status and the ends of both streams, for assertion messages."""
        return (
            f"{' '.join(self.command)}\nexit {self.returncode} after {self.seconds:.1f} s\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-5000:]}"
        )


def cli_env(root: Path | None, extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment (or ``base``, one taken earlier) with the checkout's ``src/`` first on
    PYTHONPATH and ``root`` as project root.

    HYDRA_FULL_ERROR is dropped: it turns the one-line errors under test into tracebacks.
    """
    source = os.environ if base is None else base
    env = {key: value for key, value in source.items() if key != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT / "src"), source.get("PYTHONPATH")]))
    if root is not None:
        env["CONVNEXTPOSE_EVAL_ROOT"] = str(root)
    env.update(extra or {})
    return env


# Exports of the sample's checkpoints made by any run of this session land here and are reused by every
# later run, whatever its project root or paths.cache_dir: the cache key (checkpoint sha256, architecture,
# opset, versions) is the same for all of them, and the cache's file lock makes parallel runs safe.
# Under pytest-xdist every worker shares the one cache of the session that started them (conftest.py
# names it in SESSION_ENV before the workers start); that session alone removes it.
SESSION_ENV = "CONVNEXTPOSE_EVAL_TEST_SESSION"
SESSION_OWNER = os.environ.get(SESSION_ENV, str(os.getpid()))
SHARED_EXPORTS = Path(tempfile.gettempdir()) / f"convnextpose-eval-test-exports-{SESSION_OWNER}"


def share_exports(root: Path | None, args: tuple[str, ...]) -> None:
    """Point the run's ONNX export cache (``<cache_dir>/onnx``) at :data:`SHARED_EXPORTS`, unless it exists or
    the run is given its ONNX file (``onnx_path=``: it exports nothing, and tests may check it created nothing)."""
    if any(arg.startswith("onnx_path=") for arg in args):
        return
    given = [arg.split("=", 1)[1] for arg in args if arg.startswith("paths.cache_dir=")]
    if given:
        cache = Path(given[-1])
    elif root is not None:
        cache = Path(root) / "outputs" / "cache"
    else:
        return
    link = cache / "onnx"
    if link.exists() or link.is_symlink():
        return
    SHARED_EXPORTS.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(SHARED_EXPORTS, target_is_directory=True)
    except FileExistsError:
        pass  # a run started beside this one (another thread of the test) linked it first


def cli_command(*args: str, module: str | None = None, quiet: bool = True) -> list[str]:
    """``python run_eval.py ARGS trainer.progress_bar=false`` (without the last word if not ``quiet``), or
    ``python -m MODULE ARGS``."""
    if module is not None:
        return [sys.executable, "-m", module, *args]
    return [sys.executable, str(RUN_EVAL), *args, *(RUN_EVAL_QUIET if quiet else ())]


def run_cli(
    root: Path | None,
    *args: str,
    module: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path = PROJECT_ROOT,
    timeout: float = DEFAULT_TIMEOUT_S,
    shared_exports: bool = True,
    fresh: bool = False,
    as_written: bool = False,
    base_env: Mapping[str, str] | None = None,
) -> CliRun:
    """Run a tool to completion and capture its text output; ``env`` adds to (or overrides) :func:`cli_env`.

    ``shared_exports``: reuse the session's ONNX exports (:func:`share_exports`); False for tests of the cache itself.
    ``fresh``: start a new interpreter, for tests of what it prints while it starts; otherwise the run is
    forked from the session's pre-imported server (``tests/forkserver.py``), the same entry point and code
    without paying the third-party imports again (on Linux; elsewhere every run is fresh).
    ``as_written``: a page's command exactly, without ``trainer.progress_bar=false`` added.
    ``base_env``: the environment to start from instead of this process's (one taken before other threads change it).
    """
    if shared_exports:
        share_exports(root, args)
    command = cli_command(*args, module=module, quiet=not as_written)
    environment = cli_env(root, env, base_env)
    started = time.monotonic()
    if fresh or not sys.platform.startswith("linux"):
        done = subprocess.run(command, check=False, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)
        return CliRun(tuple(command), done.returncode, done.stdout, done.stderr, time.monotonic() - started)
    returncode, out, err = _forked(command, cwd=cwd, env=environment, timeout=timeout)
    return CliRun(tuple(command), returncode, out, err, time.monotonic() - started)


_FORKSERVER = Path(__file__).with_name("forkserver.py")
_server: subprocess.Popen[str] | None = None
_server_lock = threading.Lock()  # tests start runs from several threads


def _forkserver_socket() -> Path:
    """The session's fork server (``tests/forkserver.py``), started on first use and stopped at exit."""
    global _server
    path = Path(tempfile.gettempdir()) / f"convnextpose-eval-forkserver-{os.getpid()}.sock"
    with _server_lock:
        if _server is not None and _server.poll() is None:
            return path
        path.unlink(missing_ok=True)
        log = path.with_suffix(".log")
        with log.open("w") as errors:  # the server's own errors, for a failed start
            _server = subprocess.Popen([sys.executable, str(_FORKSERVER), str(path)], cwd=PROJECT_ROOT, env=cli_env(None),
                                       stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL, text=True)
        atexit.register(_stop_server, _server, path)
        if _server.stdout is None or _server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the fork server did not start; see {log}")
        return path


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _stop_server(server: subprocess.Popen[str], path: Path) -> None:
    server.kill()
    server.wait()
    path.unlink(missing_ok=True)
    path.with_suffix(".log").unlink(missing_ok=True)


def _request_run(connection: socket.socket, command: list[str], cwd: Path, env: Mapping[str, str], out: str, err: str) -> tuple[IO[str], int]:
    """Ask the fork server for a run of ``command`` (``python ARGS``); its replies and the run's pid."""
    connection.connect(str(_forkserver_socket()))
    request = {"argv": command[1:], "cwd": str(cwd), "env": dict(env), "stdout": out, "stderr": err}
    connection.sendall((json.dumps(request) + "\n").encode())
    replies = connection.makefile("r")
    return replies, int(replies.readline())


def _forked(command: list[str], cwd: Path, env: Mapping[str, str], timeout: float) -> tuple[int, str, str]:
    """Run ``command`` (``python ARGS``) as a child of the fork server; its exit status and both streams."""
    with tempfile.TemporaryDirectory(prefix="convnextpose-eval-run-") as scratch, socket.socket(socket.AF_UNIX) as connection:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        replies, pid = _request_run(connection, command, cwd, env, str(out), str(err))
        connection.settimeout(timeout)
        try:
            status = replies.readline()
        except TimeoutError:
            _kill(pid)
            raise subprocess.TimeoutExpired(command, timeout) from None
        except BaseException:  # Ctrl-C or a failing test: the run ends with it, as subprocess.run's child does
            _kill(pid)
            raise
        if not status.strip():
            raise RuntimeError(f"the fork server lost the run of {' '.join(command)}")
        return int(status), out.read_text(), err.read_text()


class ForkedRun:
    """A run started through the fork server with the part of ``subprocess.Popen``'s interface the tests use
    (``args``, ``pid``, ``returncode``, ``poll``, ``wait``, ``send_signal``, ``kill``, ``communicate``).
    Signals go to the run's own pid, as they would to a fresh interpreter's."""

    def __init__(self, command: list[str], cwd: Path, env: Mapping[str, str], capture: bool) -> None:
        self.args = command
        self.returncode: int | None = None
        self._scratch = Path(tempfile.mkdtemp(prefix="convnextpose-eval-run-"))
        self._capture = capture
        target = (lambda name: str(self._scratch / name)) if capture else (lambda name: os.devnull)
        self._connection = socket.socket(socket.AF_UNIX)
        replies, self.pid = _request_run(self._connection, command, cwd, env, target("stdout"), target("stderr"))
        self._ended = threading.Event()
        threading.Thread(target=self._await_status, args=(replies,), daemon=True).start()

    def _await_status(self, replies: IO[str]) -> None:
        status = replies.readline()
        # A status line that never came: the server lost the run; report it as killed.
        self.returncode = int(status) if status.strip() else -signal.SIGKILL
        self._connection.close()
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        """Wait for the end; what the run printed (None for streams not captured). Its files go with it."""
        self.wait(timeout)
        if not self._capture:
            streams: tuple[str | None, str | None] = (None, None)
        else:
            streams = ((self._scratch / "stdout").read_text(errors="replace"), (self._scratch / "stderr").read_text(errors="replace"))
        shutil.rmtree(self._scratch, ignore_errors=True)
        return streams


# What start_cli returns: either kind answers what the helpers below ask of it.
Started = ForkedRun | subprocess.Popen[str]


def start_cli(
    root: Path | None,
    *args: str,
    module: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path = PROJECT_ROOT,
    capture: bool = True,
    shared_exports: bool = True,
    as_written: bool = False,
) -> Started:
    """Start a tool and return at once, for tests that signal it or run others beside it: forked from the
    session's server on Linux (:class:`ForkedRun`), a fresh interpreter elsewhere. ``capture=False`` sends
    both streams to /dev/null; ``as_written``: the arguments alone, as :func:`run_cli`'s."""
    if shared_exports:
        share_exports(root, args)
    command = cli_command(*args, module=module, quiet=not as_written)
    environment = cli_env(root, env)
    if sys.platform.startswith("linux"):
        return ForkedRun(command, cwd, environment, capture)
    stream = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(command, cwd=cwd, env=environment, stdout=stream, stderr=stream, text=True)


def finish(process: Started, timeout: float = DEFAULT_TIMEOUT_S) -> CliRun:
    """Wait for a started tool and collect what it printed (the time counts from this call)."""
    started = time.monotonic()
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    command = tuple(str(part) for part in process.args)  # type: ignore[union-attr]
    return CliRun(command, process.returncode, out or "", err or "", time.monotonic() - started)


def wait_for(condition: Callable[[], bool], process: Started, what: str, timeout: float = 300.0, poll_s: float = 0.1) -> None:
    """Poll until ``condition()`` holds while ``process`` is still running; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s")
        time.sleep(poll_s)


@contextmanager
def reaped(process: Started) -> Iterator[Started]:
    """Kill a started tool on the way out if it is still running, so a failed test leaves no process behind."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
