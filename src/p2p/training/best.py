"""Checkpoints of a sensible size: ``last.ckpt`` keeps everything a resume needs, the best by the monitored
metric keeps what a user needs to *use* the model.

`GeneratorCheckpoint` is Lightning's ModelCheckpoint with two changes:

- the best file (``best_epochNNN.ckpt``) holds the generator only: its weights (``G.*``), the
  hyperparameters and p2p's record of the architecture, no discriminator and no Adam moments. For the
  paper's unet_256 + patchgan_70 that is 218 MB of last.ckpt's 686 MB (109 MB with ``dtype=bfloat16``).
  `p2p.weights.read_weights` reads it like any p2p checkpoint, so ``p2p.load_generator``, ``p2p-translate``,
  ``p2p-export`` and ``p2p-eval`` take it; resuming needs ``last.ckpt``.
- ``last.ckpt`` is written at every checkpoint step (Lightning 2.6 rewrites it only when a best is saved,
  so an epoch that did not improve the metric was missing from it).

While the best epoch is also the last one, its generator is already in ``last.ckpt``: the best file is then
a symbolic link to it, not a second copy. Before ``last.ckpt`` is overwritten by a later epoch (or a
pre-emption save), the link is replaced by the generator-only file, read from the ``last.ckpt`` still on
disk. Where links cannot be made (Windows without the privilege), the file is written at once. A
``dtype`` other than float32 always writes the (smaller) file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal, get_args

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from typing_extensions import override

from p2p.errors import check_value
from p2p.io import atomic_save

log = logging.getLogger(__name__)

Dtype = Literal["float32", "bfloat16", "float16"]
DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in get_args(Dtype)}


def generator_only(ckpt: dict[str, Any], dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The parts of a p2p-train checkpoint that using the generator needs (what `p2p.weights` reads)."""
    state = {
        k: v.to(dtype) if v.is_floating_point() else v
        for k, v in ckpt["state_dict"].items()
        if k.startswith("G.")
    }
    keep = ("epoch", "global_step", "pytorch-lightning_version", "hparams_name", "hyper_parameters", "p2p")
    return {"state_dict": state, **{k: ckpt[k] for k in keep if k in ckpt}, "generator_only": True}


def is_generator_only(ckpt: dict[str, Any]) -> bool:
    return bool(ckpt.get("generator_only")) or "optimizer_states" not in ckpt


class GeneratorCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose best files hold the generator only (see the module docstring).

    ``dtype``: float32 (default, bit for bit the trained weights), bfloat16 or float16 (half the size; the
    reader loads them into float32 networks)."""

    def __init__(self, *args: Any, dtype: str = "float32", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dtype = check_value("dtype", dtype, Dtype)
        self._pending: list[str] = []  # best files of this step, linked once last.ckpt is written
        self._own_save = False
        self.best_metrics: dict[str, float] = {}  # the newest best's epoch (from 1) and val metrics, this fit

    # --- last.ckpt every time, best files generator-only ------------------------------------------------
    @override
    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        current = monitor_candidates.get(self.monitor) if self.monitor else None
        if current is not None and not torch.isfinite(torch.as_tensor(current)).all():
            # Lightning ranks NaN as the worst value but still keeps it while fewer than save_top_k bests
            # exist: a NaN epoch would become the first "best"
            log.warning(
                "%s is %s at epoch %d: no best file for it",
                self.monitor,
                float(current),
                trainer.current_epoch,
            )
        else:
            super()._save_topk_checkpoint(trainer, monitor_candidates)
        # Lightning then writes last.ckpt only if a best was saved at this step; a resume needs it always
        self._last_global_step_saved = trainer.global_step

    @override
    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if not self._is_last(filepath):
            if filepath == self.best_model_path:
                self.best_metrics = {"epoch": trainer.current_epoch + 1} | {
                    k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
                }
            if self.save_last and self.dtype == "float32":
                self._pending.append(filepath)  # the same weights go into last.ckpt next: link to it then
                self._last_global_step_saved, self._last_checkpoint_saved = trainer.global_step, filepath
            else:
                self._write_generator(trainer, trainer._checkpoint_connector.dump_checkpoint(True), filepath)
            return
        self._materialize_links(trainer, filepath)  # links into the old last.ckpt: an earlier epoch's best
        self._own_save = True
        try:
            super()._save_checkpoint(trainer, filepath)
        finally:
            self._own_save = False
        pending, self._pending = self._pending, []
        for best in pending:
            self._link_or_write(trainer, best, filepath)

    @override
    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # a checkpoint written by someone else (a pre-emption save) may overwrite last.ckpt
        if not self._own_save and self.last_model_path:
            self._materialize_links(trainer, self.last_model_path)

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._flush(trainer)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._flush(trainer)

    # --- helpers ---------------------------------------------------------------------------------------
    def _is_last(self, filepath: str) -> bool:
        return Path(filepath).name.startswith(self.CHECKPOINT_NAME_LAST or "last")

    def _flush(self, trainer: L.Trainer) -> None:
        """Best files still pending (no last.ckpt was written after them): write them now."""
        pending, self._pending = self._pending, []
        if pending:
            ckpt = trainer._checkpoint_connector.dump_checkpoint(True)
            for best in pending:
                self._write_generator(trainer, ckpt, best)

    def _write_generator(self, trainer: L.Trainer, ckpt: dict[str, Any], filepath: str) -> None:
        if trainer.is_global_zero:
            atomic_save(generator_only(ckpt, DTYPES[self.dtype]), filepath)
        trainer.strategy.barrier()

    def _link_or_write(self, trainer: L.Trainer, best: str, last: str) -> None:
        if trainer.is_global_zero:
            Path(best).unlink(missing_ok=True)
            try:
                os.symlink(os.path.relpath(last, os.path.dirname(best)), best)
            except OSError:  # no symlinks here: the generator-only file, read from the last.ckpt just written
                atomic_save(generator_only(_load(last)), best)
        trainer.strategy.barrier()

    def _materialize_links(self, trainer: L.Trainer, last: str) -> None:
        """Best files that are links to ``last``: replaced by the generator-only file before it changes."""
        if trainer.is_global_zero:
            target = Path(last).resolve()
            candidates = {*self.best_k_models, self.best_model_path} - {""}
            links = [p for p in candidates if os.path.islink(p) and Path(p).resolve() == target]
            if links:
                ckpt = generator_only(_load(last))
                for link in links:
                    atomic_save(ckpt, link)  # os.replace swaps the link itself, not the file it points to
        trainer.strategy.barrier()


def _load(path: str | Path) -> dict[str, Any]:
    loaded: dict[str, Any] = torch.load(
        str(path), map_location="cpu", weights_only=True, mmap=True
    )  # 2.2: str
    return loaded
