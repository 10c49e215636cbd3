"""`p2p-prepare-cityscapes`: convert the official Cityscapes release into p2p's aligned A|B layout.

    leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png     -> A (photo, left half)
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_color.png         -> B (colour labels, right half)
    OUTPUT/{split}/{N}.jpg, N = 1, 2, ... in sorted order of {city}_{seq}_{frame}

Each half is resized to size x size with bicubic resampling and saved as JPEG quality 100 without chroma
subsampling, as the reference pix2pix prepare_cityscapes_dataset.py does, so results stay comparable.
Unlike the reference, val stays "val" (the pix2pix archive layout; conf/data/cityscapes.yaml tests on val).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from p2p.errors import InputNotFoundError, UsageError

PHOTO_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_color.png"


def _index(folder: Path, suffix: str) -> dict[str, Path]:
    return {p.name[: -len(suffix)]: p for p in sorted(folder.glob(f"*/*{suffix}"))}


def _split_dir(top: Path, split: str, inner: str) -> Path:
    """top/split, also accepting the unzipped parent (e.g. gtFine_trainvaltest/gtFine/split)."""
    for d in (top / split, top / inner / split):
        if d.is_dir():
            return d
    raise InputNotFoundError(
        f"no {split!r} folder in {top} (looked for {top / split} and {top / inner / split})"
    )


def _names(keys: list[str], suffix: str, limit: int = 10) -> str:
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(k + suffix for k in keys[:limit]) + more


def prepare_cityscapes(
    gtfine: str | Path,
    leftimg8bit: str | Path,
    output: str | Path,
    size: int = 256,
    splits: Sequence[str] = ("train", "val"),
) -> dict[str, int]:
    """Write OUTPUT/{split}/N.jpg for every split; returns the number of pairs written per split."""
    gtfine, leftimg8bit, output = (
        Path(gtfine).expanduser(),
        Path(leftimg8bit).expanduser(),
        Path(output).expanduser(),
    )
    if size < 1:
        raise UsageError(f"--size must be >= 1, got {size}")
    # Check every split before writing anything, so a bad tree fails fast and leaves no partial output.
    jobs = []
    for split in splits:
        labels = _index(_split_dir(gtfine, split, "gtFine"), LABEL_SUFFIX)
        photos = _index(_split_dir(leftimg8bit, split, "leftImg8bit"), PHOTO_SUFFIX)
        if not photos:
            raise InputNotFoundError(
                f"no */*{PHOTO_SUFFIX} files in {_split_dir(leftimg8bit, split, 'leftImg8bit')}"
            )
        missing_labels = sorted(photos.keys() - labels.keys())
        missing_photos = sorted(labels.keys() - photos.keys())
        if missing_labels or missing_photos:
            raise InputNotFoundError(
                f"split {split!r}: photos without a label map: [{_names(missing_labels, PHOTO_SUFFIX)}]; "
                f"label maps without a photo: [{_names(missing_photos, LABEL_SUFFIX)}]"
            )
        out = output / split
        if out.is_dir() and any(out.iterdir()):
            raise UsageError(f"{out} is not empty; remove it or choose another --output")
        jobs.append((split, out, [(photos[k], labels[k]) for k in sorted(photos)]))

    counts = {}
    for split, out, pairs in jobs:
        out.mkdir(parents=True, exist_ok=True)
        for i, (photo, label) in enumerate(pairs, start=1):
            ab = Image.new("RGB", (2 * size, size))
            for x, path in ((0, photo), (size, label)):
                with Image.open(path) as img:
                    ab.paste(img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), (x, 0))
            ab.save(out / f"{i}.jpg", quality=100, subsampling=0)
            if i % 500 == 0 or i == len(pairs):
                print(f"{split}: {i}/{len(pairs)} pairs written to {out}")
        counts[split] = len(pairs)
    return counts
