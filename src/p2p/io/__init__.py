"""Reading and writing, for every layer above: images, the download cache, all-or-nothing writes, and what
the photo tasks' tensors are as images (`p2p.io.color`: sRGB <-> Lab; `p2p.io.tasks`: colorization's
L/ab, inpainting's hole), so that the data layer that makes them and the layers that show them share one
definition.

Nothing else here knows about pix2pix; it imports only `p2p.errors`.
"""

from __future__ import annotations

from p2p.io.atomic import atomic_save, atomic_write, atomic_write_text
from p2p.io.cache import cache_root
from p2p.io.download import download, sha256sum
from p2p.io.images import convert_channels, inspect_image, inspect_images, open_image, to_tensor

__all__ = [
    "atomic_save",
    "atomic_write",
    "atomic_write_text",
    "cache_root",
    "convert_channels",
    "download",
    "inspect_image",
    "inspect_images",
    "open_image",
    "sha256sum",
    "to_tensor",
]
