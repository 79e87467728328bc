"""ONNX Runtime sessions as this project runs them: the asked provider or one line, exact float32 on CUDA too,
threads that sleep when idle."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch

from ..common.errors import BackendError
from .onnx_checks import first_line

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# Exact float32 first: ONNX Runtime's CUDA provider runs float32 convolutions and products in TF32 unless told not to.
PROVIDER_OPTIONS = {"CUDAExecutionProvider": {"use_tf32": "0"}}


def providers_for(ort: Any, provider: str) -> list[str]:
    """ONNX Runtime's provider list for ``cpu`` or ``cuda`` (with CPU behind it), or one line when it is missing."""
    if provider not in PROVIDERS:
        raise BackendError(f"onnx provider '{provider}' is not one of {', '.join(PROVIDERS)}")
    wanted = PROVIDERS[provider]
    available = ort.get_available_providers()
    if wanted not in available:
        raise BackendError(
            f"onnxruntime {ort.__version__} has no {wanted} here (it has {', '.join(available)}); "
            "install onnxruntime-gpu with a matching CUDA, or use the cpu provider"
        )
    return [wanted] if provider == "cpu" else [wanted, PROVIDERS["cpu"]]


def make_session(ort: Any, data: bytes, providers: list[str]) -> Any:
    """An InferenceSession over a self-contained model's bytes, whose idle threads sleep instead of spinning.

    Spinning buys microseconds per call, which batches of images taking tens of milliseconds do not
    need, and it takes CPU from the data-loading workers that run beside the network; on a loaded
    two-core machine the batch-16 XS forward ran 15-30 % faster without it, and on a quiet one spinning
    (with or without ``session.force_spinning_stop``) gained nothing measurable.
    """
    options = ort.SessionOptions()
    # As many threads as PyTorch uses here (OMP_NUM_THREADS, or Lightning's share per DDP rank).
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(data, options, providers=[(name, PROVIDER_OPTIONS.get(name, {})) for name in providers])


# How often the waiting thread wakes so that Python runs a signal handler: a Ctrl-C or SIGTERM is
# answered within this, plus the time ONNX Runtime takes to finish the node it is in.
_WAKE_S = 0.05
# How long a stopped run may take to notice its terminate flag before the process goes on without it.
_STOP_WAIT_S = 5.0


def run_session(session: Any, ort: Any, outputs: list[str], feeds: dict[str, Any], path: Path | str) -> list[Any]:
    """``session.run`` that a signal can stop, and whose failure is one line naming ``path``.

    Python runs signal handlers only in the main thread and only between bytecodes, never while that
    thread is inside ONNX Runtime's native ``run``: a graph that runs for minutes would ignore Ctrl-C and
    SIGTERM. So the run happens in a worker thread while this thread waits in short joins; when a handler
    raises (KeyboardInterrupt, or the evaluation's interrupt), ONNX Runtime's ``RunOptions.terminate``
    stops the run between nodes, and the exception goes on up. A node that fails while running
    (ONNX Runtime's Fail, RuntimeException, ...) is a :class:`BackendError` naming the file.
    """
    options = ort.RunOptions()
    done: dict[str, Any] = {}
    finished = threading.Event()

    def work() -> None:
        try:
            done["result"] = session.run(outputs, feeds, options)
        except BaseException as exc:  # noqa: BLE001 - carried to the waiting thread, which decides
            done["error"] = exc
        finally:
            finished.set()

    # Waiting on an Event, not Thread.join: a join interrupted by a signal can mark a running thread as ended.
    threading.Thread(target=work, name="onnxruntime-run", daemon=True).start()
    try:
        while not finished.wait(_WAKE_S):
            pass
    except BaseException:
        options.terminate = True
        finished.wait(_STOP_WAIT_S)
        raise
    if "error" in done:
        raise BackendError(f"{path}: onnxruntime failed while running it ({first_line(done['error'])})") from None
    return done["result"]
