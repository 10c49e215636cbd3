"""Downloads into the cache, checked by sha256: torch.hub's downloader (temporary file, progress bar, hash
check, rename) plus trust on first use for files whose hash nobody has published yet.

A file with a known sha256 must match it. Without one, the hash of the first download is pinned in
``<file>.sha256`` beside it, and every later download of the same URL must match that.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch.hub

from p2p.errors import DownloadError

log = logging.getLogger(__name__)


def sha256sum(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str, dest: str | Path, sha256: str | None = None, progress: bool = True, offline_hint: str = ""
) -> Path:
    """``dest``, downloaded from ``url`` unless it is already there, and checked against ``sha256`` (or the
    hash pinned beside it). A failed download (its message ends with ``offline_hint``) or a mismatch (the
    file is deleted) raises `DownloadError`."""
    dest = Path(dest)
    pin = dest.with_name(f"{dest.name}.sha256")
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s -> %s", url, dest)
        try:
            torch.hub.download_url_to_file(url, str(dest), progress=progress)
        except OSError as e:  # URLError, HTTPError, refused connections and timeouts are all OSErrors
            raise DownloadError(
                f"could not download {url}: {e}" + (f"; {offline_hint}" if offline_hint else "")
            ) from None
    expected = sha256 or (pin.read_text().strip() if pin.is_file() else None)
    actual = sha256sum(dest)
    if expected is None:
        pin.write_text(actual + "\n")
        log.info("%s: sha256 %s pinned in %s", dest.name, actual, pin)
    elif actual != expected:
        dest.unlink()
        where = (
            "the caller or the registry"
            if sha256
            else f"pinned in {pin}; delete it if the file legitimately changed"
        )
        raise DownloadError(
            f"{url}: the downloaded file has sha256 {actual} but {expected} was expected ({where}); the file "
            "was deleted"
        )
    return dest
