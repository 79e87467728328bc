"""A run's output folder: held by one run at a time, and cleared only of files this tool wrote."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ..common.atomic import announced_files, has_content, temporary_names
from ..common.errors import ConfigError
from ..results.files import (
    FAILURE_FILE,
    PENDING_FILE,
    PREDICTIONS_FILE,
    REPORT_HTML,
    RESULTS_FILE,
    TRACEBACK_FILE,
    WORST_CASES_PNG,
)
from ..results.records import TOOL_NAME

LOCK_FILE = ".convnextpose_eval.lock"


class RunFolder:
    """An exclusive lock on ``folder`` for this process's lifetime (the kernel drops it when the process dies)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._handle: int | None = None

    def acquire(self) -> None:
        """Take the lock or refuse with one line naming the folder and the run that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_FILE
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(handle)
            raise ConfigError(f"{self.folder}: another run is writing here ({holder}); give this run its own hydra.run.dir") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            os.close(self._handle)
            self._handle = None

    def clear_previous_results(self) -> None:
        """Remove results an earlier run of this tool left here, a killed one's included; refuse to touch
        same-named files of anyone else."""
        announced = announced_files(self.folder, PENDING_FILE, TOOL_NAME)
        present = [self.folder / name for name in OUR_FILES]
        present = [path for path in present if path.exists()]
        for path in present:
            if not (_written_by_us(path) or (path.name in announced and has_content(path, announced[path.name]))):
                raise ConfigError(f"{path}: exists and was not written by this tool; choose another hydra.run.dir")
        # What a killed write leaves besides: the temporary files of our own names, and the manifest; and
        # the traceback of the failure whose record goes (it would otherwise stand beside the new results).
        leftovers = [tmp for name in (*OUR_FILES, PENDING_FILE) for tmp in temporary_names(self.folder, name)]
        if self.folder / FAILURE_FILE in present:
            leftovers.append(self.folder / TRACEBACK_FILE)
        for path in [*present, *leftovers, self.folder / PENDING_FILE]:
            path.unlink(missing_ok=True)


# Every file a run writes into its folder under a fixed name (traceback.txt goes with its failure.json).
OUR_FILES = (RESULTS_FILE, PREDICTIONS_FILE, FAILURE_FILE, WORST_CASES_PNG, REPORT_HTML)


def _written_by_us(path: Path) -> bool:
    """Our JSON files carry ``"tool": "convnextpose-eval"`` (predictions.json, the picture and the page: in a sibling
    results or failure file). What a killed run left is recognised instead by the content its manifest announced."""
    if path.suffix == ".json" and path.name != PREDICTIONS_FILE:
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(content, dict) and content.get("tool") == TOOL_NAME
    siblings = [path.with_name(RESULTS_FILE), path.with_name(FAILURE_FILE)]
    return any(sibling.exists() and _written_by_us(sibling) for sibling in siblings)
