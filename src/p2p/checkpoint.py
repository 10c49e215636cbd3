"""Reading weights: p2p state dicts, safetensors files and the reference pix2pix PyTorch layout.

The reference ``UnetGenerator`` nests blocks recursively (``model.model.1.model.3.model...``); p2p's U-Net
is flat (``down.i`` / ``up.i``). ``reference_to_p2p`` renames keys level by level so the official
``latest_net_G.pth`` files load into p2p's generators; PatchGAN and ResNet keys are already the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn as nn

from p2p.models.unet import UNetGenerator


def _unet_key_map(num_downs: int) -> dict[str, str]:
    """Reference module path -> p2p module path, for every conv and norm of a U-Net."""
    inner = num_downs - 1
    out: dict[str, str] = {}
    prefix = "model.model."
    for level in range(num_downs):
        if level == 0:  # outermost: [downconv, submodule, uprelu, upconv, tanh]
            out[prefix + "0"] = "down.0.conv"
            out[prefix + "3"] = "up.0.conv"
        elif level == inner:  # innermost: [downrelu, downconv, uprelu, upconv, upnorm]
            out[prefix + "1"] = f"down.{level}.conv"
            out[prefix + "3"] = f"up.{level}.conv"
            out[prefix + "4"] = f"up.{level}.norm"
        else:  # [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm, (dropout)]
            out[prefix + "1"] = f"down.{level}.conv"
            out[prefix + "2"] = f"down.{level}.norm"
            out[prefix + "5"] = f"up.{level}.conv"
            out[prefix + "6"] = f"up.{level}.norm"
        prefix += ("1" if level == 0 else "3") + ".model."
    return out


def is_reference_unet(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("model.model.") for k in state)


def reference_to_p2p(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Convert a reference state dict to ``model``'s key layout (a no-op for layouts that already match)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
    if isinstance(model, UNetGenerator) and is_reference_unet(state):
        mapping = _unet_key_map(model.num_downs)
        converted = {}
        for key, value in state.items():
            module, _, leaf = key.rpartition(".")
            if module not in mapping:
                raise KeyError(f"unexpected key {key!r} for a reference U-Net with {model.num_downs} levels")
            converted[f"{mapping[module]}.{leaf}"] = value
        return converted
    if any(k.startswith("net.") for k in state):  # reference PixelDiscriminator
        state = {re.sub(r"^net\.", "model.", k): v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file or a torch pickle holding tensors only (``weights_only``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def load_state_dict_file(model: nn.Module, path: str | Path, prefix: str = "") -> nn.Module:
    """Load weights into ``model`` from ``path``, converting the reference layout when needed.

    ``prefix`` selects a sub-dict (e.g. ``"netG."`` in a file holding several networks). Every key must match
    (strict), and a mismatch names the file and the offending keys.
    """
    state = read_state_dict(path)
    if not prefix and all(k.startswith(("netG.", "netD.", "input.", "output.")) for k in state):
        # a bundle of several networks (like the reference parity file): pick this model's part
        from p2p.models import PatchDiscriminator, PixelDiscriminator

        prefix = "netD." if isinstance(model, (PatchDiscriminator, PixelDiscriminator)) else "netG."
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise KeyError(f"{path}: no keys start with {prefix!r}")
    state = reference_to_p2p(state, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"{path}: weights do not fit {type(model).__name__}: {e}") from None
    return model
