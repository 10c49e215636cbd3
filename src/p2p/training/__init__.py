"""Training pix2pix: the LightningModule (the paper's algorithm, section 3.3), its objective, the callbacks
that make a run resumable and stoppable, and the speed settings that leave results unchanged.

Imports the inference, models, io layers below it (and Lightning).
"""

from __future__ import annotations

from p2p.training.best import GeneratorCheckpoint, generator_only, is_generator_only
from p2p.training.callbacks import PreemptionCheckpoint, RNGState
from p2p.training.checkpoint_io import AtomicCheckpointIO
from p2p.training.guard import CHECK_FINITE_MODES, NONFINITE_ACTIONS, NonFiniteGuard
from p2p.training.module import Pix2Pix, build_networks, log_image
from p2p.training.objective import GAN_MODES, Objective, discriminator_loss, gan_loss
from p2p.training.optim import Optim
from p2p.training.perf import resolve_precision

__all__ = [
    "CHECK_FINITE_MODES",
    "GAN_MODES",
    "NONFINITE_ACTIONS",
    "AtomicCheckpointIO",
    "GeneratorCheckpoint",
    "NonFiniteGuard",
    "Objective",
    "Optim",
    "Pix2Pix",
    "PreemptionCheckpoint",
    "RNGState",
    "build_networks",
    "discriminator_loss",
    "gan_loss",
    "generator_only",
    "is_generator_only",
    "log_image",
    "resolve_precision",
]
