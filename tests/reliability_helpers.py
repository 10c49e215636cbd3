"""Test-only helpers for the reliability tests (importable by training subprocesses via PYTHONPATH)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch


class DumpRankState(L.Callback):
    """Each DDP rank writes its final weights and buffers to ``dirpath/rank{r}.pt``."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.dirpath / f"rank{trainer.global_rank}.pt")
