"""Tests of p2p.data: layouts, transforms, conversions, data modules, synthetic data, downloads."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import logging
import os
import shutil
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import exit_code
from p2p.cli.prepare_cityscapes import main as cityscapes_main
from p2p.config.build import build_datamodule
from p2p.data import (
    DATASETS,
    PairedDataModule,
    PairedImageDataset,
    PairTransform,
    PhotoDataModule,
    SyntheticDataModule,
    SyntheticPairs,
    ensure_dataset,
    render_pair,
)
from p2p.data.cityscapes import prepare_cityscapes
from p2p.data.synthetic import PALETTE
from p2p.errors import DataError, DownloadError
from p2p.io import convert_channels

REPO = Path(__file__).resolve().parents[1]
FACADES = Path(
    os.environ.get("P2P_FACADES") or Path(__file__).resolve().parents[2] / "shared/datasets/facades"
)
SMALL: dict[str, Any] = dict(load_size=36, crop_size=32)  # tiny sizes keep every test fast


def rand_img(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save_aligned(path: Path, a: np.ndarray, b: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([a, b], axis=1)).save(path)


def make_aligned(root: Path, splits: dict[str, int], h: int = 32, w: int = 40) -> Path:
    """root/{split}/{i}.png with A = red, B = blue halves (so the direction is visible in the values)."""
    for split, n in splits.items():
        for i in range(n):
            a = np.zeros((h, w, 3), np.uint8)
            a[..., 0] = 255
            b = np.zeros((h, w, 3), np.uint8)
            b[..., 2] = 255
            save_aligned(root / split / f"{i}.png", a, b)
    return root


def to_uint8(t: torch.Tensor) -> np.ndarray:
    return ((t + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


# ---------------------------------------------------------------- layouts, direction, errors


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_aligned_layout_direction_shapes_and_range(tmp_path: Path, direction: str) -> None:
    root = make_aligned(tmp_path, {"train": 3})
    ds = PairedImageDataset(root, "train", direction, transform=PairTransform(**SMALL))
    assert len(ds) == 3
    item = ds[1]
    assert item["input"].shape == item["target"].shape == (3, 32, 32)
    assert item["input"].dtype == torch.float32
    assert item["path"] == str(root / "train" / "1.png")
    for t in (item["input"], item["target"]):
        assert t.min() >= -1 and t.max() <= 1
    red, blue = item["input"][0].mean(), item["input"][2].mean()
    # A (left) is red, B (right) is blue: BtoA must feed the blue half to the generator.
    assert (red > 0.9 and blue < -0.9) if direction == "AtoB" else (blue > 0.9 and red < -0.9)


def test_separate_layout_matches_by_name(tmp_path: Path) -> None:
    for i, stem in enumerate(["b", "a", "c"]):  # B may use another extension than A
        (tmp_path / "A" / "train").mkdir(parents=True, exist_ok=True)
        (tmp_path / "B" / "train").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (10 * i, 0, 0)).save(tmp_path / "A" / "train" / f"{stem}.png")
        Image.new("RGB", (32, 32), (0, 0, 10 * i)).save(tmp_path / "B" / "train" / f"{stem}.bmp")
    (tmp_path / "A" / "train" / "notes.txt").write_text("not an image")
    ds = PairedImageDataset(
        tmp_path, "train", "BtoA", transform=PairTransform(preprocess="none", size_divisor=32)
    )
    assert len(ds) == 3
    assert [Path(p.a).name for p in ds.pairs] == ["a.png", "b.png", "c.png"]  # sorted
    item = ds[0]  # "a" was written with i = 1
    assert item["path"].endswith("B/train/a.bmp")  # the input's file
    assert to_uint8(item["input"])[0, 0].tolist() == [0, 0, 10]
    assert to_uint8(item["target"])[0, 0].tolist() == [10, 0, 0]


def test_separate_layout_name_mismatch_lists_names(tmp_path: Path) -> None:
    for side, names in (("A", ["1", "2", "3"]), ("B", ["1", "2", "4"])):
        (tmp_path / side / "train").mkdir(parents=True)
        for n in names:
            Image.new("RGB", (8, 8)).save(tmp_path / side / "train" / f"{n}.jpg")
    with pytest.raises(DataError, match=r"A/train/3\.jpg: no image named 3\.\* in .*B/train") as e:
        PairedImageDataset(tmp_path, "train")
    assert [Path(p.split(": ")[0]).relative_to(tmp_path).parts for p in e.value.problems] == [
        ("A", "train", "3.jpg"),
        ("B", "train", "4.jpg"),
    ]


def test_odd_width_error_names_file(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    Image.new("RGB", (33, 16)).save(tmp_path / "train" / "odd.png")
    ds = PairedImageDataset(tmp_path, "train")
    with pytest.raises(ValueError, match=r"odd\.png: width 33 is odd"):
        ds[0]


def test_missing_or_empty_split_errors_name_the_folder(tmp_path: Path) -> None:
    make_aligned(tmp_path, {"train": 1})
    with pytest.raises(DataError, match=r"split 'val' not found .*splits present: \['train'\]"):
        PairedImageDataset(tmp_path, "val")
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match=r"test: empty split: no images"):
        PairedImageDataset(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        PairedImageDataset(tmp_path / "nowhere", "train")


def test_unreadable_image_error_names_file(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(RuntimeError, match=r"broken\.jpg"):
        PairedImageDataset(tmp_path, "train")[0]


# ---------------------------------------------------------------- transforms


def coordinate_image(h: int, w: int) -> np.ndarray:
    """R = x, G = y: every pixel tells where it came from, so crops and flips can be read back."""
    y, x = np.mgrid[:h, :w]
    return np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("preprocess", ["crop", "resize_and_crop", "scale_width_and_crop"])
def test_train_crop_and_flip_identical_for_input_and_target(tmp_path: Path, preprocess: str) -> None:
    img = coordinate_image(48, 64)
    save_aligned(tmp_path / "train" / "0.png", img, img)  # B is a copy of A
    tf = PairTransform(load_size=48, crop_size=32, preprocess=preprocess, flip=True)
    ds = PairedImageDataset(tmp_path, "train", transform=tf)
    torch.manual_seed(0)
    corners, flips = set(), set()
    for _ in range(40):
        item = ds[0]
        assert torch.equal(item["input"], item["target"])
        x = to_uint8(item["input"])[..., 0].astype(int)
        corners.add((int(x[0, 0]), int(to_uint8(item["input"])[0, 0, 1])))
        flips.add(bool(x[0, 0] > x[0, -1]))
    assert len(corners) > 5  # the crop really is random ...
    assert flips == {True, False}  # ... and so is the flip


def test_crop_position_is_within_the_exact_image(tmp_path: Path) -> None:
    """preprocess=crop must cut a real window of the original pixels (no resampling)."""
    img = coordinate_image(40, 50)
    save_aligned(tmp_path / "train" / "0.png", img, img)
    ds = PairedImageDataset(
        tmp_path, "train", transform=PairTransform(crop_size=32, preprocess="crop", flip=False)
    )
    out = to_uint8(ds[0]["input"])
    x0, y0 = int(out[0, 0, 0]), int(out[0, 0, 1])
    np.testing.assert_array_equal(out, img[y0 : y0 + 32, x0 : x0 + 32])


@pytest.mark.parametrize(
    ("preprocess", "train", "size_wh", "expected_hw"),
    [
        ("resize_and_crop", True, (40, 30), (32, 32)),
        ("resize_and_crop", False, (40, 30), (32, 32)),
        ("crop", True, (40, 36), (32, 32)),
        ("crop", False, (40, 36), (32, 32)),
        ("scale_width", True, (40, 30), (48, 64)),  # width 64, height max(64 * 30 / 40, 32) = 48
        ("scale_width", False, (80, 20), (32, 64)),  # height 16 < crop_size: kept at 32
        ("scale_width_and_crop", True, (40, 30), (32, 32)),
        ("none", True, (50, 20), (16, 48)),  # each side rounded to a multiple of 16
        ("none", False, (64, 32), (32, 64)),
    ],
)
def test_preprocess_output_sizes(
    tmp_path: Path, preprocess: str, train: bool, size_wh: tuple[int, int], expected_hw: tuple[int, int]
) -> None:
    w, h = size_wh
    save_aligned(tmp_path / "train" / "0.png", rand_img(h, w, 0), rand_img(h, w, 1))
    tf = PairTransform(load_size=64 if "scale" in preprocess else 36, crop_size=32, preprocess=preprocess)
    tf = replace(tf, size_divisor=16, train=train)
    item = PairedImageDataset(tmp_path, "train", transform=tf)[0]
    assert item["input"].shape[1:] == item["target"].shape[1:] == expected_hw


def test_eval_transform_is_deterministic_and_keeps_the_full_view(tmp_path: Path) -> None:
    a, b = rand_img(32, 32, 0), rand_img(32, 32, 1)
    save_aligned(tmp_path / "test" / "0.png", a, b)
    ds = PairedImageDataset(
        tmp_path, "test", transform=PairTransform(load_size=36, crop_size=32, train=False)
    )
    first, second = ds[0], ds[0]
    assert torch.equal(first["input"], second["input"])
    # resize_and_crop at eval resizes straight to crop_size: a crop_size image comes back untouched.
    np.testing.assert_array_equal(to_uint8(first["input"]), a)
    np.testing.assert_array_equal(to_uint8(first["target"]), b)
    # and the default transform of a non-train split is the eval one
    assert PairedImageDataset(tmp_path, "test").transform.train is False


def test_crop_larger_than_image_is_a_clear_error(tmp_path: Path) -> None:
    save_aligned(tmp_path / "train" / "small.png", rand_img(20, 20, 0), rand_img(20, 20, 1))
    ds = PairedImageDataset(tmp_path, "train", transform=PairTransform(crop_size=32, preprocess="crop"))
    with pytest.raises(ValueError, match=r"small\.png: image of size 20x20 is smaller than crop_size=32"):
        ds[0]
    with pytest.raises(ValueError, match="crop_size"):
        PairTransform(load_size=32, crop_size=64)
    with pytest.raises(ValueError, match="preprocess"):
        PairTransform(preprocess="resize")


# ---------------------------------------------------------------- channel conversions


def _p_image() -> Image.Image:
    img = Image.new("P", (32, 32), 1)
    img.putpalette([0, 0, 0, 30, 60, 90] + [0] * 762)
    img.info["transparency"] = 0  # palette transparency must not break or warn
    return img


u16 = np.array([[0, 128 * 257], [65535, 1000]], dtype=np.uint16)
CASES = {
    # mode: (image, expected RGB of pixel (0, 0))
    "L": (Image.new("L", (32, 32), 200), (200, 200, 200)),
    "LA": (Image.new("LA", (32, 32), (90, 0)), (90, 90, 90)),
    "RGBA": (Image.new("RGBA", (32, 32), (10, 20, 30, 0)), (10, 20, 30)),
    "P": (_p_image(), (30, 60, 90)),
    "CMYK": (Image.new("CMYK", (32, 32), (0, 255, 255, 0)), (255, 0, 0)),
    "I;16": (Image.fromarray(np.full((32, 32), 50000, np.uint16)), (195, 195, 195)),  # 50000 / 257 = 194.6
}


@pytest.mark.parametrize("mode", list(CASES))
@pytest.mark.parametrize("channels", [1, 3])
def test_channel_conversion_from_files(tmp_path: Path, mode: str, channels: int) -> None:
    img, rgb = CASES[mode]
    ext = "tiff" if mode == "CMYK" else "png"
    for side in "AB":
        (tmp_path / side / "train").mkdir(parents=True)
    img.save(tmp_path / "A" / "train" / f"x.{ext}")
    Image.new("RGB", (32, 32), (1, 2, 3)).save(tmp_path / "B" / "train" / "x.png")
    with Image.open(tmp_path / "A" / "train" / f"x.{ext}") as reopened:
        # the file really has the mode under test (Pillow < 10 opens a 16-bit PNG as "I")
        assert reopened.mode == mode or (mode, reopened.mode) == ("I;16", "I")
    tf = PairTransform(preprocess="none", size_divisor=32)  # no resampling: exact values
    item = PairedImageDataset(tmp_path, "train", "AtoB", channels, 3, tf)[0]
    assert item["input"].shape == (channels, 32, 32)
    assert item["target"].shape == (3, 32, 32)
    r, g, b = rgb
    expected = [r, g, b] if channels == 3 else [round((r * 299 + g * 587 + b * 114) / 1000)]
    assert to_uint8(item["input"])[0, 0].tolist() == pytest.approx(expected, abs=1)


def test_16bit_is_scaled_not_clipped() -> None:
    expected = [[0, 128], [255, 4]]  # 1000 / 257 = 3.9: a clipping conversion would give 255
    for arr in (u16, u16.astype(">u2"), u16.astype(np.int32)):
        img = Image.fromarray(arr)
        assert img.mode in ("I;16", "I;16B", "I")
        out = convert_channels(img, 1)
        assert out.mode == "L"
        assert np.asarray(out).tolist() == expected
        assert np.asarray(convert_channels(img, 3))[..., 1].tolist() == expected


# ---------------------------------------------------------------- data module


def test_datamodule_batches_and_val_falls_back_to_test(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_aligned(tmp_path, {"train": 4, "test": 3})
    dm = PairedDataModule(str(root), direction="BtoA", out_channels=1, batch_size=2, num_workers=0, **SMALL)
    assert (dm.in_channels, dm.out_channels) == (3, 1)
    with caplog.at_level(logging.INFO, logger="p2p.data"):
        dm.setup("fit")
    assert "no 'val' split" in caplog.text and "'test'" in caplog.text
    assert dm.val_set is not None and len(dm.val_set) == 3  # type: ignore[arg-type]
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == (2, 3, 32, 32) and batch["target"].shape == (2, 1, 32, 32)
    assert isinstance(batch["path"], list) and all(isinstance(p, str) for p in batch["path"])
    assert batch["input"][:, 2].min() > 0.9  # BtoA: input is the blue half
    val = next(iter(dm.val_dataloader()))
    assert val["path"][0].endswith("test/0.png")
    dm.setup("test")
    assert len(dm.test_dataloader().dataset) == 3  # type: ignore[arg-type]


def test_datamodule_prefers_val_split_and_caps_it(tmp_path: Path) -> None:
    root = make_aligned(tmp_path, {"train": 1, "val": 5, "test": 2})
    dm = PairedDataModule(str(root), num_workers=0, max_val_samples=2, **SMALL)
    dm.setup("fit")
    paths = [item["path"] for item in dm.val_set]  # type: ignore[union-attr]
    assert [Path(p).parent.name for p in paths] == ["val", "val"]
    assert [Path(p).name for p in paths] == ["0.png", "4.png"]  # evenly spaced over the split
    dm2 = PairedDataModule(str(root), num_workers=0, val_split="test", **SMALL)
    assert len(dm2.val_dataloader().dataset) == 2  # type: ignore[arg-type]  # set up on demand


def test_datamodule_bad_arguments_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="direction"):
        PairedDataModule(str(tmp_path), direction="AB")
    with pytest.raises(ValueError, match="root: required"):
        PairedDataModule()
    with pytest.raises(ValueError, match="unknown dataset name 'facade'; did you mean 'facades'\\? known: "):
        PairedDataModule(name="facade")
    with pytest.raises(ValueError, match="in_channels"):
        PairedDataModule(str(tmp_path), in_channels=2)
    with pytest.raises(ValueError, match="crop_size"):
        PairedDataModule(str(tmp_path), load_size=128, crop_size=256)
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="p2p-prepare-cityscapes"):
        PairedDataModule(name="cityscapes").setup("fit")


@pytest.mark.skipif(not FACADES.is_dir(), reason=f"facades not found at {FACADES} (set P2P_FACADES)")
def test_real_facades() -> None:
    dm = PairedDataModule(str(FACADES), name="facades", direction="BtoA", batch_size=4, num_workers=2)
    dm.setup("fit")
    dm.setup("test")
    assert dm.train_set is not None and dm.test_set is not None and dm.val_set is not None
    assert (len(dm.train_set), len(dm.test_set), len(dm.val_set)) == (400, 106, 106)  # type: ignore[arg-type]

    def saturation(t: torch.Tensor) -> float:
        x = (t + 1) / 2
        return float(((x.amax(0) - x.amin(0)) / x.amax(0).clamp_min(1e-3)).mean())

    # Facade label maps are flat, saturated palette colours; photos are greyish. Measured on all 506 pairs:
    # label saturation >= 0.78, photo saturation <= 0.48, so 0.6 separates them with margin.
    for i in range(0, 106, 15):
        item = dm.test_set[i]
        assert item["input"].shape == item["target"].shape == (3, 256, 256)
        assert saturation(item["input"]) > 0.6 > saturation(item["target"]), item["path"]
    batch = next(iter(dm.train_dataloader()))  # two worker processes
    assert batch["input"].shape == batch["target"].shape == (4, 3, 256, 256)
    assert float(batch["input"].min()) >= -1 and float(batch["input"].max()) <= 1
    assert len(batch["path"]) == 4 and all(Path(p).parent == FACADES / "train" for p in batch["path"])


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_varied() -> None:
    eval_tf = PairTransform(train=False)
    ds = SyntheticPairs(4, "val", seed=3, transform=eval_tf)
    again = SyntheticPairs(4, "val", seed=3, transform=eval_tf)
    assert torch.equal(ds[2]["input"], again[2]["input"]) and torch.equal(ds[2]["target"], again[2]["target"])
    assert not torch.equal(ds[1]["input"], ds[2]["input"])
    assert not torch.equal(ds[2]["target"], SyntheticPairs(4, "val", seed=4, transform=eval_tf)[2]["target"])
    assert not torch.equal(ds[2]["input"], SyntheticPairs(4, "train", seed=3, transform=eval_tf)[2]["input"])
    assert ds[0]["input"].shape == (3, 256, 256) and ds[0]["path"] == "synthetic/val/000000"
    with pytest.raises(IndexError):
        ds[4]


def test_synthetic_labels_determine_the_photo() -> None:
    """Per-class mean colours learnt on some pairs predict the photos of other pairs far better than one
    global mean: the label -> photo mapping is learnable."""

    def classes_and_photo(i: int) -> tuple[np.ndarray, np.ndarray]:
        label, photo = render_pair(i, "train", seed=0, size=128, num_classes=8)
        lab = np.asarray(label).astype(int)
        ids = np.full(lab.shape[:2], -1)
        for k, colour in enumerate(PALETTE[:8].astype(int)):
            ids[(lab == colour).all(-1)] = k
        assert (ids >= 0).all()  # label maps hold palette colours only
        return ids, np.asarray(photo).astype(float)

    fit = [classes_and_photo(i) for i in range(8)]
    means = np.stack([np.concatenate([p[c == k] for c, p in fit]).mean(0) for k in range(8)])
    global_mean = np.concatenate([p.reshape(-1, 3) for _, p in fit]).mean(0)
    err_class = err_global = 0.0
    for i in range(8, 14):
        ids, photo = classes_and_photo(i)
        err_class += np.abs(means[ids] - photo).mean()
        err_global += np.abs(global_mean - photo).mean()
    assert err_class < 0.5 * err_global


def test_synthetic_datamodule() -> None:
    dm = SyntheticDataModule(num_train=6, num_val=3, num_test=2, image_size=64, num_workers=0, batch_size=3,
                             in_channels=3, out_channels=1, **SMALL)  # fmt: skip
    assert dm.name == "synthetic"
    dm.setup("fit")
    dm.setup("test")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == (3, 3, 32, 32) and batch["target"].shape == (3, 1, 32, 32)
    assert len(dm.val_set) == 3 and len(dm.test_set) == 2  # type: ignore[arg-type]
    # same seed -> same shuffling (with workers, their crop/flip RNG is seeded from it too)
    dm2 = SyntheticDataModule(num_train=6, num_val=3, num_test=2, image_size=64, num_workers=0, batch_size=3,
                              in_channels=3, out_channels=1, **SMALL)  # fmt: skip
    dm2.setup("fit")
    assert next(iter(dm2.train_dataloader()))["path"] == batch["path"]


# ---------------------------------------------------------------- download


@pytest.fixture
def served_facades(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A tiny facades.tar.gz served over http://127.0.0.1 (no internet needed)."""
    src = make_aligned(tmp_path / "src" / "facades", {"train": 3, "test": 2})
    www = tmp_path / "www"
    www.mkdir()
    with tarfile.open(www / "facades.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="facades")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www / "facades.tar.gz"
    finally:
        server.shutdown()
        server.server_close()


def test_download_from_loopback_server(
    tmp_path: Path, served_facades: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, archive = served_facades
    monkeypatch.setenv("P2P_DATASETS_URL", url)
    cache = tmp_path / "cache"
    dm = PairedDataModule(name="facades", direction="BtoA", cache_dir=str(cache), num_workers=0, **SMALL)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 3 and len(dm.val_set) == 2  # type: ignore[arg-type]
    assert dm.train_set[0]["input"][2].mean() > 0.9  # type: ignore[index]  # BtoA: the blue half
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (cache / "facades.tar.gz.sha256").read_text().strip() == sha  # pinned on first download
    assert not (cache / "facades.tar.gz").exists()  # archive removed after extraction
    assert sorted(p.name for p in cache.iterdir()) == ["facades", "facades.tar.gz.sha256"]  # no leftovers

    # A later download must match the pinned hash; a mismatch is deleted and reported.
    shutil.rmtree(cache / "facades")
    (cache / "facades.tar.gz.sha256").write_text("0" * 64)
    with pytest.raises(DownloadError, match=r"'facades'.*sha256"):
        ensure_dataset("facades", cache)
    assert not (cache / "facades.tar.gz").exists() and not (cache / "facades").exists()
    # Same with a hash known to the registry.
    monkeypatch.setitem(DATASETS, "facades", replace(DATASETS["facades"], sha256="1" * 64))
    with pytest.raises(DownloadError, match="the registry"):
        ensure_dataset("facades", cache)
    monkeypatch.setitem(DATASETS, "facades", replace(DATASETS["facades"], sha256=sha))
    assert ensure_dataset("facades", cache) == cache / "facades"

    # Once extracted, the cache is used without any network access.
    monkeypatch.setenv("P2P_DATASETS_URL", "http://127.0.0.1:1")
    assert ensure_dataset("facades", cache) == cache / "facades"


def test_download_offline_error_tells_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("P2P_DATASETS_URL", url)
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))
    dm = PairedDataModule(name="maps", num_workers=0)
    with pytest.raises(DownloadError) as e:
        dm.prepare_data()
    msg = str(e.value)
    assert "'maps'" in msg and f"{url}/maps.tar.gz" in msg and "data.root=" in msg
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # no partial download left behind


