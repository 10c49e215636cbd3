"""Data layer of p2p: paired datasets, transforms, data modules, download cache, synthetic pairs.

Imports only `p2p.io` and `p2p.errors` of the rest of p2p.
"""

from __future__ import annotations

from p2p.data.datamodule import PairedDataModule, PairsDataModule, SyntheticDataModule
from p2p.data.dataset import PairedImageDataset, find_pairs
from p2p.data.download import DATASETS, ensure_dataset
from p2p.data.synthetic import SyntheticPairs, render_pair
from p2p.data.transforms import PairTransform

__all__ = [
    "DATASETS",
    "PairTransform",
    "PairedDataModule",
    "PairedImageDataset",
    "PairsDataModule",
    "SyntheticDataModule",
    "SyntheticPairs",
    "ensure_dataset",
    "find_pairs",
    "render_pair",
]
