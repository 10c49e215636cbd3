"""The paper's tasks that need only photos (section 4), in one place: what the generator sees and predicts,
and how its output becomes an RGB image again.

    colorization  input: L of CIE Lab (1 channel), target: a and b (2 channels), scaled as the reference
                  colorization model does (junyanz/pytorch-CycleGAN-and-pix2pix, colorization_dataset.py):
                  L / 50 - 1 and ab / 110, both in [-1, 1]; the L1 loss is on ab. The output is shown with the
                  input's L: RGB = Lab->RGB(L, G(L)).
    inpainting    input: the photo with a hole filled with 0 (mid-grey in [-1, 1]) plus the hole mask as a 4th
                  channel (1 in the hole, -1 elsewhere: a white-on-black mask image), target: the photo. The
                  output is shown composited: the input's pixels outside the hole, G's inside.
    edges         input: edges of the photo (p2p.data.edges, computed once in p2p.data.photos), target: the
                  photo; nothing to convert.

This module is the one definition of those tensors, shared by the data layer that makes them
(`p2p.data.photos.PhotoTask.encode`, after crop and flip) and every layer that shows or scores them: `views`
turns (input, output, target) into RGB images for grids, metrics and p2p-translate, `network_input` makes a
generator's input from a user's photo. Every check of which channel counts a data module may have is
`check_channels`.

Holes (inpainting) are drawn in the coordinates of the network's input, after crop and flip, from the
photo's file name and the data seed only, so a photo has the same hole every epoch:

    center  a centred rectangle of half the height and half the width (a quarter of the pixels): Context
            Encoders' "central region" (Pathak et al., CVPR 2016, section 4: 64x64 of 128x128; here 128x128 of
            256x256), the setting of the paper's Paris StreetView inpainting;
    random  one rectangle per photo, its height and width each uniform in [1/4, 1/2] of the image's, its
            position uniform (not Context Encoders' "random block": they drop several smaller blocks).
"""

from __future__ import annotations

import zlib
from typing import Literal, get_args

import numpy as np
import torch

from p2p.errors import ConfigError
from p2p.io.color import lab_to_rgb, rgb_to_lab

PhotoTaskName = Literal["colorization", "inpainting", "edges"]
PHOTO_TASKS: tuple[str, ...] = get_args(PhotoTaskName)
MaskScheme = Literal["center", "random"]
MASK_SCHEMES: tuple[str, ...] = get_args(MaskScheme)

# (input, output) channel counts each task allows; None: pairs read from files (grayscale or RGB images)
TASK_CHANNELS: dict[str | None, tuple[tuple[int, ...], tuple[int, ...]]] = {
    None: ((1, 3), (1, 3)),
    "colorization": ((1,), (2,)),  # L -> ab
    "inpainting": ((4,), (3,)),  # RGB with a hole + mask -> RGB
    "edges": ((1, 3), (1, 3)),  # edge map (grayscale, or RGB as edges2shoes stores it) -> photo
}
L_SCALE, AB_SCALE = 50.0, 110.0  # the reference colorization model's scaling of L and ab to [-1, 1]


def check_channels(task: str | None, in_channels: int, out_channels: int) -> tuple[int, int]:
    """``(in_channels, out_channels)`` if ``task`` (None: ordinary pairs) takes them, else a `ConfigError`."""
    ins, outs = TASK_CHANNELS[task]
    what = f"{task} takes" if task else "images are converted to"
    for key, value, allowed in (("in_channels", in_channels, ins), ("out_channels", out_channels, outs)):
        if value not in allowed:
            raise ConfigError(f"{key}: {what} {' or '.join(map(str, allowed))} channels, got {value!r}")
    return in_channels, out_channels


