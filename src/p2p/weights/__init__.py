"""Weights for p2p's networks from every source, through one reader (`p2p.weights.reader`).

``create_model(name, pretrained=...)`` builds a registered architecture and, if asked, loads weights into
it; ``load_generator(source)`` builds the generator a source describes (its config, a zoo entry, or its
keys) and loads it. Both resolve ``source`` the same way (`p2p.weights.sources`: files, URLs, ``hf-hub:``,
zoo names) and read it the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from p2p.errors import CheckpointError
from p2p.models import build_model, model_kind, valid_overrides, zoo
from p2p.models.hub import METADATA_KEYS, GeneratorHubMixin
from p2p.weights.reader import Weights, read_weights
from p2p.weights.reference import infer_arch, reference_to_p2p
from p2p.weights.sources import resolve

__all__ = ["Weights", "create_model", "load_generator", "load_state", "read_weights"]


def load_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """Load ``state`` into ``model`` strictly, converting the reference layout; a mismatch names ``where``."""
    state = reference_to_p2p(state, model)
    # files from PyTorch < 0.4.1 (like some official pix2pix models) have no BatchNorm step counters
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{where}: weights do not fit {type(model).__name__}: {e}") from None
    return model


def create_model(
    name: str,
    pretrained: bool | str | Path | None = None,
    *,
    allow_pickle: bool = False,
    cache_dir: str | Path | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, timm-style.

    ``name`` is an architecture (``p2p.list_models()``) or a pretrained model ``arch.tag``
    (``p2p.list_models(pretrained=True)``), whose entry completes the architecture. ``overrides`` are the
    architecture's constructor arguments (``ngf``/``ndf``, ``num_downs``, ``norm``, ``in_channels``, ...).
    ``pretrained``: ``True`` loads the zoo entry's weights (downloaded once); a path, URL or ``hf-hub:`` id
    loads those (a p2p checkpoint or ``save_pretrained`` folder, a state dict in p2p's or the reference
    layout, a ``.safetensors`` file); ``None``/``False``: freshly initialised.
    """
    arch, _, tag = name.partition(".")
    entry = zoo.entry(name) if tag else None
    built_with = {k: v for k, v in (entry.arch if entry else {}).items() if k != "name"}
    model = build_model(arch, **{**built_with, **overrides})
    if pretrained is True and entry is None:
        raise ValueError(f"{name}: pretrained=True needs a pretrained name, one of: {', '.join(zoo.names())}")
    source = name if pretrained is True else pretrained or None
    if source is not None:
        path, _ = resolve(source, cache_dir)
        network = "D" if model_kind(arch) == "discriminator" else "G"
        load_state(model, read_weights(path, network, allow_pickle).state, str(path))
    return model


def build_generator(config: dict[str, Any], state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """The generator ``config`` names (``name`` + constructor arguments; other keys are metadata), loaded
    with ``state``."""
    if "name" not in config:
        raise CheckpointError(
            f"{where}: the architecture has no 'name' (one of p2p.list_models(kind='generator'))"
        )
    name = config["name"].partition(".")[0]
    overrides = {k: v for k, v in config.items() if k in valid_overrides(name)}
    return load_state(build_model(name, **overrides), state, where)


def load_generator(
    source: str | Path,
    *,
    arch: dict[str, Any] | None = None,
    allow_pickle: bool = False,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
) -> nn.Module:
    """A ready generator (eval mode, on ``device``) from a checkpoint, folder, file, URL, hub id or zoo name.

    ``arch`` overrides or completes the architecture (``{"name": "unet_256", "norm": "instance"}``);
    ``allow_pickle`` permits full unpickling of files that are not plain tensors (only for trusted files);
    ``sha256`` checks a download. `p2p.weights.reader` lists the files it reads. What is known about the
    model (its constructor arguments, zoo metadata, the inference mode of a checkpoint's validation) is
    ``p2p.models.hub.generator_config(G)``, and what ``G.save_pretrained`` writes.
    """
    path, known = resolve(source, cache_dir, sha256)
    weights = read_weights(path, "G", allow_pickle)
    if weights.module is not None and not arch:  # a whole pickled model (allow_pickle was given)
        return weights.module.eval().to(device)
    config = {**weights.config, **known, **(arch or {})}
    if "name" not in config:  # a bare state dict: its keys say the architecture
        try:
            config = {**infer_arch(weights.state), **config}
        except CheckpointError as e:
            raise CheckpointError(
                f"{path}: {e}; pass arch={{'name': ..., ...}} to say the architecture"
            ) from None
    model = build_generator(config, weights.state, str(path)).eval()
    if isinstance(model, GeneratorHubMixin):  # what save_pretrained writes again: arguments + metadata
        keep = {k: v for k, v in config.items() if k in METADATA_KEYS or k == "name"}
        model._hub_mixin_config = {**dict(model._hub_mixin_config or {}), **keep}  # type: ignore[arg-type]
    return model.to(device)
