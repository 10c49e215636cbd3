"""Targeted checks of U-Net details that only the reference-parity test used to catch (issue 15)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from p2p.inference import inference_mode
from p2p.models.patchgan import PatchDiscriminator, PixelDiscriminator
from p2p.models.unet import UNetGenerator


def test_dropout_follows_the_transposed_conv_and_norm_in_the_three_blocks_next_to_the_bottleneck() -> None:
    g = UNetGenerator(num_downs=8, ngf=4)
    with_dropout = [i for i, block in enumerate(g.up) if any(isinstance(m, nn.Dropout) for m in block)]
    assert with_dropout == [4, 5, 6]  # the first three decoder blocks after the innermost (reference layout)
    for i in with_dropout:
        kinds = [type(m) for m in g.up[i]]
        assert kinds == [nn.ReLU, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Dropout], kinds


def test_output_goes_through_tanh_and_stays_bounded_with_a_large_final_bias() -> None:
    torch.manual_seed(0)
    g = UNetGenerator(num_downs=3, ngf=4).eval()
    assert isinstance(g.up[0][-1], nn.Tanh)
    with torch.no_grad():
        g.up[0].conv.bias.fill_(5.0)  # without Tanh the outputs would be about 5
        y = g(torch.randn(2, 3, 8, 8))
    assert y.abs().max() <= 1.0
    assert y.min() > 0.99  # tanh(5 +- small) saturates near 1


def test_skip_concatenation_puts_the_encoder_features_first_as_the_reference() -> None:
    torch.manual_seed(0)
    g = UNetGenerator(num_downs=3, ngf=4).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        d0 = g.down[0](x)
        d1 = g.down[1](d0)
        h = g.up[2](g.down[2](d1))
        h = g.up[1](torch.cat([d1, h], 1))  # reference: torch.cat([x, model(x)], 1)
        expected = g.up[0](torch.cat([d0, h], 1))
        assert torch.equal(g(x), expected)


def test_paper_mode_normalises_with_the_test_batchs_statistics_with_dropout_off() -> None:
    """With dropout off the only difference between the modes is BatchNorm's statistics: paper mode must use
    the batch's own (section 6.2), eval mode the running averages, and neither may change those averages."""
    torch.manual_seed(0)
    g = UNetGenerator(num_downs=5, ngf=4, dropout=0.0)
    for m in g.modules():  # running averages far from any batch's, so the two modes cannot agree by chance
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(25.0)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    x = torch.randn(4, 3, 32, 32)
    batch_stats = copy.deepcopy(g).train()  # plain training-mode BatchNorm = the batch's statistics
    with torch.no_grad():
        want = batch_stats(x)
        with inference_mode(g, "paper"):
            paper = g(x)
        with inference_mode(g, "eval"):
            running = g(x)
    torch.testing.assert_close(paper, want, rtol=0, atol=1e-6)  # same ops on the same data: rounding only
    assert (paper - running).abs().max() > 0.1  # the running averages would give another image
    for k, v in g.state_dict().items():
        assert torch.equal(v, before[k]), f"paper-mode inference changed {k}"


def layers(model: nn.Module) -> list[tuple]:
    """Each layer as (kind, channels in/out, kernel, stride, padding, bias) or (kind, slope / features)."""
    out: list[tuple] = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            out.append(("conv", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.bias is not None))  # fmt: skip
        elif isinstance(m, nn.LeakyReLU):
            out.append(("lrelu", m.negative_slope))
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
            out.append((type(m).__name__, m.num_features, m.affine, m.track_running_stats))
    return out


def bn(c: int) -> tuple:
    return ("BatchNorm2d", c, True, True)  # affine, running statistics


def inorm(c: int) -> tuple:
    return ("InstanceNorm2d", c, False, False)  # the reference's: neither


def test_patchgan_70_is_the_papers_C64_C128_C256_C512_with_the_reference_layers() -> None:
    """Appendix 6.1.2: C64 without norm, then C128-C256-C512, LeakyReLU 0.2; 4x4 convs, stride 2 but the last
    widening conv and the 1-channel output conv (stride 1); no conv bias before a BatchNorm."""
    lr = ("lrelu", 0.2)
    assert layers(PatchDiscriminator()) == [  # the defaults: a cGAN's D on 3 + 3 channels
        ("conv", 6, 64, 4, 2, 1, True), lr,
        ("conv", 64, 128, 4, 2, 1, False), bn(128), lr,
        ("conv", 128, 256, 4, 2, 1, False), bn(256), lr,
        ("conv", 256, 512, 4, 1, 1, False), bn(512), lr,
        ("conv", 512, 1, 4, 1, 1, True),
    ]  # fmt: skip
    # 286x286: two more stride-2 layers, the width capped at 8 * ndf; instance norm keeps the conv biases
    got = layers(PatchDiscriminator(in_channels=3, ndf=2, n_layers=5, norm="instance"))
    assert got == [
        ("conv", 3, 2, 4, 2, 1, True), lr,
        ("conv", 2, 4, 4, 2, 1, True), inorm(4), lr,
        ("conv", 4, 8, 4, 2, 1, True), inorm(8), lr,
        ("conv", 8, 16, 4, 2, 1, True), inorm(16), lr,
        ("conv", 16, 16, 4, 2, 1, True), inorm(16), lr,
        ("conv", 16, 16, 4, 1, 1, True), inorm(16), lr,
        ("conv", 16, 1, 4, 1, 1, True),
    ]  # fmt: skip


