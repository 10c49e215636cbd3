"""The objects a composed config describes: the data module, the LightningModule, the Trainer.

Configs are instantiated from plain containers (interpolations resolved, enums as strings), so what reaches
the constructors, and the hyperparameters saved in checkpoints, are plain Python values.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from p2p.training import AtomicCheckpointIO, Pix2Pix, resolve_precision


def plain(node: Any) -> Any:
    """A config node as plain Python containers: interpolations resolved, enums as their names."""
    if not isinstance(node, DictConfig):
        return node
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


def _instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    """Loggers and callbacks are dicts of ``_target_`` configs (lightning-hydra-template style)."""
    if not cfg:
        return []
    return [instantiate(plain(c)) for c in cfg.values() if c is not None and "_target_" in c]


def build_datamodule(cfg: DictConfig) -> Any:  # a p2p.data data module
    return instantiate(plain(cfg.data))


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The LightningModule of ``model``, given ``loss``. `Pix2Pix` (or a subclass) also gets the data's
    channels and photo task: its networks take what the data gives, by construction, not by a check."""
    model, data = plain(cfg.model), plain(cfg.data)
    if issubclass(get_class(model["_target_"]), Pix2Pix):
        model |= {"in_channels": data["in_channels"], "out_channels": data["out_channels"], "photo_task": data.get("task")}  # fmt: skip
    return instantiate(model, loss=plain(cfg.loss), _convert_="all")


def build_trainer(cfg: DictConfig, **extra: Any) -> L.Trainer:
    trainer_cfg = plain(cfg.trainer)
    assert isinstance(trainer_cfg, dict)
    if trainer_cfg.get("strategy") == "ddp":
        # manual GAN steps leave G's parameters out of D's backward: DDP must look for unused parameters
        trainer_cfg["strategy"] = "ddp_find_unused_parameters_true"
    # speed (p2p.training.perf): precision=auto -> bf16-mixed where the hardware computes in bf16, else 32;
    # cudnn autotuning unless the run asks to be deterministic
    trainer_cfg["precision"] = resolve_precision(trainer_cfg.get("precision"), trainer_cfg.get("accelerator"))
    if trainer_cfg.get("benchmark") is None and not trainer_cfg.get("deterministic"):
        trainer_cfg["benchmark"] = True
    if not trainer_cfg.get("plugins"):  # checkpoints written all-or-nothing (p2p.training.checkpoint_io)
        trainer_cfg.pop("plugins", None)
        extra.setdefault("plugins", [AtomicCheckpointIO()])
    return instantiate(
        trainer_cfg,
        logger=_instantiate_dict(cfg.get("logger")) or False,
        callbacks=_instantiate_dict(cfg.get("callbacks")),
        **extra,
    )
