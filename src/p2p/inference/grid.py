"""What a person looks at: input | output | target side by side, one row per example."""

from __future__ import annotations

import torch


def grid_rows(x: torch.Tensor, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One image per example: input | output | target side by side, in [0, 1], RGB."""

    def rgb(t: torch.Tensor) -> torch.Tensor:
        t = (t.float().clamp(-1, 1) + 1) / 2
        return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t[:, :3]

    return torch.cat([rgb(x), rgb(fake), rgb(y)], dim=3)
