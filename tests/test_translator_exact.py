"""Translator's arithmetic, exactly: pad/crop-back, channel conversion, input scaling, blend weights, tiles
(issue 15: each test here kills mutants that shape-only checks let through)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from p2p.inference.translator import Translator, blend_window, hole_tensor, pad_to, size_divisor, tile_starts
from p2p.io.tasks import lab_decode, lab_encode
from p2p.models.hub import set_metadata
from p2p.models.resnet import ResnetGenerator
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


class Pointwise(torch.nn.Module):
    """A 1x1 convolution with chosen weights: what reaches the network, channel by channel, is visible."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 1, bias=False)
        torch.nn.init.eye_(self.conv.weight[:, :, 0, 0]) if cin == cout else torch.nn.init.ones_(
            self.conv.weight
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_channels_are_converted_to_the_generators_like_pil_does() -> None:
    """RGBA loses alpha, gray is repeated for an RGB generator, RGB becomes ITU-R 601 luma for a gray one."""
    rgb = Translator(Pointwise(3, 3), device="cpu")
    x = torch.rand(1, 3, 5, 6) * 2 - 1
    alpha = torch.full((1, 1, 5, 6), 0.3)
    with torch.no_grad():
        assert torch.equal(rgb(torch.cat([x, alpha], 1)), rgb(x))  # the alpha channel is dropped
        gray = x[:, :1]
        assert torch.equal(rgb(gray), gray.expand(-1, 3, -1, -1))  # one channel, three times
        pair = torch.cat([gray, -gray])  # a batch of two
        assert torch.equal(rgb(pair), pair.expand(-1, 3, -1, -1))
        luma = Translator(Pointwise(1, 1), device="cpu")
        want = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        torch.testing.assert_close(luma(x)[:, 0], want, rtol=0, atol=1e-6)
        torch.testing.assert_close(luma(torch.cat([x, alpha], 1))[:, 0], want, rtol=0, atol=1e-6)  # RGBA -> L
        assert torch.equal(luma(gray), gray)
    with pytest.raises(ValueError, match="the generator takes 3 channels, the input has 2"):
        rgb(x[:, :2])
    with pytest.raises(ValueError, match="the generator takes 2 channels, the input has 3"):
        Translator(Pointwise(2, 2), device="cpu")(x)  # luma only for a one-channel generator
    with pytest.raises(ValueError, match=r"expected a tensor \[C, H, W\] or \[B, C, H, W\], got \(6,\)"):
        rgb(torch.zeros(6))


def test_images_and_arrays_become_float32_inputs_in_minus_one_to_one() -> None:
    """What encode hands the network: float32, [1, C, H, W], 0 -> -1 and 255 -> 1, for every image type."""
    t = Translator(Pointwise(3, 3), device="cpu")
    arr = np.zeros((2, 3, 3), dtype=np.uint8)
    arr[0, 0] = (255, 0, 51)
    want = torch.tensor([1.0, -1.0, 51 / 127.5 - 1])
    for img, kind in [(Image.fromarray(arr), "pil"), (arr, "uint8"), (arr.astype(np.float32) / 255, "float")]:
        x, got_kind = t.encode(img)
        assert got_kind == kind and x.dtype == torch.float32 and x.shape == (1, 3, 2, 3)
        torch.testing.assert_close(x[0, :, 0, 0], want, rtol=0, atol=1e-6)
    gray = np.full((2, 3), 255, dtype=np.uint8)  # H x W: one channel, given to an RGB generator as three
    assert t.encode(gray)[0].shape == (1, 3, 2, 3) and t.encode(gray)[0].eq(1).all()


def test_blend_windows_have_the_documented_ramps() -> None:
    """Exact weights: a pointwise generator cannot show them (any positive weights blend it back exactly)."""
    s = math.sqrt(2) / 4  # 0.5 - 0.5 * cos(pi / 4) = 0.5 - s, and cos(3 pi / 4) gives 0.5 + s
    cases = {
        (8, 2, "linear"): [0.25, 0.75, 1, 1, 1, 1, 0.75, 0.25],
        (8, 2, "cosine"): [0.5 - s, 0.5 + s, 1, 1, 1, 1, 0.5 + s, 0.5 - s],
        (8, 1, "linear"): [0.5, 1, 1, 1, 1, 1, 1, 0.5],
        (5, 4, "linear"): [0.25, 0.75, 1, 0.75, 0.25],  # the overlap is capped at half the tile
        (4, 0, "linear"): [1, 1, 1, 1],
    }
    for (n, overlap, kind), want in cases.items():
        torch.testing.assert_close(
            blend_window(n, overlap, kind), torch.tensor(want, dtype=torch.float32), rtol=0, atol=1e-6
        )
    assert torch.equal(blend_window(8, 2), blend_window(8, 2, "linear"))  # linear is the default


class TileMean(torch.nn.Module):
    """Each tile's output is its own mean everywhere: the blend of overlapping tiles is all that shows."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)  # unused: tells Translator the channels (3 in, 3 out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x).contiguous()


@pytest.mark.parametrize("blend", ["linear", "cosine"])
def test_overlapping_tiles_are_averaged_with_the_product_of_the_blend_windows(blend: str) -> None:
    x = torch.rand(1, 3, 20, 28) * 2 - 1  # tiles of 8 with overlap 4 (the divisor of TileMean is 1)
    got = Translator(TileMean(), device="cpu", tile=8, overlap=4, blend=blend).translate_tensor(x)
    num, den = torch.zeros(20, 28), torch.zeros(20, 28)
    w = blend_window(8, 4, blend)[:, None] * blend_window(8, 4, blend)[None, :]
    for a in tile_starts(20, 8, 4):
        for b in tile_starts(28, 8, 4):
            num[a : a + 8, b : b + 8] += w * x[0, :, a : a + 8, b : b + 8].mean()
            den[a : a + 8, b : b + 8] += w
    torch.testing.assert_close(got[0], (num / den).expand(3, -1, -1), rtol=0, atol=1e-6)


def test_tile_starts_cover_the_side_and_end_flush() -> None:
    assert tile_starts(10, 4, 1) == [0, 3, 6]
    assert tile_starts(8, 8, 2) == tile_starts(5, 8, 2) == [0]
    assert tile_starts(9, 8, 2) == [0, 1]


class Constant(UNetGenerator):
    """A U-Net (divisor 8, so odd sizes are padded) that returns ``value`` everywhere: what Translator makes
    of a photo task's output is then known exactly, pixel by pixel. It records the input it was given."""

    def __init__(self, value: list[float], photo_task: str, **kwargs: int) -> None:
        super().__init__(out_channels=len(value), num_downs=3, ngf=2, **kwargs)
        self.value, self.seen = torch.tensor(value), torch.empty(0)
        set_metadata(self, photo_task=photo_task)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.clone()
        return self.value[None, :, None, None].expand(len(x), -1, *x.shape[-2:]).contiguous()


def test_colorization_gives_the_generator_the_images_L_and_puts_its_ab_back_with_that_L() -> None:
    """Grey and colour images alike; the result has the image's size and the L of the image itself."""
    gen = Constant([0.3, -0.2], "colorization", in_channels=1)
    t = Translator(gen, device="cpu", inference="eval")
    rgb = np.random.default_rng(0).integers(0, 256, (13, 21, 3), dtype=np.uint8)  # padded to 16x24
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    L, _ = lab_encode(x)
    rgba = np.concatenate([rgb, np.full((13, 21, 1), 77, dtype=np.uint8)], 2)  # alpha is dropped, as by PIL
    for img, like in ((Image.fromarray(rgb), Image.fromarray(rgb)), (rgb, rgb), (rgba, rgb)):
        out = t(img)
        assert gen.seen.shape == (1, 1, 16, 24)
        torch.testing.assert_close(gen.seen[:, :, 1:14, 1:22], L, rtol=0, atol=1e-6)  # centred padding
        got = np.asarray(out)
        assert type(out) is type(like) and got.shape == (13, 21, 3) and got.dtype == np.uint8
        want = lab_decode(L, torch.tensor([0.3, -0.2])[None, :, None, None].expand(1, 2, 13, 21))
        want_u8 = np.rint((want[0].permute(1, 2, 0).numpy() + 1) / 2 * 255)
        assert np.abs(got - want_u8).max() <= 1  # one uint8 step: the rounding of a float32 Lab round trip
    grey = Image.fromarray(rgb).convert("L")  # a grey image is colourised too: its L is its luma
    assert t(grey).mode == "RGB" and t(grey).size == (21, 13)
    tensor = torch.rand(1, 1, 13, 21) * 2 - 1  # tensors go through the network as they are
    assert torch.equal(t(tensor), torch.tensor([0.3, -0.2])[None, :, None, None].expand(1, 2, 13, 21))


def test_inpainting_keeps_the_pixels_outside_the_hole_and_fills_the_hole_with_the_output() -> None:
    gen = Constant([0.5, -1.0, 1.0], "inpainting", in_channels=4)
    t = Translator(gen, device="cpu", inference="eval")
    rgb = np.random.default_rng(1).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    fill = np.array([191, 0, 255], dtype=np.uint8)  # (0.5, -1, 1) in [-1, 1] as uint8: rint(0.75 * 255) = 191
    mask = np.zeros((13, 21), dtype=np.uint8)
    mask[2:5, 3:17] = 255
    centre = np.zeros((13, 21), dtype=bool)
    centre[3:9, 5:15] = True  # hole_mask's centre rectangle: half of each side, centred ((13 - 6) // 2 = 3)
    for hole, m in ((mask > 0, Image.fromarray(mask)), (mask > 0, mask), (centre, None)):
        got = np.asarray(t(Image.fromarray(rgb), mask=m))
        assert got.shape == rgb.shape
        assert np.array_equal(got[~hole], rgb[~hole])  # outside the hole: the image's own pixels, exactly
        assert (got[hole] == fill).all()
        seen = gen.seen[0, :, 1:14, 1:22]  # what the network saw: the photo with the hole at 0, then the mask
        assert torch.equal(seen[3] > 0, torch.from_numpy(hole))
        assert seen[:3, torch.from_numpy(hole)].eq(0).all()
    with pytest.raises(ValueError, match="the mask is 20x13 but the image is 21x13"):
        t(Image.fromarray(rgb), mask=np.zeros((13, 20), dtype=np.uint8))
    colour = Translator(Constant([0.0, 0.0], "colorization", in_channels=1), device="cpu")
    with pytest.raises(
        ValueError, match="only an inpainting generator takes a mask, this one is colorization"
    ):
        colour(Image.fromarray(rgb), mask=mask)
    with pytest.raises(ValueError, match="only an inpainting generator takes a mask"):
        Translator(Pointwise(3, 3), device="cpu")(rgb, mask=mask)


def test_hole_masks_of_every_kind_are_white_nonzero_or_true_with_exact_thresholds() -> None:
    """uint8 and PIL: >= 128 is hole; float: > 0.5; bool and other ints: nonzero; colour masks: any channel.
    The result is [1, 1, H, W], 1 in the hole and -1 elsewhere, in the image tensor's dtype."""
    like = torch.zeros(1, 3, 1, 4, dtype=torch.float64)
    hole = torch.tensor([[[[-1.0, 1.0, -1.0, 1.0]]]], dtype=torch.float64)
    cases = [
        np.array([[127, 128, 0, 255]], dtype=np.uint8),
        Image.fromarray(np.array([[127, 128, 0, 255]], dtype=np.uint8)),
        np.array([[0.5, 0.5001, 0.0, 1.0]], dtype=np.float32),
        np.array([[False, True, False, True]]),
        np.array([[0, 1, 0, 7]], dtype=np.int64),
        np.array([[[0, 0, 0], [0, 200, 0], [0, 0, 0], [0, 0, 255]]], dtype=np.uint8),  # H x W x 3
        Image.fromarray(np.array([[[0, 0, 0], [255, 255, 255], [0, 0, 0], [255, 255, 255]]], dtype=np.uint8)),
    ]
    for mask in cases:
        got = hole_tensor(mask, like)
        assert got.dtype == torch.float64 and torch.equal(got, hole), mask
    with pytest.raises(TypeError, match="mask: a PIL image or a numpy array, not list"):
        hole_tensor([[0, 1]], like)


def test_outputs_are_clamped_to_the_image_range_and_one_channel_comes_back_as_h_by_w() -> None:
    """A generator's output beyond [-1, 1] (no Tanh) saturates instead of wrapping around in uint8."""
    # edges: an ordinary pair task, images in and out as they are
    beyond = Constant([1.7, -3.0, 0.2], "edges")
    rgb = np.zeros((5, 6, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        Translator(beyond, device="cpu")(rgb / 255.0)[0, 0], [1.0, 0.0, 0.6], atol=1e-6
    )
    assert Translator(beyond, device="cpu")(rgb)[0, 0].tolist() == [255, 0, 153]  # rint(0.6 * 255)
    gray = Translator(Pointwise(3, 1), device="cpu")  # sums the channels: (a + b + c) in [-1, 1] here
    arr = np.full((5, 6, 3), 0.4, dtype=np.float32)  # 3 * (0.4 * 2 - 1) = -0.6 -> 0.2
    out = gray(arr)
    assert out.shape == (5, 6) and out == pytest.approx(np.full((5, 6), 0.2), abs=1e-6)
    u8 = gray((arr * 255).astype(np.uint8))
    assert u8.shape == (5, 6) and u8.dtype == np.uint8
    img = gray(Image.fromarray((arr * 255).astype(np.uint8)))
    assert img.mode == "L" and img.size == (6, 5)


def test_a_list_of_images_shares_the_mask() -> None:
    t = Translator(Constant([0.5, -1.0, 1.0], "inpainting", in_channels=4), device="cpu")
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 256, (13, 21, 3), dtype=np.uint8)) for _ in range(2)]
    mask = np.zeros((13, 21), dtype=np.uint8)
    mask[:4, :4] = 255  # not the centre rectangle the generator would fill without a mask
    got = t(images, mask=mask)
    assert isinstance(got, list) and len(got) == 2
    for img, out in zip(images, got):
        assert np.array_equal(np.asarray(out), np.asarray(t(img, mask=mask)))


