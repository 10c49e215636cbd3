"""Checks of a composed config that its schemas cannot express, run before any data is read.

The schemas (`p2p.config.schema`) reject wrong types and values outside their choices when Hydra composes
the config, naming the key. What is left is checked here, every problem at once, each naming its key:

- keys no schema knows that reached the config anyway (``+data.crop_siz=1``, a typo in an experiment file);
- ``_target_`` paths of earlier releases, with their new place;
- what the classes check themselves (ranges, ``crop_size <= load_size``, ``data.root`` is a folder): the data
  module, the objective and the optimiser settings are built (nothing is read) and their errors named by key;
- the networks: every ``model.generator.*`` / ``model.discriminator.*`` key is an argument of the builder it
  names, the model takes the data's channels, and G and D run once, 1 channel wide, on a batch of the
  training size (every shape the real networks will meet);
- the run: a checkpoint to resume from exists; SyncBatchNorm needs CUDA (and a warning for BatchNorm under DDP).

`explain_overrides` adds the valid keys and a "did you mean" to Hydra's own refusal of a command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.utils import get_class
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from p2p.config.build import plain
from p2p.config.paths import config_dir
from p2p.errors import ConfigError
from p2p.models import build_model, list_models, model_spec, valid_overrides
from p2p.training import NonFiniteGuard, Objective, Optim

log = logging.getLogger(__name__)

PIX2PIX = "p2p.training.Pix2Pix"
CKPT_KEYWORDS = (
    "last",
    "hpc",
    "best",
)  # Lightning's named checkpoints (ckpt_path=last: the run folder's last)
# _target_ paths of p2p 0.1.0 (before the package was layered) -> where the class lives now
MOVED = {
    "p2p.module.Pix2Pix": PIX2PIX,
    "p2p.callbacks.RNGState": "p2p.training.RNGState",
    "p2p.callbacks.PreemptionCheckpoint": "p2p.training.PreemptionCheckpoint",
}


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _nodes(cfg: DictConfig, prefix: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Every dict node of ``cfg`` with its key (``data``, ``model.optim``, ...)."""
    for key in map(str, cfg):
        value = cfg._get_node(key)
        if isinstance(value, DictConfig) and not value._is_missing() and not value._is_none():
            yield f"{prefix}{key}", value
            yield from _nodes(value, f"{prefix}{key}.")


def _unknown_keys(cfg: DictConfig) -> list[str]:
    """Keys of a schema-typed node that its schema does not have (Hydra's ``+key=value`` adds them anyway)."""
    problems = []
    for where, node in _nodes(cfg):
        schema = OmegaConf.get_type(node)
        if not dataclasses.is_dataclass(schema):
            continue
        valid = [f.name for f in dataclasses.fields(schema)]
        for key in map(str, node):
            if key not in valid:
                hint = _suggest(key, valid)
                valid_keys = ", ".join(v for v in valid if v != "_target_")
                problems.append(f"{where}.{key}: unknown key; {hint}valid: {valid_keys}")
    return problems


def _moved_targets(cfg: DictConfig) -> list[str]:
    return [
        f"{where}._target_: {node._target_} moved to {MOVED[node._target_]} in p2p 0.2; update the config"
        for where, node in _nodes(cfg)
        if isinstance(node.get("_target_"), str) and node._target_ in MOVED
    ]


def _settings(cfg: DictConfig) -> list[str]:
    """The settings classes' own checks, named by key: the data module, the objective, the optimiser."""
    problems = []
    data = plain(cfg.data)
    built: list[tuple[str, Any]] = [("data", lambda: get_class(data.pop("_target_"))(**data))]
    if cfg.model.get("_target_") == PIX2PIX:
        built += [
            ("loss", lambda: Objective(**plain(cfg.loss))),
            ("model.optim", lambda: Optim(**plain(cfg.model.optim))),
            ("model", lambda: NonFiniteGuard(plain(cfg.model.on_nonfinite), plain(cfg.model.check_finite))),
        ]
    for group, build in built:
        try:
            build()
        except ConfigError as e:
            key, sep, message = str(e).partition(": ")
            problems.append(f"{group}.{key}: {message}" if sep and " " not in key else f"{group}: {e}")
    return problems


