"""Callbacks that make a long run resumable exactly and stoppable at any time (see docs/reliability.md).

- `RNGState`: puts the RNG states (torch CPU and CUDA, numpy, python) into every checkpoint and restores
  them on resume. Lightning saves the model, optimisers, schedulers and loop counters, but not these; without
  them a resumed run draws different dropout masks (the paper's noise, section 3.1) than the run it continues.
  The data order and the crops/flips do not need them: they are functions of (seed, epoch, index), see
  `p2p.data.sampler`.
- `PreemptionCheckpoint`: on SIGTERM (a scheduler's preemption, ``kill``, ``scancel``) or SIGUSR1 (SLURM's
  ``--signal=USR1@90`` warning, when Lightning's SLURM auto-requeue is not handling it), finishes the current
  batch, writes ``last.ckpt`` (atomically, `p2p.checkpoint_io`) and exits with status 0; on SIGINT (Ctrl-C)
  the same, with status 130 (a second Ctrl-C stops at once, without saving). ``ckpt_path=last`` then
  continues in the same run folder.
"""

from __future__ import annotations

import logging
import random
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

log = logging.getLogger(__name__)


class RNGState(L.Callback):
    """Saves torch (CPU, CUDA), numpy and python RNG states in checkpoints; restores them when training starts.

    Restoring at ``on_train_start`` rather than at load time means nothing Lightning does between loading
    and the first batch can move the RNGs. Under DDP the checkpoint holds rank 0's states and every rank
    restores them: ranks are seeded alike and draw the same numbers in the same order, so they are equal.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    @override
    def state_dict(self) -> dict[str, Any]:
        # only tensors and plain python values: Lightning loads checkpoints with torch.load(weights_only=True)
        np_state = np.random.get_state(legacy=True)
        assert isinstance(np_state, tuple)
        kind, keys, pos, has_gauss, gauss = np_state
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "python": random.getstate(),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state["python"])


#: exit status after Ctrl-C, as shells report a process that SIGINT ended (128 + 2)
SIGINT_EXIT = 128 + signal.SIGINT


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM, SIGUSR1 or SIGINT: finish the batch, save ``last.ckpt`` (mid-epoch is fine), exit 0 (130
    for SIGINT).

    In one process Lightning already turns SIGTERM into a `SIGTERMException` at the end of the current
    batch; this callback adds the checkpoint. Lightning has no SIGINT handler: Python's KeyboardInterrupt
    lands in the middle of whatever runs (an optimiser step, a checkpoint write), and Lightning's
    "graceful shutdown" then saves nothing and exits 1. So during training SIGINT sets Lightning's own
    SIGTERM flag instead, and the run stops exactly as for SIGTERM. ``dirpath`` defaults to the
    ModelCheckpoint callback's folder, so the file is the ``last.ckpt`` that ``ckpt_path=last`` resumes from.

    Under DDP, signals take another way. A scheduler signals every rank, each at its own point of the step,
    and Lightning 2.6 acts on each rank's own flag after a batch (and broadcasts from inside its signal
    handler): one rank stops to save while another enters the next step's collectives, and both wait for
    ever (Lightning issue #20806; seen here with SIGTERM to a 2-process CPU run). So while training under
    DDP this callback handles SIGTERM, SIGUSR1 and SIGINT itself, only noting them (and passing them on to
    the launcher's other processes, as Lightning does), and the ranks decide together: at the start of
    every batch one all-reduce (max) of each rank's note, after which all stop before the same batch. The
    cost is one scalar all-reduce and host sync per step under DDP, beside Lightning's own broadcast.
    """

    def __init__(self, dirpath: str | None = None, filename: str = "last.ckpt", sigusr1: bool = True) -> None:
        self.dirpath, self.filename, self.sigusr1 = dirpath, filename, sigusr1
        self._signal: int | None = None
        self._previous: Any = None
        self._previous_sigint: Any = None
        self._trainer: L.Trainer | None = None
        self._previous_sigterm: Any = None

    def path(self, trainer: L.Trainer) -> Path:
        ckpt = trainer.checkpoint_callback
        dirpath = self.dirpath or (
            getattr(ckpt, "dirpath", None) or Path(trainer.default_root_dir) / "checkpoints"
        )
        return Path(dirpath) / self.filename

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not on_fit_start: Lightning installs its own handlers after that, and would restore ours at teardown
        env = trainer._accelerator_connector.cluster_environment
        slurm_requeues = (
            isinstance(env, SLURMEnvironment) and env.auto_requeue
        )  # Lightning saves hpc_ckpt_*.ckpt
        try:
            if self.sigusr1 and not slurm_requeues and hasattr(signal, "SIGUSR1"):
                self._previous = signal.signal(signal.SIGUSR1, self._on_signal)
            self._trainer = trainer
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
            if trainer.world_size > 1:  # the ranks decide together (the class docstring)
                self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_signal)
        except ValueError:  # not the main thread: leave signals alone
            pass

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        first, self._signal = self._signal is None, signum  # acted on before the next batch starts
        trainer = self._trainer
        if first and trainer is not None and trainer.world_size > 1 and trainer.strategy.launcher is not None:
            # to the ranks this process started, as Lightning's handler does
            trainer.strategy.launcher.kill(signum)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self._signal = signum
        assert self._trainer is not None
        if self._trainer.world_size == 1:  # under DDP the ranks decide together, at the next batch's start
            # Lightning's flag (its private signal connector; the `received_sigterm` property only reads it):
            # its loops check it after each batch, also in validation
            self._trainer._signal_connector.received_sigterm = True
        # a second Ctrl-C: Python's KeyboardInterrupt, for a run stuck before its next batch (nothing saved)
        signal.signal(signal.SIGINT, self._previous_sigint)
        self._previous_sigint = None
        if self._trainer.is_global_zero:
            log.warning(
                "SIGINT: saving last.ckpt after this batch (Ctrl-C again to stop at once, without saving)"
            )

    @override
    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        # SIGUSR1 (SIGINT goes Lightning's way in one process): stop before this batch, the checkpoint's counters
        # match the weights
        if trainer.world_size > 1:  # every rank stops before the same batch if any was signalled
            noted = torch.tensor([self._signal or 0], device=trainer.strategy.root_device)
            torch.distributed.all_reduce(noted, op=torch.distributed.ReduceOp.MAX)
            self._signal = self._signal or int(noted.item()) or None
            if self._signal is not None:
                raise SIGTERMException()
        elif self._signal is not None and self._signal != signal.SIGINT:
            raise SIGTERMException()  # the same path as SIGTERM: on_exception below saves, then exit 0

    @override
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_signal()  # Lightning calls no teardown hooks after an exception
        if not isinstance(exception, SIGTERMException):
            return  # a crash: keep the last good checkpoint, do not overwrite it with this state
        path = self.path(trainer)
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint) and Path(ckpt.dirpath or "") == path.parent:
            ckpt.last_model_path = str(path)  # so a resumed run keeps writing last.ckpt, not last-v1.ckpt
        trainer.save_checkpoint(path)
        if self._signal == signal.SIGINT:
            exception.code = SIGINT_EXIT  # the SystemExit Lightning re-raises once every hook has run
        if trainer.is_global_zero:
            log.warning(
                "%s received: saved %s at epoch %d, global step %d. Resume with ckpt_path=%s (or ckpt_path=last "
                "with the same run folder)",
                signal.Signals(self._signal).name if self._signal else "SIGTERM",
                path, trainer.current_epoch, trainer.global_step, path,
            )  # fmt: skip

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_signal()

    def _restore_signal(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)
            self._previous = None
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        self._trainer = None
