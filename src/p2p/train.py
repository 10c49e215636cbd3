"""``p2p-train``: a thin ``@hydra.main`` over ``train(cfg)``, which tests and notebooks call directly.

p2p-train model=unet_patch70 data=facades data.root=/path/to/facades
p2p-train -m loss=l1,gan,cgan,l1_gan,l1_cgan          # the paper's loss ablation, one run each
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from p2p.checkpoint_io import AtomicCheckpointIO
from p2p.config import config_dir
from p2p.config_check import check_config, explain_overrides
from p2p.errors import P2PError, short_message
from p2p.perf import resolve_precision

log = logging.getLogger(__name__)


def _instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    """Loggers and callbacks are dicts of ``_target_`` configs (lightning-hydra-template style)."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]


def build_trainer(cfg: DictConfig, **extra: Any) -> L.Trainer:
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(trainer_cfg, dict)
    if trainer_cfg.get("strategy") == "ddp":
        # manual GAN steps leave G's parameters out of D's backward: DDP must look for unused parameters
        trainer_cfg["strategy"] = "ddp_find_unused_parameters_true"
    # speed (p2p.perf): precision=auto -> bf16-mixed where the hardware computes in bf16, else 32; cudnn
    # autotuning unless the run asks to be deterministic
    trainer_cfg["precision"] = resolve_precision(trainer_cfg.get("precision"), trainer_cfg.get("accelerator"))
    if trainer_cfg.get("benchmark") is None and not trainer_cfg.get("deterministic"):
        trainer_cfg["benchmark"] = True
    if "plugins" not in trainer_cfg:  # checkpoints written all-or-nothing (p2p.checkpoint_io)
        extra.setdefault("plugins", [AtomicCheckpointIO()])
    return instantiate(
        trainer_cfg,
        logger=_instantiate_dict(cfg.get("logger")) or False,
        callbacks=_instantiate_dict(cfg.get("callbacks")),
        **extra,
    )


def build_model(cfg: DictConfig) -> L.LightningModule:
    return instantiate(cfg.model, loss=OmegaConf.to_container(cfg.loss, resolve=True), _convert_="all")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train pix2pix as ``cfg`` says; returns the final metrics and where the checkpoints are."""
    check_config(cfg)  # every config problem at once, before any data is read (p2p.config_check)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = build_model(cfg)
    trainer = build_trainer(cfg)
    log.info("run folder: %s", trainer.default_root_dir)
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
        log.info("metrics: %s", metrics)
        log.info("checkpoints: best %s, last %s", result["best_ckpt"], result["last_ckpt"])
    if cfg.get("eval_after_train") and trainer.is_global_zero:
        # the final model on the test split -> run_dir/metrics.json (p2p.eval; p2p-report reads it)
        from p2p.eval import evaluate_model

        result["eval"] = evaluate_model(model, cfg, trainer.default_root_dir, checkpoint=result["last_ckpt"])
    return result


_REPORTED = False  # set when a P2PError was printed, so main() adds no hints of its own


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    global _REPORTED
    try:
        train(cfg)
    except P2PError as e:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # a sweep reports failed jobs itself
        # the user's data or config, not a bug in p2p: the message, no traceback
        log.error("%s: %s", type(e).__name__, short_message(e))
        _REPORTED = True
        sys.exit(e.exit_code)


def main() -> None:
    """The ``p2p-train`` command."""
    try:
        _hydra_main()
    except SystemExit as e:
        if e.code not in (0, None) and not _REPORTED:  # Hydra rejected the command line: name valid keys
            for hint in explain_overrides(sys.argv[1:]):
                print(hint, file=sys.stderr)
        raise


if __name__ == "__main__":
    main()