def test_download_http_error(
    tmp_path: Path, served_facades: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P2P_DATASETS_URL", served_facades[0])
    with pytest.raises(DownloadError, match=r"dataset 'night2day': could not download .*404"):
        ensure_dataset("night2day", tmp_path)


# ---------------------------------------------------------------- cityscapes


def make_cityscapes(root: Path, frames: dict[str, list[str]]) -> tuple[Path, Path]:
    gt, left = root / "gtFine", root / "leftImg8bit"
    for split, names in frames.items():
        for name in names:
            city = name.split("_")[0]
            for top, suffix, colour in (
                (left, "_leftImg8bit.png", (250, 0, 0)),
                (gt, "_gtFine_color.png", (0, 0, 250)),
            ):
                (top / split / city).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (64, 32), colour).save(top / split / city / f"{name}{suffix}")
            Image.new("L", (64, 32)).save(gt / split / city / f"{name}_gtFine_labelIds.png")  # ignored
    return gt, left


def test_prepare_cityscapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, left = make_cityscapes(
        tmp_path, {"train": ["bonn_000001_000019", "aachen_000000_000019", "aachen_000001_000019"],
                   "val": ["lindau_000000_000019"]}
    )  # fmt: skip
    out = tmp_path / "out"
    argv = ["--gtFine", str(gt), "--leftImg8bit", str(left), "--output", str(out), "--size", "16"]
    assert exit_code(cityscapes_main, argv) == 0
    assert sorted(p.name for p in (out / "train").iterdir()) == ["1.jpg", "2.jpg", "3.jpg"]
    assert [p.name for p in (out / "val").iterdir()] == ["1.jpg"]
    with Image.open(out / "train" / "1.jpg") as ab:
        assert ab.size == (32, 16)
    ds = PairedImageDataset(out, "train", "AtoB", transform=PairTransform(preprocess="none", size_divisor=16))
    item = ds[0]
    assert item["input"][0].mean() > 0.9 and item["target"][2].mean() > 0.9  # A = photo (red), B = labels

    # Output exists now: refuse to mix old and new pairs.
    assert (
        exit_code(cityscapes_main, ["--gtFine", str(gt), "--leftImg8bit", str(left), "--output", str(out)])
        == 2
    )
    assert "is not empty" in capsys.readouterr().err


