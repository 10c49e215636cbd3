"""LightningDataModules: `PairedDataModule` (a folder or a downloadable pix2pix dataset) and
`SyntheticDataModule` (generated pairs, no download). Both yield batches with values in [-1, 1]:
{"input": [B, in_channels, H, W], "target": [B, out_channels, H, W], "path": list[str]}.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from p2p.data.cache import CACHE_MODES, DEVICE_AUGMENT, CachedPairs, augment_on_device
from p2p.data.dataset import DIRECTIONS, Pair, PairedImageDataset, PairFiles, split_folders
from p2p.data.download import ensure_dataset, get_info
from p2p.data.sampler import EpochSampler, SeededItems
from p2p.data.synthetic import SyntheticPairs
from p2p.data.transforms import PairTransform
from p2p.data.validate import ON_BAD_FILE, check_splits

log = logging.getLogger(__name__)


class _PairsDataModule(L.LightningDataModule):
    """Transform and loader settings shared by both data modules; subclasses build the datasets in setup()."""

    name = "pairs"

    def __init__(
        self,
        direction: str,
        in_channels: int,
        out_channels: int,
        load_size: int,
        crop_size: int,
        preprocess: str,
        flip: bool,
        size_divisor: int,
        batch_size: int,
        num_workers: int,
        pin_memory: bool,
        max_val_samples: int | None,
        seed: int,
        *,
        cache: str = "none",
        cache_max_mb: int = 2048,
        persistent_workers: bool = True,
        device_augment: bool | str = False,
    ) -> None:
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
        for key, c in (("in_channels", in_channels), ("out_channels", out_channels)):
            if c not in (1, 3):
                raise ValueError(f"{key} must be 1 or 3, got {c}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"need batch_size >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
        if max_val_samples is not None and max_val_samples < 1:
            raise ValueError(f"max_val_samples must be None or >= 1, got {max_val_samples}")
        self.direction, self.in_channels, self.out_channels = direction, in_channels, out_channels
        # Built here so that a bad preprocess/load_size/crop_size fails at construction, not in a worker.
        self.train_transform = PairTransform(load_size, crop_size, preprocess, flip, size_divisor, train=True)
        self.eval_transform = PairTransform(load_size, crop_size, preprocess, flip, size_divisor, train=False)
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.max_val_samples, self.seed = max_val_samples, seed
        # speed (p2p.data.cache): decoded images in RAM, crop/flip on the accelerator, workers kept alive
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
        if device_augment not in DEVICE_AUGMENT:
            raise ValueError(f"device_augment must be one of {DEVICE_AUGMENT}, got {device_augment!r}")
        if device_augment is True and cache == "none":
            raise ValueError("device_augment=true crops cached images: it needs cache=ram or cache=auto")
        self.cache, self.cache_max_mb, self.device_augment = cache, cache_max_mb, device_augment
        self.persistent_workers = persistent_workers
        self.train_set: Dataset[Pair] | None = None
        self.val_set: Dataset[Pair] | None = None
        self.test_set: Dataset[Pair] | None = None

    def _cap_val(self, ds: Dataset[Pair]) -> Dataset[Pair]:
        """At most max_val_samples items, evenly spaced so a capped val set still spans the whole split."""
        n = len(ds)  # type: ignore[arg-type]
        if self.max_val_samples is None or self.max_val_samples >= n:
            return ds
        idx = torch.linspace(0, n - 1, self.max_val_samples).round().long().tolist()
        return Subset(ds, idx)

    def _fit_epoch(self) -> int | None:
        """The epoch Lightning is about to run (the value it passes to ``set_epoch``), also on resume."""
        trainer = self.trainer
        return None if trainer is None else trainer.fit_loop.epoch_progress.current.processed  # type: ignore[attr-defined]

    def _loader(self, ds: Dataset[Pair] | None, stage: str, shuffle: bool = False) -> DataLoader[Pair]:
        if ds is None:
            self.setup(stage)
            ds = {"fit": self.train_set, "validate": self.val_set, "test": self.test_set}[stage]
            assert ds is not None
        sampler = None
        if shuffle:  # resume-exact order and crops/flips: functions of (seed, epoch, index), p2p.data.sampler
            t = self.trainer
            world, rank = (t.world_size, t.global_rank) if t is not None else (1, 0)
            sampler = EpochSampler(len(ds), self.seed, True, self._fit_epoch, world, rank)  # type: ignore[arg-type]
            ds = SeededItems(ds)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,  # no re-fork every epoch
            # its own generator, so that creating an iterator (which draws the workers' base seed) never
            # advances the global RNG that dropout draws from: a resumed run's extra iterators change nothing
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _cached(self, ds: Dataset[Pair]) -> Dataset[Pair]:
        """``ds`` behind a RAM cache of decoded, resized images when ``cache`` asks for one and (``auto``) its
        estimated size, one copy per persistent worker, fits ``cache_max_mb``."""
        if self.cache == "none" or not isinstance(ds, (PairedImageDataset, SyntheticPairs)) or not len(ds):
            return ds
        cached = CachedPairs(ds)
        if self.cache == "auto":
            if self.num_workers > 0 and not self.persistent_workers:
                return ds  # workers forked anew each epoch would refill their cache every epoch
            mb = cached.nbytes(0) * len(ds) * max(1, self.num_workers) / 2**20
            if mb > self.cache_max_mb:
                log.info(
                    "not caching %d pairs: ~%.0f MB > data.cache_max_mb=%d", len(ds), mb, self.cache_max_mb
                )
                return ds
        return cached

    def train_dataloader(self) -> DataLoader[Pair]:
        if self.train_set is None:
            self.setup("fit")
        ds = self.train_set
        if isinstance(ds, CachedPairs):
            ds.device_augment = self._device_augment(ds)
        return self._loader(ds, "fit", shuffle=True)

    def _device_augment(self, ds: CachedPairs) -> bool:
        if self.device_augment != "auto":
            return bool(self.device_augment)
        # auto: where the workers would otherwise be the bottleneck (a CUDA trainer), and batches can be
        # collated before the crop (every image is resized to load_size x load_size)
        trainer = self.trainer
        on_cuda = trainer is not None and trainer.strategy.root_device.type == "cuda"
        return on_cuda and (ds.transform.preprocess == "resize_and_crop" or self.batch_size == 1)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and "crop" in batch:  # a device_augment batch: crop and flip it here
            pre = self.train_transform.preprocess
            return augment_on_device(batch, self.train_transform.crop_size if pre.endswith("crop") else None)
        return batch

    def val_dataloader(self) -> DataLoader[Pair]:
        return self._loader(self.val_set, "validate")

    def test_dataloader(self) -> DataLoader[Pair]:
        return self._loader(self.test_set, "test")

    def predict_dataloader(self) -> DataLoader[Pair]:
        return self._loader(self.test_set, "test")


class PairedDataModule(_PairsDataModule):
    """Paired images from `root` (aligned A|B or separate A/ and B/ layout, see p2p.data.dataset), or, when
    root is None, the registered dataset `name` downloaded into the cache (see p2p.data.download).

    Training uses random crop/flip (PairTransform, train=True); validation and test use the deterministic
    evaluation transform: no flip, center crops, and resize_and_crop resizes straight to crop_size.
    """

    def __init__(
        self,
        root: str | None = None,
        name: str = "folder",
        direction: str = "AtoB",
        in_channels: int = 3,
        out_channels: int = 3,
        load_size: int = 286,
        crop_size: int = 256,
        preprocess: str = "resize_and_crop",
        flip: bool = True,
        size_divisor: int = 256,
        batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = True,
        val_split: str | None = None,
        test_split: str = "test",
        max_val_samples: int | None = None,
        cache_dir: str | None = None,
        seed: int = 0,
        on_bad_file: str = "error",  # error: stop, listing every bad file; skip: warn and train on the rest
        cache: str = "auto",  # auto | ram | none: decoded, resized images kept in RAM (p2p.data.cache)
        cache_max_mb: int = 2048,  # auto caches only if ~this fits (one copy per worker)
        persistent_workers: bool = True,
        device_augment: bool | str = "auto",  # crop/flip on the accelerator; auto: CUDA + cache
    ) -> None:
        super().__init__(
            direction, in_channels, out_channels, load_size, crop_size, preprocess, flip, size_divisor,
            batch_size, num_workers, pin_memory, max_val_samples, seed, cache=cache, cache_max_mb=cache_max_mb,
            persistent_workers=persistent_workers, device_augment=device_augment,
        )  # fmt: skip
        if on_bad_file not in ON_BAD_FILE:
            raise ValueError(f"on_bad_file must be one of {ON_BAD_FILE}, got {on_bad_file!r}")
        self.on_bad_file = on_bad_file
        self._checked: dict[str, list[PairFiles]] = {}  # split -> its good pairs, each split checked once
        if root is None and name == "folder":
            raise ValueError("root is required for name='folder': pass data.root=/path/to/dataset")
        if name != "folder":
            info = get_info(name)  # fails early on a typo
            if direction != info.direction:
                log.info(
                    "%s: the paper's direction is %s (%s); using %s",
                    name,
                    info.direction,
                    info.about,
                    direction,
                )
        self.root, self.name, self.cache_dir = root, name, cache_dir
        self.val_split, self.test_split = val_split, test_split

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node, before setup() on all of them: download here.
        if self.root is None:
            ensure_dataset(self.name, self.cache_dir)

    def dataset_root(self) -> Path:
        """The folder the data is read from (the cache for a downloaded dataset; downloads it if missing)."""
        return (
            Path(self.root).expanduser()
            if self.root is not None
            else ensure_dataset(self.name, self.cache_dir)
        )

    def resolve_val_split(self, root: Path) -> str:
        if self.val_split is not None:
            return self.val_split
        if split_folders(root, "val"):
            return "val"
        log.info("no 'val' split in %s: validating on the %r split", root, self.test_split)
        return self.test_split

    def _dataset(self, root: Path, split: str, train: bool) -> PairedImageDataset:
        transform = self.train_transform if train else self.eval_transform
        pairs = self._checked.get(split)  # the checked (and, with on_bad_file=skip, filtered) pairs
        return PairedImageDataset(
            root, split, self.direction, self.in_channels, self.out_channels, transform, pairs
        )

    def check_data(self, root: Path, stage: str | None) -> None:
        """Decode every file of the splits ``stage`` uses, once, before any is loaded (p2p.data.validate)."""
        splits: dict[str, PairTransform] = {}
        if stage in (None, "fit"):
            splits["train"] = self.train_transform
        if stage in (None, "fit", "validate"):
            splits.setdefault(self.resolve_val_split(root), self.eval_transform)
        if stage in (None, "test", "predict"):
            splits.setdefault(self.test_split, self.eval_transform)
        todo = {s: t for s, t in splits.items() if s not in self._checked}
        if todo:
            self._checked.update(check_splits(root, todo, self.on_bad_file))

    def setup(self, stage: str | None = None) -> None:
        root = self.dataset_root()
        self.check_data(root, stage)
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._cached(self._dataset(root, "train", train=True))
        if stage in (None, "fit", "validate") and self.val_set is None:
            val = self._dataset(root, self.resolve_val_split(root), train=False)
            self.val_set = self._cap_val(self._cached(val))
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = self._cached(self._dataset(root, self.test_split, train=False))


class SyntheticDataModule(_PairsDataModule):
    """Procedurally generated label-map -> photo pairs (p2p.data.synthetic); AtoB = labels -> photo.

    Splits are disjoint by construction (each pair is seeded by (seed, split, index)) and pass through the
    same transforms as real data.
    """

    name = "synthetic"

    def __init__(
        self,
        num_train: int = 200,
        num_val: int = 20,
        num_test: int = 20,
        image_size: int = 256,
        num_classes: int = 8,
        direction: str = "AtoB",
        seed: int = 0,
        in_channels: int = 3,
        out_channels: int = 3,
        load_size: int = 286,
        crop_size: int = 256,
        preprocess: str = "resize_and_crop",
        flip: bool = True,
        size_divisor: int = 256,
        batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = True,
        max_val_samples: int | None = None,
        cache: str = "auto",  # auto | ram | none: rendered, resized images kept in RAM (p2p.data.cache)
        cache_max_mb: int = 2048,
        persistent_workers: bool = True,
        device_augment: bool | str = "auto",
    ) -> None:
        super().__init__(
            direction, in_channels, out_channels, load_size, crop_size, preprocess, flip, size_divisor,
            batch_size, num_workers, pin_memory, max_val_samples, seed, cache=cache, cache_max_mb=cache_max_mb,
            persistent_workers=persistent_workers, device_augment=device_augment,
        )  # fmt: skip
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.image_size, self.num_classes = image_size, num_classes

    def _dataset(self, split: str, train: bool) -> SyntheticPairs:
        return SyntheticPairs(
            self.sizes[split], split, self.seed, self.image_size, self.num_classes, self.direction,
            self.in_channels, self.out_channels, self.train_transform if train else self.eval_transform,
        )  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._cached(self._dataset("train", train=True))
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = self._cap_val(self._cached(self._dataset("val", train=False)))
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = self._cached(self._dataset("test", train=False))
