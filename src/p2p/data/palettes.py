"""The label colours of p2p's label-map datasets: drawing them (`p2p.demo`) and reading them back (the
FCN-score, `p2p.metrics.fcn`) use the same tables.

Cityscapes has an official colour table (19 train ids; void colours ignored), the synthetic data has
``p2p.data.synthetic.PALETTE``, and the facades label maps' 12 colours (CMP facades, JPEG-compressed) were
measured with `derive_palette`, which finds the colours of any other colour-coded label-map dataset.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

from p2p.data.synthetic import PALETTE as SYNTHETIC_PALETTE

# Cityscapes train ids 0..18 (cityscapesScripts labels.py), in order.
CITYSCAPES_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle"]  # fmt: skip
CITYSCAPES_COLORS = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip
# Colours of the void labels (ignored, as in the official evaluation): unlabeled/static, dynamic, ground,
# parking, rail track, guard rail, bridge, tunnel, caravan, trailer.
CITYSCAPES_VOID_COLORS = [
    (0, 0, 0), (111, 74, 0), (81, 0, 81), (250, 170, 160), (230, 150, 140), (180, 165, 180),
    (150, 100, 100), (150, 120, 90), (0, 0, 90), (0, 0, 110),
]  # fmt: skip


def derive_palette(
    label_maps: Iterable[Image.Image],
    max_classes: int = 40,
    min_fraction: float = 2e-4,
    min_separation: int = 32,
) -> np.ndarray:
    """The colours of a colour-coded label map dataset, [K, 3] uint8, most frequent first.

    Only flat pixels count (all channels within 24 levels over a 5x5 window): region interiors hold the
    true colour, edges hold JPEG ringing and blends. Peaks of their 4-level histogram are taken greedily,
    each at least ``min_separation`` away from the previous ones, then refined to the mean of the flat
    pixels nearest to them.
    """
    flat = []
    for img in label_maps:
        rgb = np.asarray(img.convert("RGB"))
        flat.append(rgb[_spread(rgb) < 24])
    px = np.concatenate(flat) if flat else np.zeros((0, 3), np.uint8)
    if len(px) == 0:
        raise ValueError("no flat label pixels to derive a palette from: are these colour-coded label maps?")
    # the 4-level histogram: one count per (r, g, b) bin, bins in (r, g, b) order, as np.unique(axis=0)
    # would give them, but counted in one pass instead of a sort of every pixel (65 levels per channel)
    packed = ((px.astype(np.int64) + 2) // 4) @ np.array([65 * 65, 65, 1])
    hist = np.bincount(packed, minlength=65**3)
    nonzero = np.flatnonzero(hist)
    bins, counts = np.stack([nonzero // (65 * 65), nonzero // 65 % 65, nonzero % 65], 1), hist[nonzero]
    peaks: list[np.ndarray] = []
    for i in np.argsort(-counts, kind="stable"):
        if counts[i] < min_fraction * len(px) or len(peaks) >= max_classes:
            break
        colour = np.clip(bins[i] * 4, 0, 255)
        if all(np.abs(colour - p).max() > min_separation for p in peaks):
            peaks.append(colour)
    centers = np.stack(peaks).astype(np.float32)
    sample = px[:: max(1, len(px) // 200_000)].astype(np.float32)  # refinement needs no more than this
    nearest = ((sample[:, None] - centers[None]) ** 2).sum(-1).argmin(1)
    for k in range(len(centers)):
        if (nearest == k).any():
            centers[k] = sample[nearest == k].mean(0)
    return np.clip(np.rint(centers), 0, 255).astype(np.uint8)


def _spread(rgb: np.ndarray) -> np.ndarray:
    """[H, W]: the largest per-channel range (max - min) over each pixel's 5x5 window, the image's edge
    repeated beyond it (as PIL's MaxFilter(5) - MinFilter(5)); separable, 5 + 5 shifted views per extreme."""
    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((2, 2), (2, 2), (0, 0)), mode="edge")

    def extreme(op: np.ufunc) -> np.ndarray:
        rows = op.reduce([padded[i : i + h] for i in range(5)])
        return op.reduce([rows[:, j : j + w] for j in range(5)]).astype(np.int16)

    return (extreme(np.maximum) - extreme(np.minimum)).max(-1)


# derive_palette on every 4th of the 400 facades training label maps (the B halves), most frequent first
FACADES_COLORS = [
    (1, 48, 254), (0, 0, 222), (192, 254, 63), (2, 127, 254), (254, 80, 1), (174, 0, 1), (2, 207, 255),
    (33, 254, 225), (254, 159, 2), (112, 254, 143), (254, 240, 2), (252, 1, 2),
]  # fmt: skip

PALETTES: dict[str, list[tuple[int, int, int]]] = {
    "facades": FACADES_COLORS,
    "cityscapes": CITYSCAPES_COLORS,
    "synthetic": [(int(r), int(g), int(b)) for r, g, b in SYNTHETIC_PALETTE],
}
