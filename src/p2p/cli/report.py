"""``p2p-report SWEEP_DIR``: a sweep's runs as the paper's ablation tables and figures (`p2p.runs.report`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from p2p.cli import run_cli
from p2p.runs.report import report


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="p2p-report", description=__doc__.split(": ", 1)[1].split(" (")[0])
    parser.add_argument("sweep_dir", help="a multirun folder (or one run folder) with <run>/metrics.json")
    parser.add_argument("--num-images", type=int, default=4, help="test inputs in the figure (default 4)")
    parser.add_argument(
        "--out", default=None, help="where report.md/report.png go (default: the sweep folder)"
    )
    args = parser.parse_args(argv)
    print(report(args.sweep_dir, args.num_images, args.out), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    run_cli("p2p-report", lambda: _main(argv))


if __name__ == "__main__":
    main()
