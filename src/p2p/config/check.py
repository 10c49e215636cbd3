"""Checks of a composed config that its schemas cannot express, run before any data is read.

The schemas (`p2p.config.schema`) reject wrong types and values outside their choices when Hydra composes
the config, naming the key. Left for here, every problem at once, each naming its key: keys no schema knows
that reached the config anyway (``+data.crop_siz=1``); ``_target_`` paths of earlier releases; what the
classes check themselves (ranges, ``crop_size <= load_size``, ``data.root``), by building them (nothing is
read); the networks (each ``model.generator.*`` / ``model.discriminator.*`` key is an argument of the builder
it names, and G and D run once, 1 channel wide, on a training-sized batch: every shape the real networks
will meet); the photo task (``loss.l1_region=hole`` needs inpainting);
the run (a checkpoint to resume from, SyncBatchNorm needs CUDA). `explain` adds the
valid keys and a "did you mean" to Hydra's refusal of an override.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from p2p.config.build import plain
from p2p.errors import CheckpointError, ConfigError, did_you_mean
from p2p.models import build_model, list_models, model_spec, valid_overrides
from p2p.training import NonFiniteGuard, Objective, Optim, build_networks
from p2p.weights import read_weights

PIX2PIX = "p2p.training.Pix2Pix"
CKPT_KEYWORDS = (
    "last",
    "hpc",
    "best",
)  # Lightning's named checkpoints (ckpt_path=last: the run folder's last)
MOVED = {  # _target_ paths of p2p 0.1.0 (before the package was layered) -> where the class lives now
    "p2p.module.Pix2Pix": PIX2PIX,
    "p2p.callbacks.RNGState": "p2p.training.RNGState",
    "p2p.callbacks.PreemptionCheckpoint": "p2p.training.PreemptionCheckpoint",
}


def _nodes(cfg: DictConfig, prefix: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Every dict node of ``cfg`` with its key (``data``, ``model.optim``, ...)."""
    for key in map(str, cfg):
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            yield f"{prefix}{key}", node
            yield from _nodes(node, f"{prefix}{key}.")


