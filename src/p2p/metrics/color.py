"""Colour distribution of outputs vs real images (paper section 4.2, Figure 7 and Table 5).

The paper compares the marginal distributions of the L, a and b channels (CIE Lab) of generated and real
photos: L1 alone gives greyish, narrow distributions; the cGAN term brings the colours of real photos
back. p2p summarises each channel by the intersection of the two normalised histograms, sum(min(p, q)):
1 for identical distributions, 0 for disjoint ones.
"""

from __future__ import annotations

import torch

# channel: (low, high, bins); 2.5 Lab units per bin. sRGB spans a in [-86, 98] and b in [-108, 95].
LAB_BINS = {"L": (0.0, 100.0, 40), "a": (-110.0, 110.0, 88), "b": (-110.0, 110.0, 88)}

_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE_D65 = torch.tensor([0.950456, 1.0, 1.088754])


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB [B, 3, H, W] in [0, 1] -> CIE Lab (D65) [B, 3, H, W]: L in [0, 100], a and b about [-110, 110]."""
    rgb = rgb.double().clamp(0, 1)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,bjhw->bihw", _RGB_TO_XYZ.to(rgb), linear) / _WHITE_D65.to(rgb)[None, :, None, None]
    eps = (6 / 29) ** 3
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


class LabHistograms:
    """Accumulates Lab histograms of generated and real images; ``compute`` -> color_hist_{L,a,b}."""

    def __init__(self) -> None:
        self.hist = {real: {c: torch.zeros(n, dtype=torch.float64) for c, (_, _, n) in LAB_BINS.items()}
                     for real in (True, False)}  # fmt: skip

    def update(self, images: torch.Tensor, real: bool) -> None:
        """``images``: RGB in [-1, 1] (grayscale images have a = b = 0)."""
        x = (images.float().clamp(-1, 1) + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        lab = rgb_to_lab(x.cpu())
        for i, (c, (lo, hi, n)) in enumerate(LAB_BINS.items()):
            self.hist[real][c] += torch.histc(lab[:, i].clamp(lo, hi), bins=n, min=lo, max=hi)

    def distributions(self, real: bool) -> dict[str, torch.Tensor]:
        return {c: h / h.sum().clamp_min(1) for c, h in self.hist[real].items()}

    def compute(self) -> dict[str, float]:
        p, q = self.distributions(False), self.distributions(True)
        return {f"color_hist_{c}": float(torch.minimum(p[c], q[c]).sum()) for c in LAB_BINS}
