"""p2p-eval generated=DIR: scoring a folder of images made elsewhere against a split, matched by file name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import compose_train
from p2p.config.build import build_datamodule
from p2p.errors import DataError, InputNotFoundError
from p2p.runs.eval import evaluate

N_TEST = 3
PIXEL = ["metrics=[l1,psnr,ssim]"]


def tiny_facades(root: Path, n_train: int = 2, n_test: int = N_TEST) -> Path:
    """A facades-shaped folder: {train,test}/NAME.jpg, A (photo) | B (labels) side by side, 64x32."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split).mkdir(parents=True)
        for i in range(1, n + 1):
            Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(root / split / f"{i}.jpg")
    return root


def cfg_for(data: Path, generated: Path, out: Path, *overrides: str):
    return compose_train(
        ["debug=smoke", "data=facades", f"data.root={data}", f"generated={generated}", "data.max_val_samples=null",
         *PIXEL, *overrides], out, config_name="eval",
    )  # fmt: skip


def write_targets(data: Path, folder: Path, out: Path) -> None:
    """The split's own targets (at the evaluation size) as PNGs named like the test files: a perfect score."""
    folder.mkdir()
    dm = build_datamodule(cfg_for(data, folder, out))
    dm.setup("test")
    for item in dm.test_set:
        u8 = ((item["target"] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(u8).save(folder / f"{Path(item['path']).stem}.png")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tiny_facades(tmp_path / "facades")


def test_the_targets_themselves_score_perfectly_and_a_change_shows(data: Path, tmp_path: Path) -> None:
    gen = tmp_path / "gen"
    write_targets(data, gen, tmp_path / "w")
    out = tmp_path / "run"
    result = evaluate(cfg_for(data, gen, out))
    assert result["num_images"] == N_TEST and result["generated"] == str(gen)
    assert result["resolution"] == [128, 128]  # debug=smoke evaluates at crop_size 128
    # PNG is lossless and the targets are uint8 to begin with: exactly zero error
    assert result["l1"] == 0.0 and result["psnr"] is None and result["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert json.loads((out / "metrics.json").read_text()) == result
    assert (out / "images" / "eval_test.png").is_file()

    img = np.asarray(Image.open(gen / "2.png")).astype(np.float64)
    changed_img = img.copy()
    changed_img[:64] = 255 - img[:64]  # half of one image inverted
    Image.fromarray(changed_img.astype(np.uint8)).save(gen / "2.png")
    changed = evaluate(cfg_for(data, gen, tmp_path / "run2"))
    # L1 is the mean over images of each one's mean error in [-1, 1]: that image's error over three
    want = np.abs(changed_img - img).mean() / 127.5 / N_TEST
    assert changed["l1"] == pytest.approx(want, rel=1e-5) and changed["ssim"] < 0.99


def test_names_missing_extra_and_mis_sized_files(data: Path, tmp_path: Path) -> None:
    gen = tmp_path / "gen"
    write_targets(data, gen, tmp_path / "w")
    (gen / "3.png").unlink()
    Image.new("RGB", (128, 128)).save(gen / "extra_7.png")
    with pytest.raises(DataError, match=r"missing 1: 3\b.*not in the split 1: extra_7\.png"):
        evaluate(cfg_for(data, gen, tmp_path / "a"))

    (gen / "extra_7.png").unlink()
    Image.new("RGB", (128, 128)).save(gen / "3.png")
    Image.new("RGB", (100, 64)).save(gen / "2.png")
    with pytest.raises(DataError, match=r"1 image\(s\) are not the 128x128 .*2\.png is 100x64"):
        evaluate(cfg_for(data, gen, tmp_path / "b"))

    Image.new("RGB", (128, 128)).save(gen / "2.jpg")  # two candidates for test image 2
    with pytest.raises(DataError, match=r"two images for one test image: 2\.(jpg|png) and 2\.(jpg|png)"):
        evaluate(cfg_for(data, gen, tmp_path / "c"))

    with pytest.raises(InputNotFoundError, match="no such folder"):
        evaluate(cfg_for(data, tmp_path / "nowhere", tmp_path / "d"))
