"""``p2p-prepare-cityscapes``: Cityscapes (gtFine + leftImg8bit) as pix2pix pairs (`p2p.data.cityscapes`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from p2p.cli import run_cli
from p2p.data.cityscapes import prepare_cityscapes


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="p2p-prepare-cityscapes",
        description="Convert Cityscapes (gtFine + leftImg8bit) into pix2pix pairs: A = photo | B = labels.",
    )
    parser.add_argument("--gtFine", required=True, help="unzipped gtFine folder (holds train/, val/)")
    parser.add_argument(
        "--leftImg8bit", required=True, help="unzipped leftImg8bit folder (holds train/, val/)"
    )
    parser.add_argument(
        "--output", required=True, help="output dataset root; then train with data.root=OUTPUT"
    )
    parser.add_argument("--size", type=int, default=256, help="side of each half in pixels (default 256)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], help="splits to convert")
    args = parser.parse_args(argv)
    counts = prepare_cityscapes(args.gtFine, args.leftImg8bit, args.output, args.size, args.splits)
    print(f"done: {counts}; train with data=cityscapes data.root={args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    run_cli("p2p-prepare-cityscapes", lambda: _main(argv))


if __name__ == "__main__":
    main()