def _keys(cfg: DictConfig) -> Iterator[str]:
    """Keys a schema does not know (Hydra's ``+key=value`` adds them anyway) and moved ``_target_`` paths."""
    for where, node in _nodes(cfg):
        if node.get("_target_") in MOVED:
            yield f"{where}._target_: {node._target_} moved to {MOVED[node._target_]} in p2p 0.2; update the config"
        schema = OmegaConf.get_type(node)
        valid = (
            [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else list(node)
        )
        for key in (str(k) for k in node if k not in valid):
            yield f"{where}.{key}: unknown key; {did_you_mean(key, valid)}valid: {', '.join(v for v in valid if v != '_target_')}"


def _settings(cfg: DictConfig) -> Iterator[str]:
    """The settings classes' own checks (ranges, cross-field rules), named by key: they are built here."""
    data = plain(cfg.data)
    built: list[tuple[str, Callable[[], Any]]] = [("data", lambda: get_class(data.pop("_target_"))(**data))]
    if cfg.model.get("_target_") == PIX2PIX:
        built += [("loss", lambda: Objective(**plain(cfg.loss))), ("model.optim", lambda: Optim(**plain(cfg.model.optim))),
                  ("model", lambda: NonFiniteGuard(plain(cfg.model.on_nonfinite), plain(cfg.model.check_finite), plain(cfg.model.max_skipped_steps)))]  # fmt: skip
    for group, build in built:
        try:
            build()
        except ConfigError as e:  # "key: what is wrong" (or a sentence about the whole group)
            key, sep, message = str(e).partition(": ")
            yield f"{group}.{key}: {message}" if sep and " " not in key else f"{group}: {e}"


def _task(cfg: DictConfig) -> Iterator[str]:
    """Only inpainting has a hole for ``loss.l1_region=hole`` (Pix2Pix checks it too, but here it is named
    before anything runs)."""
    if plain(cfg.loss).get("l1_region") == "hole" and plain(cfg.data).get("task") != "inpainting":
        yield "loss.l1_region: hole needs data=inpainting (the hole is the input's mask)"


def _network(cfg: DictConfig, net: str, width: str, **io: int) -> torch.nn.Module:
    """``model.<net>`` as configured but 1 channel wide (shapes do not depend on the width)."""
    name, args = model_spec(plain(cfg.model[net]), "")  # null values (unsetting inherited keys) are dropped
    if name not in (nets := list_models(kind=net)):
        raise ConfigError(f"model.{net}.name: {name!r} is not a {net}; {did_you_mean(name, nets)}choose from {', '.join(nets)}")  # fmt: skip
    try:
        return build_model(name, **{**args, **({width: 1} if width in valid_overrides(name) else {}), **io})
    except TypeError as e:  # the registry's: an argument the builder does not take, and the closest one
        raise ConfigError(f"model.{net}: {e}") from None
    except ValueError as e:  # the network's own checks
        raise ConfigError(f"model.{net}: {name} cannot be built: {e}") from None


def _shapes(cfg: DictConfig) -> list[torch.nn.Module]:
    """G and D, 1 channel wide, run once on a training-sized batch; a `ConfigError` names the key at fault."""
    data, model, g_name = cfg.data, cfg.model, cfg.model.generator.name
    key, side = ("data.crop_size", data.crop_size) if str(data.preprocess).endswith("crop") else ("data.size_divisor", data.size_divisor)  # fmt: skip
    batch, cin, cout = data.batch_size, data.in_channels, data.out_channels
    G = _network(cfg, "generator", "ngf", in_channels=cin, out_channels=cout)
    if (levels := getattr(G, "num_downs", 0)) and side % 2**levels:
        raise ConfigError(f"{key}: {side} is not a multiple of {2**levels}, which {g_name} with num_downs={levels} needs "
                          f"(valid: {', '.join(str(2**levels * k) for k in (1, 2, 3))}, ...); or a U-Net for this size "
                          "(unet_size=128: unet_128)")  # fmt: skip
    try:
        fake = G(torch.zeros(batch, cin, side, side))
    except (RuntimeError, ValueError) as e:
        raise ConfigError(
            f"model.generator: {g_name} cannot take {batch}x{cin}x{side}x{side} inputs ({key}={side}): {e}"
        ) from None
    if fake.shape[-2:] != (side, side):
        raise ConfigError(
            f"{key}: {g_name} turns {side}x{side} inputs into {tuple(fake.shape[-2:])} outputs; choose a size it preserves"
        )
    if not (loss := Objective(**plain(cfg.loss))).uses_gan:
        return [G]
    d_in = loss.discriminator_channels(cin, cout)
    D = _network(cfg, "discriminator", "ndf", in_channels=d_in)
    try:
        D(torch.zeros(batch, d_in, side, side))
    except RuntimeError as e:
        raise ConfigError(f"{key}: {side} is too small for model.discriminator.name={model.discriminator.name} at "
                          f"data.batch_size={batch}: {e}; use a larger size or a smaller discriminator (patchgan_70, "
                          "patchgan_16, patchgan_1)") from None  # fmt: skip
    return [G, D]


def _run(cfg: DictConfig, nets: list[torch.nn.Module]) -> Iterator[str]:
    seed, ckpt, trainer = cfg.get("seed"), cfg.get("ckpt_path"), cfg.trainer
    if seed is not None and not (isinstance(seed, int) and seed >= 0):
        yield f"seed: must be an integer >= 0 or null, got {seed!r}"
    if ckpt is not None and ckpt not in CKPT_KEYWORDS and "://" not in str(ckpt):
        if Path(str(ckpt)).is_file():
            yield from _resume(cfg, Path(str(ckpt)), nets)
        else:
            yield (f"ckpt_path: no checkpoint file at {ckpt}; give a .ckpt path, or ckpt_path=last to resume from the "
                   "run folder's last.ckpt when there is one (and start fresh otherwise)")  # fmt: skip
    on_cpu = trainer.accelerator == "cpu" or (trainer.accelerator == "auto" and not torch.cuda.is_available())
    if trainer.sync_batchnorm and on_cpu:
        yield ("trainer.sync_batchnorm: SyncBatchNorm needs CUDA GPUs; on CPU use trainer.sync_batchnorm=false, and "
               "model.generator.norm=instance model.discriminator.norm=instance for DDP results that match one process")  # fmt: skip


def _resume(cfg: DictConfig, path: Path, nets: list[torch.nn.Module]) -> Iterator[str]:
    """The checkpoint to resume from is one (not cut short, not a generator-only best file) of the networks
    the config builds (compared when ``nets`` were built): Lightning's own errors would come after the data
    setup, as tracebacks."""
    try:
        weights = read_weights(path, "G")
    except CheckpointError as e:
        yield f"ckpt_path: {e}"
        return
    ckpt = weights.checkpoint
    if ckpt is None or "optimizer_states" not in ckpt:
        yield (f"ckpt_path: {path} holds a generator's weights, not a run to resume (no optimiser states); resume "
               "from the run's checkpoints/last.ckpt, or evaluate this file with p2p-eval ckpt_path=...")  # fmt: skip
        return
    if not nets:  # the config's networks could not be built (problems said elsewhere): nothing to compare
        return
    has_d, loss = any(k.startswith("D.") for k in ckpt["state_dict"]), Objective(**plain(cfg.loss))
    if has_d != loss.uses_gan:
        yield (f"ckpt_path: {path} was trained {'with' if has_d else 'without'} a discriminator, but "
               f"loss.gan_weight={loss.gan_weight} {'trains none' if has_d else 'needs one'}; resume with the run's own loss")  # fmt: skip
        return
    model, data = cfg.model, cfg.data
    trained = (weights.config.get("name"), model_spec(ckpt["hyper_parameters"].get("discriminator"), "patchgan_70")[0])  # fmt: skip
    with torch.device("meta"):  # the config's networks at full width, shapes only: no memory, no time
        built = build_networks(plain(model.generator), plain(model.get("discriminator")), loss, data.in_channels, data.out_channels)  # fmt: skip
    for net, trained_name, prefix, module in zip(
        ("generator", "discriminator"), trained, ("G.", "D."), built
    ):
        saved = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        if module is not None and (diff := _first_difference(saved, module.state_dict())):
            yield (f"ckpt_path: {path} holds another {net} ({trained_name}) than model.{net} builds ({model[net].name}): "
                   f"{diff}; resume with the run's own model and loss settings")  # fmt: skip


def _first_difference(saved: dict[str, torch.Tensor], built: dict[str, torch.Tensor]) -> str | None:
    """The first key (sorted) whose tensor shape differs between two state dicts, or that one of them lacks."""

    def shape(state: dict[str, torch.Tensor], key: str) -> list[int] | str:
        return list(state[key].shape) if key in state else "absent"

    diffs = (k for k in sorted(saved.keys() | built.keys()) if shape(saved, k) != shape(built, k))
    return next((f"{k} is {shape(saved, k)} in the file, {shape(built, k)} built" for k in diffs), None)


def check_config(cfg: DictConfig) -> None:
    """Raise one `ConfigError` listing every problem of ``cfg`` (a composed p2p-train config)."""
    if "_target_" not in cfg.data:  # conf/data/checkpoint.yaml: p2p-eval's "the checkpoint's own data"
        raise ConfigError("data: p2p-train needs a data config (data=facades, folder, synthetic, ...); "
                          "data=checkpoint is p2p-eval's")  # fmt: skip
    problems = [
        f"{key}: required: set it, e.g. on the command line: {key}=..."
        for key in sorted(OmegaConf.missing_keys(cfg))
    ]
    problems += list(_keys(cfg)) or list(_settings(cfg))
    if cfg.model.get("_target_") == PIX2PIX:
        problems += _task(cfg)
    nets: list[torch.nn.Module] = []
    if not problems and cfg.model.get("_target_") == PIX2PIX:  # someone's own module: only they know its keys
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: a thread pool only adds overhead
        try:
            with torch.no_grad():
                nets = _shapes(cfg)
        except ConfigError as e:
            problems.append(str(e))
        finally:
            torch.set_num_threads(threads)
    problems += _run(cfg, nets)
    if problems:
        raise ConfigError(
            f"invalid config ({len(problems)} problem(s)):\n" + "\n".join(f"  {p}" for p in problems)
        )


def explain(error: BaseException) -> str | None:
    """The valid keys, and the closest, for Hydra's refusal of an override of a key that does not exist
    (the OmegaConf error behind it carries the node it looked in)."""
    cause = error.__cause__
    node, key = getattr(cause, "parent_node", None), getattr(cause, "key", None)
    if (
        not isinstance(cause, ConfigAttributeError | ConfigKeyError)
        or not isinstance(node, DictConfig)
        or key is None
    ):
        return None
    full_key = str(getattr(cause, "full_key", key))
    parent = full_key.rpartition(".")[0] or "the config"
    valid = sorted(str(k) for k in node if k not in ("_target_", "hydra"))
    if str(key) in valid:  # the key exists (a mandatory ``???`` value not yet set): not a misspelling
        return None
    return f"{full_key}: no such key; {did_you_mean(str(key), valid)}keys of {parent}: {', '.join(valid)}"
