"""Registry and download cache for the public pix2pix datasets.

`ensure_dataset(name)` returns CACHE/name, downloading and extracting `{BASE_URL}/{name}.tar.gz` first if
needed. CACHE is `cache_dir`, else $P2P_CACHE, else ~/.cache/p2p; BASE_URL is $P2P_DATASETS_URL, else the
official Berkeley server. Downloads go to a temporary file and are renamed into place only when complete;
extraction goes to a temporary folder that is renamed to CACHE/name, so an interrupted run never leaves a
half dataset behind. The archive is deleted after extraction (edges2handbags is 8 GB); its sha256 is kept.

Integrity: when the registry knows an archive's sha256 it is checked; otherwise the hash of the first
download is stored as CACHE/{name}.tar.gz.sha256 and later downloads must match it (trust on first use).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    direction: str  # the direction of the paper's main experiment on this dataset
    test_split: str  # the archives of most datasets only have train/ and val/
    about: str
    sha256: str | None = None  # None: not known here, pinned on first download
    manual: bool = False  # no public archive: must be prepared by the user


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo(
            "facades", "BtoA", "test", "400 CMP facades, A = photo, B = labels; labels -> photo is BtoA"
        ),
        DatasetInfo(
            "cityscapes", "AtoB", "val", "2975 Cityscapes scenes, A = photo, B = colour labels", manual=True
        ),
        DatasetInfo("maps", "AtoB", "val", "1096 Google Maps tiles, A = aerial photo, B = map"),
        DatasetInfo("edges2shoes", "AtoB", "val", "50k shoes, A = HED edges, B = photo"),
        DatasetInfo("edges2handbags", "AtoB", "val", "137k handbags, A = HED edges, B = photo"),
        DatasetInfo("night2day", "AtoB", "test", "17823 webcam frames, A = night, B = day"),
    ]
}

CITYSCAPES_HELP = (
    "Cityscapes cannot be downloaded automatically: its licence requires registering at "
    "https://www.cityscapes-dataset.com. Download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip, "
    "unzip them, run `p2p-prepare-cityscapes --gtFine DIR --leftImg8bit DIR --output OUT`, "
    "then pass data.root=OUT."
)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or os.environ.get("P2P_CACHE") or Path.home() / ".cache" / "p2p").expanduser()


def dataset_url(name: str) -> str:
    return f"{os.environ.get('P2P_DATASETS_URL', DEFAULT_BASE_URL).rstrip('/')}/{name}.tar.gz"


def get_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset name {name!r}; known: {', '.join(DATASETS)} (or 'folder' with a root)"
        )
    return DATASETS[name]


def sha256sum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Stream `url` into `dest` through a temporary file in the same folder (atomic rename at the end)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            total, done, next_log = int(r.headers.get("Content-Length") or 0), 0, 0.1
            while chunk := r.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                if total and done / total >= next_log:
                    log.info("%s: %d%% of %.1f MB", dest.name, 100 * done // total, total / 1e6)
                    next_log += 0.1
        if total and done != total:
            raise OSError(f"connection closed after {done} of {total} bytes")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _verify(name: str, archive: Path, expected: str | None, pin: Path) -> None:
    actual = sha256sum(archive)
    if expected is None:
        pin.write_text(actual + "\n")
        log.info("%s: sha256 %s pinned in %s", archive.name, actual, pin)
    elif actual != expected:
        archive.unlink()
        raise RuntimeError(
            f"dataset {name!r}: {archive.name} has sha256 {actual} but {expected} was expected "
            f"(from {'the registry' if DATASETS[name].sha256 else pin}); the corrupt or changed download was "
            f"deleted. Try again, or if the server's file legitimately changed, delete {pin}."
        )


def _extract(archive: Path, dest: Path) -> None:
    """Extract into a temporary folder next to `dest`, then rename the dataset folder to `dest`."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                tar.extractall(tmp, filter="data")  # refuses absolute paths, links out of tmp, devices
            else:
                for m in tar.getmembers():  # the same protection, by hand
                    if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in Path(m.name).parts:
                        raise tarfile.TarError(f"refusing unsafe archive member {m.name!r}")
                tar.extractall(tmp)
        entries = [p for p in tmp.iterdir() if not p.name.startswith(".")]
        # The official archives hold a single top-level folder named after the dataset.
        src = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        try:
            os.replace(src, dest)
        except OSError:
            if not dest.is_dir():  # another process won the race: fine; anything else is an error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_dataset(name: str, cache_dir: str | Path | None = None) -> Path:
    """Path of dataset `name` in the cache, downloading and extracting it on first use."""
    info = get_info(name)
    cache = cache_root(cache_dir)
    dest = cache / name
    if dest.is_dir():
        return dest
    if info.manual:
        raise RuntimeError(f"dataset {name!r} is not in the cache ({dest}). {CITYSCAPES_HELP}")
    cache.mkdir(parents=True, exist_ok=True)
    url, archive, pin = dataset_url(name), cache / f"{name}.tar.gz", cache / f"{name}.tar.gz.sha256"
    if not archive.is_file():
        log.info("downloading dataset %r from %s to %s", name, url, archive)
        try:
            download(url, archive)
        except OSError as e:  # URLError, HTTPError, timeouts and refused connections are all OSErrors
            raise RuntimeError(
                f"could not download dataset {name!r} from {url}: {e}. If this machine is offline, download "
                f"it elsewhere (`wget {url} && tar -xzf {name}.tar.gz`), copy the extracted folder here and "
                f"pass data.root=/path/to/{name}."
            ) from e
    expected = info.sha256 or (pin.read_text().strip() if pin.is_file() else None)
    _verify(name, archive, expected, pin)
    log.info("extracting %s to %s", archive, dest)
    try:
        _extract(archive, dest)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise RuntimeError(
            f"dataset {name!r}: could not extract {archive}: {e}; delete it and try again"
        ) from e
    archive.unlink()
    return dest
