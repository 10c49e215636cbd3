"""``p2p-bench``: a thin ``@hydra.main`` over `p2p.runs.bench` (``bench.memory_sweep=true``: the memory sweep).

p2p-bench model=unet_patch70 data=facades data.root=/data/facades
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from p2p.cli import p2p_errors, run_cli
from p2p.config import config_dir
from p2p.runs.bench import bench, memory_sweep


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="bench")
def _main(cfg: DictConfig) -> None:
    with p2p_errors("p2p-bench"):
        result = memory_sweep(cfg) if cfg.bench.get("memory_sweep") else bench(cfg)
        print(json.dumps(result), flush=True)  # the last stdout line: one JSON object


def main() -> None:
    run_cli("p2p-bench", _main, hydra_app=True)


if __name__ == "__main__":
    main()
