"""``p2p-demo``: serve a web page where one draws or uploads an input and sees the translation (`p2p.demo`).

p2p-demo --checkpoint outputs/train/<time>/checkpoints/last.ckpt
p2p-demo --checkpoint facades_label2photo --examples ../shared/datasets/facades/test --examples-half B
p2p-demo --sweep multirun/ablation_loss/<time>      # every run of a sweep, side by side
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from p2p.cli import run_cli
from p2p.demo import MAX_PIXELS, build_demo, load_examples, load_models


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="p2p-demo", description="A local web demo of pix2pix generators.")
    p.add_argument("--checkpoint", action="append", default=[], help="a source load_generator takes "
                   "(.ckpt, save_pretrained folder, .pth, hf-hub:, zoo tag); repeat for several")  # fmt: skip
    p.add_argument("--sweep", default=None, help="a multirun folder: every run's last.ckpt, side by side")
    p.add_argument("--examples", default=None, help="a folder of example inputs (e.g. a test split)")
    p.add_argument("--examples-half", choices=("A", "B"), default=None,
                   help="take this half of side-by-side A|B example files (facades' label maps: B)")  # fmt: skip
    p.add_argument("--palette", default="auto", help="canvas colours: facades, cityscapes, synthetic, edges, "
                   "examples (derived from --examples) or auto (default)")  # fmt: skip
    p.add_argument("--canvas", type=int, nargs=2, default=(256, 256), metavar=("W", "H"), help="canvas size")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="larger inputs are refused")
    p.add_argument("--concurrency", type=int, default=1, help="requests computed at once (others queue)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="ask Gradio for a public share link (needs network)")
    return p


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models = load_models(args.checkpoint, args.sweep, args.device)
    examples = load_examples(args.examples, args.examples_half) if args.examples else []
    demo = build_demo(
        models,
        palette=args.palette,
        examples=examples,
        canvas_size=tuple(args.canvas),
        max_pixels=args.max_pixels,
        concurrency=args.concurrency,
    )
    print(f"p2p-demo: {len(models)} generator(s): {', '.join(models)}", flush=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    run_cli("p2p-demo", lambda: _main(argv if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    main()