def _networks(cfg: DictConfig) -> list[str]:
    """Every architecture key is an argument of the builder it names; the model takes the data's channels."""
    problems = []
    for net, kind in (("generator", "generator"), ("discriminator", "discriminator")):
        spec = plain(cfg.model.get(net)) or {}
        name, models = spec.get("name"), list_models(kind=kind)
        if name not in models:
            problems.append(
                f"model.{net}.name: {name!r} is not a {kind}; {_suggest(str(name), models)}choose from {', '.join(models)}"
            )
            continue
        valid = ["name", *valid_overrides(name)]
        for key, value in spec.items():
            if value is not None and key not in valid:  # null unsets an inherited key (Pix2Pix drops it)
                problems.append(
                    f"model.{net}.{key}: not an argument of {name}; {_suggest(key, valid)}valid: {', '.join(valid)}"
                )
    for key in ("in_channels", "out_channels"):
        m, d = cfg.model.get(key), cfg.data.get(key)
        if m is not None and d is not None and m != d:
            problems.append(
                f"model.{key}: {m} but data.{key} is {d}: the networks must take what the data gives"
            )
    return problems


@contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny tensors: a thread pool only adds overhead (and contends with whatever else runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _narrow(cfg: DictConfig, net: str, width: str, **kw: Any) -> torch.nn.Module:
    """``model.<net>`` as configured, but 1 channel wide: shapes do not depend on the width."""
    name, spec = model_spec(plain(cfg.model[net]), "")
    if width in valid_overrides(name):
        spec[width] = 1
    return build_model(name, **{**spec, **kw})


def _shapes(cfg: DictConfig) -> tuple[list[str], bool]:
    """Run G and D once, 1 channel wide, on a training-sized batch. Returns the problems, and whether the
    networks use BatchNorm (for the DDP warning)."""
    data = cfg.data
    pre = str(data.get("preprocess"))
    side = data.get("crop_size") if pre.endswith("crop") else data.get("size_divisor")
    size_key = "data.crop_size" if pre.endswith("crop") else "data.size_divisor"
    batch, cin, cout = data.batch_size, cfg.model.get("in_channels") or 3, cfg.model.get("out_channels") or 3
    g_name, d_name = cfg.model.generator.name, cfg.model.discriminator.name
    with _one_thread(), torch.no_grad():
        try:
            G = _narrow(cfg, "generator", "ngf", in_channels=cin, out_channels=cout)
        except (TypeError, ValueError) as e:
            return [f"model.generator: {g_name} cannot be built: {e}"], False
        num_downs = getattr(G, "num_downs", None)
        if num_downs is not None and side % 2**num_downs:
            valid = ", ".join(str(2**num_downs * k) for k in (1, 2, 3))
            return [f"{size_key}: {side} is not a multiple of {2**num_downs}, which {g_name} with num_downs={num_downs} "
                    f"needs (valid: {valid}, ...); or choose a U-Net for this size (unet_size=128: unet_128)"], False  # fmt: skip
        try:
            fake = G(torch.zeros(batch, cin, side, side))
        except (RuntimeError, ValueError) as e:
            return [
                f"model.generator: {g_name} cannot take {batch}x{cin}x{side}x{side} inputs ({size_key}={side}): {e}"
            ], False
        if fake.shape[-2:] != (side, side):
            return [f"{size_key}: {g_name} turns {side}x{side} inputs into {tuple(fake.shape[-2:])} outputs; choose a "
                    "size it preserves"], False  # fmt: skip
        nets = [G]
        if Objective(**plain(cfg.loss)).uses_gan:
            d_in = cin + cout if cfg.loss.conditional else cout
            try:
                D = _narrow(cfg, "discriminator", "ndf", in_channels=d_in)
                D(torch.zeros(batch, d_in, side, side))
            except (TypeError, ValueError) as e:
                return [f"model.discriminator: {d_name} cannot be built: {e}"], False
            except RuntimeError as e:
                return [f"{size_key}: {side} is too small for model.discriminator.name={d_name} at data.batch_size="
                        f"{batch}: {e}; use a larger size or a smaller discriminator (patchgan_70, patchgan_16, "
                        "patchgan_1)"], False  # fmt: skip
            nets.append(D)
    batchnorm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for n in nets for m in n.modules())
    return [], batchnorm


