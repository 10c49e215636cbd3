"""A procedurally generated, facade-like paired dataset: label map (A) -> textured "photo" (B).

Nothing is downloaded: each pair is drawn on the fly from a seed derived from (seed, split, index), so the
dataset is deterministic, free, and the same in every DataLoader worker. The photo is a fixed function of the
label map up to a little shading and noise: every class has its own colour and texture (flat, stripes,
checker, noise), anchored at the top-left corner of each shape, so a generator can learn labels -> photo.
"""

from __future__ import annotations

import zlib
from typing import Annotated

import numpy as np
from annotated_types import Ge, Interval
from PIL import Image
from torch.utils.data import Dataset

from p2p.data.dataset import Channels, Direction, Pair, make_pair
from p2p.data.transforms import PairTransform
from p2p.errors import check_value

# Label colours (class 0 = background), in the spirit of the CMP facades palette.
PALETTE = np.array(
    [
        [0, 0, 170],  # background / wall
        [255, 85, 0],  # window
        [0, 170, 255],  # door
        [170, 255, 85],  # balcony
        [255, 255, 0],  # cornice
        [255, 0, 0],  # pillar
        [85, 255, 170],  # sill
        [170, 0, 0],  # shop
        [0, 85, 255],  # deco
        [255, 170, 0],  # blind
        [0, 255, 255],  # molding
        [85, 0, 255],  # sky
    ],
    dtype=np.uint8,
)
MAX_CLASSES = len(PALETTE)
Count = Annotated[int, Ge(1)]  # pairs in a split
ImageSize = Annotated[int, Ge(32)]  # the side of a pair; render_pair draws shapes from size // 32 px
NumClasses = Annotated[int, Interval(ge=2, le=MAX_CLASSES)]  # background and at least one class

# Photo style per class: base RGB, pattern, period (px), contrast. Fixed, so the mapping is the same in
# every split and for every seed.
STYLES: list[tuple[tuple[int, int, int], str, int, float]] = [
    ((190, 170, 150), "noise", 1, 12.0),  # plaster
    ((60, 80, 110), "checker", 8, 25.0),  # glass panes
    ((110, 70, 40), "vstripes", 6, 20.0),  # wooden door
    ((150, 150, 160), "hstripes", 4, 30.0),  # railing
    ((220, 210, 190), "hstripes", 3, 15.0),  # cornice
    ((200, 190, 170), "vstripes", 10, 18.0),  # fluted pillar
    ((235, 235, 230), "flat", 1, 0.0),  # sill
    ((40, 40, 50), "checker", 16, 20.0),  # shop front
    ((180, 120, 90), "noise", 1, 30.0),  # decoration
    ((90, 120, 70), "hstripes", 5, 35.0),  # blind
    ((205, 200, 185), "checker", 4, 10.0),  # molding
    ((150, 190, 230), "flat", 1, 0.0),  # sky
]


def _texture(cls: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """[h, w, 3] float texture of class `cls`, with local coordinates starting at the shape's corner."""
    base, pattern, period, contrast = STYLES[cls]
    y, x = np.ogrid[:h, :w]
    mod: np.ndarray
    if pattern == "hstripes":
        mod = np.broadcast_to(((y // period) % 2) * 2.0 - 1.0, (h, w))
    elif pattern == "vstripes":
        mod = np.broadcast_to(((x // period) % 2) * 2.0 - 1.0, (h, w))
    elif pattern == "checker":
        mod = (((y // period) + (x // period)) % 2) * 2.0 - 1.0
    elif pattern == "noise":
        mod = rng.standard_normal((h, w), dtype=np.float32)
    else:
        mod = np.zeros((h, w), dtype=np.float32)
    return np.asarray(base, dtype=np.float32) + (contrast * mod)[:, :, None].astype(np.float32)


def render_pair(
    index: int, split: str = "train", seed: int = 0, size: int = 256, num_classes: int = 8
) -> tuple[Image.Image, Image.Image]:
    """(label map, photo) as two RGB PIL images of size x size, a pure function of its arguments."""
    check_value("num_classes", num_classes, NumClasses)
    rng = np.random.default_rng([seed, zlib.crc32(split.encode()), index])
    labels = np.zeros((size, size), dtype=np.uint8)
    photo = _texture(0, size, size, rng)

    def paint(cls: int, y0: int, x0: int, mask: np.ndarray) -> None:
        h, w = mask.shape
        region = photo[y0 : y0 + h, x0 : x0 + w]
        region[mask] = _texture(cls, h, w, rng)[mask]
        labels[y0 : y0 + h, x0 : x0 + w][mask] = cls

    # Horizontal bands (cornices, shop fronts, sky), then a grid of windows-like rectangles/ellipses.
    for _ in range(int(rng.integers(1, 4))):
        h, y0 = int(rng.integers(size // 32, size // 6)), int(rng.integers(0, size))
        h = min(h, size - y0)
        if h > 0:
            paint(int(rng.integers(1, num_classes)), y0, 0, np.ones((h, size), dtype=bool))
    rows, cols = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    cell_h, cell_w = size // rows, size // cols
    for r in range(rows):
        cls = int(rng.integers(1, num_classes))  # one class per row, like a storey of windows
        for c in range(cols):
            if rng.random() < 0.2:
                continue
            h = int(rng.integers(cell_h // 3, cell_h - 2))
            w = int(rng.integers(cell_w // 3, cell_w - 2))
            y0 = r * cell_h + int(rng.integers(1, cell_h - h))
            x0 = c * cell_w + int(rng.integers(1, cell_w - w))
            if rng.random() < 0.25:  # ellipse
                yy, xx = np.ogrid[:h, :w]
                mask = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1.0
            else:
                mask = np.ones((h, w), dtype=bool)
            paint(cls, y0, x0, mask)

    # A little shading (top-lit, random strength) and sensor noise: realistic, but not learnable from labels.
    light = (
        1.0 + rng.uniform(-0.08, 0.08) - rng.uniform(0.0, 0.12) * np.linspace(0, 1, size, dtype=np.float32)
    )
    photo *= light[:, None, None].astype(np.float32)
    photo += 2.0 * rng.standard_normal(photo.shape, dtype=np.float32)
    label_img = Image.fromarray(PALETTE[labels])
    photo_img = Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8))
    return label_img, photo_img


class SyntheticPairs(Dataset[Pair]):
    """`num_samples` synthetic pairs of `split`; AtoB = label map -> photo. Items as in PairedImageDataset."""

    def __init__(
        self,
        num_samples: int,
        split: str = "train",
        seed: int = 0,
        image_size: int = 256,
        num_classes: int = 8,
        direction: str = "AtoB",
        in_channels: int = 3,
        out_channels: int = 3,
        transform: PairTransform | None = None,
    ) -> None:
        self.num_samples, self.split, self.seed = check_value("num_samples", num_samples, Count), split, seed
        self.image_size = check_value("image_size", image_size, ImageSize)
        self.num_classes = check_value("num_classes", num_classes, NumClasses)
        self.direction = check_value("direction", direction, Direction)
        self.in_channels = check_value("in_channels", in_channels, Channels)
        self.out_channels = check_value("out_channels", out_channels, Channels)
        self.transform = transform if transform is not None else PairTransform(train=split == "train")

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Pair:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} synthetic samples")
        a, b = render_pair(index, self.split, self.seed, self.image_size, self.num_classes)
        path = f"synthetic/{self.split}/{index:06d}"
        return make_pair(a, b, path, self.direction, self.in_channels, self.out_channels, self.transform)
