"""``p2p-eval``: a thin ``@hydra.main`` over `p2p.runs.eval.evaluate`.

p2p-eval ckpt_path=outputs/train/.../checkpoints/last.ckpt data=facades data.root=/data/facades
p2p-eval ckpt_path=... data=facades inference=paper split=test metrics=[l1,psnr,ssim]
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from p2p.cli import p2p_errors, run_cli
from p2p.config import config_dir
from p2p.runs.eval import evaluate


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def _main(cfg: DictConfig) -> None:
    with p2p_errors("p2p-eval"):
        result = evaluate(cfg)
        print(json.dumps(result), flush=True)  # the last stdout line: machine-readable


def main() -> None:
    run_cli("p2p-eval", _main, hydra_app=True)


if __name__ == "__main__":
    main()
