"""sRGB <-> CIE Lab (D65) in torch, for the colorization task (p2p.io.tasks) and the colour metrics
(p2p.metrics.color).

The constants are OpenCV's (``cv2.cvtColor`` COLOR_RGB2Lab on float images): the sRGB primaries' XYZ matrix
and the D65 white point. The inverse uses the exact inverse matrix, so RGB -> Lab -> RGB is the identity to
float64 precision for every colour inside the sRGB gamut (tests/test_tasks.py checks real photos).
"""

from __future__ import annotations

import torch

_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
_XYZ_TO_RGB = torch.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = torch.tensor([0.950456, 1.0, 1.088754], dtype=torch.float64)
_DELTA = 6 / 29  # CIE: the cube root's linear segment below DELTA**3


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB [B, 3, H, W] in [0, 1] -> CIE Lab (D65) [B, 3, H, W], float64: L in [0, 100], a and b about
    [-110, 110] (sRGB spans a in [-86, 98] and b in [-108, 95])."""
    rgb = rgb.double().clamp(0, 1)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,bjhw->bihw", _RGB_TO_XYZ.to(rgb), linear) / _WHITE_D65.to(rgb)[None, :, None, None]
    eps = _DELTA**3
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), xyz / (3 * _DELTA**2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab (D65) [B, 3, H, W] -> sRGB [B, 3, H, W] in [0, 1], float64. Colours outside the sRGB gamut
    (a generator's ab can ask for any) are clipped to it, channel by channel."""
    lab = lab.double()
    L, a, b = lab.unbind(1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], 1)
    xyz = (
        torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29)) * _WHITE_D65.to(lab)[None, :, None, None]
    )
    linear = torch.einsum("ij,bjhw->bihw", _XYZ_TO_RGB.to(lab), xyz).clamp(0, 1)
    rgb = torch.where(
        linear > 0.0031308, 1.055 * linear.clamp_min(0.0031308) ** (1 / 2.4) - 0.055, 12.92 * linear
    )
    return rgb.clamp(0, 1)
