"""Paired images on disk, in either of the two pix2pix layouts (detected automatically):

    aligned:   ROOT/{train,val,test}/NAME.jpg         A | B side by side in one file (A = left half)
    separate:  ROOT/A/{split}/NAME.*, ROOT/B/{split}/NAME.*   files matched by name (extension may differ)

If ROOT/{split} exists the aligned layout is used, else ROOT/A and ROOT/B. Files are listed once, sorted, at
construction; images are decoded lazily in __getitem__ (so an odd width is reported when first loaded).
Nothing is ever written into ROOT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

import torch
from PIL import Image
from torch.utils.data import Dataset

from p2p.data.transforms import PairTransform
from p2p.errors import DataError, InputNotFoundError, check_value
from p2p.io import convert_channels, open_image, to_tensor

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
Direction = Literal["AtoB", "BtoA"]  # which half (A = left, B = right) is the generator's input
Channels = Literal[1, 3]  # images are converted to grayscale or RGB


class Pair(TypedDict):
    input: torch.Tensor  # [C_in, H, W] in [-1, 1], what the generator sees
    target: torch.Tensor  # [C_out, H, W] in [-1, 1]
    path: str


@dataclass(frozen=True)
class PairFiles:
    a: Path  # for the aligned layout, the side-by-side file
    b: Path | None  # None for the aligned layout


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


def broken_links(folder: Path) -> list[str]:
    """Image-named symbolic links whose target is gone: `list_images` cannot read them, so they are named
    as problems instead of vanishing from the split."""
    links = (p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMG_EXTENSIONS and p.is_symlink())
    return [
        f"{p}: broken symbolic link (its target {p.readlink()} does not exist)"
        for p in links
        if not p.exists()
    ]


def split_folders(root: Path, split: str) -> tuple[Path, ...]:
    """The folder(s) holding `split`: (ROOT/split,) or (ROOT/A/split, ROOT/B/split); () if absent."""
    if (root / split).is_dir():
        return (root / split,)
    if (root / "A" / split).is_dir() and (root / "B" / split).is_dir():
        return (root / "A" / split, root / "B" / split)
    return ()


def available_splits(root: Path) -> list[str]:
    names = (
        {p.name for p in root.iterdir() if p.is_dir() and p.name not in ("A", "B")}
        if root.is_dir()
        else set()
    )
    names |= {p.name for p in (root / "A").glob("*") if p.is_dir() and (root / "B" / p.name).is_dir()}
    return sorted(names)


def list_split(root: Path, split: str) -> tuple[list[PairFiles], list[str]]:
    """The pairs of ``split`` and every problem found while matching them (`find_pairs` raises them;
    `p2p.data.validate.check_splits` reports them with the files' own)."""
    folders = split_folders(root, split)
    if not folders:
        return [], [
            f"{root / split}: split {split!r} not found (expected {root / split}/ with A|B images side by side "
            f"or {root / 'A' / split}/ and {root / 'B' / split}/; splits present: "
            f"{available_splits(root) or 'none'})"
        ]
    images = [list_images(f) for f in folders]
    problems = [p for f in folders for p in broken_links(f)]
    problems += [
        f"{f}: empty split: no images ({'/'.join(IMG_EXTENSIONS)})" for f, i in zip(folders, images) if not i
    ]
    if len(folders) == 1:
        return [PairFiles(p, None) for p in images[0]], problems
    by_stem: list[dict[str, Path]] = [{}, {}]
    for side, paths in enumerate(images):
        for p in paths:
            if p.stem in by_stem[side]:
                problems.append(
                    f"{p}: same name as {by_stem[side][p.stem].name}; cannot tell which one to pair"
                )
            else:
                by_stem[side][p.stem] = p
    a, b = by_stem
    for stem in sorted(a.keys() ^ b.keys()):
        here, there = (a[stem], folders[1]) if stem in a else (b[stem], folders[0])
        problems.append(f"{here}: no image named {stem}.* in {there} (A and B files are paired by name)")
    return [PairFiles(a[s], b[s]) for s in sorted(a.keys() & b.keys())], problems


def find_pairs(root: str | Path, split: str) -> list[PairFiles]:
    """The pairs of `split` under `root`; a `DataError` lists every listing problem (missing or empty
    folders, duplicate names, A and B files that do not pair up)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputNotFoundError(f"dataset root {root} does not exist or is not a folder")
    pairs, problems = list_split(root, split)
    if problems:
        raise DataError(f"split {split!r} of {root}:\n" + "\n".join(f"  {p}" for p in problems), problems)
    return pairs


class PairedImageDataset(Dataset[Pair]):
    """Pairs from a pix2pix folder; returns {"input", "target", "path"} with "input" chosen by `direction`.

    `transform` defaults to the training transform for split "train" and the deterministic evaluation
    transform otherwise (see PairTransform).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        direction: str = "AtoB",
        in_channels: int = 3,
        out_channels: int = 3,
        transform: PairTransform | None = None,
        pairs: list[PairFiles] | None = None,  # already listed (and checked, see p2p.data.validate)
    ) -> None:
        self.root, self.split = Path(root).expanduser(), split
        self.direction = check_value("direction", direction, Direction)
        self.in_channels = check_value("in_channels", in_channels, Channels)
        self.out_channels = check_value("out_channels", out_channels, Channels)
        self.transform = transform if transform is not None else PairTransform(train=split == "train")
        self.pairs = find_pairs(self.root, split) if pairs is None else pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def load_pair(self, index: int) -> tuple[Image.Image, Image.Image, Path]:
        """The raw (A, B) images of one pair, and the path reported for it."""
        files = self.pairs[index]
        if files.b is None:
            ab = open_image(files.a)
            w, h = ab.size
            if w % 2:
                raise DataError(
                    f"{files.a}: width {w} is odd, but an A|B side-by-side image needs an even width"
                )
            return ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h)), files.a
        a, b = open_image(files.a), open_image(files.b)
        if a.size != b.size:
            raise DataError(f"{files.a} is {a.size[0]}x{a.size[1]} but {files.b} is {b.size[0]}x{b.size[1]}")
        return a, b, (files.a if self.direction == "AtoB" else files.b)

    def __getitem__(self, index: int) -> Pair:
        a, b, path = self.load_pair(index)
        return make_pair(a, b, str(path), self.direction, self.in_channels, self.out_channels, self.transform)


def make_pair(
    a: Image.Image,
    b: Image.Image,
    path: str,
    direction: str,
    in_channels: int,
    out_channels: int,
    transform: PairTransform,
) -> Pair:
    """Shared by every dataset: pick input/target by direction, convert channels, transform, to tensors."""
    src, dst = (a, b) if direction == "AtoB" else (b, a)
    try:
        src, dst = convert_channels(src, in_channels), convert_channels(dst, out_channels)
        src, dst = transform(src, dst)
        return {"input": to_tensor(src), "target": to_tensor(dst), "path": path}
    except Exception as e:  # an image that decodes but cannot be used: say which file, even from a worker
        raise DataError(
            f"{path}: {e}" if isinstance(e, ValueError) else f"{path}: {type(e).__name__}: {e}"
        ) from e
