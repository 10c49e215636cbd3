"""Where weights come from: a local path, an ``http(s)://`` URL, ``hf-hub:owner/name[@revision]``, or a zoo
name (``p2p.list_models(pretrained=True)``). Remote files are downloaded once into ``$P2P_CACHE/models``."""

from __future__ import annotations

import hashlib
import urllib.parse
from pathlib import Path
from typing import Any

import huggingface_hub

from p2p.errors import CheckpointNotFoundError
from p2p.io import cache_root, download
from p2p.models import zoo
from p2p.models.hub import CONFIG_NAME, WEIGHTS_NAME

HF_PREFIX = "hf-hub:"


def model_cache(url: str, cache_dir: str | Path | None = None) -> Path:
    """The cached file of ``url``: one folder per URL, the file keeps its name."""
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    return cache_root(cache_dir) / "models" / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def resolve(
    source: str | Path, cache_dir: str | Path | None = None, sha256: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """A local file or folder for ``source``, and what the zoo says about it (empty for other sources)."""
    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        return path, {}
    if text.startswith(HF_PREFIX):
        repo_id, _, revision = text[len(HF_PREFIX) :].partition("@")
        files = [
            huggingface_hub.hf_hub_download(repo_id, f, revision=revision or None, cache_dir=cache_dir)
            for f in (CONFIG_NAME, WEIGHTS_NAME)
        ]
        return Path(files[0]).parent, {}
    if text.startswith(("http://", "https://")):
        return download(text, model_cache(text, cache_dir), sha256), {}
    entry = zoo.find(text)
    if entry is not None:
        file = download(entry.url, model_cache(entry.url, cache_dir), sha256 or entry.sha256)
        return file, {**entry.metadata(), **entry.arch}
    raise CheckpointNotFoundError(
        f"{text!r} is not a file, a folder, an http(s) URL, an {HF_PREFIX}owner/name id or a pretrained "
        f"model name (p2p.list_models(pretrained=True): {', '.join(zoo.names())})"
    )
