"""``evaluate(cfg)``: score a trained generator on a split, as the paper does (section 4.2), plus FID/KID
(``p2p-eval`` runs it; ``p2p-train eval_after_train=true`` calls `evaluate_model`).

    p2p-eval ckpt_path=outputs/train/.../checkpoints/last.ckpt data=facades data.root=/data/facades
    p2p-eval ckpt_path=... data=facades inference=paper split=test metrics=[l1,psnr,ssim]
    p2p-eval generated=path/to/outputs data=facades data.root=/data/facades     # any implementation's images

Shares p2p-train's config (conf/eval.yaml includes conf/train.yaml), so the same data group and
overrides describe the evaluated images; the generator comes from the checkpoint alone. Writes
``metrics.json``, ``images/eval_<split>.png`` (input | output | target) and ``samples/`` (the first
images one by one, for p2p-report's figure) into the run folder, and prints the metrics as one JSON
object on the last line of stdout.

Metrics: ``l1`` (mean absolute error in [-1, 1]), ``psnr``/``ssim`` (images in [0, 1]), ``fid``/``kid``
(p2p.metrics.fid), ``fcn_*`` (the FCN-score, p2p.metrics.fcn, with the ground-truth row as
``fcn_real_*``), ``color_hist_*`` (p2p.metrics.color). Photo tasks (p2p.io.tasks) are scored on the images
their tensors stand for (colorization: RGB from the input's L and the output's ab; inpainting: the output
composited into the input), inpainting also inside the hole alone (``l1_hole``, ``psnr_hole``).

``generated=DIR`` scores a folder of images made elsewhere (another implementation, or p2p's outputs
brought back from another machine) instead of running a generator: each image of the split is matched by
file name stem (``1.jpg`` of facades' test split <-> ``DIR/1.png``) and compared with the split's target at
the data config's evaluation size; missing, extra, duplicate or mis-sized files are errors that name them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from rich.progress import track
from torch.utils.data import DataLoader, Subset
from torchvision.utils import save_image

from p2p.config import config_dir
from p2p.config.build import build_datamodule, plain
from p2p.config.schema import DATA_SCHEMAS
from p2p.data.dataset import IMG_EXTENSIONS, list_images
from p2p.errors import (
    CheckpointNotFoundError,
    ConfigError,
    DataError,
    InputNotFoundError,
    check_value,
    did_you_mean,
)
from p2p.inference import grid_rows, inference_mode
from p2p.inference.modes import InferenceMode
from p2p.io import atomic_save, atomic_write_text, cache_root, convert_channels, open_image, to_tensor
from p2p.io.tasks import in_hole, output_rgb, views
from p2p.metrics import METRICS, Scores, finite_or_none
from p2p.metrics.fcn import FcnScorer, FcnSettings, dataset_identity, label_layout, plain_dataset
from p2p.metrics.fid import FidKid, fid_unavailable
from p2p.metrics.hole import HoleScores
from p2p.models.hub import generator_config
from p2p.training import Pix2Pix, is_generator_only

log = logging.getLogger(__name__)

Split = Literal["test", "val"]


def eval_settings(cfg: DictConfig) -> DictConfig:
    """``cfg`` completed with conf/eval.yaml's own keys (split, inference, metrics, fcn, ...) where it lacks
    them: p2p-train's end-of-run evaluation uses the same defaults as p2p-eval."""
    own = OmegaConf.load(config_dir() / "eval.yaml")
    assert isinstance(own, DictConfig)
    for key in ("defaults", "task_name", "ckpt_path", "generated", "hydra"):
        own.pop(key, None)
    base = OmegaConf.to_container(cfg, resolve=False)  # unresolved: interpolations see the merged config
    merged = OmegaConf.merge(own, base)
    assert isinstance(merged, DictConfig)
    return merged


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """p2p-eval: evaluate ``cfg.ckpt_path`` (or the images in ``cfg.generated``) on ``cfg.split`` of
    ``cfg.data``; writes into cfg.paths.output_dir."""
    if cfg.get("generated"):
        return evaluate_generated(cfg.generated, cfg, cfg.paths.output_dir)
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path"):
        raise ConfigError(
            "ckpt_path is required: p2p-eval ckpt_path=path/to/checkpoints/last.ckpt data=... "
            "(or generated=path/to/images to score a folder of outputs)"
        )
    return evaluate_checkpoint(cfg.ckpt_path, cfg, cfg.paths.output_dir)


