"""`run_lock(folder)`: one training run per run folder at a time.

Two runs writing into one folder both finish and leave ``last.ckpt`` and ``last-v1.ckpt``; a later
``ckpt_path=last`` may then continue the other run. So a run holds an exclusive ``flock`` on
``<folder>/.p2p-run.lock`` for its whole life, and the file says who holds it (PID, host, start time).

The kernel drops a ``flock`` when its holder's process ends in any way (exit, exception, signal, SIGKILL, a
crash), so there is no stale lock to break: a file left with a dead run's PID in it is simply locked again,
with a warning that that run did not end cleanly. ``filelock`` (installed with torch) would give the same
``flock``, but it owns its lock file's contents and is not a p2p dependency; the stdlib is a few lines.
On NFS, Linux maps ``flock`` onto NFS byte-range locks, which work across machines.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from p2p.errors import UsageError

log = logging.getLogger(__name__)

LOCK_NAME = ".p2p-run.lock"


class RunFolderInUse(UsageError):
    """Another live process holds the run folder's lock."""


@contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder``'s run lock for the block; `RunFolderInUse` (exit 2) if another process holds it."""
    path = Path(folder) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's line must survive our open
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderInUse(
                f"run folder {folder} is in use by another run ({_holder(fd)}); give this run its own folder "
                "(hydra.run.dir=...) or wait for that run to end"
            ) from None
        if previous := _holder(fd, default=""):
            log.warning("%s: the run before (%s) did not end cleanly; taking its lock over", path, previous)
        _write(
            fd, f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
        try:
            yield path
        finally:
            _write(
                fd, ""
            )  # empty = released cleanly; the file stays (unlinking it would race a new run's open)
    finally:
        os.close(fd)  # also releases the flock


def _holder(fd: int, default: str = "holder unknown") -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode(errors="replace").strip() or default


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (text + "\n" if text else "").encode(), 0)
