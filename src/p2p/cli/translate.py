"""``p2p-translate``: translate images of any size with a trained generator (`p2p.inference.Translator`).

p2p-translate --checkpoint run/checkpoints/last.ckpt --input labels/ --output out/
p2p-translate --checkpoint unet_256.facades_label2photo --input 'maps/**/*.png' --output out/ --tile 512
p2p-translate --checkpoint colorization/last.ckpt --input old_photos/ --output coloured/   # grey -> colour
p2p-translate --checkpoint inpainting/last.ckpt --input photo.jpg --mask hole.png --output filled/
"""

from __future__ import annotations

import argparse
import glob
import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from p2p.cli import parse_arch, run_cli
from p2p.data.validate import ON_BAD_FILE
from p2p.errors import DataError, InputNotFoundError, UnreadableImageError, UsageError
from p2p.inference import INFERENCE_MODES, Translator
from p2p.inference.translator import BLENDS, MODE_NOTES, pad_to, padded_size
from p2p.io import inspect_images, open_image
from p2p.models import zoo

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def find_images(inputs: Sequence[str]) -> list[tuple[Path, Path]]:
    """(file, output name relative to the output folder) for files, folders (recursive) and globs."""
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_file():
            found.append((p, Path(p.name)))
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise InputNotFoundError(f"{p}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
            found += [(f, f.relative_to(p)) for f in files]
        elif glob.has_magic(item):
            files = sorted(Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).is_file())
            if not files:
                raise InputNotFoundError(f"{item}: the pattern matches no files")
            found += [(f, Path(f.name)) for f in files]
        else:
            raise InputNotFoundError(f"{item}: no such file, folder or glob match")
    return found


def output_path(out_dir: Path, rel: Path, keep_ext: bool) -> Path:
    return out_dir / (rel if keep_ext else rel.with_suffix(".png"))


def run(args: argparse.Namespace) -> int:
    if args.seed is not None:
        torch.manual_seed(args.seed)  # paper mode samples dropout masks
    arch = parse_arch(args.arch)
    tr = Translator(
        args.checkpoint,
        device=None if args.device == "auto" else args.device,
        inference=args.inference,
        tile=args.tile,
        overlap=args.overlap,
        blend=args.blend,
        batch_size=args.batch_size,
        allow_pickle=args.allow_pickle,
        arch=arch,
    )
    files = find_images(args.input)
    mask = load_mask(args.mask, tr.photo_task)
    out_dir = Path(args.output)
    targets: dict[Path, Path] = {}
    for src, rel in files:
        dest = output_path(out_dir, rel, args.keep_ext)
        if dest in targets:
            raise UsageError(f"{src} and {targets[dest]} would both be written to {dest}")
        targets[dest] = src
    sizes, problems = check_inputs(files)
    print(
        f"p2p-translate: {len(files) - len(problems)} images"
        + (f" ({len(problems)} bad input file(s) left out, listed at the end)" if problems else "")
        + f", inference={tr.inference} "
        f"({MODE_NOTES[tr.inference]}), "
        f"device={tr.device}, sides padded to multiples of {tr.divisor}"
        + (f", tiles {tr.tile} overlap {tr.overlap} ({tr.blend})" if tr.tile else "")
        + (f", task {tr.photo_task}" if tr.photo_task else "")
        + (
            ", hole: the centre rectangle (--mask for your own)"
            if tr.photo_task == "inpainting" and mask is None
            else ""
        )
    )
    # batch images whose padded sizes agree (one forward pass each); the rest go alone
    groups: dict[tuple[int, int], list[tuple[Path, Path]]] = defaultdict(list)
    for (src, rel), size in zip(files, sizes):
        if not isinstance(size, str):
            groups[padded_size(size[1], size[0], tr.divisor)].append((src, rel))
    written = 0
    with Progress(disable=args.no_progress) as progress:
        task = progress.add_task("translating", total=len(files) - len(problems))
        for (ph, pw), members in groups.items():
            step = 1 if tr.tile and max(ph, pw) > tr.tile else tr.batch_size
            for i in range(0, len(members), step):
                written += translate_chunk(tr, members[i : i + step], (ph, pw), mask, args, problems)
                progress.advance(task, len(members[i : i + step]))
    print(f"wrote {written} images to {out_dir}")
    report_bad_files(problems, args.on_bad_file)
    return 0


def translate_chunk(
    tr: Translator,
    chunk: list[tuple[Path, Path]],
    padded: tuple[int, int],
    mask: Image.Image | None,
    args: argparse.Namespace,
    problems: list[str],
) -> int:
    """Translate and write images of one padded size in one forward pass; returns how many were written.
    A file that can no longer be decoded (changed since it was checked) joins ``problems``."""
    xs, inputs, rels = [], [], []
    for src, rel in chunk:
        try:
            im = open_image(src)
        except UnreadableImageError as e:
            problems.append(str(e))
            continue
        if mask is not None and mask.size != im.size:
            raise UsageError(f"--mask {args.mask} is {mask.size[0]}x{mask.size[1]} but {src} is "
                             f"{im.size[0]}x{im.size[1]}: the mask must have the image's size")  # fmt: skip
        x, _kind = tr.encode(im, mask)  # photo tasks: L, or the image with the hole
        inputs.append(x)
        xs.append(pad_to(x, *padded))
        rels.append(rel)
    if not xs:
        return 0
    y = tr.translate_tensor(torch.cat([x for x, _ in xs]))  # already padded: translate_tensor pads by nothing
    for rel, x, (_, (top, left)), out in zip(rels, inputs, xs, y):
        h, w = x.shape[-2:]
        img = tr.decode(x, out[None, :, top : top + h, left : left + w], "pil", None)
        dest = output_path(Path(args.output), rel, args.keep_ext)
        dest.parent.mkdir(parents=True, exist_ok=True)
        img.save(dest, **({"quality": 95} if dest.suffix.lower() in (".jpg", ".jpeg") else {}))
    return len(rels)


