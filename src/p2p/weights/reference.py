"""The reference pix2pix PyTorch layout (junyanz/pytorch-CycleGAN-and-pix2pix) and reading an architecture
off a state dict.

The reference ``UnetGenerator`` nests blocks recursively (``model.model.1.model.3.model...``); p2p's U-Net
is flat (``down.i`` / ``up.i``). `reference_to_p2p` renames keys level by level so the official
``latest_net_G.pth`` files load into p2p's generators; PatchGAN and ResNet keys are already the same.
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn as nn

from p2p.errors import CheckpointError
from p2p.models import UNetGenerator


def unet_key_map(num_downs: int) -> dict[str, str]:
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
        mapping = unet_key_map(model.num_downs)
        converted = {}
        for key, value in state.items():
            module, _, leaf = key.rpartition(".")
            if module not in mapping:
                raise CheckpointError(
                    f"unexpected key {key!r} for a reference U-Net with {model.num_downs} levels"
                )
            converted[f"{mapping[module]}.{leaf}"] = value
        return converted
    if any(k.startswith("net.") for k in state):  # reference PixelDiscriminator
        state = {re.sub(r"^net\.", "model.", k): v for k, v in state.items()}
    return state


def infer_arch(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Read a generator's architecture off a state dict (p2p or reference layout, U-Net or ResNet).

    Not recoverable from weights: the dropout rate of a U-Net (dropout has no parameters; 0.5 as in the
    paper) and ``instance`` vs ``none`` normalisation (neither has parameters; ``instance`` is assumed, the
    reference's alternative to BatchNorm). Pass ``arch=`` to ``load_generator`` to say otherwise.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    norm = "batch" if any(k.endswith("running_mean") for k in state) else "instance"
    modules = {k.rpartition(".")[0] for k in state}
    if is_reference_unet(state):
        for n in range(2, 17):
            mapping = unet_key_map(n)
            inv = {v: k for k, v in mapping.items()}
            if modules <= set(mapping) and f"{inv[f'down.{n - 1}.conv']}.weight" in state:
                first, last = state[f"{inv['down.0.conv']}.weight"], state[f"{inv['up.0.conv']}.weight"]
                return {
                    "name": "unet_256",  # the reference U-Net always has skips
                    "num_downs": n,
                    "ngf": first.shape[0],
                    "in_channels": first.shape[1],
                    "out_channels": last.shape[1],  # a transposed conv's weight is [in, out, k, k]
                    "norm": norm,
                    "skip": True,
                }
        raise CheckpointError("keys look like a reference U-Net but match no depth from 2 to 16 levels")
    if "down.0.conv.weight" in state:  # p2p U-Net
        n = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"down\.(\d+)\.", k)))
        first, last = state["down.0.conv.weight"], state["up.0.conv.weight"]
        skip = n > 2 and state["up.1.conv.weight"].shape[0] == 2 * state["down.1.conv.weight"].shape[0]
        return {
            "name": "unet_256" if skip else "encoder_decoder_256",
            "num_downs": n,
            "ngf": first.shape[0],
            "in_channels": first.shape[1],
            "out_channels": last.shape[1],
            "norm": norm,
            "skip": skip,
        }
    if "model.1.weight" in state and any(".conv_block." in k for k in state):  # ResNet (both layouts)
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
        convs = [int(m.group(1)) for k in state if (m := re.fullmatch(r"model\.(\d+)\.weight", k))]
        first, last = state["model.1.weight"], state[f"model.{max(convs)}.weight"]
        # with dropout the block is [pad, conv, norm, relu, dropout, pad, conv, norm]: its 2nd conv moves to 6
        drop = any(k.endswith("conv_block.6.weight") and v.ndim == 4 for k, v in state.items())
        return {
            "name": "resnet_9blocks",
            "n_blocks": len(blocks),
            "ngf": first.shape[0],
            "in_channels": first.shape[1],
            "out_channels": last.shape[0],
            "norm": norm,
            "dropout": 0.5 if drop else 0.0,
        }
    raise CheckpointError(
        f"not a p2p or reference pix2pix generator; first keys: {', '.join(list(state)[:5])}"
    )
