"""The FCN-score (paper section 4.2): how recognisable generated photos are to a segmenter of real ones.

The paper applies an FCN-8s trained on real Cityscapes photos to generated photos and scores its
predictions against the *input* label maps (per-pixel accuracy, per-class accuracy, class IoU; Tables 1-3).
p2p trains its own small segmenter per dataset on the real photos of the training split, caches it
keyed by the dataset, and always reports the ground-truth row: real test photos through the same
segmenter, the ceiling a perfect generator would reach.

Label maps are colour images, so each dataset needs its palette: Cityscapes has an official colour table
(19 train ids; void colours are ignored), the synthetic data has ``p2p.data.synthetic.PALETTE``, and any
other dataset's palette (facades: 12 colours, JPEG-compressed) is derived from its training label maps
as the peaks of the histogram of flat pixels (edges carry JPEG ringing and are left out). Every pixel is
then assigned its nearest palette colour.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import Subset
from torchmetrics.classification import MulticlassJaccardIndex

from p2p.data.palettes import CITYSCAPES_COLORS, CITYSCAPES_VOID_COLORS, derive_palette
from p2p.data.synthetic import PALETTE
from p2p.io import atomic_save, cache_root

log = logging.getLogger(__name__)

IGNORE = 255  # target class of pixels that are scored nowhere (Cityscapes void)
VERSION = 2  # bump when training changes, so cached segmenters are retrained (2: preloaded, scale jitter)
# Measured training cost on one core of the shared 2-core CPU (docs/evaluation.md): ~0.25 s per step of
# 8 crops of 128x128, i.e. ~1.9 s per million pixels; used only for the up-front estimate.
CPU_SECONDS_PER_MEGAPIXEL = 1.9

# Which half of a known dataset holds the label maps (A = left, B = right of the pix2pix A|B files).
LABEL_SIDE = {"facades": "B", "cityscapes": "B", "synthetic": "A"}


@dataclass(frozen=True)
class FcnSettings:
    """How the segmenter is trained (the cache key includes all of it)."""

    steps: int = 1000  # Adam steps on scale-jittered crops/flips of the real training photos (~4 min CPU)
    batch_size: int = 8
    min_scale: float = 0.8  # scale jitter: crops cover this to 1 of the image side, resized to its size
    width: int = 32  # channels of the first level (doubling per level)
    lr: float = 2e-3
    seed: int = 0
    labels_side: str = "auto"  # A | B | auto (known datasets); which half of each pair is the label map
    palette: list[list[int]] | None = None  # RGB colours; null: the dataset's table or derived
    max_classes: int = 40  # derived palettes: at most this many colours ...
    min_fraction: float = 2e-4  # ... each covering at least this fraction of the flat label pixels
    min_separation: int = 32  # derived colours differ by more than this in some channel
    cache_dir: str | None = None  # the cache root (segmenters in <root>/fcn); null: p2p.io.cache_root()

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> FcnSettings:
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise KeyError(f"unknown fcn settings {unknown}; valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


# --- label maps -> classes ------------------------------------------------------------------------------
def colors_to_classes(
    labels: torch.Tensor, palette: torch.Tensor, ignore_colors: torch.Tensor | None = None
) -> torch.Tensor:
    """[B, 3, H, W] label maps in [-1, 1] -> [B, H, W] class indices of the nearest palette colour
    (IGNORE where the nearest colour is an ignore colour)."""
    if labels.shape[1] != 3:
        raise ValueError(f"label maps must be RGB, got {labels.shape[1]} channel(s)")
    colours = palette.float()
    if ignore_colors is not None and len(ignore_colors):
        colours = torch.cat([colours, ignore_colors.float()])
    rgb = (labels.float().clamp(-1, 1) + 1) * 127.5
    dist = ((rgb[:, None] - colours.to(rgb.device)[None, :, :, None, None]) ** 2).sum(2)  # [B, K, H, W]
    cls = dist.argmin(1)
    cls[cls >= len(palette)] = IGNORE
    return cls


# --- the segmenter --------------------------------------------------------------------------------------
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Segmenter(nn.Module):
    """A small fully convolutional segmenter for CPU budgets: a stem of two stride-2 convs (features at
    1/4 resolution, enough for facade-scale layouts), ``depth`` levels of conv + stride-2 conv, a decoder
    with skips back to 1/4, and class logits upsampled bilinearly to the input size."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        w = [width * 2**i for i in range(depth + 1)]
        self.stem = nn.Sequential(_conv(in_channels, w[0] // 2, stride=2), _conv(w[0] // 2, w[0], stride=2))
        self.down = nn.ModuleList(
            nn.Sequential(_conv(w[i], w[i]), _conv(w[i], w[i + 1], 2)) for i in range(depth)
        )
        self.up = nn.ModuleList(_conv(w[i + 1] + w[i], w[i]) for i in range(depth))
        self.head = nn.Conv2d(w[0], num_classes, 1)
        self.multiple = 2 ** (depth + 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        y = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x  # any size in, same size out
        skips = [y := self.stem(y)]
        for block in self.down:
            skips.append(y := block(y))
        for i in range(len(self.up) - 1, -1, -1):
            y = F.interpolate(y, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            y = self.up[i](torch.cat([y, skips[i]], 1))
        y = F.interpolate(self.head(y), size=(h + ph, w + pw), mode="bilinear", align_corners=False)
        return y[..., :h, :w]


# --- scores ---------------------------------------------------------------------------------------------
def confusion_metric(num_classes: int) -> MulticlassJaccardIndex:
    """The accumulated [K, K] confusion matrix of the FCN-score, ``update(pred, target)`` with [B, H, W]
    class indices; IGNORE targets are left out. A torchmetrics MulticlassJaccardIndex: a
    MulticlassConfusionMatrix (state ``confmat``: rows = true class, columns = predicted) whose ``compute()``
    is the mean class IoU."""
    return MulticlassJaccardIndex(num_classes, average="macro", ignore_index=IGNORE)


def segmentation_scores(conf: MulticlassJaccardIndex) -> dict[str, float]:
    """Per-pixel accuracy, mean per-class accuracy and mean class IoU of everything ``conf`` has counted, as
    the Cityscapes evaluation used by the paper: classes absent from the ground truth have no accuracy
    (left out of the mean); a class predicted but absent counts as IoU 0; classes in neither are left out.

    The IoU is torchmetrics' macro Jaccard index, which defines exactly that. The two accuracies are
    reduced here from the confusion matrix: torchmetrics' accuracies take predictions, not a confusion
    matrix, and its macro accuracy counts a class that is predicted but absent from the ground truth as
    0 (it leaves out only classes with no true or predicted pixel) instead of leaving it out."""
    m = conf.confmat.double()
    tp, gt = m.diag(), m.sum(1)
    acc = (tp / gt)[gt > 0]
    return {
        "pixel_acc": float(tp.sum() / m.sum()) if m.sum() > 0 else float("nan"),
        "class_acc": float(acc.mean()) if len(acc) else float("nan"),
        "class_iou": float(conf.compute()) if m.sum() > 0 else float("nan"),
    }


# --- the dataset-specific scorer ------------------------------------------------------------------------
def label_layout(datamodule: Any, labels_side: str = "auto") -> tuple[str | None, str]:
    """Where the label maps are: ("input" | "target" | None, reason). The FCN-score needs them as input."""
    name = (
        "synthetic" if type(datamodule).__name__ == "SyntheticDataModule" else getattr(datamodule, "name", "")
    )
    side = LABEL_SIDE.get(name) if labels_side == "auto" else labels_side
    if side not in ("A", "B"):
        return None, (
            f"dataset {name!r} has no known label maps; set fcn.labels_side=A or B if one half holds "
            "colour-coded label maps"
        )
    is_input = (side == "A") == (datamodule.direction == "AtoB")
    if not is_input:
        return "target", f"{name}: the outputs are label maps (photo -> labels); the FCN-score scores photos"
    if datamodule.in_channels != 3 or datamodule.out_channels != 3:
        return None, "the FCN-score needs RGB label maps and photos (data.in_channels = out_channels = 3)"
    return "input", ""


def plain_dataset(ds: Any) -> Any:
    """``ds`` without p2p's RAM cache (``p2p.data.cache.CachedPairs``, whose items may be uncropped for
    on-device augmentation): items are plain {"input", "target", "path"} dicts, subsets are kept."""
    if isinstance(ds, Subset):
        return Subset(plain_dataset(ds.dataset), ds.indices)
    while not hasattr(ds, "pairs") and not hasattr(ds, "num_samples") and hasattr(ds, "dataset"):
        ds = ds.dataset
    return ds


def dataset_identity(datamodule: Any, ds: Any = None) -> dict[str, Any]:
    """What a cached result depends on: the files of ``ds`` (default: the training split; names and sizes),
    the training transform, the direction."""
    ds = plain_dataset(datamodule.train_set if ds is None else ds)
    ds = ds.dataset if isinstance(ds, Subset) else ds
    t = datamodule.train_transform
    ident: dict[str, Any] = {
        "type": type(datamodule).__name__,
        "name": getattr(datamodule, "name", None),
        "direction": datamodule.direction,
        "transform": [t.load_size, t.crop_size, t.preprocess, t.flip, t.size_divisor],
    }
    if hasattr(ds, "pairs"):  # files on disk: names relative to the root, and sizes
        root = Path(ds.root)
        ident["files"] = hashlib.sha256(
            "\n".join(
                f"{f.relative_to(root)}:{f.stat().st_size}"
                for p in ds.pairs
                for f in (p.a, p.b)
                if f is not None
            ).encode()
        ).hexdigest()
    else:  # generated data: its parameters
        ident["data"] = {
            k: getattr(ds, k, None) for k in ("num_samples", "seed", "image_size", "num_classes")
        }
    return ident


def _palette_for(
    datamodule: Any, settings: FcnSettings, side: str
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(palette, ignore colours, where it came from)."""
    if settings.palette is not None:
        given = np.asarray(settings.palette)
        if given.ndim != 2 or given.shape[1] != 3 or len(given) < 2 or given.min() < 0 or given.max() > 255:
            raise ValueError(
                f"fcn.palette must be a list of at least 2 [r, g, b] colours in 0..255, got {settings.palette}"
            )
        return given.astype(np.uint8), None, "fcn.palette"
    if type(datamodule).__name__ == "SyntheticDataModule":
        return PALETTE[: datamodule.num_classes], None, "p2p.data.synthetic.PALETTE"
    if getattr(datamodule, "name", "") == "cityscapes":
        return (
            np.asarray(CITYSCAPES_COLORS, np.uint8),
            np.asarray(CITYSCAPES_VOID_COLORS, np.uint8),
            "cityscapes",
        )
    ds = plain_dataset(datamodule.train_set)
    idx = np.linspace(0, len(ds) - 1, min(len(ds), 200)).round().astype(int)
    if hasattr(ds, "load_pair"):  # the raw label maps, before any resize blurs them
        maps: Iterable[Image.Image] = (ds.load_pair(int(i))[0 if side == "A" else 1] for i in idx)
    else:
        maps = (_to_pil(ds[int(i)]["input"]) for i in idx)
    palette = derive_palette(maps, settings.max_classes, settings.min_fraction, settings.min_separation)
    return palette, None, f"derived from {len(idx)} training label maps"


def _to_pil(t: torch.Tensor) -> Image.Image:
    return Image.fromarray(((t.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())


class FcnScorer:
    """A trained segmenter and its palette; ``segment(labels, photos)`` -> (predicted, true) classes, to be
    counted by ``confusion_metric(num_classes)``."""

    def __init__(self, segmenter: Segmenter, palette: torch.Tensor, ignore_colors: torch.Tensor | None,
                 meta: dict[str, Any]) -> None:  # fmt: skip
        self.segmenter, self.palette, self.ignore_colors, self.meta = (
            segmenter.eval(),
            palette,
            ignore_colors,
            meta,
        )
        self.num_classes = len(palette)

    @torch.no_grad()
    def segment(self, labels: torch.Tensor, photos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, H, W] classes the segmenter predicts for ``photos``, and the true classes of ``labels`` (IGNORE
        where void), both [-1, 1] images; on the segmenter's device."""
        device = next(self.segmenter.parameters()).device
        target = colors_to_classes(labels.to(device), self.palette, self.ignore_colors)
        return self.segmenter(photos.to(device).float()).argmax(1), target

    def to(self, device: torch.device | str) -> FcnScorer:
        self.segmenter.to(device)
        return self

    @classmethod
    def for_datamodule(
        cls, datamodule: Any, settings: FcnSettings | None = None, device: torch.device | str = "cpu"
    ) -> FcnScorer:
        """The cached segmenter of this dataset, trained first (on ``device``) if there is none."""
        settings = settings or FcnSettings()
        side, reason = label_layout(datamodule, settings.labels_side)
        if side != "input":
            raise ValueError(reason)
        datamodule.setup("fit")
        ident = dataset_identity(datamodule)
        trained_by = {k: v for k, v in asdict(settings).items() if k != "cache_dir"}
        key_src = {"version": VERSION, "dataset": ident, "settings": trained_by}
        key = hashlib.sha256(json.dumps(key_src, sort_keys=True, default=str).encode()).hexdigest()[:16]
        path = cache_root(settings.cache_dir) / "fcn" / f"{ident['name'] or 'data'}-{key}.pt"
        if path.is_file():
            blob = torch.load(path, map_location="cpu", weights_only=True)
            log.info("FCN-score: cached segmenter %s", path)
        else:
            raw_side = "A" if (datamodule.direction == "AtoB") else "B"  # labels are the input half
            palette, ignore, source = _palette_for(datamodule, settings, raw_side)
            log.info(
                "FCN-score: training a %d-class segmenter once (palette: %s; %s), cached at %s",
                len(palette),
                source,
                _estimate(datamodule, settings, torch.device(device)),
                path,
            )
            blob = _train(datamodule, settings, palette, ignore, torch.device(device))
            blob["meta"].update(key=key_src, palette_source=source)
            atomic_save(blob, path)  # concurrent runs (joblib, SLURM) never read half a file
        seg = Segmenter(len(blob["palette"]), width=blob["meta"]["width"])
        seg.load_state_dict(blob["state_dict"])
        meta = {**blob["meta"], "path": str(path)}
        return cls(seg, blob["palette"], blob.get("ignore_colors"), meta)


def _estimate(datamodule: Any, s: FcnSettings, device: torch.device) -> str:
    """How long training will take, roughly: measured CPU cost per pixel-step, at the crop size."""
    side = datamodule.train_transform.crop_size
    minutes = s.steps * s.batch_size * side * side / 1e6 * CPU_SECONDS_PER_MEGAPIXEL / 60
    where = "a GPU: far less than" if device.type == "cuda" else "one CPU core:"
    return f"{s.steps} steps, on {where} ~{max(1, round(minutes))} min"


def _training_views(datamodule: Any) -> list[dict[str, Any]]:
    """The training pairs as the scorer will see test pairs: through the data module's *evaluation*
    transform (the full view at the evaluated resolution), loaded once. Augmentation is then done on
    these tensors (``scale_jitter``), so the JPEGs are decoded once instead of once per step."""
    ds: Any = plain_dataset(datamodule.train_set)
    indices = list(ds.indices) if isinstance(ds, Subset) else range(len(ds))
    view: Any = copy.copy(ds.dataset if isinstance(ds, Subset) else ds)
    view.transform = datamodule.eval_transform
    return [view[i] for i in indices]


def scale_jitter(photos: torch.Tensor, classes: torch.Tensor, min_scale: float, g: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Random crops covering ``min_scale``..1 of each side (aspect within +-20%), resized back to the
    image size, and horizontal flips, photo and class map together (bilinear / nearest)."""
    n = len(photos)
    s = min_scale + (1 - min_scale) * torch.rand(n, generator=g)
    aspect = torch.exp((torch.rand(n, generator=g) - 0.5) * 0.4).sqrt()
    sx, sy = (s * aspect).clamp(max=1), (s / aspect).clamp(max=1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sx * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    theta[:, 1, 1] = sy
    theta[:, 0, 2] = (torch.rand(n, generator=g) * 2 - 1) * (1 - sx)
    theta[:, 1, 2] = (torch.rand(n, generator=g) * 2 - 1) * (1 - sy)
    grid = F.affine_grid(theta.to(photos.device), list(photos.shape), align_corners=False)
    x = F.grid_sample(photos, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = F.grid_sample(
        classes[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False
    )
    return x, y[:, 0].long()


def _train(
    datamodule: Any, s: FcnSettings, palette: np.ndarray, ignore: np.ndarray | None, device: torch.device
) -> dict[str, Any]:
    """Train on the real photos of the training split (the target half), with scale jitter and flips."""
    pal = torch.from_numpy(palette.copy())
    ign = torch.from_numpy(ignore.copy()) if ignore is not None else None
    g = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)
    t0 = time.time()
    items = _training_views(datamodule)
    # uint8 in memory (a quarter of float32); class maps as the scorer computes them on test label maps
    photos = torch.stack([((it["target"] + 1) * 127.5).round().byte() for it in items])
    classes = torch.cat([colors_to_classes(it["input"][None], pal, ign).byte() for it in items])
    seg = Segmenter(len(pal), width=s.width).to(device)
    opt = torch.optim.Adam(seg.parameters(), lr=s.lr)
    # cosine decay to 0: a short schedule that needs no tuning per dataset
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, s.steps) / s.steps))
    )
    bs = min(s.batch_size, len(items))
    seg.train()
    losses: list[float] = []
    columns = (TextColumn("FCN segmenter"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns) as progress:
        task = progress.add_task("train", total=s.steps, loss="-")
        for _ in range(s.steps):
            idx = torch.randint(0, len(items), (bs,), generator=g)
            x, target = scale_jitter(
                photos[idx].to(device).float() / 127.5 - 1, classes[idx].to(device), s.min_scale, g
            )
            loss = F.cross_entropy(seg(x), target, ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            progress.update(task, advance=1, loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
    log.info("FCN segmenter: %d steps in %.0f s, loss %.3f", s.steps, time.time() - t0, losses[-1])
    meta = {"width": s.width, "steps": s.steps, "train_seconds": round(time.time() - t0, 1),
            "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])), "num_train": len(items)}  # fmt: skip
    state = {k: v.cpu() for k, v in seg.state_dict().items()}
    blob: dict[str, Any] = {"state_dict": state, "palette": pal, "meta": meta}
    if ign is not None:
        blob["ignore_colors"] = ign
    return blob
