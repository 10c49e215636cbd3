"""The one cache folder: downloads (models, datasets), trained FCN segmenters, FID features."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir`` if given, else ``$P2P_CACHE``, else ``~/.cache/p2p``."""
    return Path(cache_dir or os.environ.get("P2P_CACHE") or Path.home() / ".cache" / "p2p").expanduser()
