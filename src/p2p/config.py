"""Where the Hydra configs live, and the resolvers they use.

The configs are the repository's top-level ``conf/``. A wheel carries them as ``p2p/conf`` (see
pyproject.toml's force-include); an editable install reads the repository's folder directly.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def config_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):  # wheel, then source checkout
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"p2p's Hydra configs were not found next to {here} nor in the source tree")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("add"):
        # trainer.max_epochs = n_epochs + n_epochs_decay, the reference schedule's length
        OmegaConf.register_new_resolver("add", lambda *xs: sum(xs))


register_resolvers()
