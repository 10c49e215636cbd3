"""LightningDataModules: `PairedDataModule` (a folder or a downloadable pix2pix dataset),
`SyntheticDataModule` (generated pairs, no download) and `PhotoDataModule` (a folder of photos, made into
the pairs of colorization, inpainting or edges -> photo). All yield batches with values in [-1, 1]:
{"input": [B, in_channels, H, W], "target": [B, out_channels, H, W], "path": list[str]}.

They are dataclasses: their fields are the data settings, with their defaults and comments, in one place
(the ``data`` config schema is generated from them), checked once in ``__post_init__``.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import lightning as L
import torch
from annotated_types import Ge, Gt, Lt
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, Subset

from p2p.data.cache import CachedPairs, CacheMode, augment_on_device
from p2p.data.dataset import (
    Direction,
    Pair,
    PairedImageDataset,
    PairFiles,
    split_folders,
)
from p2p.data.download import ensure_dataset, get_info
from p2p.data.edges import EdgeSettings
from p2p.data.photos import PhotoDataset, PhotoTask, list_photos
from p2p.data.sampler import EpochSampler, ResumableLoader, SeededItems
from p2p.data.synthetic import Count, ImageSize, NumClasses, SyntheticPairs
from p2p.data.transforms import PairTransform, Preprocess, Size
from p2p.data.validate import OnBadFile, check_splits
from p2p.errors import ConfigError, check_fields
from p2p.io.tasks import MaskScheme, PhotoTaskName, check_channels

log = logging.getLogger(__name__)


@dataclass(eq=False, kw_only=True)
class PairsDataModule(L.LightningDataModule):
    """What both data modules share: how pairs are read, augmented and batched. Its fields are the ``data.*``
    keys of every data config (the config schema is generated from them, `p2p.config.schema`); subclasses add
    where the pairs come from and build the datasets in ``setup()``."""

    direction: Direction = "AtoB"  # AtoB | BtoA: which side is the input ('input' is what G sees)
    in_channels: int = 3  # images are converted to this many channels (1 = grayscale, 3 = RGB); photo
    out_channels: int = 3  # tasks: the task's (p2p.io.tasks.TASK_CHANNELS, e.g. colorization 1 -> 2)
    load_size: Size = 286  # resize_and_crop: resize to load_size x load_size ... (paper: 286)
    crop_size: Size = 256  # ... then random crop crop_size (val/test: resized straight to crop_size)
    preprocess: Preprocess = "resize_and_crop"  # p2p.data.transforms.PairTransform
    flip: bool = True  # random horizontal flip (same for input and target), train only
    size_divisor: Size = 256  # scale_width/none: sides rounded to a multiple of this (U-Net-256 needs 256)
    batch_size: Annotated[int, Ge(1)] = 1  # paper: 1
    num_workers: Annotated[int, Ge(0)] = 2
    pin_memory: bool = True
    # cap the validation set (evenly spaced over it) for faster validation; None: all of it
    max_val_samples: Annotated[int | None, Ge(1)] = None
    seed: int = 0  # shuffling and crop/flip randomness of the train loader (p2p.data.sampler)
    # speed (p2p.data.cache): decoded images in RAM, crop/flip on the accelerator, workers kept alive
    cache: CacheMode = "auto"  # auto (if ~cache_max_mb fits, one copy per worker) | ram | none
    cache_max_mb: Annotated[int, Ge(0)] = 2048
    persistent_workers: bool = True  # keep DataLoader workers (and their caches) across epochs
    device_augment: bool | Literal["auto"] = (
        "auto"  # crop/flip whole batches on the accelerator; auto: CUDA + cache
    )

    def __post_init__(self) -> None:
        super().__init__()
        check_fields(self)  # the fields' annotations: choices and bounds (subclasses' fields too)
        self.in_channels, self.out_channels = check_channels(
            self._task(), self.in_channels, self.out_channels
        )
        if self.device_augment is True and self.cache == "none":
            raise ConfigError("device_augment: true crops cached images: it needs cache=ram or cache=auto")
        # built here so that a bad preprocess/load_size/crop_size fails at construction, not in a worker
        geometry = (self.load_size, self.crop_size, self.preprocess, self.flip, self.size_divisor)
        self.train_transform = PairTransform(*geometry, train=True)
        self.eval_transform = PairTransform(*geometry, train=False)
        self.train_set: Dataset[Pair] | None = None
        self.val_set: Dataset[Pair] | None = None
        self.test_set: Dataset[Pair] | None = None

    def _task(self) -> str | None:
        """The photo task whose channels the data has (p2p.io.tasks); None: pairs of images."""
        return None

    def settings(self) -> dict[str, Any]:
        """What shaped the images, as plain data: the class (``_target_``) and every field. p2p-train stores
        it with the generator (checkpoints, ``save_pretrained``), and p2p-eval rebuilds the data from it."""
        target = f"{type(self).__module__}.{type(self).__qualname__}"
        return {"_target_": target, **{f.name: _plain(getattr(self, f.name)) for f in fields(self)}}

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

    def _fit_progress(self) -> tuple[int, int]:
        """The epoch under way and how many of its batches were trained on (0 once all of them were): what a
        checkpoint saved now must resume from (`ResumableLoader`)."""
        trainer, epoch = self.trainer, self._fit_epoch()
        assert trainer is not None and epoch is not None
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed  # type: ignore[attr-defined]
        return epoch, done if done < trainer.num_training_batches else 0

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
        settings: dict[str, Any] = dict(
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,  # no re-fork every epoch
            # its own generator, so that creating an iterator (which draws the workers' base seed) never
            # advances the global RNG that dropout draws from: a resumed run's extra iterators change nothing
            generator=torch.Generator().manual_seed(self.seed),
            worker_init_fn=_worker_init if self.num_workers > 0 else None,
        )
        if sampler is not None and self.trainer is not None:  # goes on mid-epoch where a checkpoint stopped
            return ResumableLoader(ds, progress=self._fit_progress, **settings)
        return DataLoader(ds, **settings)

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


@dataclass(eq=False)
class PairedDataModule(PairsDataModule):
    """Paired images from ``root`` (aligned A|B or separate A/ and B/ layout, see p2p.data.dataset), or, when
    root is None, the registered dataset ``name`` downloaded into the cache (see p2p.data.download).

    Training uses random crop/flip (PairTransform, train=True); validation and test use the deterministic
    evaluation transform: no flip, center crops, and resize_and_crop resizes straight to crop_size.
    """

    root: str | None = None  # the dataset folder; None: download the registered dataset `name`
    name: str = "folder"  # folder (your own data, needs root) or a registered dataset (p2p.data.DATASETS)
    val_split: str | None = None  # None: "val" if the dataset has it, else test_split
    test_split: str = "auto"  # trainer.test's and p2p-eval's split; auto: the dataset's (test, or val)
    cache_dir: str | None = None  # download cache; None: $P2P_CACHE or ~/.cache/p2p
    on_bad_file: OnBadFile = "error"  # error: stop, listing every bad file; skip: warn and train on the rest

    def __post_init__(self) -> None:
        super().__post_init__()
        self._checked: dict[str, list[PairFiles]] = {}  # split -> its good pairs, each split checked once
        if self.test_split == "auto":  # most archives of the pix2pix datasets only have train/ and val/
            self.test_split = "test" if self.name == "folder" else get_info(self.name).test_split
        if self.name == "folder":
            if self.root is None:
                raise ConfigError("root: required for your own data: data.root=/path/to/dataset")
            if not Path(self.root).expanduser().is_dir():
                raise ConfigError(f"root: {self.root} is not a folder")
        else:
            info = get_info(self.name)  # fails early on a typo
            if self.direction != info.direction:
                log.info("%s: the paper's direction is %s (%s); using %s", self.name, info.direction,
                         info.about, self.direction)  # fmt: skip

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
        if not getattr(self, "_said_no_val", False):  # asked once per stage: say it once
            log.info("no 'val' split in data.root: validating on the %r split", self.test_split)
            self._said_no_val = True
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


@dataclass(eq=False)
class SyntheticDataModule(PairsDataModule):
    """Procedurally generated label-map -> photo pairs (p2p.data.synthetic); AtoB = labels -> photo.

    Splits are disjoint by construction (each pair is seeded by (seed, split, index)) and pass through the
    same transforms as real data.
    """

    num_train: Count = 200
    num_val: Count = 20
    num_test: Count = 20
    image_size: ImageSize = 256  # side of the generated pairs, before load/crop
    num_classes: NumClasses = 8  # label classes (2..12), each with its own colour and texture

    name = "synthetic"  # not a field: what metrics.json and the FCN cache call this dataset

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sizes = {"train": self.num_train, "val": self.num_val, "test": self.num_test}

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


@dataclass(eq=False)
class PhotoDataModule(PairsDataModule):
    """The paper's tasks that need only photos (p2p.io.tasks): colorization (L -> ab), inpainting (a photo
    with a hole -> the photo) and edges -> photo, from a folder of photos (p2p.data.photos: ROOT/{train,val,
    test}/ or one folder, split by ``val_fraction``). Each photo becomes the task's (input, target) pair
    through the ordinary file checks, RAM cache, crop and flip (`PairsDataModule`); the channels are the
    task's: colorization 1 -> 2, inpainting 4 -> 3, edges 1 or 3 -> 3.
    """

    task: PhotoTaskName = "colorization"  # colorization | inpainting | edges (p2p.io.tasks)
    root: str | None = None  # the folder of photos (required)
    val_split: str | None = None  # None: "val" if there is one, else test_split
    test_split: str = "auto"  # auto: "test" if ROOT/test/ exists, else "val"
    val_fraction: Annotated[float, Gt(0), Lt(1)] = 0.1  # one folder: the share (by a hash of names) in val
    on_bad_file: OnBadFile = "error"  # error: stop, listing every bad file; skip: warn and train on the rest
    mask: MaskScheme = "center"  # inpainting's hole: center (Context Encoders) | random (p2p.io.tasks)
    edge_sigma: float = EdgeSettings.sigma  # edges (Canny, p2p.data.edges): smoothing in pixels,
    edge_low: float = EdgeSettings.low  # and the hysteresis thresholds on the gradient magnitude
    edge_high: float = EdgeSettings.high
    cache_dir: str | None = None  # where edges are cached; None: $P2P_CACHE or ~/.cache/p2p

    def _task(self) -> str | None:
        return self.task

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.direction != "AtoB":
            raise ConfigError("direction: a photo task makes its input from the photo; only AtoB")
        self.photo_task = PhotoTask(self.task, self.mask, self.seed)
        self.name = self.task  # not a field: what metrics.json and the FID cache call this data
        self.edge_settings = EdgeSettings(self.edge_sigma, self.edge_low, self.edge_high)
        if self.root is None:
            raise ConfigError("root: required: data.root=/path/to/photos")
        if not Path(self.root).expanduser().is_dir():
            raise ConfigError(f"root: {self.root} is not a folder")
        self._checked: dict[str, list[PairFiles]] = {}

    def _splits(self, root: Path) -> tuple[str, str]:
        """(validation split, test split)."""
        test = self.test_split
        if test == "auto":
            test = "test" if (root / "test").is_dir() else "val"
        if self.val_split is not None:
            return self.val_split, test
        folders = any((root / s).is_dir() for s in ("train", "val", "test"))
        return ("val" if not folders or (root / "val").is_dir() else test), test

    def setup(self, stage: str | None = None) -> None:
        root = Path(str(self.root)).expanduser()
        val, test = self._splits(root)
        wanted: dict[str, PairTransform] = {}
        if stage in (None, "fit"):
            wanted["train"] = self.train_transform
        if stage in (None, "fit", "validate"):
            wanted.setdefault(val, self.eval_transform)
        if stage in (None, "test", "predict"):
            wanted.setdefault(test, self.eval_transform)
        todo = {s: t for s, t in wanted.items() if s not in self._checked}
        if todo:  # every file decoded once before training (p2p.data.validate), listed as photos
            lister = partial(list_photos, val_fraction=self.val_fraction)
            self._checked.update(check_splits(root, todo, self.on_bad_file, lister=lister))

        def dataset(split: str, train: bool) -> PhotoDataset:
            transform = self.train_transform if train else self.eval_transform
            return PhotoDataset(root, split, self.photo_task, self.in_channels, transform,
                                self._checked[split], self.edge_settings, self.cache_dir, self.val_fraction)  # fmt: skip

        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._cached(dataset("train", train=True))
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = self._cap_val(self._cached(dataset(val, train=False)))
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = self._cached(dataset(test, train=False))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # a device_augment batch holds uncropped photos: the task's input and target are made once cropped
        uncropped = isinstance(batch, dict) and "crop" in batch
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        return self.photo_task.encode(batch) if uncropped else batch


def _plain(value: Any) -> Any:
    """A field value that ``torch.load(weights_only=True)`` and JSON both read back (paths as strings)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _worker_init(worker_id: int) -> None:
    """DataLoader workers ignore SIGINT. Ctrl-C in a terminal reaches the whole process group: a worker would
    die of it at once, and a main process that is waiting for that worker's batch would fail ("DataLoader
    worker exited unexpectedly") instead of finishing its batch and saving ``last.ckpt``
    (`p2p.training.PreemptionCheckpoint`). The main process still ends the workers when it stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", "0")):  # Lightning adds its own only where there is none
        pl_worker_init_function(worker_id)
