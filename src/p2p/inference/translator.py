"""Translate images of any size with a trained generator: ``p2p.Translator`` (``p2p-translate`` runs it).

The generator is fully convolutional but its sides must be multiples of what its downsamplings need
(2**num_downs for a U-Net: 256 for unet_256; 4 for the ResNet). Each image is padded by reflection to the
next multiple, translated, and cropped back, so outputs have the input's size and aspect. Images too large
to translate at once are cut into overlapping tiles (``tile``), whose outputs are blended with weights that
fall off towards each tile's edges, so no seams show.

Generators of the photo tasks (p2p.io.tasks; their checkpoints and save_pretrained folders say which) take
and give images: a colorization generator is given the image's L (grayscale or colour images alike) and its
ab output is put back together with that L at the image's own size; an inpainting generator is given the
image with a hole (``mask``: white = hole; none: the centre rectangle it was trained with) and returns the
image with the hole filled. Tensors always go through the network as they are.

Inference modes (paper section 3.1/6.2, ``p2p.inference``): ``eval`` (running BatchNorm statistics, no
dropout, deterministic) or ``paper`` (dropout on, statistics of the image itself, as the reference
``test.py``). In ``paper`` mode images and tiles go through the network one at a time: batch statistics
shared by several images would make each output depend on the others.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from p2p.errors import check_value
from p2p.inference.modes import InferenceMode
from p2p.inference.modes import inference_mode as set_inference_mode
from p2p.io import convert_channels
from p2p.io.tasks import network_input, output_rgb
from p2p.models import ResnetGenerator, UNetGenerator
from p2p.models.hub import GeneratorHubMixin, generator_config
from p2p.weights import load_generator

log = logging.getLogger(__name__)

Blend = Literal["linear", "cosine"]
BLENDS: tuple[str, ...] = get_args(Blend)
IMAGE_TASKS = ("colorization", "inpainting")  # photo tasks whose generators take and give other channels
MODE_NOTES = {"paper": "dropout on, per-image batch statistics", "eval": "running statistics, no dropout"}


def size_divisor(model: nn.Module) -> int:
    """What the generator's sides must be multiples of (1 for networks p2p does not know)."""
    if isinstance(model, UNetGenerator):
        return 2**model.num_downs
    if isinstance(model, ResnetGenerator):
        return 4
    return 1


def generator_channels(model: nn.Module) -> tuple[int, int]:
    """(in, out) channels: of the U-Net's outermost blocks, else of the first and last convolution."""
    if isinstance(model, UNetGenerator):  # its decoder is stored innermost-last: up[0] makes the output
        first, last = model.down[0].conv, model.up[0].conv
        assert isinstance(first, nn.Conv2d) and isinstance(last, nn.ConvTranspose2d)
        return first.in_channels, last.out_channels
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution: cannot tell its channels")
    return convs[0].in_channels, convs[-1].out_channels


def padded_size(h: int, w: int, divisor: int) -> tuple[int, int]:
    return math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor


