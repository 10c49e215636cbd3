"""PatchGAN discriminators (paper section 3.2.2, appendix 6.1.2).

D classifies each N x N patch of its input as real or fake and the answers are averaged: a Markov random
field assumption that models high frequencies while L1 handles the low ones. N is the receptive field of
one output: 70 (default, C64-C128-C256-C512), 16, 286 (ImageGAN at 256x256) or 1 (PixelGAN). Layer
indices follow the reference ``NLayerDiscriminator`` so its checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from p2p.models.norm import conv_bias, init_weights, norm_layer


class PatchDiscriminator(nn.Module):
    """``n_layers`` stride-2 4x4 convs, then a stride-1 conv and a 1-channel stride-1 conv.

    Receptive field: n_layers=1 -> 16, 3 -> 70, 5 -> 286. No norm on the first layer; LeakyReLU(0.2).
    Outputs raw logits (one per patch).
    """

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last widening conv keeps the resolution
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=bias)]
            layers += [norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """PixelGAN (1x1 receptive field): 1x1 convs only, so it judges colour, not structure (paper Fig. 6)."""

    def __init__(self, in_channels: int = 6, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, ndf * 2, 1, bias=conv_bias(norm)),
            norm_layer(norm, ndf * 2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 2, 1, 1),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
