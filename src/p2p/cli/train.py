"""``p2p-train``: a thin ``@hydra.main`` over `p2p.runs.train.train`.

p2p-train model=unet_patch70 data=facades data.root=/path/to/facades
p2p-train -m loss=l1,gan,cgan,l1_gan,l1_cgan          # the paper's loss ablation, one run each
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from p2p.cli import p2p_errors, run_cli
from p2p.config import config_dir
from p2p.runs.train import train


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _main(cfg: DictConfig) -> None:
    with p2p_errors("p2p-train"):
        train(cfg)


def main() -> None:
    run_cli("p2p-train", _main, hydra_app=True)


if __name__ == "__main__":
    main()
