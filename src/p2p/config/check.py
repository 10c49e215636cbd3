"""Check p2p-train's composed config at start-up, before any data is read or any network is built.

Hydra already refuses an override of a key that does not exist (``data.crop_siz=1``) and a group option
that does not exist (``model=unet``, listing the options); `explain_overrides` adds the valid keys and a
"did you mean". `check_config` catches the rest, every problem at once, each naming the key and what it
may be: unknown keys that reached the config (``+data.crop_siz=1``, a typo in an experiment file), wrong
types, values outside their choices, and combinations that cannot train (a crop size the generator or
discriminator cannot take, ``crop_size > load_size``, model/data channels that differ, a missing
checkpoint to resume from).
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, ListConfig, OmegaConf

from p2p.config.paths import config_dir
from p2p.data.dataset import DIRECTIONS
from p2p.data.download import DATASETS
from p2p.data.transforms import PREPROCESS
from p2p.data.validate import ON_BAD_FILE
from p2p.errors import ConfigError
from p2p.inference import INFERENCE_MODES
from p2p.models import build_model, list_models, valid_overrides
from p2p.models.norm import NORMS
from p2p.training import CHECK_FINITE_MODES, GAN_MODES, NONFINITE_ACTIONS, Objective

log = logging.getLogger(__name__)

CKPT_KEYWORDS = (
    "last",
    "hpc",
    "best",
)  # Lightning's named checkpoints (ckpt_path=last: the run folder's last)


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


class _Checker:
    def __init__(self, cfg: DictConfig) -> None:
        self.cfg, self.problems = cfg, []  # type: ignore[var-annotated]

    def get(self, key: str) -> Any:
        return OmegaConf.select(self.cfg, key, throw_on_missing=False)

    def has(self, key: str) -> bool:
        return OmegaConf.select(self.cfg, key, default=_ABSENT) is not _ABSENT

    def bad(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def keys(self, node: str, valid: list[str], what: str) -> None:
        """Every key of ``node`` must be one of ``valid``."""
        value = self.get(node)
        if not isinstance(value, DictConfig):
            return
        for k in map(str, value):
            if k != "_target_" and k not in valid:
                self.bad(
                    f"{node}.{k}", f"unknown key for {what}; {_suggest(k, valid)}valid: {', '.join(valid)}"
                )

    def integer(self, key: str, minimum: int, optional: bool = False) -> None:
        if not self.has(key):
            return
        v = self.get(key)
        if v is None and optional:
            return
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            self.bad(key, f"must be an integer >= {minimum}{' or null' if optional else ''}, got {v!r}")

    def number(self, key: str, minimum: float) -> None:
        if not self.has(key):
            return
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < minimum:
            self.bad(key, f"must be a number >= {minimum}, got {v!r}")

    def boolean(self, key: str) -> None:
        if self.has(key) and not isinstance(self.get(key), bool):
            self.bad(key, f"must be true or false, got {self.get(key)!r}")

    def choice(self, key: str, choices: tuple[Any, ...] | list[Any]) -> None:
        if self.has(key) and self.get(key) not in choices:
            v = self.get(key)
            hint = _suggest(v, [str(c) for c in choices]) if isinstance(v, str) else ""
            self.bad(key, f"{v!r} is not one of {', '.join(map(str, choices))}; {hint}".rstrip("; "))


_ABSENT = object()


def _params(target: str) -> list[str] | None:
    """Constructor arguments of a ``_target_`` class (None if it cannot be imported)."""
    try:
        cls = get_class(target)
    except Exception:
        return None
    return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]


def _check_data(c: _Checker) -> None:
    target = c.get("data._target_")
    params = _params(target) if isinstance(target, str) else None
    if params is not None:
        c.keys("data", params, target)
    for key, minimum in (("load_size", 1), ("crop_size", 1), ("size_divisor", 1), ("batch_size", 1)):
        c.integer(f"data.{key}", minimum)
    c.integer("data.num_workers", 0)
    c.integer("data.max_val_samples", 1, optional=True)
    c.integer("data.seed", 0)
    if target == "p2p.data.PairedDataModule":
        c.choice("data.name", ["folder", *DATASETS])
    c.choice("data.direction", DIRECTIONS)
    c.choice("data.preprocess", PREPROCESS)
    c.choice("data.on_bad_file", ON_BAD_FILE)
    c.choice("data.in_channels", (1, 3))
    c.choice("data.out_channels", (1, 3))
    c.boolean("data.flip")
    load, crop, pre = c.get("data.load_size"), c.get("data.crop_size"), c.get("data.preprocess")
    crops_loaded = pre in ("resize_and_crop", "scale_width_and_crop")
    if crops_loaded and isinstance(load, int) and isinstance(crop, int) and crop > load:
        c.bad("data.crop_size", f"{crop} is larger than data.load_size={load} (data.preprocess={pre} crops a "
              f"load_size image); use data.crop_size <= {load} or raise data.load_size")  # fmt: skip
    data = c.get("data")
    if isinstance(data, DictConfig) and OmegaConf.is_missing(data, "root"):  # data=folder's root: ???
        c.bad("data.root", "required for this dataset: data.root=/path/to/dataset")
    elif isinstance(data, DictConfig) and data.get("name") == "folder" and isinstance(data.get("root"), str):
        root = Path(data.root).expanduser()
        if not root.is_dir():
            c.bad("data.root", f"{data.root} is not a folder")


def _check_model(c: _Checker) -> None:
    if c.get("model._target_") != "p2p.training.Pix2Pix":
        return  # someone's own LightningModule: only they know its keys
    c.keys("model", _params("p2p.training.Pix2Pix") or [], "p2p.training.Pix2Pix")
    for net, kind in (("generator", "generator"), ("discriminator", "discriminator")):
        name = c.get(f"model.{net}.name")
        models = list_models(kind=kind)
        if name not in models:
            c.choice(f"model.{net}.name", models)
            continue
        valid = ["name", *valid_overrides(name)]
        node = c.get(f"model.{net}")
        for k, v in node.items():
            if v is not None and k not in valid:  # null unsets an inherited key (the module drops it)
                c.bad(
                    f"model.{net}.{k}",
                    f"not an argument of {name}; {_suggest(str(k), valid)}valid: {', '.join(valid)}",
                )
        c.choice(f"model.{net}.norm", NORMS)
        c.number(f"model.{net}.dropout", 0.0)
        for width in ("ngf", "ndf", "num_downs", "n_blocks", "n_layers"):
            c.integer(f"model.{net}.{width}", 1, optional=True)
    c.choice("model.val_inference", INFERENCE_MODES)
    c.choice("model.on_nonfinite", NONFINITE_ACTIONS)
    c.choice("model.check_finite", CHECK_FINITE_MODES)
    if c.get("model.on_nonfinite") == "skip" and c.get("model.check_finite") == "deferred":
        c.bad("model.check_finite", "deferred cannot skip a step (model.on_nonfinite=skip decides before each one); "
              "use model.check_finite=auto or step")  # fmt: skip
    c.number("model.optim.lr", 0.0)
    c.integer("model.optim.n_epochs", 0)
    c.integer("model.optim.n_epochs_decay", 0)
    betas = c.get("model.optim.betas")
    if betas is not None and not (
        isinstance(betas, ListConfig)
        and len(betas) == 2
        and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)
    ):
        c.bad("model.optim.betas", f"must be two numbers in [0, 1), e.g. [0.5, 0.999], got {betas}")
    for key in ("in_channels", "out_channels"):
        m, d = c.get(f"model.{key}"), c.get(f"data.{key}")
        if m is not None and d is not None and m != d:
            c.bad(f"model.{key}", f"{m} but data.{key} is {d}: the networks must take what the data gives")

    fields = list(inspect.signature(Objective).parameters)
    c.keys("loss", fields, "the objective (p2p.losses.Objective)")
    c.choice("loss.gan_mode", GAN_MODES)
    c.number("loss.l1_weight", 0.0)
    c.number("loss.gan_weight", 0.0)
    c.boolean("loss.conditional")
    if c.get("loss.l1_weight") == 0 and c.get("loss.gan_weight") == 0:
        c.bad("loss", "l1_weight and gan_weight are both 0: nothing would be trained (paper Table 1: l1, gan, "
              "cgan, l1_gan, l1_cgan)")  # fmt: skip


def _train_side(c: _Checker) -> int | None:
    """The side of the square training inputs (the smallest one for size-preserving preprocessing)."""
    crop, pre, div = c.get("data.crop_size"), c.get("data.preprocess"), c.get("data.size_divisor")
    if isinstance(pre, str) and pre.endswith("crop") and isinstance(crop, int):
        return crop
    return div if isinstance(div, int) else None


@contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny tensors: a thread pool only adds overhead (and contends with whatever else runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _build(c: _Checker, net: str, width: str, **kw: Any) -> torch.nn.Module:
    """``model.<net>`` as configured, but 1 channel wide: shapes do not depend on the width."""
    node = OmegaConf.to_container(c.get(f"model.{net}"), resolve=True)
    assert isinstance(node, dict)
    name = str(node.pop("name"))
    args: dict[str, Any] = {str(k): v for k, v in node.items() if v is not None}
    if width in valid_overrides(name):
        args[width] = 1
    return build_model(name, **{**args, **kw})


def _check_shapes(c: _Checker) -> None:
    """Run G and D once, 1 channel wide, on a training-sized batch: every shape the real networks will meet."""
    side, batch = _train_side(c), c.get("data.batch_size")
    if (
        c.problems
        or side is None
        or c.get("model._target_") != "p2p.training.Pix2Pix"
        or not isinstance(batch, int)
    ):
        return  # the keys these need are already reported wrong
    size_key = "data.crop_size" if str(c.get("data.preprocess")).endswith("crop") else "data.size_divisor"
    cin, cout = c.get("model.in_channels") or 3, c.get("model.out_channels") or 3
    g_name, d_name = c.get("model.generator.name"), c.get("model.discriminator.name")
    with _one_thread(), torch.no_grad():
        try:
            G = _build(c, "generator", "ngf", in_channels=cin, out_channels=cout)
            num_downs = getattr(G, "num_downs", None)
            if num_downs is not None and side % 2**num_downs:
                valid = ", ".join(str(2**num_downs * k) for k in (1, 2, 3))
                c.bad(size_key, f"{side} is not a multiple of {2**num_downs}, which {g_name} with num_downs={num_downs} "
                      f"needs (valid: {valid}, ...; or set unet_num_downs / model.generator.num_downs)")  # fmt: skip
                return
            fake = G(torch.zeros(batch, cin, side, side))
        except Exception as e:
            c.bad(
                "model.generator",
                f"{g_name} cannot take {batch}x{cin}x{side}x{side} inputs ({size_key}={side}): {e}",
            )
            return
        if fake.shape[-2:] != (side, side):
            c.bad(size_key, f"{g_name} turns {side}x{side} inputs into {tuple(fake.shape[-2:])} outputs; choose a "
                  "size it preserves")  # fmt: skip
            return
        if not (c.get("loss.gan_weight") or 0) > 0:
            return  # no discriminator is built
        d_in = cin + cout if c.get("loss.conditional") is not False else cout
        try:
            _build(c, "discriminator", "ndf", in_channels=d_in)(torch.zeros(batch, d_in, side, side))
        except Exception as e:
            c.bad(size_key, f"{side} is too small for model.discriminator.name={d_name} at data.batch_size={batch}: "
                  f"{e}; use a larger size or a smaller discriminator (patchgan_70, patchgan_16, patchgan_1)")  # fmt: skip


def _check_run(c: _Checker) -> None:
    ckpt = c.get("ckpt_path")
    if (
        ckpt is not None
        and ckpt not in CKPT_KEYWORDS
        and "://" not in str(ckpt)
        and not Path(str(ckpt)).is_file()
    ):
        c.bad("ckpt_path", f"no checkpoint file at {ckpt}; give a .ckpt path, or ckpt_path=last to resume from "
              "the run folder's last.ckpt when there is one (and start fresh otherwise)")  # fmt: skip
    c.integer("seed", 0, optional=True)
    accelerator = c.get("trainer.accelerator")
    if c.get("trainer.sync_batchnorm") and (
        accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    ):
        c.bad("trainer.sync_batchnorm", "SyncBatchNorm needs CUDA GPUs; on CPU use trainer.sync_batchnorm=false, and "
              "model.generator.norm=instance model.discriminator.norm=instance for DDP results that match one process")  # fmt: skip
    devices, strategy = c.get("trainer.devices"), str(c.get("trainer.strategy"))
    multi = (isinstance(devices, int) and (devices > 1 or devices == -1)) or strategy.startswith("ddp")
    norms = {c.get("model.generator.norm"), c.get("model.discriminator.norm")}
    rank0 = rank_zero_only.rank == 0  # type: ignore[attr-defined]  # said once, not once per DDP process
    if multi and "batch" in norms and not c.get("trainer.sync_batchnorm") and rank0:
        log.warning(
            "BatchNorm under DDP without trainer.sync_batchnorm=true normalises each process's batch separately: "
            "the result differs from one process with the same global batch (docs/reliability.md)"
        )


def check_config(cfg: DictConfig) -> None:
    """Raise one `ConfigError` listing every problem of ``cfg`` (a composed p2p-train config)."""
    c = _Checker(cfg)
    _check_data(c)
    _check_model(c)
    _check_run(c)
    _check_shapes(c)
    if c.problems:
        raise ConfigError(
            f"invalid config ({len(c.problems)} problem(s)):\n" + "\n".join(f"  {p}" for p in c.problems)
        )


def explain_overrides(overrides: list[str], config_name: str = "train") -> list[str]:
    """Hints for command-line overrides of keys that do not exist: the valid keys there, and the closest.

    Called after Hydra rejected the command line; composes the config with only the group choices."""
    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if "=" in o])
    except Exception:
        return []
    conf = config_dir()
    groups = [o for o in parsed if (conf / o.key_or_group.split("@")[0]).is_dir() and not o.is_delete()]
    keys = [
        o for o in parsed if o not in groups and not o.is_add() and not o.is_force_add() and not o.is_delete()
    ]
    keys = [o for o in keys if not o.key_or_group.startswith("hydra")]
    if not keys:
        return []
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=[str(o.input_line) for o in groups])
    except Exception:
        return []
    hints = []
    for o in keys:
        key = o.key_or_group
        if OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT:
            continue
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
        if isinstance(node, DictConfig):
            valid = sorted(str(k) for k in node)
            hints.append(
                f"{key}: no such key; {_suggest(leaf, valid)}keys of {parent or 'the config'}: {', '.join(valid)}"
            )
    return hints