def test_prepare_cityscapes_missing_counterpart_is_named(tmp_path: Path) -> None:
    gt, left = make_cityscapes(tmp_path, {"train": ["ulm_000000_000019", "ulm_000001_000019"], "val": []})
    (gt / "train" / "ulm" / "ulm_000001_000019_gtFine_color.png").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"photos without a label map: \[ulm_000001_000019_leftImg8bit"
    ):
        prepare_cityscapes(gt, left, tmp_path / "out", splits=["train"])
    assert not (tmp_path / "out").exists()  # checked before writing anything


# ---------------------------------------------------------------- configs


# checkpoint.yaml is p2p-eval's "the checkpoint's own data settings" (tests/test_eval.py), not a data config
@pytest.mark.parametrize("config", sorted(p for p in (REPO / "conf" / "data").glob("*.yaml") if p.stem != "checkpoint"),
                         ids=lambda p: p.stem)  # fmt: skip
def test_data_configs_set_only_what_differs_from_the_code(config: Path) -> None:
    """Defaults live in the data modules' fields (the schema is generated from them); a data config names its
    schema and sets only what it changes, so no default is written twice."""
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.to_container(omegaconf.OmegaConf.load(config))
    schema = cfg.pop("defaults")[0]
    cls = {
        "/schema/data/paired@_here_": PairedDataModule,
        "/schema/data/synthetic@_here_": SyntheticDataModule,
        "/schema/data/photos@_here_": PhotoDataModule,
    }[schema]
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    assert set(cfg) <= set(defaults), set(cfg) - set(defaults)
    said = ("direction", "task")  # named even where it is the default: what the config is about
    assert not {k for k, v in cfg.items() if v == defaults[k] and k not in said}, "repeats a default"
    if cls is PhotoDataModule:
        assert cfg["task"] == config.stem
    if cls is PairedDataModule and config.stem != "folder":
        assert cfg["name"] == config.stem and cfg["direction"] == DATASETS[config.stem].direction


def test_synthetic_config_instantiates(compose_train, tmp_path: Path) -> None:
    cfg = compose_train(["data=synthetic", "data.num_train=2", "data.num_val=1", "data.num_test=1"], tmp_path)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    assert isinstance(dm, SyntheticDataModule) and dm.num_workers == 2  # the default, from the code
    assert dm.val_dataloader().dataset[0]["input"].shape == (3, 256, 256)


def test_the_test_split_of_a_registered_dataset_comes_from_its_registry_entry(tmp_path: Path) -> None:
    assert PairedDataModule(name="maps").test_split == "val"  # the maps archive has no test/ folder
    assert PairedDataModule(name="facades").test_split == "test"
    assert PairedDataModule(str(tmp_path)).test_split == "test"


def test_cached_datasets_end_plain_iteration() -> None:
    """`for item in dataset` stops at the end, also through the RAM cache (it relies on IndexError)."""
    import itertools

    from p2p.data import SyntheticPairs
    from p2p.data.cache import CachedPairs

    ds = CachedPairs(SyntheticPairs(num_samples=3, image_size=32))
    assert len(list(itertools.islice(ds, 10))) == 3  # islice: a missing IndexError fails, never hangs
