"""Decoded images kept in RAM, and the crop/flip applied to whole batches on the accelerator.

At batch 1 a GPU trains pix2pix faster than two DataLoader workers decode JPEGs and resize them (bicubic,
286x286, reference ``get_transform``). Both costs are the same every epoch: the decode, and the resize to
``load_size``, depend only on the file. `CachedPairs` does them once per process and keeps the result as
uint8 arrays; each item then only draws its crop and flip.

With ``device_augment`` the items are the cached, uncropped uint8 images plus the crop and flip drawn for
them; `augment_on_device` cuts and mirrors the whole batch in one gather on the accelerator. The crop/flip
parameters are drawn with exactly the calls `PairTransform` makes, from the same per-sample seed
(`p2p.data.sampler`), so a batch is bit-identical to the one the worker path builds (tests/test_perf.py).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from p2p.data.dataset import Pair, PairedImageDataset
from p2p.data.photos import PhotoDataset
from p2p.data.synthetic import SyntheticPairs, render_pair
from p2p.data.transforms import BICUBIC, PairTransform, Preprocess
from p2p.io import convert_channels, to_tensor

log = logging.getLogger(__name__)

CacheMode = Literal["auto", "ram", "none"]


def _raw_pair(ds: Dataset[Pair], index: int) -> tuple[Image.Image, Image.Image, str]:
    """The (A, B) images of one item before any transform, and its reported path."""
    if isinstance(ds, PairedImageDataset):
        a, b, path = ds.load_pair(index)
        return a, b, str(path)
    if isinstance(ds, SyntheticPairs):
        a, b = render_pair(index, ds.split, ds.seed, ds.image_size, ds.num_classes)
        return a, b, f"synthetic/{ds.split}/{index:06d}"
    raise TypeError(f"cannot cache {type(ds).__name__}: only PairedImageDataset and SyntheticPairs")


def geometry_after_resize(t: PairTransform) -> PairTransform:
    """The part of ``t`` left once its deterministic resize is done: the same crop and flip draws, no resize
    (``crop`` and ``none`` keep an image whose sides are already what ``t`` resizes to)."""
    rest: Preprocess = "crop" if t.preprocess.endswith("crop") else "none"
    return PairTransform(t.load_size, t.crop_size, rest, t.flip, 1, t.train)


def draw_crop_flip(t: PairTransform, w: int, h: int) -> tuple[int, int, bool]:
    """(x, y, flip) for a resized w x h image, drawn from torch's RNG with PairTransform.__call__'s calls."""
    x = y = 0
    if t.preprocess.endswith("crop"):
        c = t.crop_size
        if w < c or h < c:
            raise ValueError(f"image of size {w}x{h} is smaller than crop_size={c}")
        if t.train:
            x = int(torch.randint(0, w - c + 1, ()).item())
            y = int(torch.randint(0, h - c + 1, ()).item())
        else:
            x, y = (w - c) // 2, (h - c) // 2
    flip = bool(t.train and t.flip and torch.rand(()).item() < 0.5)
    return x, y, flip


class CachedPairs(Dataset[Pair]):
    """``dataset``'s items, with each image decoded, channel-converted and resized once per process.

    The cache fills lazily, so it costs nothing up front; DataLoader workers each keep their own, which is
    why the data module only caches with persistent workers and budgets ``num_workers`` copies.
    """

    def __init__(self, dataset: PairedImageDataset | SyntheticPairs, device_augment: bool = False) -> None:
        self.dataset, self.device_augment = dataset, device_augment
        self.transform: PairTransform = dataset.transform
        self.rest = geometry_after_resize(self.transform)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, str]] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def decoded(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """(input, target) as uint8 HxW[xC] arrays after the deterministic resize, and the path."""
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        if not 0 <= index < len(self):  # IndexError ends a plain `for item in dataset` loop
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        ds = self.dataset
        a, b, path = _raw_pair(ds, index)
        src, dst = (a, b) if ds.direction == "AtoB" else (b, a)
        src, dst = convert_channels(src, ds.in_channels), convert_channels(dst, ds.out_channels)
        if src.size != dst.size:
            raise ValueError(f"{path}: the two images of a pair differ in size: {src.size} vs {dst.size}")
        size = self.transform._resized_size(*src.size)
        if size != src.size:
            src, dst = src.resize(size, BICUBIC), dst.resize(size, BICUBIC)
        hit = (np.array(src), np.array(dst), path)  # writable copies: torch.from_numpy warns on read-only
        self._cache[index] = hit
        return hit

    def nbytes(self, index: int = 0) -> int:
        a, b, _ = self.decoded(index)
        return a.nbytes + b.nbytes

    def __getitem__(self, index: int) -> Pair:  # with device_augment: uint8 images + a "crop" entry
        src, dst, path = self.decoded(index)
        try:
            if self.device_augment:
                x, y, flip = draw_crop_flip(self.transform, src.shape[1], src.shape[0])
                item: dict[str, Any] = {"input": _chw(src), "target": _chw(dst), "path": path}
                item["crop"] = torch.tensor([x, y, int(flip)])
                return item  # type: ignore[return-value]
            a, b = self.rest(Image.fromarray(src), Image.fromarray(dst))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        pair: Pair = {"input": to_tensor(a), "target": to_tensor(b), "path": path}
        # a photo task makes its input and target from the cropped photo (device_augment: the data module)
        return self.dataset.task.encode(pair) if isinstance(self.dataset, PhotoDataset) else pair  # type: ignore[return-value,arg-type]


def _chw(arr: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(arr)
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


def augment_on_device(batch: dict[str, Any], crop_size: int | None) -> dict[str, Any]:
    """Finish a ``device_augment`` batch where it lies: per-sample crop (``crop_size``; None: no crop) and
    horizontal flip, identical for input and target, then uint8 -> [-1, 1] exactly as ``to_tensor`` does."""
    params = batch.pop("crop")
    out = dict(batch)
    for key in ("input", "target"):
        img = batch[key]
        n, c, h, w = img.shape
        ch, cw = (crop_size, crop_size) if crop_size is not None else (h, w)
        x0, y0, flip = (params[:, i].to(img.device) for i in range(3))
        cols = x0[:, None] + torch.arange(cw, device=img.device)
        cols = torch.where(flip[:, None].bool(), cols.flip(1), cols)  # mirror inside the crop window
        rows = y0[:, None] + torch.arange(ch, device=img.device)
        b = torch.arange(n, device=img.device)[:, None, None, None]
        k = torch.arange(c, device=img.device)[None, :, None, None]
        out[key] = img[b, k, rows[:, None, :, None], cols[:, None, None, :]].float().div_(127.5).sub_(1.0)
    return out
