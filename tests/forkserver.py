"""A pre-imported interpreter that starts the tests' command-line runs by forking itself.

Every ``python run_eval.py ...`` a test starts pays 6 to 8 s of CPU to import torch, Lightning (and through it
torchmetrics, scipy.signal and, where installed, transformers), Hydra and ONNX Runtime before it does any
work; on a 2-core machine that was a third of the full suite's time (docs/testing.md). This server imports
those third-party packages once, and then answers each request with a forked process that runs the
command's real entry point (``run_eval.py`` as ``__main__``, or ``-m MODULE``) with the request's
arguments, environment, working folder and output files. The project's own code is not pre-imported: each
run loads the checkout's code itself, as a fresh interpreter would.

What differs from a fresh interpreter, and so stays with ``subprocess`` (``tests/cli.py``, ``fresh=True``):
warnings and output printed while the third-party packages import (they went to the server's stderr),
environment variables those packages read at import, and the interpreter's own start-up. The one such
variable tests set, ``OMP_NUM_THREADS`` (PyTorch's thread count, which ONNX Runtime's follows here), is
applied to the run as PyTorch would have read it. The server never computes, so its forked runs may use
any number of threads (a process forked after OpenMP threads have run can hang in its next parallel loop).

Protocol, one connection per run: the client sends one JSON line (``argv``, ``cwd``, ``env``, ``stdout``,
``stderr``: file paths); the server answers the run's pid on one line, then its exit status on another, in
``subprocess``'s convention (``-N`` when signal N ended it).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import runpy
import signal
import socket
import sys
import threading
import warnings

PRELOAD = ("numpy", "scipy.signal", "cv2", "PIL.Image", "matplotlib.pyplot", "torch", "pytorch_lightning", "torchmetrics", "hydra",
           "omegaconf", "onnx", "onnxruntime", "yaml", "jsonschema")

_PARENT_CHECK_S = 5.0


def preload() -> None:
    """Import the heavy third-party packages, silently: their import-time output belongs to no run."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except ImportError:
                pass


def serve(path: str) -> None:
    """Accept runs on the Unix socket ``path`` until killed; each connection is served by a forked child."""
    preload()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the per-connection children reap themselves
    # Wake now and then to leave with the test session, should it die without stopping this server.
    server.settimeout(_PARENT_CHECK_S)
    parent = os.getppid()
    print("ready", flush=True)
    while True:
        try:
            connection, _ = server.accept()
        except TimeoutError:
            if os.getppid() != parent:
                os.unlink(path)
                return
            continue
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            answer(connection)
        connection.close()


def answer(connection: socket.socket) -> None:
    """Fork the run, report its pid, wait for it and report its exit status; never returns."""
    request = json.loads(connection.makefile("r").readline())
    pid = os.fork()
    if pid == 0:
        connection.close()
        run(request)
    try:
        connection.sendall(f"{pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        connection.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
    finally:
        os._exit(0)


def run(request: dict) -> None:
    """Become the requested command: its folder, environment, streams and ``sys.argv``, then its entry point.

    Its ending is a fresh interpreter's: ``sys.exit``'s status, a traceback and status 1 for an uncaught
    exception, death by SIGINT for an uncaught Ctrl-C (:func:`leave`).
    """
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, target in ((1, request["stdout"]), (2, request["stderr"])):
        opened = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threads = request["env"].get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0 and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    argv = request["argv"]
    extra_path = [entry for entry in request["env"].get("PYTHONPATH", "").split(os.pathsep) if entry]
    interrupted = False
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[:1] = [request["cwd"], *extra_path]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path[:1] = [os.path.dirname(os.path.abspath(argv[0])), *extra_path]
            runpy.run_path(argv[0], run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = exit_code(stop.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        code, interrupted = 1, True
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    leave(code, interrupted)


def exit_code(code: object) -> int:
    """``sys.exit(code)``'s status, as the interpreter computes it (a message is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def leave(code: int, interrupted: bool) -> None:
    """Exit as the interpreter does (wait for threads, atexit, flush), but skip the native libraries' static
    destructors: some wait on threads of the server that a forked child does not have, and hang. An
    uncaught Ctrl-C ends the process by SIGINT, as it ends a fresh interpreter."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF)


if __name__ == "__main__":
    serve(sys.argv[1])
