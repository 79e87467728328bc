"""What kind of file a path is when it is not a regular one: the checkpoint reader and the run-folder reader
both refuse such paths, naming what they found, in one line."""

from __future__ import annotations

import stat

_SPECIAL_KINDS = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                  (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))  # fmt: skip


def special_kind(mode: int) -> str | None:
    """``folder``, ``FIFO``, ``character device``, ``block device`` or ``socket`` for an ``st_mode``; None otherwise."""
    return next((name for test, name in _SPECIAL_KINDS if test(mode)), None)
