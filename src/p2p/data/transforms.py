"""Paired image transforms: the same geometry for both images of a pair, then conversion to [-1, 1].

Training follows the reference pix2pix (`get_params`/`get_transform` of junyanz/pytorch-CycleGAN-and-pix2pix):
one crop position and one flip are drawn per pair and applied to both images, so input and target stay
pixel-aligned. Evaluation is deterministic: no flip, and random crops become center crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from annotated_types import Ge
from PIL import Image

from p2p.errors import ConfigError, check_fields

Preprocess = Literal["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"]
BICUBIC = Image.Resampling.BICUBIC
Size = Annotated[int, Ge(1)]  # a side in pixels


def round_to(x: float, divisor: int) -> int:
    """Nearest multiple of `divisor`, at least one multiple (like the reference's make_power_2)."""
    return max(divisor, round(x / divisor) * divisor)


@dataclass(frozen=True)
class PairTransform:
    """Geometry shared by both images of a pair.

    preprocess (train):
      resize_and_crop       resize to load_size x load_size (bicubic), random crop crop_size
      crop                  random crop crop_size from the original image
      scale_width           width -> load_size, height -> max(load_size * h / w, crop_size), both rounded to a
                            multiple of size_divisor
      scale_width_and_crop  as scale_width (without rounding), then random crop crop_size
      none                  only resize each side to the nearest multiple of size_divisor
    With flip=True, both images are mirrored horizontally together with p=0.5.

    Evaluation (train=False) is deterministic: no flip, crops are center crops, and `resize_and_crop` resizes
    straight to crop_size x crop_size instead of load-then-crop. Cropping at eval time would throw away the
    border of every test image; resizing keeps the full view (facades' 256x256 pairs are then used as is).
    """

    load_size: Size = 286
    crop_size: Size = 256
    preprocess: Preprocess = "resize_and_crop"
    flip: bool = True
    size_divisor: Size = 256
    train: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.crop_size > self.load_size:
            raise ConfigError(
                f"crop_size: {self.crop_size} is larger than load_size={self.load_size} (preprocess="
                f"{self.preprocess} crops a load_size image); use crop_size <= {self.load_size} or raise load_size"
            )

    def _resized_size(self, w: int, h: int) -> tuple[int, int]:
        """Size after the resize step (before cropping)."""
        p, load, crop, div = self.preprocess, self.load_size, self.crop_size, self.size_divisor
        if p == "resize_and_crop":
            return (load, load) if self.train else (crop, crop)
        if p == "scale_width_and_crop":
            return load, max(int(load * h / w), crop)
        if p == "scale_width":
            return round_to(load, div), round_to(max(load * h / w, crop), div)
        if p == "none":
            return round_to(w, div), round_to(h, div)
        return w, h  # crop

    def __call__(self, a: Image.Image, b: Image.Image) -> tuple[Image.Image, Image.Image]:
        if a.size != b.size:
            raise ValueError(f"the two images of a pair differ in size: {a.size} vs {b.size}")
        size = self._resized_size(*a.size)
        if size != a.size:
            a, b = a.resize(size, BICUBIC), b.resize(size, BICUBIC)
        if self.preprocess.endswith("crop"):
            w, h, c = *size, self.crop_size
            if w < c or h < c:
                raise ValueError(
                    f"image of size {w}x{h} is smaller than crop_size={c}; lower crop_size or use "
                    "preprocess=resize_and_crop"
                )
            if self.train:  # one position for both images keeps them aligned
                x = int(torch.randint(0, w - c + 1, ()).item())
                y = int(torch.randint(0, h - c + 1, ()).item())
            else:
                x, y = (w - c) // 2, (h - c) // 2
            box = (x, y, x + c, y + c)
            a, b = a.crop(box), b.crop(box)
        if self.train and self.flip and torch.rand(()).item() < 0.5:
            a, b = a.transpose(Image.Transpose.FLIP_LEFT_RIGHT), b.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return a, b
