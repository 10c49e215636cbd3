"""Where the Hydra configs live: the repository's top-level ``conf/``, which a wheel carries as ``p2p/conf``
(see pyproject.toml's force-include); an editable install reads the repository's folder directly."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    package = Path(__file__).resolve().parents[1]  # src/p2p (or site-packages/p2p)
    for candidate in (package / "conf", package.parents[1] / "conf"):  # wheel, then source checkout
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"p2p's Hydra configs were not found in {package} nor in the source tree")
