"""Resume-exact training data: epoch e's order and every sample's crop/flip are pure functions of (seed, e, index).

PyTorch's usual recipe (a seeded DataLoader generator, workers seeded from it) makes a run reproducible
only from its start: the generator advances every epoch and each worker's RNG lives in that worker, so a
run resumed from ``last.ckpt`` shuffles and crops differently from the run it continues. Here the sampler
derives epoch e's permutation from (seed, e) and hands each index out with its own seed; `SeededItems`
loads the item with torch's RNG seeded by it. Nothing depends on how many workers there are, on which
worker gets an item, on the DDP rank, or on whether the run was resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

SampleKey = tuple[int, int]  # (index into the dataset, seed for that sample's augmentation)


def mix(*ints: int) -> int:
    """A well-mixed 63-bit seed from any integers (numpy's SeedSequence hashing; sequences of different
    lengths give unrelated seeds)."""
    entropy = [x & 0xFFFF_FFFF_FFFF_FFFF for x in ints]  # SeedSequence takes non-negative integers only
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


class EpochSampler(Sampler[SampleKey]):
    """Yields ``(index, seed)``: a permutation of range(n) drawn from (seed, epoch) (identity without shuffle).

    The epoch comes from ``epoch_fn`` when given (the data module passes the trainer's epoch counter: with
    DataLoader workers the first iterator is created, and its indices prefetched, before Lightning calls
    ``set_epoch``), else from ``set_epoch``.
    """

    def __init__(
        self, n: int, seed: int, shuffle: bool = True, epoch_fn: Callable[[], int | None] | None = None
    ) -> None:
        self.n, self.seed, self.shuffle, self.epoch_fn = n, seed, shuffle, epoch_fn
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def current_epoch(self) -> int:
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        return self.epoch if epoch is None else epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[SampleKey]:
        epoch = self.current_epoch()
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(mix(self.seed, epoch)))
        else:
            order = torch.arange(self.n)
        for i in order.tolist():
            yield i, mix(self.seed, epoch, i)


class SeededItems(Dataset[Any]):
    """``dataset[index]`` computed under torch's RNG seeded with the key's seed (the caller's RNG is left as
    it was). The pix2pix transforms draw their crop and flip from torch's RNG."""

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: SampleKey) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]
