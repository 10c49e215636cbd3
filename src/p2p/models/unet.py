"""The pix2pix generator: a U-Net (paper section 3.2.1, appendix 6.1.1).

Encoder  C64-C128-C256-C512-C512-C512-C512-C512, each Ck = Conv(4x4, stride 2)-BatchNorm-LeakyReLU(0.2),
no BatchNorm on the first layer. Decoder mirrors it with ReLUs and transposed convs, dropout (50 %) in the
blocks nearest the bottleneck, skip connections from encoder layer i to decoder layer n-i, then a conv to
the output channels and Tanh. Without skips it is the paper's encoder-decoder ablation.

Two details follow the reference implementation exactly, so that its checkpoints load and compute the
same function:
- the bottleneck conv has no BatchNorm (with batch size 1 its output is 1x1, where BatchNorm over a single
  value is undefined);
- the skip carries the *activated* encoder feature LeakyReLU(e_i) (the reference gets this through an
  in-place LeakyReLU), so each encoder block ends with its activation.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from p2p.models.hub import GeneratorHubMixin
from p2p.models.norm import conv_bias, init_weights, norm_layer


def _down(cin: int, cout: int, norm: str, use_norm: bool, act: bool) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    # the bias follows the network's norm even where this layer has none, as in the reference
    layers["conv"] = nn.Conv2d(cin, cout, 4, 2, 1, bias=conv_bias(norm))
    if use_norm and norm != "none":
        layers["norm"] = norm_layer(norm, cout)
    if act:
        layers["act"] = nn.LeakyReLU(0.2)
    return nn.Sequential(layers)


def _up(cin: int, cout: int, norm: str | None, dropout: float) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["act"] = nn.ReLU()
    if norm is None:  # the outermost block: conv to the output channels, Tanh
        layers["conv"] = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=True)
        layers["tanh"] = nn.Tanh()
        return nn.Sequential(layers)
    layers["conv"] = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=conv_bias(norm))
    if norm != "none":
        layers["norm"] = norm_layer(norm, cout)
    if dropout > 0:
        layers["dropout"] = nn.Dropout(dropout)
    return nn.Sequential(layers)


class UNetGenerator(nn.Module, GeneratorHubMixin):  # save_pretrained/push_to_hub
    """U-Net with ``num_downs`` stride-2 levels: an input of side 2**num_downs reaches a 1x1 bottleneck.

    Any input whose sides are multiples of 2**num_downs works (the network is fully convolutional).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,  # 8 for 256x256 inputs (paper), 7 for 128x128
        ngf: int = 64,  # filters in the first layer; deeper layers use ngf * min(2**i, 8)
        norm: str = "batch",  # batch | instance | none
        dropout: float = 0.5,  # the paper's only noise source (section 3.1), kept at test time
        skip: bool = True,  # False: the encoder-decoder ablation (paper Fig. 3/5)
    ) -> None:
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"num_downs must be >= 2, got {num_downs}")
        self.num_downs, self.skip = num_downs, skip
        width = [ngf * min(2**i, 8) for i in range(num_downs)]
        inner = num_downs - 1
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in range(num_downs):
            cin = in_channels if i == 0 else width[i - 1]
            # first: no norm; innermost (bottleneck): no norm, and its activation is the decoder's ReLU
            self.down.append(_down(cin, width[i], norm, use_norm=0 < i < inner, act=i != inner))
            up_in = width[i] if (i == inner or not skip) else 2 * width[i]
            up_out = out_channels if i == 0 else width[i - 1]
            # dropout in the num_downs-5 blocks next to the innermost one (3 for unet_256), as the reference
            p = dropout if 4 <= i <= num_downs - 2 else 0.0
            self.up.append(_up(up_in, up_out, None if i == 0 else norm, p))
        init_weights(self)

    def registry_name(self) -> str:
        """A builder that, given every constructor argument, builds this network (for ``config.json``)."""
        return "unet_256" if self.skip else "encoder_decoder_256"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = 2**self.num_downs
        if x.shape[-1] % side or x.shape[-2] % side:
            raise ValueError(
                f"UNetGenerator(num_downs={self.num_downs}) needs height and width divisible by {side}, "
                f"got {tuple(x.shape[-2:])}; pad the input (p2p.Translator does) or resize it"
            )
        skips = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)
        h = self.up[-1](h)
        for i in range(self.num_downs - 2, -1, -1):
            h = self.up[i](torch.cat([skips[i], h], 1) if self.skip else h)
        return h