def check_inputs(files: list[tuple[Path, Path]]) -> tuple[list[tuple[int, int] | str], list[str]]:
    """Every input decoded once, in a thread pool, before the slow part: (width, height) or what is wrong
    for each file, and one ``"path: what is wrong"`` line per bad file."""
    sizes = inspect_images([src for src, _ in files])
    return sizes, [f"{src}: {size}" for (src, _), size in zip(files, sizes) if isinstance(size, str)]


def report_bad_files(problems: list[str], on_bad_file: str) -> None:
    """The bad inputs, after every good one was written: a `DataError` (exit code 1), or with
    ``--on-bad-file skip`` a warning."""
    if not problems:
        return
    listing = "\n".join(f"  {p}" for p in problems)
    if on_bad_file == "skip":
        print(f"p2p-translate: warning: --on-bad-file skip: left out {len(problems)} bad input file(s):\n"
              f"{listing}", file=sys.stderr)  # fmt: skip
        return
    raise DataError(
        f"{len(problems)} bad input file(s) not translated (every other one was written; --on-bad-file skip "
        f"exits 0):\n{listing}",
        problems,
    )


def load_mask(path: str | None, photo_task: str | None) -> Image.Image | None:
    """``--mask``: the hole of an inpainting generator, white (>= 128) = hole, the size of every input."""
    if path is None:
        return None
    if photo_task != "inpainting":
        raise UsageError(
            f"--mask: only an inpainting generator takes a mask; this one is {photo_task or 'not a photo task'}"
        )
    if not Path(path).is_file():
        raise InputNotFoundError(f"--mask {path}: no such file")
    return open_image(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="p2p-translate",
        usage="%(prog)s --checkpoint SRC --input IMG... --output DIR [options]\n"
        "       %(prog)s --list-pretrained",
        description="Translate images with a pix2pix generator; outputs keep the inputs' names and sizes.",
        epilog="p2p-translate --list-pretrained prints the zoo's tags with their metadata.",
    )
    p.add_argument("--checkpoint", required=True, help="a .ckpt, save_pretrained folder, .pth/.safetensors, "
                   "http(s) URL, hf-hub:owner/name or zoo tag (p2p-translate --list-pretrained)")  # fmt: skip
    p.add_argument("--input", nargs="+", required=True, help="image files, folders (recursive) or globs")
    p.add_argument("--output", required=True, help="output folder (created)")
    p.add_argument("--inference", choices=INFERENCE_MODES, default=None,
                   help="eval: deterministic; paper: dropout + per-image statistics (default: the source's "
                   "recommendation, else eval)")  # fmt: skip
    p.add_argument("--mask", default=None, help="inpainting generators: the hole, an image the size of the "
                   "inputs, white = hole (default: the centre rectangle)")  # fmt: skip
    p.add_argument("--tile", type=int, default=None, help="translate images larger than this in tiles")
    p.add_argument("--overlap", type=int, default=32, help="pixels shared by neighbouring tiles (default 32)")
    p.add_argument("--blend", choices=BLENDS, default="linear", help="tile blending weights")
    p.add_argument(
        "--batch-size", type=int, default=4, help="images of the same padded size per forward pass"
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--keep-ext", action="store_true", help="keep the input's extension (default: .png)")
    p.add_argument("--seed", type=int, default=None, help="seed for paper mode's dropout")
    p.add_argument("--arch", default=None, help='JSON architecture override, e.g. \'{"norm": "instance"}\'')
    p.add_argument("--allow-pickle", action="store_true", help="permit full unpickling (trusted files only)")
    p.add_argument("--on-bad-file", choices=ON_BAD_FILE, default="error", help="inputs that cannot be "
                   "decoded are left out and listed at the end; error (default): then exit 1, skip: exit 0")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--list-pretrained", action="store_true", help="print the zoo's tags (for --checkpoint) and exit"
    )
    return p


def list_pretrained_table() -> None:
    table = Table(title="pretrained generators")
    # the tags are typed: never cut or wrapped, the task column wraps instead
    table.add_column(
        "name (--checkpoint NAME)", no_wrap=True, min_width=max(map(len, zoo.names()), default=0)
    )
    table.add_column("task", ratio=1)
    table.add_column("inference", no_wrap=True)
    for name in zoo.names():
        e = zoo.find(name)
        assert e is not None
        table.add_row(name, f"{e.task} ({e.dataset} {e.direction}, {e.input_size}px)", e.inference)
    Console().print(table)


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--list-pretrained" in argv:
        list_pretrained_table()
        return 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(args)


def main(argv: Sequence[str] | None = None) -> None:
    run_cli("p2p-translate", lambda: _main(argv))


if __name__ == "__main__":
    main()
