"""Running trained generators: the two inference modes, any image size (`Translator`), export, grids.

Imports the weights, models and io layers below it; never Lightning or Hydra.
"""

from __future__ import annotations

from p2p.inference.grid import grid_rows
from p2p.inference.modes import INFERENCE_MODES, inference_mode
from p2p.inference.translator import Translator, generator_channels, size_divisor

__all__ = [
    "INFERENCE_MODES",
    "Translator",
    "generator_channels",
    "grid_rows",
    "inference_mode",
    "size_divisor",
]
