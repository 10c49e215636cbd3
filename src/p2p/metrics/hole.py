"""Inpainting's scores inside the hole only (Context Encoders report theirs on the missing region: Pathak et
al., CVPR 2016, Table 1): ``l1_hole`` (mean absolute error in [-1, 1]) and ``psnr_hole`` (images in [0, 1]),
each the mean over images of the error of that image's hole pixels."""

from __future__ import annotations

import math

import torch


class HoleScores:
    def __init__(self) -> None:
        self.l1: list[float] = []
        self.psnr: list[float] = []

    @torch.no_grad()
    def update(self, fake: torch.Tensor, target: torch.Tensor, hole: torch.Tensor) -> None:
        """``fake``, ``target``: [B, C, H, W] in [-1, 1]; ``hole``: boolean [B, 1, H, W]."""
        weight = hole.to(torch.float64).expand_as(fake)
        n = weight.sum(dim=(1, 2, 3)).clamp_min(1)
        diff = (fake.double().clamp(-1, 1) - target.double()) * weight
        self.l1 += (diff.abs().sum(dim=(1, 2, 3)) / n).tolist()
        mse = ((diff / 2) ** 2).sum(dim=(1, 2, 3)) / n  # in [0, 1] units
        self.psnr += [10 * math.log10(1 / m) if m > 0 else math.inf for m in mse.tolist()]

    def compute(self) -> dict[str, float]:
        if not self.l1:
            raise ValueError("no images were scored")
        return {"l1_hole": sum(self.l1) / len(self.l1), "psnr_hole": sum(self.psnr) / len(self.psnr)}
