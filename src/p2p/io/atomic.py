"""All-or-nothing writes: a crash, a full disk or a second SIGTERM while writing never leaves a torn file.

The data goes into a temporary file next to the target (same filesystem, so the rename is atomic), is
fsynced, then ``os.replace``d over the target; the folder is fsynced so the rename itself survives a power
cut. Readers see the old file or the new one, never half of one; concurrent writers (a sweep's parallel
jobs filling one cache) each write their own temporary file and the last rename wins.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

from p2p.errors import DiskFullError

FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def atomic_write(path: str | os.PathLike[str], binary: bool = True) -> Iterator[IO[Any]]:
    """``with atomic_write(path) as f: f.write(...)``: ``path`` appears complete when the block ends, or not
    at all (and the previous file, if any, stays) when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name in the target's folder, created with the usual permissions (mkstemp's are 0600)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") if binary else open(tmp, "x", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if _disk_full(e):  # torch.save's own error ("unexpected pos ...") hides the OSError it came from
            free = shutil.disk_usage(path.parent).free
            raise DiskFullError(
                f"no space left on device writing {path} ({free / 2**20:.0f} MiB free there)"
                + (
                    "; the file there is the previous one, intact"
                    if path.exists()
                    else "; nothing was written"
                )
            ) from e
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename durable
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` or an exception it was raised from (``__cause__`` / ``__context__``) is ENOSPC/EDQUOT."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in FULL:
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)``, all or nothing."""
    with atomic_write(path) as f:
        torch.save(obj, f)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path, binary=False) as f:
        f.write(text)
