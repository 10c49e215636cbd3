"""The paper's optimiser and the reference code's learning-rate schedule.

Adam with lr 2e-4 and betas (0.5, 0.999) for G and for D (section 4); the rate is constant for ``n_epochs``
and then decays linearly to 0 over ``n_epochs_decay`` (the reference's "linear" policy), stepped once per
epoch by the module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from p2p.training.perf import fused_adam_available

OPTIM_DEFAULTS: dict[str, Any] = {"lr": 2e-4, "betas": (0.5, 0.999), "n_epochs": 100, "n_epochs_decay": 100}


def linear_decay(n_epochs: int, n_epochs_decay: int) -> Callable[[int], float]:
    """The learning-rate factor at an epoch: the reference's "linear" policy with epoch_count = 1."""

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)

    return factor  # a function, not an object: LambdaLR keeps it out of checkpoints


def adam_with_linear_decay(
    nets: list[torch.nn.Module], optim: dict[str, Any], device_type: str
) -> tuple[list[torch.optim.Adam], list[torch.optim.lr_scheduler.LambdaLR]]:
    """One Adam and one schedule per network. ``optim``: lr, betas, n_epochs, n_epochs_decay, and fused
    (None: fused Adam where the device has it, one kernel over all parameters; the same update up to float
    rounding, see p2p.training.perf)."""
    o = {**OPTIM_DEFAULTS, **optim}
    fused = fused_adam_available(device_type) if o.get("fused") is None else bool(o["fused"])
    lr, betas = float(o["lr"]), (float(o["betas"][0]), float(o["betas"][1]))
    opts = [torch.optim.Adam(n.parameters(), lr=lr, betas=betas, fused=fused) for n in nets]
    factor = linear_decay(int(o["n_epochs"]), int(o["n_epochs_decay"]))
    return opts, [torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in opts]
