"""Images in and out: decoding that names the file, conversion of any mode to 1 or 3 channels, tensors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from p2p.errors import UnreadableImageError


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """The fully decoded image (truncation shows up here); any decoder failure names the file."""
    try:
        return _decoded(path)
    except Exception as e:  # OSError, UnidentifiedImageError, DecompressionBombError, struct errors, ...
        raise UnreadableImageError(f"cannot read image {path}: {type(e).__name__}: {e}") from e


def inspect_image(path: str | os.PathLike[str]) -> tuple[int, int] | str:
    """The image's (width, height) after a full decode, or what is wrong with it (for lists of bad files)."""
    try:
        if os.stat(path).st_size == 0:
            return "empty file (0 bytes)"
        return _decoded(path).size
    except Exception as e:  # as in open_image
        return f"cannot read image: {type(e).__name__}: {e}"


def inspect_images(
    paths: Sequence[str | os.PathLike[str]], workers: int | None = None
) -> list[tuple[int, int] | str]:
    """`inspect_image` of each path, in order, decoded in a thread pool (Pillow's decoders release the GIL)."""
    with ThreadPoolExecutor(max_workers=workers or min(16, 2 * (os.cpu_count() or 1))) as pool:
        return list(pool.map(inspect_image, paths, chunksize=16))


def _decoded(path: str | os.PathLike[str]) -> Image.Image:
    with Image.open(path) as img:
        img.load()  # decodes every byte: truncation shows up here (Pillow's LOAD_TRUNCATED_IMAGES is off)
        return img


def convert_channels(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL image (L, LA, P, RGB, RGBA, CMYK, I;16, I, F, ...) to mode "L" (1) or "RGB" (3).

    Alpha is dropped, like the reference's `.convert("RGB")`. Integer modes (I;16, I;16B, I) are read as
    16-bit (0..65535) and divided by 257, so full range maps to full range instead of being clipped at 255.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if img.mode.startswith("I"):
        arr = np.asarray(img).astype(np.float64) / 257.0  # 65535 / 257 = 255 exactly
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    elif img.mode == "F":
        arr = np.asarray(img).astype(np.float64)
        arr = arr * 255.0 if arr.size and arr.max() <= 1.0 else arr  # float images usually live in [0, 1]
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    elif img.mode == "P":
        img = img.convert("RGBA")  # via RGBA so palette transparency does not trigger a Pillow warning
    if img.mode == "LA":
        img = img.convert("L")
    target = "L" if channels == 1 else "RGB"
    if img.mode == target:
        return img
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")  # RGBA, CMYK, YCbCr, ... all go through RGB
    return img.convert(target)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """uint8 PIL image (L or RGB) -> float tensor [C, H, W] in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).float()
    return t.div_(127.5).sub_(1.0)
