"""The objective (paper section 3.1): G* = arg min_G max_D L_cGAN(G, D) + lambda * L_L1(G).

A ``Objective`` says which terms are on, so the paper's loss ablation (Table 1: L1, GAN, cGAN, L1+GAN,
L1+cGAN) is five small configs rather than five code paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, get_args

import torch
import torch.nn.functional as F
from annotated_types import Ge

from p2p.errors import ConfigError, check_fields

GanMode = Literal["vanilla", "lsgan"]
GAN_MODES: tuple[str, ...] = get_args(GanMode)
L1Region = Literal["image", "hole"]


@dataclass
class Objective:
    l1_weight: Annotated[float, Ge(0)] = 100.0  # lambda in the paper (section 4: lambda = 100)
    # 0 turns the adversarial term off (the "L1" row of Table 1): no discriminator is built
    gan_weight: Annotated[float, Ge(0)] = 1.0
    conditional: bool = True  # cGAN: D sees (input, output); False: the unconditional "GAN" variant
    gan_mode: GanMode = "vanilla"  # vanilla: BCE with logits, non-saturating G loss; lsgan: least squares
    # image: L1 over the whole output (the paper); hole: inpainting only, L1 inside the hole alone, like
    # Context Encoders' reconstruction loss (Pathak et al. 2016, eq. 1) -- the GAN term still sees it all
    l1_region: L1Region = "image"

    def __post_init__(self) -> None:
        check_fields(self)
        if self.l1_weight == 0 and self.gan_weight == 0:
            raise ConfigError(
                "l1_weight and gan_weight are both 0: nothing would be trained (paper Table 1: l1, gan, "
                "cgan, l1_gan, l1_cgan)"
            )

    @property
    def uses_gan(self) -> bool:
        return self.gan_weight > 0

    def discriminator_channels(self, in_channels: int, out_channels: int) -> int:
        """What D sees (section 2.1): the cGAN's D the input and output stacked on channels, the GAN's the
        output alone."""
        return in_channels + out_channels if self.conditional else out_channels


def l1_loss(fake: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error; with ``region`` (boolean [B, 1, H, W]) the mean over the pixels inside it only."""
    if region is None:
        return F.l1_loss(fake, target)
    weight = region.to(fake.dtype).expand_as(fake)
    return ((fake - target).abs() * weight).sum() / weight.sum().clamp_min(1)


def gan_loss(logits: torch.Tensor, real: bool, mode: str = "vanilla") -> torch.Tensor:
    """Loss for D's patch logits against an all-real or all-fake target.

    For G, calling this with ``real=True`` on D(x, G(x)) is the non-saturating loss of the paper:
    G maximises log D(x, G(x)) instead of minimising log(1 - D(x, G(x))).
    """
    logits = logits.float()  # the loss in fp32 even under autocast
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    raise ValueError(f"gan_mode must be one of {GAN_MODES}, got {mode!r}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, mode: str) -> torch.Tensor:
    """D's objective, halved to slow D relative to G (paper section 3.3)."""
    return 0.5 * (gan_loss(real_logits, True, mode) + gan_loss(fake_logits, False, mode))
