"""The optimiser settings and learning-rate schedule of pix2pix (paper section 3.3; reference ``--lr_policy
linear``): Adam(2e-4, (0.5, 0.999)) for G and for D, the rate constant for ``n_epochs`` epochs, then decayed
linearly to 0 over ``n_epochs_decay``, stepped once per epoch by the module."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Annotated

import torch
from annotated_types import Ge

from p2p.errors import ConfigError, check_fields
from p2p.training.perf import fused_adam_available


@dataclass
class Optim:
    lr: Annotated[float, Ge(0)] = 2e-4  # the paper's learning rate, for both networks
    betas: list[float] = field(
        default_factory=lambda: [0.5, 0.999]
    )  # Adam's momentum terms (paper: 0.5, 0.999)
    n_epochs: Annotated[int, Ge(0)] = 100  # constant learning rate for this many epochs ...
    n_epochs_decay: Annotated[int, Ge(0)] = (
        100  # ... then linear decay to 0 over this many (the paper's facades run: 100 + 100)
    )
    fused: bool | None = (
        None  # fused Adam: None = on for CUDA, and for CPU where PyTorch has it (p2p.training.perf)
    )

    def __post_init__(self) -> None:
        check_fields(self)
        self.betas = [float(b) for b in self.betas]
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas: must be two numbers in [0, 1), e.g. [0.5, 0.999], got {self.betas}")

    def build(
        self, nets: list[torch.nn.Module], device_type: str
    ) -> tuple[list[torch.optim.Adam], list[torch.optim.lr_scheduler.LambdaLR]]:
        """One Adam and one schedule per network. Fused Adam (one kernel over all parameters) computes the
        same update up to float rounding (p2p.training.perf)."""
        fused = fused_adam_available(device_type) if self.fused is None else self.fused
        betas = (self.betas[0], self.betas[1])
        opts = [torch.optim.Adam(n.parameters(), lr=self.lr, betas=betas, fused=fused) for n in nets]
        # a partial of a module function, not a bound method: LambdaLR's state_dict copies a callable's
        # __dict__ into every checkpoint, and a method's is its function's (empty only by luck)
        factor = partial(linear_decay, n_epochs=self.n_epochs, n_epochs_decay=self.n_epochs_decay)
        return opts, [torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in opts]


def linear_decay(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """The learning rate's multiplier in ``epoch`` (0-based): the reference's linear policy (epoch_count=1)."""
    return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)