# --- colorization --------------------------------------------------------------------------------------
def lab_encode(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB [B, 3, H, W] in [-1, 1] -> (L [B, 1, H, W], ab [B, 2, H, W]), each scaled to [-1, 1]."""
    lab = rgb_to_lab((rgb.double() + 1) / 2)
    return (lab[:, :1] / L_SCALE - 1).to(rgb.dtype), (lab[:, 1:] / AB_SCALE).to(rgb.dtype)


def lab_decode(L: torch.Tensor, ab: torch.Tensor | None) -> torch.Tensor:
    """(L [B, 1, H, W], ab [B, 2, H, W] or None for grey) scaled as `lab_encode` -> RGB in [-1, 1]."""
    L64 = (L.double().clamp(-1, 1) + 1) * L_SCALE
    ab64 = torch.zeros_like(L64).expand(-1, 2, -1, -1) if ab is None else ab.double().clamp(-1, 1) * AB_SCALE
    return (lab_to_rgb(torch.cat([L64, ab64], 1)) * 2 - 1).to(L.dtype)


# --- inpainting ----------------------------------------------------------------------------------------
def hole_box(h: int, w: int, scheme: str, name: str = "", seed: int = 0) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the hole of an h x w input (see the module docstring)."""
    if scheme == "center":
        hh, hw = h // 2, w // 2
        return (h - hh) // 2, (w - hw) // 2, hh, hw
    if scheme == "random":  # numpy's generator, seeded: never touches torch's RNG (crops and flips)
        rng = np.random.default_rng([seed & 0xFFFF_FFFF, zlib.crc32(name.encode())])
        hh, hw = int(rng.integers(h // 4, h // 2 + 1)), int(rng.integers(w // 4, w // 2 + 1))
        return int(rng.integers(0, h - hh + 1)), int(rng.integers(0, w - hw + 1)), hh, hw
    raise ValueError(f"mask must be one of {MASK_SCHEMES}, got {scheme!r}")


def hole_mask(h: int, w: int, scheme: str, name: str = "", seed: int = 0) -> torch.Tensor:
    """[1, h, w]: 1 in the hole, -1 elsewhere."""
    top, left, hh, hw = hole_box(h, w, scheme, name, seed)
    mask = torch.full((1, h, w), -1.0)
    mask[:, top : top + hh, left : left + hw] = 1.0
    return mask


def with_hole(rgb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inpainting input: RGB [B, 3, H, W] with the hole (mask [B, 1, H, W] > 0) set to 0, plus the mask."""
    hole = mask > 0
    return torch.cat([rgb.masked_fill(hole, 0.0), torch.where(hole, 1.0, -1.0).to(rgb)], 1)


def in_hole(x: torch.Tensor) -> torch.Tensor:
    """The hole of an inpainting input [B, 4, H, W], as a boolean [B, 1, H, W]."""
    return x[:, 3:4] > 0


# --- what a person or a metric looks at ------------------------------------------------------------------
def input_rgb(task: str | None, x: torch.Tensor) -> torch.Tensor:
    """The generator's input as an image: grey for colorization's L, the holed photo for inpainting."""
    if task == "colorization":
        return lab_decode(x, None)
    if task == "inpainting":
        return x[:, :3]
    return x


def output_rgb(task: str | None, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """An output (or the target) of the generator for input ``x``, as the image it stands for."""
    if task == "colorization":
        return lab_decode(x, out)
    if task == "inpainting":
        return torch.where(in_hole(x), out, x[:, :3])
    return out


def views(
    task: str | None, x: torch.Tensor, out: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input, output, target) as images in [-1, 1]; for ordinary pairs and edges, as they are."""
    if task not in ("colorization", "inpainting"):
        return x, out, y
    return input_rgb(task, x), output_rgb(task, x, out), output_rgb(task, x, y)


def network_input(task: str | None, rgb: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """What the generator of ``task`` takes for a photo RGB [B, 3, H, W] in [-1, 1] (p2p-translate):
    its L for colorization; for inpainting the photo with the hole ``mask`` [B, 1, H, W] (> 0 in the hole;
    None: the centre rectangle) cut out."""
    if task == "colorization":
        return lab_encode(rgb)[0]
    if task == "inpainting":
        if mask is None:
            h, w = rgb.shape[-2:]
            mask = hole_mask(h, w, "center").to(rgb)[None].expand(len(rgb), -1, -1, -1)
        return with_hole(rgb, mask)
    raise ValueError(f"the {task!r} task's generator takes its input as is")