def evaluate_checkpoint(ckpt_path: str | Path, cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Evaluate one checkpoint as ``cfg`` says (keys of conf/eval.yaml); returns and saves the metrics.

    The data are the checkpoint's own (the settings p2p-train stored with the generator), with the keys of
    ``cfg.data`` put over them (`data_config`)."""
    if not Path(ckpt_path).is_file():
        raise CheckpointNotFoundError(f"ckpt_path {ckpt_path} does not exist")
    # a best file (p2p.training.best) holds G alone: D is built from the hyperparameters and left untrained
    peek = torch.load(str(ckpt_path), map_location="cpu", weights_only=True, mmap=True)  # torch 2.2: str only
    strict = not (isinstance(peek, dict) and is_generator_only(peek))
    with warnings.catch_warnings():  # Lightning names D's keys missing from a G-only file: as intended
        if not strict:
            warnings.filterwarnings(
                "ignore", message="Found keys that are in the model state dict but not in"
            )
        model = Pix2Pix.load_from_checkpoint(str(ckpt_path), map_location="cpu", strict=strict)
    cfg = eval_settings(cfg)
    with open_dict(cfg):
        cfg.max_samples = cfg.max_samples  # resolved now: it follows the data keys given, not the stored ones
        cfg.data, changes = data_config(generator_config(model.G).get("data"), cfg.data, str(ckpt_path))
    return evaluate_model(model, cfg, out_dir, checkpoint=str(ckpt_path), data_changes=changes)


# data keys that decide which images are scored but not what the generator sees of them
_LOADING_KEYS = {"root", "cache_dir", "batch_size", "num_workers", "pin_memory", "max_val_samples", "seed",
                 "cache", "cache_max_mb", "persistent_workers", "device_augment", "on_bad_file", "val_split",
                 "test_split"}  # fmt: skip


def data_config(
    saved: dict[str, Any] | None, given: DictConfig, where: str
) -> tuple[DictConfig, dict[str, Any]]:
    """The data config to evaluate ``where`` (a checkpoint) under: its ``saved`` settings with the keys
    ``given`` (p2p-eval's ``data.*``) put over them, checked against the data class's schema; and what the
    given keys change of what the generator sees (``{key: {"trained": ..., "evaluated": ...}}``, said in one
    line). A full data config of another class (``data=...``) replaces the saved settings; a checkpoint that
    stored none (p2p before 0.2) is evaluated under ``given``, with a note."""
    given_d = plain(given) or {}
    if not saved:
        if "_target_" not in given_d:
            raise ConfigError(f"{where} does not record its data settings (written by an older p2p): name "
                              "the data, e.g. data=facades data.root=/data/facades")  # fmt: skip
        return given, {"note": "the checkpoint does not record its data settings: evaluated as data says"}
    cls = get_class(given_d.get("_target_") or saved["_target_"])
    if cls not in DATA_SCHEMAS:
        raise ConfigError(f"data._target_: {cls.__qualname__} is not one of p2p's data modules")
    base = saved if get_class(saved["_target_"]) is cls else {}
    node = OmegaConf.structured(DATA_SCHEMAS[cls])
    known = set(node.keys())
    try:
        node = OmegaConf.merge(node, {k: v for k, v in base.items() if k in known and k != "_target_"},
                               {k: v for k, v in given_d.items() if k != "_target_"})  # fmt: skip
    except OmegaConfBaseException as e:
        hint = (
            did_you_mean(str(e.full_key), known) or f"{cls.__qualname__} takes {sorted(known - {'_target_'})}"
        )
        raise ConfigError(f"data.{e.full_key}: {str(e.msg).splitlines()[0]}; {hint.strip()}") from None
    assert isinstance(node, DictConfig)
    if "crop_size" in given_d and "load_size" not in given_d and base.get("crop_size"):
        # another resolution: the training's resize-then-crop ratio kept (test images go straight to crop_size,
        # but the data module keeps load_size >= crop_size)
        node.load_size = round(base["load_size"] * node.crop_size / base["crop_size"])
    settings = plain(node)
    changes = {
        k: {"trained": saved.get(k), "evaluated": settings.get(k)}
        for k in sorted(set(saved) | set(settings))
        if k not in _LOADING_KEYS and k != "_target_" and saved.get(k) != settings.get(k)
    }
    if changes:
        log.warning(
            "evaluating %s with data settings it was not trained with: %s",
            where,
            ", ".join(f"{k}={c['evaluated']} (trained: {c['trained']})" for k, c in changes.items()),
        )
    return node, changes


def evaluate_model(
    model: Any,
    cfg: DictConfig,
    out_dir: str | Path,
    checkpoint: Any = None,
    data_changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a ``Pix2Pix`` module (its generator ``model.G``); ``checkpoint`` (a path) is only recorded,
    and ``data_changes`` (`data_config`) too."""
    checkpoint = str(checkpoint) if checkpoint else None
    t0 = time.time()
    cfg, split, wanted, device = _checked(cfg)
    mode = check_value("inference", cfg.inference, InferenceMode)

    dm = build_datamodule(cfg)
    for key in ("in_channels", "out_channels"):
        if model.hparams[key] != getattr(dm, key):
            raise ValueError(
                f"{checkpoint or 'the model'} was trained with {key}={model.hparams[key]}, "
                f"but data.{key}={getattr(dm, key)}"
            )
    task = model.hparams.get("photo_task")  # p2p.io.tasks: what the generator's channels mean
    if task != getattr(dm, "task", None):
        raise ValueError(f"{checkpoint or 'the model'} was trained for photo_task={task}, but data.task="
                         f"{getattr(dm, 'task', None)}")  # fmt: skip
    _, dataset = _split(dm, split, cfg.max_samples)
    loader = DataLoader(dataset, batch_size=dm.batch_size, num_workers=dm.num_workers, shuffle=False)
    scores, notes = _scores(dm, dataset, cfg, wanted, split, device)
    hole = HoleScores() if task == "inpainting" else None

    G = model.G.to(device)
    samples: list[torch.Tensor] = []  # [3, C, H, W]: input, output, target
    torch.manual_seed(cfg.seed if cfg.get("seed") is not None else 0)  # paper mode's dropout
    with torch.no_grad(), inference_mode(G, mode):
        for batch in track(loader, "generating and scoring", total=len(loader), transient=True):
            x, y = batch["input"].to(device).float(), batch["target"].to(device).float()
            fake = G(x).float().clamp(-1, 1)
            if hole is not None:
                hole.update(output_rgb(task, x, fake), y, in_hole(x))
            x, fake, y = views(task, x, fake, y)  # photo tasks: the images the tensors stand for
            scores.update(x, fake, y)
            keep = max(0, cfg.num_grid_images - len(samples))
            samples.extend(torch.stack([x, fake, y], 1)[:keep].cpu())
    result = _computed(scores, notes, dm, split)
    if hole is not None:
        result.update({k: finite_or_none(v) for k, v in hole.compute().items()})
    result.update(
        inference=mode,
        num_images=scores.n,
        split=split,
        dataset=getattr(dm, "name", type(dm).__name__),
        resolution=list(samples[0].shape[-2:]) if samples else None,
        checkpoint=checkpoint,
        model={k: model.hparams.get(k) for k in ("generator", "discriminator", "loss")},
        seconds=round(time.time() - t0, 1),
    )
    _finish(result, cfg, notes, data_changes)
    _save(result, samples, Path(out_dir), split)
    log.info("evaluation (%s, %d images, %.0f s) -> %s", mode, scores.n, result["seconds"], out_dir)
    return result


def evaluate_generated(folder: str | Path, cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Score the images in ``folder`` against ``cfg.split`` of ``cfg.data`` (see the module docstring):
    the same metrics and files as `evaluate_model`, with the folder in place of a generator."""
    t0 = time.time()
    cfg, split, wanted, device = _checked(cfg)
    if "_target_" not in cfg.data:  # conf/data/checkpoint.yaml: there is no checkpoint to take it from
        raise ConfigError("generated=: name the data the images are scored against, e.g. data=facades "
                          "data.root=/data/facades")  # fmt: skip
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputNotFoundError(f"generated={folder}: no such folder")
    dm = build_datamodule(cfg)
    if getattr(dm, "task", None):
        raise ConfigError(
            f"generated= scores RGB outputs of paired images; data.task={dm.task} (a photo task, whose "
            "outputs are channels, not images) is not supported: score its checkpoint with ckpt_path="
        )
    full, dataset = _split(dm, split, cfg.max_samples)
    files = _generated_files(folder, [_stem(p) for p in _paths(full)], [_stem(p) for p in _paths(dataset)])
    scores, notes = _scores(dm, dataset, cfg, wanted, split, device)
    loader = DataLoader(dataset, batch_size=dm.batch_size, num_workers=dm.num_workers, shuffle=False)
    samples: list[torch.Tensor] = []
    wrong: list[str] = []
    for batch in loader:
        x, y = batch["input"].float(), batch["target"].float()
        fake = [
            to_tensor(convert_channels(open_image(files[_stem(p)]), dm.out_channels)) for p in batch["path"]
        ]
        wrong += [f"{files[_stem(p)].name} is {f.shape[-1]}x{f.shape[-2]}" for p, f in zip(batch["path"], fake)
                  if f.shape[-2:] != y.shape[-2:]]  # fmt: skip
        if wrong:
            continue  # every mis-sized file is named at the end
        fakes = torch.stack(fake)
        scores.update(x.to(device), fakes.to(device), y.to(device))
        keep = max(0, cfg.num_grid_images - len(samples))
        samples.extend(torch.stack([x, fakes, y], 1)[:keep])
    if wrong:
        h, w = dataset[0]["target"].shape[-2:]
        raise DataError(
            f"generated={folder}: {len(wrong)} image(s) are not the {w}x{h} of split {split!r} at the data "
            f"config's evaluation size (data.crop_size, data.preprocess): {_listed(wrong)}"
        )
    result = _computed(scores, notes, dm, split)
    result.update(
        generated=str(folder),
        num_images=scores.n,
        split=split,
        dataset=getattr(dm, "name", type(dm).__name__),
        resolution=list(samples[0].shape[-2:]) if samples else None,
        seconds=round(time.time() - t0, 1),
    )
    _finish(result, cfg, notes)
    _save(result, samples, Path(out_dir), split)
    log.info("scored %d generated images of %s (%.0f s) -> %s", scores.n, folder, result["seconds"], out_dir)
    return result


def _checked(cfg: DictConfig) -> tuple[DictConfig, str, list[str], torch.device]:
    """conf/eval.yaml's settings, checked: (cfg, split, metrics, device)."""
    cfg = eval_settings(cfg)
    split, wanted = cfg.split, list(cfg.metrics)
    check_value("split", split, Split)
    if unknown := sorted(set(wanted) - set(METRICS)):
        raise ValueError(f"metrics: unknown {unknown}; choose from {list(METRICS)}")
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    return cfg, split, wanted, torch.device(auto if cfg.device == "auto" else cfg.device)


def _split(dm: Any, split: str, max_samples: int | None) -> tuple[Any, Any]:
    """The split's whole dataset, and the evaluated part of it (``max_samples``, evenly spaced)."""
    dm.setup("test" if split == "test" else "validate")
    full = plain_dataset(dm.test_set if split == "test" else dm.val_set)
    return full, evenly_spaced(full, max_samples)


def _scores(
    dm: Any, dataset: Any, cfg: DictConfig, wanted: list[str], split: str, device: torch.device
) -> tuple[Scores, dict[str, str]]:
    """The metrics' accumulator (with the FCN segmenter and the real images' FID features where asked),
    and notes on what had to be left out."""
    notes: dict[str, str] = {}
    if {"fid", "kid"} & set(wanted) and (missing := fid_unavailable()):
        wanted = [m for m in wanted if m not in ("fid", "kid")]  # said now, not after the work is done
        notes["fid"] = missing
        log.warning("FID/KID skipped: %s", missing)
    use_fid = bool({"fid", "kid"} & set(wanted))
    features_path = _real_features_path(dm, dataset, split, cfg) if use_fid else None
    log.info(
        "evaluating %d images of %s (%s split, %s): %s%s",
        len(dataset), getattr(dm, "name", type(dm).__name__), split,
        "generated folder" if cfg.get("generated") else f"{cfg.inference} inference", ", ".join(wanted),
        "" if features_path is None else
        ("; real-image FID features cached" if features_path.is_file() else
         f"; FID features of the {len(dataset)} real images computed once, then cached"),
    )  # fmt: skip
    fcn = None
    if "fcn" in wanted:
        fcn, why = _fcn_scorer(dm, cfg, device)
        if fcn is None:
            notes["fcn"] = why
            log.info("FCN-score skipped: %s", why)
        else:
            fcn.to(device)
    real = _real_features(dm, dataset, features_path, device) if features_path is not None else None
    return Scores(wanted, device, fcn, real), notes


def _computed(scores: Scores, notes: dict[str, str], dm: Any, split: str) -> dict[str, Any]:
    if scores.n == 0:
        raise ValueError(f"split {split!r} of data {type(dm).__name__} has no images")
    if scores.n < 2 and scores.fidkid is not None:
        notes["fid"] = "FID/KID need at least 2 images"
    result: dict[str, Any] = {k: finite_or_none(v) for k, v in scores.compute().items()}
    if scores.fcn is not None:
        result["fcn_segmenter"] = scores.fcn.meta["path"]
    return result


def _finish(
    result: dict[str, Any], cfg: DictConfig, notes: dict[str, str], data_changes: dict[str, Any] | None = None
) -> None:
    if HydraConfig.initialized():  # the config groups chosen for this run: p2p-report's row labels
        choices = HydraConfig.get().runtime.choices
        result["choices"] = {k: v for k, v in choices.items() if not k.startswith("hydra")}
    if ablation := cfg.get("ablation"):
        result["ablation"] = OmegaConf.to_container(ablation, resolve=True)
    if data_changes:
        if note := data_changes.pop("note", None):
            notes["data"] = note
        if data_changes:
            result["data_changes"] = data_changes  # what the model saw differently from its training
    if notes:
        result["notes"] = notes


def _paths(ds: Any) -> list[str]:
    """The file each item of a paired dataset (or a Subset of one) comes from, without decoding it."""
    if isinstance(ds, Subset):
        return [_paths(ds.dataset)[i] for i in ds.indices]
    if not hasattr(ds, "pairs"):
        raise ConfigError(f"generated= needs a dataset of files on disk, not {type(ds).__name__}")
    return [str(f.a if f.b is None or ds.direction == "AtoB" else f.b) for f in ds.pairs]


def _stem(path: str | Path) -> str:
    return Path(path).stem


def _listed(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" ... (+{len(names) - limit} more)" if len(names) > limit else "")


def _generated_files(folder: Path, split_stems: list[str], wanted: list[str]) -> dict[str, Path]:
    """The image of ``folder`` for each stem in ``wanted``; every file must belong to the split."""
    by_stem: dict[str, Path] = {}
    twice: list[str] = []
    for p in list_images(folder):
        if p.stem in by_stem:
            twice.append(f"{by_stem[p.stem].name} and {p.name}")
        by_stem[p.stem] = p
    if not by_stem:
        raise InputNotFoundError(f"generated={folder}: no images ({'/'.join(IMG_EXTENSIONS)}) in it")
    if twice:
        raise DataError(f"generated={folder}: two images for one test image: {_listed(twice)}")
    missing = [s for s in wanted if s not in by_stem]
    extra = sorted(set(by_stem) - set(split_stems))
    if missing or extra:
        raise DataError(
            f"generated={folder} does not match the split's images by file name: "
            + "; ".join(
                part
                for part in (
                    f"missing {len(missing)}: {_listed(missing)}" if missing else "",
                    f"not in the split {len(extra)}: {_listed([by_stem[s].name for s in extra])}"
                    if extra
                    else "",
                )
                if part
            )
        )
    return {s: by_stem[s] for s in wanted}


def evenly_spaced(ds: Any, n: int | None) -> Any:
    """At most ``n`` items of ``ds``, evenly spaced so that a capped split still spans all of it."""
    if n is None or n >= len(ds):
        return ds
    if n < 1:
        raise ValueError(f"max_samples must be null or >= 1, got {n}")
    return Subset(ds, torch.linspace(0, len(ds) - 1, n).round().long().tolist())


def _fcn_scorer(dm: Any, cfg: DictConfig, device: torch.device) -> tuple[FcnScorer | None, str]:
    settings = FcnSettings.from_dict(OmegaConf.to_container(cfg.fcn, resolve=True))  # type: ignore[arg-type]
    side, why = label_layout(dm, settings.labels_side)
    if side != "input":
        return None, why
    return FcnScorer.for_datamodule(dm, settings, device), ""


def _real_features_path(dm: Any, dataset: Any, split: str, cfg: DictConfig) -> Path:
    """Where the FID features of the evaluated split's real images are cached: every run of a sweep scores
    against the same real images, and the FID network is the slow part on a CPU."""
    t = dm.eval_transform
    ident = {
        "dataset": dataset_identity(dm, dataset),
        "split": split,
        "indices": getattr(dataset, "indices", None),  # a capped split is a Subset
        "transform": [t.load_size, t.crop_size, t.preprocess, t.size_divisor],
        "version": 1,
    }
    key = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
    name = dm.name if isinstance(getattr(dm, "name", None), str) else "data"
    return cache_root(cfg.fcn.get("cache_dir")) / "fid" / f"{name}-{split}-{key}.pt"


def _real_features(dm: Any, dataset: Any, path: Path, device: torch.device) -> torch.Tensor:
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    fidkid = FidKid(device)
    loader = DataLoader(dataset, batch_size=dm.batch_size, num_workers=dm.num_workers, shuffle=False)
    task = getattr(dm, "task", None)  # photo tasks: the target as an image (colorization: L + ab)
    feats = torch.cat([fidkid.features(output_rgb(task, b["input"], b["target"]))
                       for b in track(loader, "FID features of the real images", total=len(loader), transient=True)])  # fmt: skip
    atomic_save(feats, path)  # parallel runs of a sweep never read half a file
    return feats


def _save(result: dict[str, Any], samples: list[torch.Tensor], out_dir: Path, split: str) -> None:
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    if not samples:
        return
    x, fake, y = torch.stack(samples).unbind(1)
    (out_dir / "images").mkdir(exist_ok=True)
    save_image(grid_rows(x, fake, y), out_dir / "images" / f"eval_{split}.png", nrow=1, padding=2)
    sdir = out_dir / "samples"
    sdir.mkdir(exist_ok=True)
    for i, triple in enumerate(samples):
        for name, img in zip(("input", "output", "target"), triple):
            rgb = (img.clamp(-1, 1) + 1) / 2
            save_image(rgb.expand(3, -1, -1) if rgb.shape[0] == 1 else rgb, sdir / f"{i:03d}_{name}.png")
