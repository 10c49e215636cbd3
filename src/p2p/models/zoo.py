"""Pretrained generators, named timm-style ``arch.tag`` (``unet_256.facades_label2photo``):
``p2p.list_models(pretrained=True)`` lists them, ``p2p.create_model(name, pretrained=True)``,
``p2p.load_generator(name)`` and ``p2p-translate --checkpoint NAME`` load one. The bare tags of earlier
releases (``facades_label2photo``) are accepted too.

The official pix2pix PyTorch models (Isola et al.; github.com/junyanz/pytorch-CycleGAN-and-pix2pix,
``scripts/download_pix2pix_model.sh``) are U-Net-256 generators with BatchNorm and dropout, trained at
256x256 with batch size 1 (286 -> random 256 crops, flips). Their reference ``test.py`` resizes inputs to
256x256 and runs the network in training mode (dropout on, batch statistics): our ``paper`` inference mode.

The files are fetched from ``$P2P_ZOO_URL`` (default: the official Berkeley server) + the entry's file name,
so a mirror or a test server can stand in. Their sha256 are not recorded yet (``None``): the first download
pins its hash in the cache, later downloads must match it; an entry with a sha256 is checked against it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from p2p.errors import did_you_mean

DEFAULT_BASE_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"
REFERENCE_REPO = "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix"
# U-Net-256 as the reference builds it for pix2pix (--netG unet_256 --norm batch, dropout on)
_REFERENCE_UNET = {
    "name": "unet_256",
    "num_downs": 8,
    "ngf": 64,
    "norm": "batch",
    "dropout": 0.5,
    "in_channels": 3,
    "out_channels": 3,
}


@dataclass(frozen=True)
class Pretrained:
    tag: str
    task: str  # what goes in -> what comes out
    dataset: str  # the pix2pix dataset it was trained on (p2p-train data=...)
    direction: str  # AtoB / BtoA within that dataset's side-by-side pairs
    filename: str  # file name on the server ($P2P_ZOO_URL/filename)
    arch: dict[str, Any] = field(default_factory=lambda: dict(_REFERENCE_UNET))
    input_size: int = 256  # the training resolution; other sizes work (padded), at some cost in quality
    preprocess: str = "resize to 256x256, RGB, scaled to [-1, 1] (reference test.py: load_size = crop_size)"
    inference: str = "paper"  # the reference test.py's behaviour (dropout + batch statistics)
    sha256: str | None = None  # None: not recorded; pinned on first download
    source: str = REFERENCE_REPO
    licence: str = "BSD (the reference repository's licence); the training data has its own terms"

    @property
    def name(self) -> str:
        """The model's name: ``arch.tag``."""
        return f"{self.arch['name']}.{self.tag}"

    @property
    def url(self) -> str:
        return f"{os.environ.get('P2P_ZOO_URL', DEFAULT_BASE_URL).rstrip('/')}/{self.filename}"

    def metadata(self) -> dict[str, Any]:
        """Everything about the entry as plain data (what ``pretrained_info`` returns), URL resolved."""
        return {**asdict(self), "name": self.name, "url": self.url}


PRETRAINED: dict[str, Pretrained] = {
    p.tag: p
    for p in [
        Pretrained(
            "facades_label2photo", "facade label map -> photo", "facades", "BtoA", "facades_label2photo.pth"
        ),
        Pretrained("sat2map", "aerial photo -> map", "maps", "AtoB", "sat2map.pth"),
        Pretrained("map2sat", "map -> aerial photo", "maps", "BtoA", "map2sat.pth"),
        Pretrained("edges2shoes", "edge map -> shoe photo", "edges2shoes", "AtoB", "edges2shoes.pth"),
        Pretrained("day2night", "daytime photo -> night", "night2day", "BtoA", "day2night.pth"),
    ]
}


def names() -> list[str]:
    """Every pretrained model's name, ``arch.tag``."""
    return sorted(p.name for p in PRETRAINED.values())


def find(name: str) -> Pretrained | None:
    """The entry called ``name`` (``arch.tag``, or a bare ``tag``), or None."""
    for p in PRETRAINED.values():
        if name in (p.name, p.tag):
            return p
    return None


def entry(name: str) -> Pretrained:
    """The entry called ``name``; a `KeyError` with the closest name and the choices if there is none."""
    found = find(name)
    if found is None:
        raise KeyError(
            f"unknown pretrained model {name!r}; {did_you_mean(name, names())}choose from: {', '.join(names())}"
        )
    return found


def pretrained_info(name: str) -> dict[str, Any]:
    """Metadata of a pretrained model: task, dataset, direction, input size, preprocessing, url, sha256,
    source, licence, architecture and recommended inference mode."""
    return entry(name).metadata()
