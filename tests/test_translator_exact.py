"""Translator's pad/crop-back is exact: a pass-through generator returns its input (issue 15)."""

from __future__ import annotations

import torch

from p2p.inference.translator import Translator
from p2p.models.unet import UNetGenerator


class PassThrough(UNetGenerator):
    """A U-Net (so Translator pads to multiples of 2**num_downs = 8) whose forward returns its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_pass_through_generator_returns_the_input_exactly_with_padding_on_every_side() -> None:
    x = torch.rand(2, 3, 13, 21) * 2 - 1  # padded to 16x24: 1 top, 2 bottom, 1 left, 2 right
    t = Translator(PassThrough(num_downs=3, ngf=2), device="cpu", inference="eval")
    assert torch.equal(t.translate_tensor(x), x)  # a crop at (0, 0) would shift the image by one pixel


def test_tiled_equals_untiled_for_a_pass_through_generator() -> None:
    x = torch.rand(1, 3, 29, 37) * 2 - 1
    untiled = Translator(PassThrough(num_downs=3, ngf=2), device="cpu", inference="eval").translate_tensor(x)
    tiled = Translator(PassThrough(num_downs=3, ngf=2), device="cpu", inference="eval", tile=16, overlap=4)
    # blended weights sum to 1 up to float32 rounding of w*x/sum(w): a few ulps of values in [-1, 1]
    torch.testing.assert_close(tiled.translate_tensor(x), untiled, rtol=0, atol=1e-6)
    assert torch.equal(untiled, x)
