"""Folders of photos for the tasks that need no pairs (p2p.io.tasks): colorization, inpainting, edges.

Layouts (detected automatically):

    split folders:  ROOT/{train,val,test}/*.jpg     one photo per file
    one folder:     ROOT/*.jpg                      a photo is in "val" (also the test split) when a hash of
                                                    its file name falls below ``val_fraction``: the split is
                                                    stable when photos are added or the folder is moved

Each photo is a pair of itself, ``PairFiles(photo, photo)``, so the listing, the check of every file
(p2p.data.validate), the RAM cache and the crop/flip (one draw for both images) are the ordinary pairs' ones.
`PhotoDataset` returns ``(photo, photo)`` as the pair's two images (edges: ``(edges, photo)``), and after the
transform `PhotoTask.encode` makes the task's input and target from the cropped photo (p2p.io.tasks).

Deterministic derivation: the input depends on the photo (and for inpainting's random holes, on its file
name and ``data.seed``) only, never on the epoch; augmentation (crop, flip) comes after, as for any pair.
Edges are computed once per photo at the size the transform resizes it to (so lines stay one pixel wide
whatever the photo's size) and cached on disk, ``$P2P_CACHE/edges/`` (keyed by the file's bytes, that size
and the edge settings); nothing is written into ROOT.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from p2p.data.dataset import IMG_EXTENSIONS, Pair, PairedImageDataset, PairFiles, broken_links, list_images
from p2p.data.edges import EdgeSettings, edge_map
from p2p.data.transforms import BICUBIC, PairTransform
from p2p.errors import DataError, check_fields
from p2p.io import atomic_write, cache_root, convert_channels, open_image
from p2p.io.tasks import MaskScheme, PhotoTaskName, hole_mask, lab_encode, with_hole

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class PhotoTask:
    """A photo task (p2p.io.tasks) and its settings, applied once the photo is cropped and flipped."""

    name: PhotoTaskName = "colorization"
    mask: MaskScheme = "center"  # inpainting's hole (p2p.io.tasks)
    seed: int = 0  # inpainting, mask=random: with the file name, seeds each photo's hole

    def __post_init__(self) -> None:
        check_fields(self)

    def encode(self, pair: dict[str, Any]) -> dict[str, Any]:
        """{"input": photo, "target": photo, "path"} (edges: {"input": edges, ...}), one item [C, H, W] or a
        batch [B, C, H, W] in [-1, 1] -> the task's {"input", "target", "path"}."""
        if self.name == "edges":
            return pair
        one = pair["input"].ndim == 3
        rgb = pair["target"][None] if one else pair["target"]
        if self.name == "colorization":
            x, y = lab_encode(rgb)
        else:
            paths = [pair["path"]] if one else list(pair["path"])
            h, w = rgb.shape[-2:]
            names = [str(p).replace("\\", "/").rsplit("/", 1)[-1] for p in paths]
            mask = torch.stack([hole_mask(h, w, self.mask, n, self.seed) for n in names]).to(rgb)
            x, y = with_hole(rgb, mask), rgb
        return {**pair, "input": x[0] if one else x, "target": y[0] if one else y}


def has_split_folders(root: Path) -> bool:
    return any((root / s).is_dir() for s in SPLIT_NAMES)


def in_val(name: str, fraction: float) -> bool:
    """Whether the photo called ``name`` belongs to the val split of a one-folder layout (a fixed hash)."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return h / 2**64 < fraction


def list_photos(root: Path, split: str, val_fraction: float = 0.1) -> tuple[list[PairFiles], list[str]]:
    """The photos of ``split`` as pairs of themselves, and what is wrong (the lister of p2p.data.validate)."""
    if has_split_folders(root):
        folder = root / split
        if not folder.is_dir():
            present = [s for s in SPLIT_NAMES if (root / s).is_dir()]
            return [], [f"{folder}: split {split!r} not found (splits present: {', '.join(present)})"]
        photos = list_images(folder)
    else:
        if split not in ("train", "val", "test"):
            return [], [
                f"{root}: a folder of photos has the splits train and val (test = val), not {split!r}"
            ]
        photos = [p for p in list_images(root) if in_val(p.name, val_fraction) == (split != "train")]
        folder = root
    if not photos:
        where = (
            f"{folder}" if folder != root else f"{root} (split {split!r}, data.val_fraction={val_fraction})"
        )
        return [], [*broken_links(folder), f"{where}: empty split: no images ({'/'.join(IMG_EXTENSIONS)})"]
    return [PairFiles(p, p) for p in photos], broken_links(folder)


class PhotoDataset(PairedImageDataset):
    """The photos of one split, each turned into the task's {"input", "target", "path"} (p2p.io.tasks).

    ``in_channels``/``out_channels`` of the parent class are those of the two images it loads (and the RAM
    cache keeps): RGB photos, and for edges the edge map's channels; the task then encodes them.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        task: PhotoTask,
        edge_channels: int = 3,
        transform: PairTransform | None = None,
        pairs: list[PairFiles] | None = None,  # already listed and checked (p2p.data.validate)
        edges: EdgeSettings | None = None,
        cache_dir: str | None = None,  # the edges' cache root; None: $P2P_CACHE or ~/.cache/p2p
        val_fraction: float = 0.1,
    ) -> None:
        if pairs is None:
            pairs, problems = list_photos(Path(root).expanduser(), split, val_fraction)
            if problems:
                raise DataError("; ".join(problems), problems)
        in_channels = edge_channels if task.name == "edges" else 3
        super().__init__(root, split, "AtoB", in_channels, 3, transform, pairs)
        self.task, self.edges, self.cache_dir = task, edges or EdgeSettings(), cache_dir

    def load_pair(self, index: int) -> tuple[Image.Image, Image.Image, Path]:
        path = self.pairs[index].a
        photo = convert_channels(open_image(path), 3)
        if self.task.name != "edges":
            return photo, photo, path
        size = self.transform._resized_size(*photo.size)
        if size != photo.size:  # the transform's own resize, done here so that edges are drawn at that size
            photo = photo.resize(size, BICUBIC)
        return self._edges(path, photo), photo, path

    def _edges(self, path: Path, photo: Image.Image) -> Image.Image:
        """The edge map of ``photo`` (the file at ``path``, resized), from the disk cache or computed once."""
        e = self.edges
        key = hashlib.sha256(path.read_bytes()).hexdigest()[:32]
        cached = (
            cache_root(self.cache_dir)
            / "edges"
            / f"{key}-{photo.size[0]}x{photo.size[1]}-canny-{e.sigma}-{e.low}-{e.high}.png"
        )
        if cached.is_file():
            try:
                return open_image(cached)
            except DataError:  # a damaged cache entry: computed again below
                log.warning("%s: unreadable cached edges, computing them again", cached)
        edges = edge_map(photo, e)
        with atomic_write(cached) as f:  # parallel workers never read half a file
            edges.save(f, format="PNG")
        return edges

    def __getitem__(self, index: int) -> Pair:
        return self.task.encode(super().__getitem__(index))  # type: ignore[return-value,arg-type]
