"""Evaluation metrics of p2p-eval: pixel metrics, FID/KID, the FCN-score, colour histograms.

``Scores`` accumulates all of them over batches of (input, output, target) in [-1, 1] and returns one flat
dict, the body of ``metrics.json``. The heavy parts live in their own modules: ``fid`` (the FID
Inception network), ``fcn`` (the per-dataset segmenter), ``color`` (Lab histograms).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from p2p.metrics.color import LabHistograms
from p2p.metrics.fcn import FcnScorer, confusion_metric, segmentation_scores
from p2p.metrics.fid import FidKid

METRICS = ("l1", "psnr", "ssim", "fid", "kid", "fcn", "color")
FCN_KEYS = ("pixel_acc", "class_acc", "class_iou")

__all__ = ["FCN_KEYS", "METRICS", "Scores"]


class Scores:
    """Accumulate the chosen ``metrics`` (see METRICS) over batches; ``compute()`` -> flat dict.

    ``fcn``: a trained scorer (None leaves the FCN-score out). ``real_features``: FID features of the real
    images when already known (p2p.eval caches them), else they are computed from the targets.
    """

    def __init__(
        self,
        metrics: tuple[str, ...] | list[str] = METRICS,
        device: torch.device | str = "cpu",
        fcn: FcnScorer | None = None,
        real_features: torch.Tensor | None = None,
    ) -> None:
        if unknown := sorted(set(metrics) - set(METRICS)):
            raise ValueError(f"metrics: unknown {unknown}; choose from {list(METRICS)}")
        self.metrics, self.device, self.n = set(metrics), torch.device(device), 0
        # l1, psnr, ssim: the torchmetrics classes and arguments of validation's val/l1, val/psnr, val/ssim
        # (p2p.training.module.Pix2Pix), so p2p-eval on the val split reports what training logged. They
        # cannot share one factory: metrics and training are independent layers (pyproject's import
        # contracts); tests/test_eval.py asserts the two agree on the same model and images.
        # L1: the mean of per-image mean absolute errors. Not torchmetrics' MeanAbsoluteError, which
        # averages over all pixels: the same only when every image has the same size.
        self.l1 = MeanMetric().to(self.device)
        # PSNR of each image in [0, 1], then their mean; an identical pair gives inf (metrics.json: null)
        self.psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))
        self.psnr = self.psnr.to(self.device)
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(self.device)
        self.fidkid: Any = None
        self.real_features = real_features
        if {"fid", "kid"} & self.metrics:
            self.fidkid = FidKid(self.device)
            if real_features is not None:
                self.fidkid.update_features(real_features, real=True)
        self.fcn = fcn if "fcn" in self.metrics else None
        # the confusion matrices of the outputs and of the ground-truth row: the real photos
        self.conf = (
            {key: confusion_metric(self.fcn.num_classes).to(self.device) for key in ("fcn", "fcn_real")}
            if self.fcn is not None
            else {}
        )
        self.color = LabHistograms() if "color" in self.metrics else None

    @torch.no_grad()
    def update(self, x: torch.Tensor, fake: torch.Tensor, y: torch.Tensor) -> None:
        fake, y = fake.float().clamp(-1, 1).to(self.device), y.float().to(self.device)
        self.n += fake.shape[0]
        self.l1.update(F.l1_loss(fake, y, reduction="none").mean(dim=(1, 2, 3)))
        f01, y01 = (fake + 1) / 2, (y + 1) / 2
        self.psnr.update(f01, y01)
        self.ssim.update(f01, y01)
        if self.fidkid is not None:
            self.fidkid.update(fake, real=False)
            if self.real_features is None:
                self.fidkid.update(y, real=True)
        if self.fcn is not None:
            for key, photos in (("fcn", fake), ("fcn_real", y)):
                pred, target = self.fcn.segment(x, photos)
                self.conf[key].update(pred.to(self.device), target.to(self.device))
        if self.color is not None:
            self.color.update(fake, real=False)
            self.color.update(y, real=True)

    def compute(self) -> dict[str, float | None]:
        """The scores; non-finite values (PSNR of identical images) are returned as they are."""
        if self.n == 0:
            raise ValueError("no images were scored")
        out: dict[str, float | None] = {}
        if "l1" in self.metrics:
            out["l1"] = float(self.l1.compute())
        if "psnr" in self.metrics:
            out["psnr"] = float(self.psnr.compute())
        if "ssim" in self.metrics:
            out["ssim"] = float(self.ssim.compute())  # type: ignore[arg-type]
        if self.fidkid is not None:
            fk: dict[str, float | None] = dict.fromkeys(("fid", "kid", "kid_std"), None)
            if self.n >= 2:  # a covariance needs two images
                fk.update(self.fidkid.compute(fid="fid" in self.metrics, kid="kid" in self.metrics))
            out.update({k: v for k, v in fk.items() if k.split("_")[0] in self.metrics})
        if "fcn" in self.metrics:
            for key in ("fcn", "fcn_real"):  # no scorer (see p2p.runs.eval's notes): null scores
                s = segmentation_scores(self.conf[key]) if key in self.conf else {}
                out.update({f"{key}_{k}": s.get(k) for k in FCN_KEYS})
        if self.color is not None:
            out.update(self.color.compute())
        return out


def finite_or_none(v: Any) -> Any:
    """JSON has no inf/nan: they become null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v