def pad_to(x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad [B, C, H, W] to [B, C, h, w], centred; reflection where it fits, edge replication beyond.
    Returns the padded tensor and the (top, left) offset of the original."""
    dh, dw = h - x.shape[-2], w - x.shape[-1]
    top, left = dh // 2, dw // 2
    pad = (left, dw - left, top, dh - top)
    if not any(pad):
        return x, (0, 0)
    # reflection needs each pad smaller than the side; a tiny image falls back to replication
    mode = (
        "reflect" if max(left, dw - left) < x.shape[-1] and max(top, dh - top) < x.shape[-2] else "replicate"
    )
    return F.pad(x, pad, mode=mode), (top, left)


def blend_window(n: int, overlap: int, kind: str = "linear") -> torch.Tensor:
    """1-D tile weights: 1 in the middle, rising from near 0 over ``overlap`` pixels at both ends (never 0,
    so every pixel keeps a weight even where only one tile covers it)."""
    w = torch.ones(n)
    k = min(overlap, n // 2)
    if k > 0:
        t = (torch.arange(k, dtype=torch.float32) + 0.5) / k
        ramp = t if kind == "linear" else 0.5 - 0.5 * torch.cos(math.pi * t)
        w[:k] = ramp
        w[n - k :] = torch.minimum(w[n - k :], ramp.flip(0))
    return w


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Offsets of tiles of side ``tile`` covering ``size``, consecutive ones overlapping by >= ``overlap``."""
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    return [*starts, size - tile]


class Translator:
    """Run a generator on images of any size: ``Translator(source)(image)``.

    ``source`` is anything ``p2p.load_generator`` takes, or an ``nn.Module``. Calls accept a PIL image
    (returns one of the same size), a uint8 array HxW[xC] (returns uint8 HxWxC_out; HxW for 1 channel), a
    float array in [0, 1] (returns float in [0, 1]), a tensor [C, H, W] or [B, C, H, W] in [-1, 1] (returns
    one in [-1, 1] on the same device), or a list of these. Channels are converted to the generator's.
    ``photo_task`` (from the source: colorization, inpainting, edges or None) says how images are turned into
    the generator's input and back (module docstring); ``mask`` of ``__call__``: inpainting's hole.

    ``inference``: ``eval`` or ``paper`` (see the module docstring); None takes the source's
    recommendation (a zoo entry says ``paper``, a checkpoint the mode it was validated with) or ``eval``.
    ``tile``: translate images larger than this side in overlapping tiles of this size (rounded up to the
    generator's divisor); ``overlap`` pixels shared by neighbouring tiles, blended ``linear`` or ``cosine``.
    """

    def __init__(
        self,
        source: Any,
        *,
        device: str | torch.device | None = None,
        inference: str | None = None,
        tile: int | None = None,
        overlap: int = 32,
        blend: str = "linear",
        batch_size: int = 4,
        allow_pickle: bool = False,
        arch: dict[str, Any] | None = None,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(source, nn.Module):
            self.model = source.to(self.device)
        else:
            self.model = load_generator(source, arch=arch, allow_pickle=allow_pickle, device=self.device)
        # what is known about the model: a zoo entry says paper mode, a checkpoint the mode it validated with
        self.config = generator_config(self.model) if isinstance(self.model, GeneratorHubMixin) else {}
        self.inference = check_value(
            "inference", inference or self.config.get("inference") or "eval", InferenceMode
        )
        check_value("blend", blend, Blend)
        self.divisor = size_divisor(self.model)
        self.in_channels, self.out_channels = generator_channels(self.model)
        self.photo_task: str | None = self.config.get("photo_task")
        self.tile = None if tile is None else math.ceil(tile / self.divisor) * self.divisor
        if self.tile is not None and not 0 <= overlap < self.tile:
            raise ValueError(f"overlap must be in [0, tile={self.tile}), got {overlap}")
        self.overlap, self.blend = overlap, blend
        self.batch_size = 1 if self.inference == "paper" else max(1, batch_size)

    # --- tensors -----------------------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The generator on a padded batch, ``batch_size`` at a time (one at a time in paper mode)."""
        with torch.inference_mode(), set_inference_mode(self.model, self.inference):
            return torch.cat(
                [self.model(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
            )

    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        """One padded image [1, C, H, W] in overlapping tiles, blended by normalised weights."""
        assert self.tile is not None
        _, _, h, w = x.shape
        th, tw = min(self.tile, h), min(self.tile, w)
        boxes = [(y, x0) for y in tile_starts(h, th, self.overlap) for x0 in tile_starts(w, tw, self.overlap)]
        weight = blend_window(th, self.overlap, self.blend)[:, None] * blend_window(
            tw, self.overlap, self.blend
        )
        weight = weight.to(x.device)
        out = x.new_zeros(1, self.out_channels, h, w)
        norm = x.new_zeros(1, 1, h, w)
        for i in range(0, len(boxes), self.batch_size):
            chunk = boxes[i : i + self.batch_size]
            y = self._forward(torch.cat([x[:, :, a : a + th, b : b + tw] for a, b in chunk]))
            for (a, b), tile_out in zip(chunk, y):
                out[:, :, a : a + th, b : b + tw] += tile_out * weight
                norm[:, :, a : a + th, b : b + tw] += weight
        return out / norm

    def translate_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W] in [-1, 1] -> [B, C_out, H, W] in [-1, 1]; any H, W."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = padded_size(h, w, self.divisor)
        xp, (top, left) = pad_to(x.to(self.device, torch.float32), ph, pw)
        if self.tile is not None and max(ph, pw) > self.tile:
            y = torch.cat([self._tiled(xp[i : i + 1]) for i in range(len(xp))])
        else:
            y = self._forward(xp)
        return y[:, :, top : top + h, left : left + w]

    # --- images ------------------------------------------------------------------------------------------
    def _to_tensor(self, img: Any, channels: int | None = None) -> tuple[torch.Tensor, str]:
        """One input -> ([1, C, H, W] in [-1, 1], kind), with ``channels`` (default: the generator's)."""
        channels = channels or self.in_channels
        if isinstance(img, Image.Image):
            arr = np.asarray(convert_channels(img, channels), dtype=np.float32) / 127.5 - 1.0
            return torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1)).permute(2, 0, 1)[None], "pil"
        if isinstance(img, np.ndarray):
            kind = "uint8" if img.dtype == np.uint8 else "float"
            arr = img.astype(np.float32) / (127.5 if kind == "uint8" else 0.5) - 1.0
            t = torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1)).permute(2, 0, 1)[None]
            return self._match_channels(t, channels), kind
        if isinstance(img, torch.Tensor):
            if img.ndim not in (3, 4):
                raise ValueError(f"expected a tensor [C, H, W] or [B, C, H, W], got {tuple(img.shape)}")
            return self._match_channels(img[None] if img.ndim == 3 else img, channels), f"tensor{img.ndim}"
        raise TypeError(
            f"cannot translate a {type(img).__name__}: use a PIL image, a numpy array or a tensor"
        )

    def _match_channels(self, t: torch.Tensor, channels: int | None = None) -> torch.Tensor:
        c, want = t.shape[1], channels or self.in_channels
        if c == want:
            return t
        if c == 4:  # RGBA: drop alpha, as PIL's convert("RGB") does
            return self._match_channels(t[:, :3], want)
        if c == 1 and want == 3:
            return t.expand(-1, 3, -1, -1)
        if c == 3 and want == 1:  # ITU-R 601 luma, as PIL's convert("L")
            return (t * torch.tensor([0.299, 0.587, 0.114], device=t.device)[:, None, None]).sum(
                1, keepdim=True
            )
        raise ValueError(f"the generator takes {want} channels, the input has {c}")

    def encode(self, img: Any, mask: Any = None) -> tuple[torch.Tensor, str]:
        """One input -> (the generator's input [1, C, H, W] in [-1, 1], kind): for a colorization generator
        the image's L, for an inpainting one the image with ``mask``'s hole (None: the centre rectangle)."""
        if self.photo_task not in IMAGE_TASKS or isinstance(img, torch.Tensor):
            if mask is not None:
                raise ValueError("mask: only an inpainting generator takes a mask")
            return self._to_tensor(img)
        rgb, kind = self._to_tensor(img, 3)
        if mask is not None and self.photo_task != "inpainting":
            raise ValueError(
                f"mask: only an inpainting generator takes a mask, this one is {self.photo_task}"
            )
        return network_input(self.photo_task, rgb, None if mask is None else hole_tensor(mask, rgb)), kind

    def decode(self, x: torch.Tensor, y: torch.Tensor, kind: str, like: Any) -> Any:
        """The generator's output ``y`` for the input ``x`` (from `encode`) -> the result, like the input:
        colorization: RGB from x's L and y's ab; inpainting: x's pixels outside the hole, y's inside."""
        if self.photo_task in IMAGE_TASKS and not kind.startswith("tensor"):
            y = output_rgb(self.photo_task, x.to(y.device, y.dtype), y)
        return self._from_tensor(y, kind, like)

    def _from_tensor(self, y: torch.Tensor, kind: str, like: Any) -> Any:
        if kind.startswith("tensor"):
            y = y.to(like.device)
            return y[0] if kind == "tensor3" else y
        arr = ((y[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy()
        if kind == "float":
            return arr[:, :, 0] if arr.shape[2] == 1 else arr
        u8 = np.rint(arr * 255).astype(np.uint8)
        u8 = u8[:, :, 0] if u8.shape[2] == 1 else u8
        return Image.fromarray(u8) if kind == "pil" else u8

    def __call__(self, images: Any, mask: Any = None) -> Any:
        if isinstance(images, (list, tuple)):
            return [self(img, mask) for img in images]
        x, kind = self.encode(images, mask)
        return self.decode(x, self.translate_tensor(x), kind, images)


def hole_tensor(mask: Any, like: torch.Tensor) -> torch.Tensor:
    """An inpainting mask (PIL image or array: white / nonzero / True = hole) for the image ``like``
    [1, C, H, W] -> [1, 1, H, W], 1 in the hole and -1 elsewhere."""
    arr: np.ndarray
    if isinstance(mask, Image.Image):
        arr = np.asarray(convert_channels(mask, 1)) >= 128
    elif isinstance(mask, np.ndarray):
        arr = mask >= 128 if mask.dtype == np.uint8 else mask > 0.5 if mask.dtype.kind == "f" else mask > 0
        arr = arr if arr.ndim == 2 else np.asarray(arr.any(axis=2))
    else:
        raise TypeError(f"mask: a PIL image or a numpy array, not {type(mask).__name__}")
    if arr.shape != tuple(like.shape[-2:]):
        h, w = like.shape[-2:]
        raise ValueError(f"the mask is {arr.shape[1]}x{arr.shape[0]} but the image is {w}x{h}")
    return torch.from_numpy(np.where(arr, 1.0, -1.0).astype(np.float32))[None, None].to(like)
