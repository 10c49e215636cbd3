"""Data layer of p2p: paired datasets, transforms, data modules, download cache, synthetic pairs, and the
photo tasks (colorization, inpainting, edges: p2p.io.tasks).

Imports only `p2p.io` and `p2p.errors` of the rest of p2p.
"""

from __future__ import annotations

from p2p.data.datamodule import PairedDataModule, PairsDataModule, PhotoDataModule, SyntheticDataModule
from p2p.data.dataset import PairedImageDataset, find_pairs
from p2p.data.download import DATASETS, ensure_dataset
from p2p.data.photos import PhotoDataset, PhotoTask
from p2p.data.synthetic import SyntheticPairs, render_pair
from p2p.data.transforms import PairTransform
from p2p.io.tasks import PHOTO_TASKS

__all__ = [
    "DATASETS",
    "PHOTO_TASKS",
    "PairTransform",
    "PairedDataModule",
    "PairedImageDataset",
    "PairsDataModule",
    "PhotoDataModule",
    "PhotoDataset",
    "PhotoTask",
    "SyntheticDataModule",
    "SyntheticPairs",
    "ensure_dataset",
    "find_pairs",
    "render_pair",
]
