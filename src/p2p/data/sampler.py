"""Resume-exact training data: epoch e's order and every sample's crop/flip are pure functions of (seed, e, index).

PyTorch's usual recipe (a seeded DataLoader generator, workers seeded from it) makes a run reproducible
only from its start: the generator advances every epoch and each worker's RNG lives in that worker, so a
run resumed from ``last.ckpt`` shuffles and crops differently from the run it continues. Here the sampler
derives epoch e's permutation from (seed, e) and hands each index out with its own seed; `SeededItems`
loads the item with torch's RNG seeded by it. Nothing depends on how many workers there are, on which
worker gets an item, on the DDP rank, or on whether the run was resumed.

A checkpoint saved in the middle of an epoch (pre-emption, Ctrl-C) goes on exactly where it stopped:
`ResumableLoader` is what Lightning calls a stateful loader, so its state (the epoch, and how many of its
batches were trained on) is saved with the loops and given back on resume, and the sampler's next
iterator starts past those samples instead of at the epoch's beginning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

SampleKey = tuple[int, int]  # (index into the dataset, seed for that sample's augmentation)


def mix(*ints: int) -> int:
    """A well-mixed 63-bit seed from any integers (numpy's SeedSequence hashing; sequences of different
    lengths give unrelated seeds)."""
    entropy = [x & 0xFFFF_FFFF_FFFF_FFFF for x in ints]  # SeedSequence takes non-negative integers only
    return (
        int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1
    )  # numpy 1.x: no uint64 >> int


class EpochSampler(DistributedSampler):  # type: ignore[type-arg]
    """Yields ``(index, seed)``: this rank's share of a permutation of range(n) drawn from (seed, epoch)
    (identity without shuffle).

    Under DDP each of the ``num_replicas`` ranks takes every ``num_replicas``-th position (the permutation
    is padded with its first items to a multiple of num_replicas, like DistributedSampler), so the ranks'
    k-th batches together are exactly the k-th batch of one process with num_replicas times the batch size.
    Being a DistributedSampler, Lightning uses it as is instead of wrapping it in one that reshuffles.

    The epoch comes from ``epoch_fn`` when given (the data module passes the trainer's epoch counter: with
    DataLoader workers the first iterator is created, and its indices prefetched, before Lightning calls
    ``set_epoch``), else from ``set_epoch``.
    """

    def __init__(
        self,
        n: int,
        seed: int,
        shuffle: bool = True,
        epoch_fn: Callable[[], int | None] | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        # explicit num_replicas and rank: DistributedSampler then never queries torch.distributed
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)  # type: ignore[arg-type]
        self.n, self.epoch_fn = n, epoch_fn
        # (epoch, samples of this rank's share already trained on): set by `ResumableLoader` on resume
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, samples: int) -> None:
        """The next iterator, if it is over ``epoch``, starts ``samples`` into this rank's share (once)."""
        self._resume = (epoch, samples)

    def current_epoch(self) -> int:
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        return self.epoch if epoch is None else epoch

    def __iter__(self) -> Iterator[SampleKey]:  # type: ignore[override]
        epoch = self.current_epoch()
        if self.shuffle:
            order = torch.randperm(
                self.n, generator=torch.Generator().manual_seed(mix(self.seed, epoch))
            ).tolist()
        else:
            order = list(range(self.n))
        order += order[: self.total_size - len(order)]  # pad to a multiple of num_replicas
        share = order[self.rank : self.total_size : self.num_replicas]
        if self._resume is not None:
            (resumed, start), self._resume = self._resume, None
            share = share[start:] if resumed == epoch else share
        for i in share:
            yield i, mix(self.seed, epoch, i)


class ResumableLoader(DataLoader[Any]):
    """A DataLoader over an `EpochSampler` that Lightning checkpoints with its loops (``state_dict`` and
    ``load_state_dict`` make it `lightning.fabric.utilities.types._Stateful`). ``progress`` gives the epoch
    under way and how many of its batches were trained on, 0 once the epoch is complete; the loader's own
    count would be ahead of the loop's by what its workers and Lightning have prefetched."""

    def __init__(self, *args: Any, progress: Callable[[], tuple[int, int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.progress()
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        assert isinstance(self.sampler, EpochSampler) and self.batch_size is not None
        self.sampler.resume_at(state["epoch"], state["batches"] * self.batch_size)


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