def _run(cfg: DictConfig, batchnorm: bool) -> list[str]:
    problems = []
    seed = cfg.get("seed")
    if seed is not None and not (isinstance(seed, int) and seed >= 0):
        problems.append(f"seed: must be an integer >= 0 or null, got {seed!r}")
    ckpt = cfg.get("ckpt_path")
    if (
        ckpt is not None
        and ckpt not in CKPT_KEYWORDS
        and "://" not in str(ckpt)
        and not Path(str(ckpt)).is_file()
    ):
        problems.append(f"ckpt_path: no checkpoint file at {ckpt}; give a .ckpt path, or ckpt_path=last to resume "
                        "from the run folder's last.ckpt when there is one (and start fresh otherwise)")  # fmt: skip
    trainer = cfg.trainer
    on_cpu = trainer.accelerator == "cpu" or (trainer.accelerator == "auto" and not torch.cuda.is_available())
    if trainer.sync_batchnorm and on_cpu:
        problems.append("trainer.sync_batchnorm: SyncBatchNorm needs CUDA GPUs; on CPU use trainer.sync_batchnorm=false, and "
                        "model.generator.norm=instance model.discriminator.norm=instance for DDP results that match one process")  # fmt: skip
    devices, strategy = trainer.devices, str(trainer.strategy)
    multi = (isinstance(devices, int) and (devices > 1 or devices == -1)) or strategy.startswith("ddp")
    if multi and batchnorm and not trainer.sync_batchnorm and rank_zero_only.rank == 0:  # type: ignore[attr-defined]
        log.warning(
            "BatchNorm under DDP without trainer.sync_batchnorm=true normalises each process's batch separately: "
            "the result differs from one process with the same global batch (docs/reliability.md)"
        )
    return problems


def check_config(cfg: DictConfig) -> None:
    """Raise one `ConfigError` listing every problem of ``cfg`` (a composed p2p-train config)."""
    missing = sorted(
        OmegaConf.missing_keys(cfg)
    )  # mandatory values (???) nobody set, e.g. data=folder's root
    problems = [f"{key}: required: set it, e.g. on the command line: {key}=..." for key in missing]
    problems += _moved_targets(cfg) + _unknown_keys(cfg)
    if not problems:
        problems = _settings(cfg)
    pix2pix = cfg.model.get("_target_") == PIX2PIX  # someone's own LightningModule: only they know its keys
    if pix2pix:
        problems += _networks(cfg)
    batchnorm = False
    if pix2pix and not problems:
        shape_problems, batchnorm = _shapes(cfg)
        problems += shape_problems
    problems += _run(cfg, batchnorm)
    if problems:
        raise ConfigError(
            f"invalid config ({len(problems)} problem(s)):\n" + "\n".join(f"  {p}" for p in problems)
        )


def explain_overrides(overrides: list[str], config_name: str = "train") -> list[str]:
    """Hints for command-line overrides of keys that do not exist: the valid keys there, and the closest.

    Called after Hydra rejected the command line; composes the config with only the group choices."""
    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if "=" in o])
    except HydraException:
        return []
    conf = config_dir()
    groups = [o for o in parsed if (conf / o.key_or_group.split("@")[0]).is_dir() and not o.is_delete()]
    keys = [o for o in parsed if o not in groups and not (o.is_add() or o.is_force_add() or o.is_delete())]
    keys = [o for o in keys if not o.key_or_group.startswith("hydra")]
    if not keys or not (conf / f"{config_name}.yaml").is_file():
        return []
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=[str(o.input_line) for o in groups])
    except HydraException:
        return []  # the group choices themselves are wrong: Hydra's message lists the options
    hints = []
    for o in keys:
        parent, _, leaf = o.key_or_group.rpartition(".")
        node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else cfg
        # `leaf in node`, not a select: a mandatory value (???) is a key that exists, only without a value
        if not isinstance(node, DictConfig) or leaf in node:
            continue
        valid = sorted(str(k) for k in node if k != "_target_")
        hints.append(
            f"{o.key_or_group}: no such key; {_suggest(leaf, valid)}keys of {parent or 'the config'}: {', '.join(valid)}"
        )
    return hints
