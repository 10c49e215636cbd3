"""Registry and download cache for the public pix2pix datasets.

`ensure_dataset(name)` returns CACHE/name, downloading and extracting `{BASE_URL}/{name}.tar.gz` first if
needed. CACHE is `cache_dir`, else $P2P_CACHE, else ~/.cache/p2p; BASE_URL is $P2P_DATASETS_URL, else the
official Berkeley server. Downloads go through `p2p.io.download` (a temporary file renamed into place only
when complete, a progress bar); extraction goes to a temporary folder that is renamed to CACHE/name, so an interrupted run never leaves a
half dataset behind. The archive is deleted after extraction (edges2handbags is 8 GB); its sha256 is kept.

Integrity: when the registry knows an archive's sha256 it is checked; otherwise the hash of the first
download is stored as CACHE/{name}.tar.gz.sha256 and later downloads must match it (trust on first use).
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from p2p.errors import ConfigError, DataError, DownloadError, did_you_mean
from p2p.io import cache_root, download

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


def dataset_url(name: str) -> str:
    return f"{os.environ.get('P2P_DATASETS_URL', DEFAULT_BASE_URL).rstrip('/')}/{name}.tar.gz"


def get_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ConfigError(
            f"name: unknown dataset name {name!r}; {did_you_mean(name, DATASETS)}known: {', '.join(DATASETS)} "
            "(or 'folder' with a root)"
        )
    return DATASETS[name]


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
        raise DataError(f"dataset {name!r} is not in the cache ({dest}). {CITYSCAPES_HELP}")
    cache.mkdir(parents=True, exist_ok=True)
    url, archive = dataset_url(name), cache / f"{name}.tar.gz"
    offline = (f"if this machine is offline, download it elsewhere (`wget {url} && tar -xzf {name}.tar.gz`), "
               f"copy the extracted folder here and pass data.root=/path/to/{name}")  # fmt: skip
    try:
        download(url, archive, info.sha256, offline_hint=offline)
    except DownloadError as e:
        raise DownloadError(f"dataset {name!r}: {e}") from None
    log.info("extracting %s to %s", archive, dest)
    try:
        _extract(archive, dest)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"dataset {name!r}: could not extract {archive}: {e}; delete it and try again") from e
    archive.unlink()
    return dest
