"""Normalisation layers and weight init shared by the generators and discriminators."""

from __future__ import annotations

import torch.nn as nn

NORMS = ("batch", "instance", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """``batch``: BatchNorm with affine params and running stats (the paper's choice).
    ``instance``: InstanceNorm without affine params or running stats, as in the reference code.
    ``none``: identity."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def conv_bias(kind: str) -> bool:
    """A conv feeding a BatchNorm needs no bias: BN's shift replaces it (this is what gives the reference
    its exact parameter counts). InstanceNorm has no affine shift and 'none' has nothing, so they keep one."""
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
    return kind != "batch"


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """Paper section 6.2 / reference ``init_type=normal``: conv weights ~ N(0, 0.02), biases 0;
    BatchNorm weights ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
