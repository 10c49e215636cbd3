"""``train(cfg)``: one pix2pix training run from a composed p2p-train config (``p2p-train`` runs it; tests
and notebooks call it directly)."""

from __future__ import annotations

import logging
import os
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import lightning as L
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from p2p.config import check_config
from p2p.config.build import build_datamodule, build_module, build_trainer
from p2p.io.runlock import run_lock
from p2p.runs.eval import evaluate_model
from p2p.training.console import quiet_third_party, run_summary

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train pix2pix as ``cfg`` says; returns the final metrics and where the checkpoints are."""
    quiet_third_party()  # third-party messages that say nothing about the run (p2p.training.console)
    check_config(cfg)  # every config problem at once, before any data is read (p2p.config.check)
    with _one_run_per_folder(cfg.paths.output_dir):  # two runs in one folder would mix their checkpoints
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, Any]:
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = build_module(cfg)
    trainer = build_trainer(cfg)
    log.info("run folder: %s", trainer.default_root_dir)
    start = time.monotonic()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    ckpt = trainer.checkpoint_callback
    result = {
        "metrics": metrics,
        "run_dir": trainer.default_root_dir,
        "best_ckpt": getattr(ckpt, "best_model_path", None),
        "last_ckpt": getattr(ckpt, "last_model_path", None),
    }
    if trainer.is_global_zero:
        log.debug("metrics: %s", metrics)
        best, last = getattr(ckpt, "best_model_path", None), getattr(ckpt, "last_model_path", None)
        for line in run_summary(trainer, best, last, time.monotonic() - start):
            log.info(line)
    if cfg.get("eval_after_train") and trainer.is_global_zero:
        # the final model on the test split -> run_dir/metrics.json (p2p-report reads it)
        result["eval"] = evaluate_model(model, cfg, trainer.default_root_dir, checkpoint=result["last_ckpt"])
    return result


def _one_run_per_folder(folder: str) -> AbstractContextManager[Any]:
    """The run folder's lock (`p2p.io.runlock`), held by the run's first process only.

    Under DDP every rank runs ``train`` (Lightning's launcher re-runs the script with ``LOCAL_RANK`` set,
    SLURM and torchrun set ``SLURM_PROCID``/``RANK``, which ``rank_zero_only.rank`` reads); the other ranks
    must not wait for, or be refused by, rank 0's lock. ``NODE_RANK``: Lightning's own multi-node launch
    starts each node's first process without a rank in its environment.
    """
    first = rank_zero_only.rank == 0 and int(os.environ.get("NODE_RANK", "0")) == 0  # type: ignore[attr-defined]
    return run_lock(folder) if first else nullcontext()
