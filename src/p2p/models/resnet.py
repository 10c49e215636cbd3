"""ResNet generator (Johnson et al. 2016), offered by the reference code as an alternative to the U-Net.

Layer indices follow the reference ``ResnetGenerator`` so its checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from p2p.models.hub import GeneratorHubMixin
from p2p.models.norm import conv_bias, init_weights, norm_layer


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, dropout: float) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=bias),
            norm_layer(norm, dim),
        ]
        layers += [nn.ReLU()]
        if dropout > 0:
            layers += [nn.Dropout(dropout)]
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module, GeneratorHubMixin):  # save_pretrained/push_to_hub
    """c7s1-ngf, two stride-2 downsamplings, ``n_blocks`` residual blocks, two upsamplings, c7s1-out, Tanh.
    Inputs need sides divisible by 4."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,  # 9 for 256x256, 6 for 128x128 in the reference
        norm: str = "batch",
        dropout: float = 0.5,  # the reference's pix2pix default (use_dropout unless --no_dropout)
    ) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias)]
        layers += [norm_layer(norm, ngf), nn.ReLU()]
        for i in range(2):
            m = 2**i
            layers += [
                nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1, bias=bias),
                norm_layer(norm, ngf * m * 2),
                nn.ReLU(),
            ]
        layers += [ResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for i in range(2):
            m = 2 ** (2 - i)
            up = nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1, bias=bias)
            layers += [up, norm_layer(norm, ngf * m // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def registry_name(self) -> str:
        """A builder that, given every constructor argument, builds this network (for ``config.json``)."""
        return "resnet_9blocks"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(
                f"ResnetGenerator needs height and width divisible by 4, got {tuple(x.shape[-2:])}"
            )
        return self.model(x)
