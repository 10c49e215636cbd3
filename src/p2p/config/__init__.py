"""p2p's Hydra configs: where they live (`config_dir`), their structured schemas (`p2p.config.schema`),
the checks a schema cannot express (`check_config`), and the objects they build (`p2p.config.build`).
"""

from __future__ import annotations

from omegaconf import OmegaConf

from p2p.config.check import check_config, explain
from p2p.config.paths import config_dir
from p2p.config.schema import register_schemas

__all__ = ["check_config", "config_dir", "explain", "register_resolvers", "register_schemas"]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("add"):
        # trainer.max_epochs = n_epochs + n_epochs_decay, the reference schedule's length
        OmegaConf.register_new_resolver("add", lambda *xs: sum(xs))


register_resolvers()
register_schemas()
