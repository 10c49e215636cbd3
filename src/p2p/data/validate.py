"""Check every file of a dataset once, before training, and report every problem together.

One bad JPEG among 100k otherwise surfaces hours into a run as a traceback from a DataLoader worker (the
reference code's behaviour). `check_splits` decodes each image of the splits a run uses, in a thread pool
(Pillow releases the GIL while decoding), and collects one ``"path: what is wrong"`` line per problem:

- empty files, unreadable or truncated images (a real decode, not ``Image.verify()``, which does not
  notice a JPEG cut short);
- A|B side-by-side images with an odd width; A/B pairs whose sizes differ or whose names do not match;
- images smaller than ``crop_size`` after the preprocessing resize (only ``preprocess=crop`` can do that);
- missing or empty splits.

``on_bad_file="error"`` raises one `p2p.errors.DataError` listing them all; ``"skip"`` logs the list and
returns the good pairs. Files are only read, never written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, get_args

from p2p.data.dataset import PairFiles, list_split
from p2p.data.transforms import PairTransform
from p2p.errors import DataError, check_value
from p2p.io import inspect_images

log = logging.getLogger(__name__)

OnBadFile = Literal["error", "skip"]
ON_BAD_FILE: tuple[str, ...] = get_args(OnBadFile)


def pair_problem(
    files: PairFiles, sizes: Mapping[Path, tuple[int, int] | str], transform: PairTransform
) -> str | None:
    """What is wrong with one pair, given its files' `inspect_image` results; None if nothing is."""
    for path in (files.a, files.b):
        if path is not None and isinstance(sizes[path], str):
            return f"{path}: {sizes[path]}"
    size = sizes[files.a]
    assert not isinstance(size, str)
    w, h = size
    if files.b is None:
        if w % 2:
            return f"{files.a}: width {w} is odd, but an A|B side-by-side image needs an even width"
        w //= 2
    elif sizes[files.b] != size:
        b_size = sizes[files.b]
        return f"{files.a}: {w}x{h} but its pair {files.b} is {b_size[0]}x{b_size[1]}"
    if transform.preprocess.endswith("crop"):
        rw, rh = transform._resized_size(w, h)
        if rw < transform.crop_size or rh < transform.crop_size:
            return (
                f"{files.a}: {w}x{h} is smaller than data.crop_size={transform.crop_size} after "
                f"data.preprocess={transform.preprocess}"
            )
    return None


def check_splits(
    root: str | Path,
    splits: Mapping[str, PairTransform],
    on_bad_file: str = "error",
    workers: int | None = None,
    lister: Callable[[Path, str], tuple[list[PairFiles], list[str]]] = list_split,
) -> dict[str, list[PairFiles]]:
    """Check every file of each split (with the transform that split is loaded with); return the good pairs.

    Raises `DataError` listing every problem (``on_bad_file="error"``), or when skipping leaves a split
    empty; with ``"skip"`` the problems are logged as a warning. ``lister`` lists a split's pairs and the
    problems found doing so (`list_split`; folders of photos: `p2p.data.photos.list_photos`).
    """
    on_bad_file = check_value("data.on_bad_file", on_bad_file, OnBadFile)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist or is not a folder (data.root)")
    listed = {split: lister(root, split) for split in splits}
    files = sorted({p for pairs, _ in listed.values() for f in pairs for p in (f.a, f.b) if p is not None})
    sizes = dict(zip(files, inspect_images(files, workers)))

    good: dict[str, list[PairFiles]] = {}
    problems: list[str] = []
    for split, (pairs, split_problems) in listed.items():
        bad = [pair_problem(f, sizes, splits[split]) for f in pairs]
        problems += split_problems + [p for p in bad if p is not None]
        good[split] = [f for f, p in zip(pairs, bad) if p is None]
    problems = list(dict.fromkeys(problems))  # a split used twice (val = test) reports its files once
    empty = [s for s, pairs in good.items() if not pairs]
    left = ", ".join(f"{s}: {len(pairs)}" for s, pairs in good.items())
    if problems and (on_bad_file == "error" or empty):
        why = (
            f"data.on_bad_file=skip would leave split(s) {', '.join(empty)} empty"
            if on_bad_file == "skip"
            else f"data.on_bad_file=skip leaves them out and keeps the good pairs, {left}"
        )
        raise DataError(
            f"{len(problems)} problem(s) in the data under {root} ({why}):\n"
            + "\n".join(f"  {p}" for p in problems),
            problems,
        )
    if problems:
        log.warning(
            "data.on_bad_file=skip: leaving out %d bad file(s) under %s (good pairs left: %s):\n%s",
            len(problems), root, left, "\n".join(f"  {p}" for p in problems),
        )  # fmt: skip
    return good
