"""``evaluate(cfg)``: score a trained generator on a split, as the paper does (section 4.2), plus FID/KID
(``p2p-eval`` runs it; ``p2p-train eval_after_train=true`` calls `evaluate_model`).

    p2p-eval ckpt_path=outputs/train/.../checkpoints/last.ckpt data=facades data.root=/data/facades
    p2p-eval ckpt_path=... data=facades inference=paper split=test metrics=[l1,psnr,ssim]

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
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset
from torchvision.utils import save_image

from p2p.config import config_dir
from p2p.config.build import build_datamodule
from p2p.errors import CheckpointNotFoundError, ConfigError
from p2p.inference import INFERENCE_MODES, grid_rows, inference_mode
from p2p.io import atomic_save, atomic_write_text, cache_root
from p2p.io.tasks import in_hole, output_rgb, views
from p2p.metrics import METRICS, Scores, finite_or_none
from p2p.metrics.fcn import FcnScorer, FcnSettings, dataset_identity, label_layout, plain_dataset
from p2p.metrics.fid import FidKid
from p2p.metrics.hole import HoleScores
from p2p.training import Pix2Pix, is_generator_only

log = logging.getLogger(__name__)

SPLITS = ("test", "val")


def eval_settings(cfg: DictConfig) -> DictConfig:
    """``cfg`` completed with conf/eval.yaml's own keys (split, inference, metrics, fcn, ...) where it lacks
    them: p2p-train's end-of-run evaluation uses the same defaults as p2p-eval."""
    own = OmegaConf.load(config_dir() / "eval.yaml")
    assert isinstance(own, DictConfig)
    for key in ("defaults", "task_name", "ckpt_path", "hydra"):
        own.pop(key, None)
    base = OmegaConf.to_container(cfg, resolve=False)  # unresolved: interpolations see the merged config
    merged = OmegaConf.merge(own, base)
    assert isinstance(merged, DictConfig)
    return merged


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """p2p-eval: evaluate ``cfg.ckpt_path`` on ``cfg.split`` of ``cfg.data``; writes into cfg.paths.output_dir."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path is required: p2p-eval ckpt_path=path/to/checkpoints/last.ckpt data=...")
    return evaluate_checkpoint(cfg.ckpt_path, cfg, cfg.paths.output_dir)


def evaluate_checkpoint(ckpt_path: str | Path, cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Evaluate one checkpoint as ``cfg`` says (keys of conf/eval.yaml); returns and saves the metrics."""
    if not Path(ckpt_path).is_file():
        raise CheckpointNotFoundError(f"ckpt_path {ckpt_path} does not exist")
    # a best file (p2p.training.best) holds G alone: D is built from the hyperparameters and left untrained
    peek = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    strict = not (isinstance(peek, dict) and is_generator_only(peek))
    with warnings.catch_warnings():  # Lightning names D's keys missing from a G-only file: as intended
        if not strict:
            warnings.filterwarnings(
                "ignore", message="Found keys that are in the model state dict but not in"
            )
        model = Pix2Pix.load_from_checkpoint(str(ckpt_path), map_location="cpu", strict=strict)
    return evaluate_model(model, cfg, out_dir, checkpoint=str(ckpt_path))


def evaluate_model(
    model: Any, cfg: DictConfig, out_dir: str | Path, checkpoint: Any = None
) -> dict[str, Any]:
    """Evaluate a ``Pix2Pix`` module (its generator ``model.G``); ``checkpoint`` (a path) is only recorded."""
    checkpoint = str(checkpoint) if checkpoint else None
    t0 = time.time()
    cfg = eval_settings(cfg)
    split, mode, wanted = cfg.split, cfg.inference, list(cfg.metrics)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if mode not in INFERENCE_MODES:
        raise ValueError(f"inference must be one of {INFERENCE_MODES}, got {mode!r}")
    if unknown := sorted(set(wanted) - set(METRICS)):
        raise ValueError(f"metrics: unknown {unknown}; choose from {list(METRICS)}")
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if cfg.device == "auto" else cfg.device)

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
    dm.setup("test" if split == "test" else "validate")
    dataset = evenly_spaced(plain_dataset(dm.test_set if split == "test" else dm.val_set), cfg.max_samples)
    loader = DataLoader(dataset, batch_size=dm.batch_size, num_workers=dm.num_workers, shuffle=False)

    notes: dict[str, str] = {}
    fcn = None
    if "fcn" in wanted:
        fcn, why = _fcn_scorer(dm, cfg, device)
        if fcn is None:
            notes["fcn"] = why
            log.info("FCN-score skipped: %s", why)
        else:
            fcn.to(device)
    use_fid = bool({"fid", "kid"} & set(wanted))
    scores = Scores(wanted, device, fcn, _real_features(dm, dataset, split, cfg, device) if use_fid else None)
    hole = HoleScores() if task == "inpainting" else None

    G = model.G.to(device)
    samples: list[torch.Tensor] = []  # [3, C, H, W]: input, output, target
    torch.manual_seed(cfg.seed if cfg.get("seed") is not None else 0)  # paper mode's dropout
    with torch.no_grad(), inference_mode(G, mode):
        for batch in loader:
            x, y = batch["input"].to(device).float(), batch["target"].to(device).float()
            fake = G(x).float().clamp(-1, 1)
            if hole is not None:
                hole.update(output_rgb(task, x, fake), y, in_hole(x))
            x, fake, y = views(task, x, fake, y)  # photo tasks: the images the tensors stand for
            scores.update(x, fake, y)
            keep = max(0, cfg.num_grid_images - len(samples))
            samples.extend(torch.stack([x, fake, y], 1)[:keep].cpu())
    if scores.n == 0:
        raise ValueError(f"split {split!r} of data {type(dm).__name__} has no images")
    if scores.n < 2 and use_fid:
        notes["fid"] = "FID/KID need at least 2 images"

    result: dict[str, Any] = {k: finite_or_none(v) for k, v in scores.compute().items()}
    if hole is not None:
        result.update({k: finite_or_none(v) for k, v in hole.compute().items()})
    if fcn is not None:
        result["fcn_segmenter"] = fcn.meta["path"]
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
    if HydraConfig.initialized():  # the config groups chosen for this run: p2p-report's row labels
        choices = HydraConfig.get().runtime.choices
        result["choices"] = {k: v for k, v in choices.items() if not k.startswith("hydra")}
    if ablation := cfg.get("ablation"):
        result["ablation"] = OmegaConf.to_container(ablation, resolve=True)
    if notes:
        result["notes"] = notes
    _save(result, samples, Path(out_dir), split)
    log.info("evaluation (%s, %d images, %.0f s) -> %s", mode, scores.n, result["seconds"], out_dir)
    return result


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


def _real_features(dm: Any, dataset: Any, split: str, cfg: DictConfig, device: torch.device) -> torch.Tensor:
    """FID features of the real images of the evaluated split, cached: every run of a sweep scores against
    the same real images, and the FID network is the slow part on a CPU."""
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
    path = cache_root(cfg.fcn.get("cache_dir")) / "fid" / f"{name}-{split}-{key}.pt"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    fidkid = FidKid(device)
    loader = DataLoader(dataset, batch_size=dm.batch_size, num_workers=dm.num_workers, shuffle=False)
    task = getattr(dm, "task", None)  # photo tasks: the target as an image (colorization: L + ab)
    feats = torch.cat([fidkid.features(output_rgb(task, b["input"], b["target"])) for b in loader])
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
