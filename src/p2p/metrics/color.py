"""Colour distribution of outputs vs real images (paper section 4.2, Figure 7 and Table 5).

The paper compares the marginal distributions of the L, a and b channels (CIE Lab) of generated and real
photos: L1 alone gives greyish, narrow distributions; the cGAN term brings the colours of real photos
back. p2p summarises each channel by the intersection of the two normalised histograms, sum(min(p, q)):
1 for identical distributions, 0 for disjoint ones.
"""

from __future__ import annotations

import torch

from p2p.io.color import rgb_to_lab

# channel: (low, high, bins); 2.5 Lab units per bin. sRGB spans a in [-86, 98] and b in [-108, 95].
LAB_BINS = {"L": (0.0, 100.0, 40), "a": (-110.0, 110.0, 88), "b": (-110.0, 110.0, 88)}

__all__ = ["LAB_BINS", "LabHistograms", "rgb_to_lab"]


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