@pytest.mark.parametrize(
    "shape,size,mode",
    [
        ((1, 3, 10, 18), (16, 24), "reflect"),  # 3 on each side of both: dh // 2 = 3, not 2
        ((2, 1, 5, 7), (8, 8), "reflect"),  # 1 top, 2 bottom, 0 left, 1 right
        ((1, 2, 4, 9), (8, 9), "reflect"),  # 2 and 2: each pad smaller than the side of 4
        ((1, 3, 8, 4), (8, 8), "reflect"),
        ((1, 1, 4, 12), (4, 20), "reflect"),  # 4 and 4 on the width of 12 (not the height of 4)
        ((1, 3, 3, 9), (9, 9), "replicate"),  # 3 and 3 on a side of 3: too large to reflect
        ((1, 3, 8, 3), (8, 9), "replicate"),  # the same on the width
        ((1, 3, 2, 2), (8, 8), "replicate"),  # a tiny image
    ],
)
def test_padding_is_centred_reflection_falling_back_to_edge_replication(
    shape: tuple[int, ...], size: tuple[int, int], mode: str
) -> None:
    x = torch.rand(shape) * 2 - 1
    got, (top, left) = pad_to(x, *size)
    dh, dw = size[0] - shape[2], size[1] - shape[3]
    assert (top, left) == (dh // 2, dw // 2)
    widths = [(0, 0), (0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)]
    want = np.pad(x.numpy(), widths, mode="reflect" if mode == "reflect" else "edge")
    assert torch.equal(got, torch.from_numpy(want))


class Recording(PassThrough):
    """`PassThrough` (divisor 8) that records the batch shapes it is run on."""

    def __init__(self) -> None:
        super().__init__(num_downs=3, ngf=2)
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return super().forward(x)


def test_only_images_larger_than_a_tile_are_tiled_each_on_its_own() -> None:
    g = Recording()
    t = Translator(g, device="cpu", inference="eval", tile=16, overlap=4)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(t.translate_tensor(x), x) and g.calls == [(2, 3, 16, 16)]  # one tile's size: whole
    g.calls.clear()
    x = torch.rand(2, 3, 20, 29) * 2 - 1  # padded to 24x32: tiled, each image on its own
    got = t.translate_tensor(x)
    torch.testing.assert_close(got, x, rtol=0, atol=1e-6)  # tolerance: see the pass-through tile test
    # 2 x 3 tiles of 16x16 per image, run batch_size=4 at a time, never mixing the two images
    assert [c[0] for c in g.calls] == [4, 2, 4, 2] and all(c[2:] == (16, 16) for c in g.calls)


def test_tensors_are_checked_then_run_in_float32_on_the_translators_device() -> None:
    t = Translator(Recording(), device="cpu", inference="eval")
    assert t.device == torch.device("cpu") and next(t.model.parameters()).device.type == "cpu"
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64) * 2 - 1
    y = t.translate_tensor(x)
    assert y.dtype == torch.float32 and torch.equal(y, x.float())
    with pytest.raises(ValueError, match=r"expected \[B, 3, H, W\], got \(3, 8, 8\)"):
        t.translate_tensor(x[0])
    with pytest.raises(ValueError, match=r"expected \[B, 3, H, W\], got \(1, 1, 8, 8\)"):
        t.translate_tensor(x[:, :1])


