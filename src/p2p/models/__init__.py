"""The networks of the paper, registered by name (``p2p.list_models()``), and the pretrained zoo's entries.

The bottom layer of p2p: nothing here imports the rest of p2p (nor Lightning or Hydra). Each builder holds
its architecture's defaults; configs name a builder and only the arguments they change.
"""

from __future__ import annotations

from typing import Any

from p2p.models import zoo
from p2p.models.norm import init_weights, norm_layer
from p2p.models.patchgan import PatchDiscriminator, PixelDiscriminator
from p2p.models.registry import (
    build_model,
    list_models,
    model_kind,
    model_spec,
    register_model,
    valid_overrides,
)
from p2p.models.resnet import ResnetGenerator
from p2p.models.unet import UNetGenerator

__all__ = [
    "PatchDiscriminator",
    "PixelDiscriminator",
    "ResnetGenerator",
    "UNetGenerator",
    "build_model",
    "init_weights",
    "list_models",
    "model_kind",
    "model_spec",
    "norm_layer",
    "register_model",
    "valid_overrides",
    "zoo",
]


# --- generators -------------------------------------------------------------------------------------------
@register_model
def unet_256(**kw: Any) -> UNetGenerator:
    """The paper's U-Net for 256x256: 8 downsamplings to a 1x1 bottleneck (54,413,955 parameters)."""
    return UNetGenerator(**{"num_downs": 8, **kw})


@register_model
def unet_128(**kw: Any) -> UNetGenerator:
    """U-Net for 128x128: 7 downsamplings."""
    return UNetGenerator(**{"num_downs": 7, **kw})


@register_model
def encoder_decoder_256(**kw: Any) -> UNetGenerator:
    """The paper's encoder-decoder ablation: the U-Net without skip connections."""
    return UNetGenerator(**{"num_downs": 8, "skip": False, **kw})


@register_model
def encoder_decoder_128(**kw: Any) -> UNetGenerator:
    """Encoder-decoder for 128x128 inputs."""
    return UNetGenerator(**{"num_downs": 7, "skip": False, **kw})


@register_model
def resnet_9blocks(**kw: Any) -> ResnetGenerator:
    """ResNet generator with 9 residual blocks (the reference's choice for 256x256)."""
    return ResnetGenerator(**{"n_blocks": 9, **kw})


@register_model
def resnet_6blocks(**kw: Any) -> ResnetGenerator:
    """ResNet generator with 6 residual blocks (128x128)."""
    return ResnetGenerator(**{"n_blocks": 6, **kw})


# --- discriminators: the number is the receptive field in pixels (paper Table 3) ------------------------
@register_model(kind="discriminator")
def patchgan_1(**kw: Any) -> PixelDiscriminator:
    """PixelGAN: 1x1 patches."""
    return PixelDiscriminator(**kw)


@register_model(kind="discriminator")
def patchgan_16(**kw: Any) -> PatchDiscriminator:
    """16x16 PatchGAN (n_layers=1)."""
    return PatchDiscriminator(**{"n_layers": 1, **kw})


@register_model(kind="discriminator")
def patchgan_70(**kw: Any) -> PatchDiscriminator:
    """70x70 PatchGAN, C64-C128-C256-C512 (the paper's default; 2,768,705 parameters with 6 inputs)."""
    return PatchDiscriminator(**{"n_layers": 3, **kw})


@register_model(kind="discriminator")
def patchgan_286(**kw: Any) -> PatchDiscriminator:
    """286x286 ImageGAN (n_layers=5): one patch covers a whole 256x256 image."""
    return PatchDiscriminator(**{"n_layers": 5, **kw})
