"""What ``p2p-train`` prints: a progress bar that fits 80 columns, one line per epoch, the networks' sizes,
and no third-party noise.

- `ProgressBar`: Lightning's Rich bar with epochs counted 1..N, the two losses only (no ``v_num``), and after
  each validation one line: epoch, train losses, val L1/PSNR/SSIM, the epoch's time and the ETA.
- `ModelSize`: one line per network (parameters, size in MB) instead of Lightning's summary table, whose
  FLOPs column is zeros for these networks and which warns about bf16-mixed.
- `quiet_third_party`: filters for the harmless messages of the libraries below, each matched by its text
  (never all warnings).
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from typing_extensions import override

log = logging.getLogger(__name__)

BAR_METRICS = {"train/loss_g": "loss_g"}  # G's objective; the rest is on the epoch line (80 columns)
VAL_METRICS = (("val/l1", "L1", ".3f"), ("val/psnr", "PSNR", ".2f"), ("val/ssim", "SSIM", ".3f"))


class _DropAdvert(logging.Filter):
    """Lightning's "Tip: ... try installing litlogger" info line, on every Trainer."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def quiet_third_party() -> None:
    """Silence the messages every run printed that say nothing about it (idempotent)."""
    # lightning 2.6 with torch >= 2.10: its own use of a deprecated torch.utils._pytree class
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # Lightning's model summary under bf16-mixed (p2p shows `ModelSize` instead; this covers user configs)
    warnings.filterwarnings("ignore", message=r"Precision .* is not supported by the model summary")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdvert) for f in rank_zero.filters):
        rank_zero.addFilter(_DropAdvert())


def megabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} K"


class ModelSize(L.Callback):
    """At the start of fit: each network's class, parameter count and size (fp32 bytes of its tensors)."""

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for name, net in pl_module.named_children():
            params = sum(p.numel() for p in net.parameters())
            if params == 0:
                continue  # the metrics
            size = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
            log.info("%s: %s, %s parameters, %s", name, type(net).__name__, _count(params), megabytes(size))


def epoch_line(
    epoch: int, max_epochs: int | None, metrics: dict[str, Any], seconds: float, eta: float | None
) -> str:
    """``epoch 2/4 D 0.702 G 34.24 | L1 0.398 PSNR 12.86 SSIM 0.332 | 3s ETA 6s``: the train losses (D's,
    G's objective), the validation metrics, the epoch's time and the time left. 80 columns up to epoch
    999/999 and hours of ETA."""
    parts = [f"epoch {epoch}/{max_epochs}" if max_epochs else f"epoch {epoch}"]
    if "train/loss_d" in metrics:
        parts.append(f"D {float(metrics['train/loss_d']):.3g}")
    if "train/loss_g" in metrics:
        parts.append(f"G {float(metrics['train/loss_g']):.4g}")
    val = [f"{name} {float(metrics[key]):{f}}" for key, name, f in VAL_METRICS if key in metrics]
    if val:
        parts += ["|", *val]
    parts += ["|", _duration(seconds)]
    if eta is not None:
        parts.append(f"ETA {_duration(eta)}")
    return " ".join(parts)


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressBar(RichProgressBar):
    """Rich's bar in 80 columns: ``Epoch 1/4 ━━━━ 2/2 0:00:01 • 0:00:00 3.6it/s loss_d: 0.702 loss_g: 34.2``,
    and a line per epoch above it (`epoch_line`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch_start: float | None = None
        self._fit_start: float | None = None

    @override
    def _get_train_description(self, current_epoch: int) -> str:
        return (
            super()
            ._get_train_description(current_epoch)
            .replace(
                f"Epoch {current_epoch}/{(self.trainer.max_epochs or 0) - 1}",
                f"Epoch {current_epoch + 1}/{self.trainer.max_epochs}",
            )
        )  # Lightning counts from 0: a 4-epoch run said 0/3 ... 3/3

    @override
    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        return {short: metrics[key] for key, short in BAR_METRICS.items() if key in metrics}

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._fit_start = time.monotonic()

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._epoch_start = time.monotonic()

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if trainer.sanity_checking or not trainer.is_global_zero or self._epoch_start is None:
            return
        now = time.monotonic()
        done, total = trainer.current_epoch + 1, trainer.max_epochs
        eta = None
        if total and total > 0 and self._fit_start is not None:
            eta = (now - self._fit_start) / done * (total - done)
        metrics = {
            k: v.item() if isinstance(v, torch.Tensor) else v for k, v in trainer.callback_metrics.items()
        }
        line = epoch_line(done, total, metrics, now - self._epoch_start, eta)
        if self._console is not None and self.is_enabled:
            self._console.print(line, highlight=False, soft_wrap=True)
        else:
            log.info(line)


def _short(path: str | Path) -> str:
    """``path`` relative to the working folder when it is below it (shorter to read and to copy)."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_summary(trainer: L.Trainer, best: str | None, last: str | None, seconds: float) -> list[str]:
    """The lines that end a run: the best epoch and its metrics, where the outputs are, how to use them."""
    run = Path(trainer.default_root_dir)
    ckpt = trainer.checkpoint_callback
    found = dict(getattr(ckpt, "best_metrics", None) or {})
    head = f"done: {trainer.current_epoch} epochs in {_duration(seconds)}"
    if best:
        epoch = found.pop("epoch", None)
        head += f"; best epoch {int(epoch)}:" if epoch else "; best:"
        vals = [f"{name} {found[key]:{f}}" for key, name, f in VAL_METRICS if key in found]
        score = getattr(ckpt, "best_model_score", None)
        if not vals and score is not None:
            vals = [f"{getattr(ckpt, 'monitor', '')} {float(score):.4g}"]
        head += " " + " ".join(vals)
    lines = [head]
    rows = [("resume from", last), ("generator", best)]
    if (run / "images").is_dir():
        rows.append(("image grids", str(run / "images" / "val_epochNNN.png")))
    log_dir = getattr(trainer.logger, "log_dir", None)
    if log_dir and (Path(log_dir) / "metrics.csv").is_file():
        rows.append(("metrics", str(Path(log_dir) / "metrics.csv")))
    lines += [f"  {label:<12} {_short(path)}" for label, path in rows if path]
    if best or last:
        lines += [
            "translate images with:",
            "  p2p-translate --input my_images/ --output translated/ --checkpoint \\",
            f"    {_short(best or last or '')}",
        ]
    return lines
