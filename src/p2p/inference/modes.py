"""The two ways to run a trained generator (paper section 3.1 and 6.2).

- ``paper``: what the paper does at test time: dropout stays on (the only noise source) and BatchNorm uses
  the statistics of the test batch, not the running averages (with batch size 1 this is instance
  normalisation). Outputs are stochastic.
- ``eval``: the usual PyTorch eval mode: running statistics, no dropout; deterministic.

Every result p2p reports says which mode produced it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, get_args

import torch.nn as nn

from p2p.errors import check_value

InferenceMode = Literal["paper", "eval"]
INFERENCE_MODES: tuple[str, ...] = get_args(InferenceMode)


@contextmanager
def inference_mode(model: nn.Module, mode: str = "eval") -> Iterator[nn.Module]:
    """Put ``model`` in the given inference mode for the ``with`` block, then restore every module's state.

    In ``paper`` mode BatchNorm layers run in training mode with ``track_running_stats`` off, so they
    normalise with batch statistics *without* updating the stored running averages.
    """
    check_value("inference", mode, InferenceMode)
    saved = [(m, m.training, getattr(m, "track_running_stats", None)) for m in model.modules()]
    try:
        model.eval()
        if mode == "paper":
            for m in model.modules():
                if isinstance(m, nn.Dropout):
                    m.train()
                elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()
                    m.track_running_stats = False
        yield model
    finally:
        for m, training, track in saved:
            m.training = training
            if track is not None:
                m.track_running_stats = track
