"""``p2p-export``: ship a generator as ONNX or TorchScript, checked against PyTorch (`p2p.inference.export`).

p2p-export --checkpoint run/checkpoints/last.ckpt --format onnx --output G.onnx --dynamic-size
p2p-export --checkpoint unet_256.facades_label2photo --format torchscript --output G.pt
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from p2p.cli import parse_arch, run_cli
from p2p.inference.export import FORMATS, export_generator
from p2p.weights import load_generator


def _main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="p2p-export", description="Export a pix2pix generator to ONNX or TorchScript."
    )
    p.add_argument(
        "--checkpoint", required=True, help="anything p2p.load_generator takes (file, URL, name, ...)"
    )
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--output", required=True, help="the file to write")
    p.add_argument("--dynamic-size", action="store_true", help="dynamic height and width (default: fixed)")
    p.add_argument(
        "--size", type=int, nargs=2, metavar=("H", "W"), help="example input size (default: native)"
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--atol", type=float, default=1e-3, help="fail if the max abs difference exceeds this")
    p.add_argument("--arch", default=None, help='JSON architecture override, e.g. \'{"norm": "instance"}\'')
    p.add_argument("--allow-pickle", action="store_true", help="permit full unpickling (trusted files only)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = load_generator(args.checkpoint, arch=parse_arch(args.arch), allow_pickle=args.allow_pickle)
    result = export_generator(
        model,
        args.output,
        args.format,
        size=tuple(args.size) if args.size else None,
        dynamic_size=args.dynamic_size,
        opset=args.opset,
    )
    print(
        f"exported {args.checkpoint} to {result['path']} ({args.format}, {result['exporter']}, eval mode: "
        "running BatchNorm statistics, no dropout; the paper's test-time mode is not exported)"
    )
    for b, h, w, diff in result["checks"]:
        print(f"  check batch={b} size={h}x{w}: max_abs_diff={diff:.3g}")
    ok = result["max_abs_diff"] <= args.atol
    print(f"max_abs_diff={result['max_abs_diff']:.3g} ({'ok' if ok else 'FAILED'}: atol={args.atol:g})")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> None:
    run_cli("p2p-export", lambda: _main(argv))


if __name__ == "__main__":
    main()
