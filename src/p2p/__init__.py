"""p2p: pix2pix (Isola et al., CVPR 2017) as a PyTorch Lightning + Hydra library."""

from __future__ import annotations

from p2p import models as models  # noqa: F401  (registers the zoo)
from p2p.registry import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "register_model", "__version__"]