def test_translator_defaults_and_the_sources_recommended_inference_mode() -> None:
    g = Recording()
    t = Translator(g)
    want = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert (t.device, t.inference, t.overlap, t.batch_size, t.blend, t.tile) == (
        want,
        "eval",
        32,
        4,
        "linear",
        None,
    )
    assert (t.divisor, t.in_channels, t.out_channels) == (8, 3, 3)
    assert size_divisor(Pointwise(3, 3)) == 1 and size_divisor(ResnetGenerator(ngf=2, n_blocks=1)) == 4
    set_metadata(g, inference="paper")  # a zoo entry recommends the paper's mode
    assert Translator(g, device="cpu").inference == "paper" and Translator(g, device="cpu").batch_size == 1
    assert Translator(g, device="cpu", inference="eval").inference == "eval"  # the caller's choice wins


def test_a_file_source_is_loaded_with_the_callers_arch_and_pickle_settings(tmp_path) -> None:
    src = UNetGenerator(num_downs=6, ngf=2, norm="instance")  # one decoder block with dropout
    torch.save(src.state_dict(), tmp_path / "net_G.pth")
    assert any(
        isinstance(m, torch.nn.Dropout)
        for m in Translator(tmp_path / "net_G.pth", device="cpu").model.modules()
    )
    t = Translator(tmp_path / "net_G.pth", device="cpu", arch={"dropout": 0.0})  # what the weights cannot say
    assert t.divisor == 64 and not any(isinstance(m, torch.nn.Dropout) for m in t.model.modules())
    torch.save(src, tmp_path / "whole.pt")  # a pickled module
    with pytest.raises(ValueError, match="allow_pickle=True"):
        Translator(tmp_path / "whole.pt", device="cpu")
    assert isinstance(Translator(tmp_path / "whole.pt", device="cpu", allow_pickle=True).model, UNetGenerator)


def test_the_overlap_must_be_smaller_than_the_tile_and_batches_hold_at_least_one_image() -> None:
    g = Recording()
    assert Translator(g, device="cpu", tile=16, overlap=0).overlap == 0  # tiles that only touch
    assert Translator(g, device="cpu", tile=16, overlap=15).overlap == 15
    for overlap in (16, -1):
        with pytest.raises(ValueError, match=rf"overlap must be in \[0, tile=16\), got {overlap}"):
            Translator(g, device="cpu", tile=16, overlap=overlap)
    assert Translator(g, device="cpu", overlap=99).overlap == 99  # no tiles: the overlap is unused
    assert [Translator(g, device="cpu", batch_size=b).batch_size for b in (0, 1, 2, 7)] == [1, 1, 2, 7]
