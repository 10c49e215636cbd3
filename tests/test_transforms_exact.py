"""`PairTransform.__call__` position by position: every crop offset is reachable and both images share it,
eval crops are centred, the flip is a fair coin applied to both, resizing is bicubic, and the size limits
are exact (issue 15: the mutants of this method that survived the suite)."""

from __future__ import annotations

from enum import Enum

import numpy as np
import pytest
import torch
from PIL import Image

from p2p.data.transforms import BICUBIC, PairTransform, round_to


def coordinates(w: int, h: int) -> tuple[Image.Image, Image.Image]:
    """A pair whose pixels say where they are: R = x, G = y in ``a``; ``b`` is ``a`` inverted."""
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    a = np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.uint8)
    return Image.fromarray(a), Image.fromarray(255 - a)


def origin(img: Image.Image) -> tuple[int, int]:
    r, g, _ = np.asarray(img)[0, 0]
    return int(r), int(g)


def test_random_crops_reach_every_offset_and_keep_the_pair_aligned() -> None:
    c, (w, h) = 8, (11, 10)  # offsets x in 0..3, y in 0..2
    a, b = coordinates(w, h)
    t = PairTransform(crop_size=c, preprocess="crop", flip=False, train=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(300):
        ca, cb = t(a, b)
        assert ca.size == cb.size == (c, c)
        x, y = origin(ca)
        assert np.array_equal(np.asarray(cb), np.asarray(b.crop((x, y, x + c, y + c))))  # the same box
        assert np.array_equal(np.asarray(ca), np.asarray(a.crop((x, y, x + c, y + c))))
        seen.add((x, y))
    assert seen == {(x, y) for x in range(w - c + 1) for y in range(h - c + 1)}  # 12 offsets, each reached


def test_eval_crops_are_centred_and_never_flipped() -> None:
    a, b = coordinates(15, 12)
    t = PairTransform(crop_size=8, preprocess="crop", flip=True, train=False)
    for _ in range(20):
        ca, cb = t(a, b)
        assert origin(ca) == ((15 - 8) // 2, (12 - 8) // 2) == (3, 2)
        assert np.array_equal(np.asarray(ca), np.asarray(a.crop((3, 2, 11, 10))))  # not mirrored
        assert np.array_equal(np.asarray(cb), np.asarray(b.crop((3, 2, 11, 10))))
    odd = PairTransform(crop_size=8, preprocess="crop", train=False)(*coordinates(15, 11))[0]
    assert origin(odd) == (3, 1)  # (11 - 8) // 2: whole pixels, rounded down on both axes


def test_the_flip_is_a_fair_coin_applied_to_both_images() -> None:
    a, b = coordinates(16, 16)
    t = PairTransform(preprocess="none", size_divisor=16, flip=True, train=True)
    mirror = Image.Transpose.FLIP_LEFT_RIGHT
    torch.manual_seed(0)
    flips = 0
    for _ in range(400):
        ca, cb = t(a, b)
        flipped = origin(ca) == (15, 0)
        ref_a, ref_b = (a.transpose(mirror), b.transpose(mirror)) if flipped else (a, b)
        assert np.array_equal(np.asarray(ca), np.asarray(ref_a)) and np.array_equal(
            np.asarray(cb), np.asarray(ref_b)
        )
        flips += flipped
    assert 150 <= flips <= 250  # Binomial(400, 0.5): mean 200, sd 10; p = 0 or 1 (or 0.25) falls outside
    assert not any(
        origin(t.__class__(preprocess="none", size_divisor=16, flip=False)(a, b)[0]) == (15, 0)
        for _ in range(50)
    )


def test_resizing_is_bicubic_for_both_images() -> None:
    rng = np.random.default_rng(0)
    a = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    b = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    t = PairTransform(load_size=24, crop_size=24, preprocess="resize_and_crop", flip=False, train=True)
    ca, cb = t(a, b)  # a crop as large as the resized image: the whole of it
    assert np.array_equal(np.asarray(ca), np.asarray(a.resize((24, 24), BICUBIC)))
    assert np.array_equal(np.asarray(cb), np.asarray(b.resize((24, 24), BICUBIC)))


@pytest.mark.parametrize("train", [True, False])
def test_an_image_exactly_crop_size_is_kept_and_one_pixel_less_is_refused(train: bool) -> None:
    t = PairTransform(crop_size=8, preprocess="crop", flip=False, train=train)
    a, b = coordinates(8, 8)
    ca, cb = t(a, b)
    assert np.array_equal(np.asarray(ca), np.asarray(a)) and np.array_equal(np.asarray(cb), np.asarray(b))
    for w, h in ((7, 8), (8, 7)):
        with pytest.raises(ValueError, match=f"image of size {w}x{h} is smaller than crop_size=8"):
            t(*coordinates(w, h))
    with pytest.raises(ValueError, match=r"differ in size: \(8, 8\) vs \(9, 8\)"):
        t(coordinates(8, 8)[0], coordinates(9, 8)[1])


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"load_size": 1, "crop_size": 1, "size_divisor": 1}, None),  # every size's lower bound
        ({"load_size": 8, "crop_size": 8}, None),  # a crop as large as the load size
        # crop cuts the original image, not a load_size one
        ({"load_size": 8, "crop_size": 9, "preprocess": "crop"}, None),
        ({"load_size": 8, "crop_size": 9, "preprocess": "scale_width"}, None),
        ({"load_size": 0}, "load_size: must be >= 1, got 0"),
        ({"crop_size": 0}, "crop_size: must be >= 1, got 0"),
        ({"size_divisor": 0}, "size_divisor: must be >= 1, got 0"),
        (
            {"load_size": 8, "crop_size": 9},
            "crop_size: 9 is larger than load_size=8 .preprocess=resize_and_crop",
        ),
        ({"load_size": 8, "crop_size": 9, "preprocess": "scale_width_and_crop"}, "crop_size: 9 is larger"),
        ({"preprocess": "resize"}, "^preprocess: 'resize' is not one of resize_and_crop, crop"),
    ],
)
def test_the_settings_are_checked_at_their_boundaries(kwargs: dict, error: str | None) -> None:
    if error is None:
        t = PairTransform(**kwargs)
        assert {k: getattr(t, k) for k in kwargs} == kwargs
    else:
        with pytest.raises(ValueError, match=error):
            PairTransform(**kwargs)


def test_scale_width_and_crop_keeps_the_aspect_before_cropping() -> None:
    """Width to load_size, height in proportion (40x30 -> 64x48), then the eval crop from its centre."""
    a, b = coordinates(40, 30)
    t = PairTransform(load_size=64, crop_size=32, preprocess="scale_width_and_crop", train=False)
    got_a, got_b = t(a, b)
    box = (16, 8, 48, 40)  # ((64 - 32) // 2, (48 - 32) // 2, ...)
    assert np.array_equal(np.asarray(got_a), np.asarray(a.resize((64, 48), BICUBIC).crop(box)))
    assert np.array_equal(np.asarray(got_b), np.asarray(b.resize((64, 48), BICUBIC).crop(box)))


def test_sizes_round_to_the_nearest_multiple_and_never_below_one() -> None:
    assert [round_to(x, 16) for x in (50, 56.1, 7, 0, 64)] == [48, 64, 16, 16, 64]


def test_an_enum_preprocess_from_a_structured_config_becomes_its_value() -> None:
    t = PairTransform(preprocess=Enum("Preprocess", {"crop": "crop"}).crop, load_size=8, crop_size=8)
    assert t.preprocess == "crop" and type(t.preprocess) is str