def test_pixelgan_is_two_1x1_convs_then_a_1_channel_one() -> None:
    """The reference's PixelDiscriminator: C64 (no norm) - C128 with norm, 1x1 convs, LeakyReLU 0.2. One
    difference, kept for checkpoints p2p already wrote: the output conv has a bias (the reference's has
    none beside BatchNorm: one scalar added to every logit, which D's own learning absorbs)."""
    lr = ("lrelu", 0.2)
    assert layers(PixelDiscriminator()) == [  # the defaults, as PatchGAN's
        ("conv", 6, 64, 1, 1, 0, True), lr, ("conv", 64, 128, 1, 1, 0, False), bn(128), lr,
        ("conv", 128, 1, 1, 1, 0, True),
    ]  # fmt: skip
    assert layers(PixelDiscriminator(in_channels=3, ndf=4, norm="instance"))[2:4] == [
        ("conv", 4, 8, 1, 1, 0, True), inorm(8),
    ]  # fmt: skip


def test_the_encoder_decoder_names_its_own_builder() -> None:
    """config.json records registry_name(): an encoder-decoder saved as a U-Net would load with skips."""
    assert UNetGenerator(num_downs=3, ngf=2).registry_name() == "unet_256"
    assert UNetGenerator(num_downs=3, ngf=2, skip=False).registry_name() == "encoder_decoder_256"


def test_both_sides_must_be_multiples_of_the_unets_divisor() -> None:
    g = UNetGenerator(num_downs=3, ngf=2)
    for shape in [(1, 3, 8, 12), (1, 3, 12, 8), (3, 12, 8)]:  # width, height, and an unbatched image
        with pytest.raises(ValueError, match=r"needs height and width divisible by 8, got \(\d+, \d+\)"):
            g(torch.zeros(shape))


def test_the_unets_state_dict_keys_are_the_ones_checkpoints_already_hold() -> None:
    """p2p's own layout (what every checkpoint and save_pretrained folder holds; p2p.weights converts the
    reference's): convs without bias before a BatchNorm, biases for instance norm and none."""
    norm = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert list(UNetGenerator(num_downs=3, ngf=2).state_dict()) == [
        "down.0.conv.weight", "down.1.conv.weight", *[f"down.1.norm.{k}" for k in norm], "down.2.conv.weight",
        "up.0.conv.weight", "up.0.conv.bias", "up.1.conv.weight", *[f"up.1.norm.{k}" for k in norm],
        "up.2.conv.weight", *[f"up.2.norm.{k}" for k in norm],
    ]  # fmt: skip
    convs = [f"{side}.{i}.conv.{k}" for side in ("down", "up") for i in range(3) for k in ("weight", "bias")]
    assert list(UNetGenerator(num_downs=3, ngf=2, norm="instance").state_dict()) == convs
    assert list(UNetGenerator(num_downs=3, ngf=2, norm="none").state_dict()) == convs


def test_the_encoder_uses_leaky_relu_0_2_and_the_decoder_relu() -> None:
    """Appendix 6.1.1: "All ReLUs in the encoder are leaky, with slope 0.2, while ReLUs in the decoder are
    not leaky"; the innermost encoder block's activation is the decoder's ReLU (as in the reference)."""
    g = UNetGenerator(num_downs=4, ngf=2)
    slopes = [m.negative_slope for block in g.down for m in block if isinstance(m, nn.LeakyReLU)]
    assert slopes == [0.2, 0.2, 0.2]
    assert all(isinstance(block[0], nn.ReLU) and not isinstance(block[0], nn.LeakyReLU) for block in g.up)


def test_the_unets_defaults_are_the_papers_and_two_levels_is_the_smallest() -> None:
    g = UNetGenerator(ngf=1)
    assert (g.num_downs, g.skip, len(g.down)) == (8, True, 8)  # unet_256: 256 -> 1x1
    assert UNetGenerator(num_downs=2, ngf=1)(torch.zeros(1, 3, 4, 4)).shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="num_downs must be >= 2, got 1"):
        UNetGenerator(num_downs=1)
