"""Edge maps of photos for the edges -> photo task: the Canny detector (Canny, TPAMI 1986), in torch.

The paper's edges2shoes/edges2handbags inputs were HED edges (Xie & Tu, ICCV 2015, a CNN trained on
human-drawn boundaries) post-processed by thinning and removing small fragments (the reference's
scripts/edges/PostprocessHED.m). No such learned detector is available offline, so p2p uses Canny instead:
Gaussian smoothing (``sigma``), 3x3 Sobel gradients, non-maximum suppression along the gradient direction
(quantised to 4 directions) and hysteresis (``high`` starts an edge, ``low`` continues it, 8-connected),
with OpenCV's ``cv2.Canny`` conventions (L2 gradient magnitude of a 0..255 image, replicated borders), so
its edges match OpenCV's on the same smoothed image (tests/test_tasks.py). It differs from HED+thinning: Canny
marks every strong intensity step, texture and shading included, and can miss low-contrast object outlines that
HED, which learned which boundaries people draw, keeps; its lines are one pixel wide by construction (no
thinning needed), and small fragments are only removed insofar as hysteresis drops weak ones.

The map is drawn as edges2shoes stores it: black lines on white.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from p2p.errors import ConfigError

_TAN_22_5, _TAN_67_5 = math.tan(math.pi / 8), math.tan(3 * math.pi / 8)


@dataclass(frozen=True)
class EdgeSettings:
    sigma: float = 2.0  # Gaussian smoothing before the gradients, in pixels of the training-size image
    low: float = 40.0  # hysteresis thresholds on the Sobel gradient magnitude of the 0..255 grey image
    high: float = 100.0

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise ConfigError(f"edge_sigma: must be >= 0, got {self.sigma}")
        if not 0 <= self.low <= self.high:
            raise ConfigError(f"edge_low, edge_high: need 0 <= low <= high, got {self.low} and {self.high}")


def gaussian_blur(gray: torch.Tensor, sigma: float) -> torch.Tensor:
    """[H, W] float -> the same, smoothed by a separable Gaussian (radius 3 sigma, replicated borders)."""
    if sigma <= 0:
        return gray
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-((torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2) / 2)
    k = (k / k.sum()).to(gray.dtype)
    x = F.pad(gray[None, None], (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))[0, 0]


def canny(gray: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Canny on a grey image [H, W] with values in 0..255 (already smoothed): boolean edges [H, W]."""
    x = F.pad(gray.double()[None, None], (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)
    gx = F.conv2d(x, sobel.view(1, 1, 3, 3))[0, 0]
    gy = F.conv2d(x, sobel.t().contiguous().view(1, 1, 3, 3))[0, 0]
    mag = torch.hypot(gx, gy)

    # non-maximum suppression: a pixel stays if it is a maximum along its (quantised) gradient direction;
    # as OpenCV: strictly greater than the neighbour before it and at least the one after it (diagonals:
    # strictly greater than both)
    m = F.pad(mag[None, None], (1, 1, 1, 1))[0, 0]  # zeros outside: the border never suppresses
    h, w = mag.shape

    def at(dy: int, dx: int) -> torch.Tensor:
        return m[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    ax, ay = gx.abs(), gy.abs()
    horizontal = ay < ax * _TAN_22_5  # gradient along x: compare left and right
    vertical = ay > ax * _TAN_67_5
    same_sign = (gx * gy) > 0  # diagonal: down-right/up-left when gx and gy agree (y points down)
    keep = torch.where(
        horizontal,
        (mag > at(0, -1)) & (mag >= at(0, 1)),
        torch.where(
            vertical,
            (mag > at(-1, 0)) & (mag >= at(1, 0)),
            torch.where(
                same_sign,
                (mag > at(-1, -1)) & (mag > at(1, 1)),
                (mag > at(-1, 1)) & (mag > at(1, -1)),
            ),
        ),
    )
    candidate = (keep & (mag > low)).numpy()
    return torch.from_numpy(hysteresis(candidate, candidate & (mag > high).numpy()))


def hysteresis(candidate: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """The candidates 8-connected to a strong pixel (a flood fill from the strong ones, as OpenCV's stack):
    linear in the number of edge pixels, where growing by dilation needs as many steps as the longest edge."""
    h, w = candidate.shape
    row = w + 2  # padded by one pixel of non-candidates: no bounds checks
    cand = np.pad(candidate, 1).ravel().tolist()
    done = bytearray(np.pad(strong, 1).ravel().astype(np.uint8).tobytes())
    stack = np.flatnonzero(np.pad(strong, 1)).tolist()
    steps = (-row - 1, -row, -row + 1, -1, 1, row - 1, row, row + 1)
    while stack:
        i = stack.pop()
        for step in steps:
            j = i + step
            if cand[j] and not done[j]:
                done[j] = 1
                stack.append(j)
    return np.frombuffer(bytes(done), dtype=np.uint8).reshape(h + 2, w + 2)[1:-1, 1:-1].astype(bool)


def edge_map(photo: Image.Image, settings: EdgeSettings) -> Image.Image:
    """The edges of ``photo`` (any mode; its grey version, ITU-R 601 luma) as black lines on white, mode L."""
    gray = torch.from_numpy(np.asarray(photo.convert("L"), dtype=np.float64))
    edges = canny(gaussian_blur(gray, settings.sigma), settings.low, settings.high)
    return Image.fromarray(np.where(edges.numpy(), 0, 255).astype(np.uint8), mode="L")
