"""p2p: pix2pix (Isola et al., CVPR 2017) as a PyTorch Lightning + Hydra library."""

from __future__ import annotations

from p2p import models as models
from p2p.hub import load_generator
from p2p.registry import create_model, list_models, register_model
from p2p.translate import Translator

__version__ = "0.1.0"
__all__ = ["Translator", "__version__", "create_model", "list_models", "load_generator", "register_model"]
