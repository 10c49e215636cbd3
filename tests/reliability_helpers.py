"""Test-only helpers for the reliability tests (importable by training subprocesses via PYTHONPATH)."""

from __future__ import annotations

import builtins
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

import p2p.io.atomic as atomic


class DumpRankState(L.Callback):
    """Each DDP rank writes its final weights and buffers to ``dirpath/rank{r}.pt``."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.dirpath / f"rank{trainer.global_rank}.pt")


def wait_for(predicate: Any, proc: subprocess.Popen[str], timeout: float = 240) -> None:
    """Poll ``predicate`` until it holds; fail with the output if ``proc`` exits first or time runs out."""
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(
                f"training exited early ({proc.returncode}):\n{proc.communicate()[0][-3000:]}"
            )
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("training did not reach its second step in time")
        time.sleep(0.1)


class PauseUntilFile(L.Callback):
    """After batch ``at_batch``, writes ``<go>.waiting`` and waits until the file ``go`` exists: a run that
    stays alive exactly as long as a test needs."""

    def __init__(self, go: str, at_batch: int = 1) -> None:
        self.go, self.at_batch = Path(go), at_batch

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.current.completed == self.at_batch:
            Path(f"{self.go}.waiting").touch()
            while not self.go.exists():
                time.sleep(0.05)


class DiskFullAfter(L.Callback):
    """From the ``saves``-th all-or-nothing write on, the temporary file is the kernel's /dev/full, whose
    every write fails with ENOSPC: a disk that fills up during the run."""

    def __init__(self, saves: int) -> None:
        self.saves = saves

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        opened = [0]

        def open_(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if str(path).endswith(".tmp"):
                opened[0] += 1
                if opened[0] > self.saves:
                    return builtins.open("/dev/full", "wb")
            return builtins.open(path, mode, *args, **kwargs)

        atomic.open = open_  # type: ignore[attr-defined]  # the module's global shadows the builtin


class SignalGroupAt(L.Callback):
    """Rank 0 sends ``signum`` to its whole process group (every DDP rank and DataLoader worker, as a
    scheduler's ``scancel`` does), or with ``group=False`` to itself only, when the epoch's batch
    ``at_batch`` (counted from 0) has finished."""

    def __init__(self, at_batch: int, signum: int = 15, group: bool = True) -> None:
        self.at_batch, self.signum, self.group = at_batch, signum, group

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if (
            trainer.is_global_zero
            and trainer.fit_loop.epoch_loop.batch_progress.current.completed == self.at_batch
        ):
            if self.group:
                os.killpg(os.getpgrp(), self.signum)
            else:
                os.kill(os.getpid(), self.signum)
