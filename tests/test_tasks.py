"""The photo tasks (colorization, inpainting, edges -> photo) on real photos: the facades photo halves,
copied into a temporary folder (never into the repository)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import p2p
from cli_helpers import exit_code
from p2p.cli.translate import main as translate_main
from p2p.config.build import build_module
from p2p.data import PhotoDataModule, PhotoDataset, PhotoTask
from p2p.data.cache import CachedPairs
from p2p.data.edges import EdgeSettings, canny, edge_map, gaussian_blur
from p2p.data.photos import in_val, list_photos
from p2p.data.transforms import PairTransform
from p2p.errors import ConfigError, DataError
from p2p.io.color import lab_to_rgb, rgb_to_lab
from p2p.io.tasks import hole_box, lab_decode, lab_encode
from p2p.runs.eval import evaluate_checkpoint
from p2p.runs.train import train
from p2p.training.objective import l1_loss

TASKS = ("colorization", "inpainting", "edges")


def photo_halves(facades_root: Path, dest: Path, counts: dict[str, int]) -> Path:
    """``dest/{split}/NAME.png``: the photo (left, A) halves of the first facades files of each split."""
    for split, n in counts.items():
        (dest / split).mkdir(parents=True)
        src = "test" if split != "train" else "train"
        for f in sorted((facades_root / src).glob("*.jpg"))[:n]:
            ab = Image.open(f)
            ab.crop((0, 0, ab.width // 2, ab.height)).save(dest / split / f"{f.stem}.png")
    return dest


@pytest.fixture(scope="module")
def photos(facades_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return photo_halves(facades_root, tmp_path_factory.mktemp("photos"), {"train": 8, "test": 4})


def real_photos(facades_root: Path, n: int) -> torch.Tensor:
    """[n, 3, 256, 256] uint8 photos of the facades training split."""
    files = sorted((facades_root / "train").glob("*.jpg"))[:n]
    arrs = [np.asarray(Image.open(f).convert("RGB").crop((0, 0, 256, 256))) for f in files]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)


# --- conversions -------------------------------------------------------------------------------------------
def test_rgb_lab_rgb_round_trip_on_real_photos(facades_root: Path) -> None:
    rgb = real_photos(facades_root, 20).double() / 255
    back = lab_to_rgb(rgb_to_lab(rgb))
    assert (back - rgb).abs().max() * 255 < 1  # measured: 2e-13 (float64, the exact inverse matrix)
    # the network's float32 encoding (L/50 - 1, ab/110) round-trips too: what the grids and metrics show
    x, y = lab_encode(rgb.float() * 2 - 1)
    assert x.shape[1] == 1 and y.shape[1] == 2 and x.abs().max() <= 1 and y.abs().max() <= 1
    shown = (lab_decode(x, y).double() + 1) / 2
    assert (shown - rgb).abs().max() * 255 < 1  # measured: 2e-5 of a level (float32 rounding)


def test_lab_to_rgb_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    lab = torch.stack(
        [
            torch.linspace(0, 100, 64).repeat(64, 1),
            torch.linspace(-80, 80, 64)[:, None].expand(64, 64),
            torch.linspace(60, -60, 64).repeat(64, 1),
        ]
    )[None].double()
    ours = lab_to_rgb(lab)[0].permute(1, 2, 0).numpy()
    theirs = cv2.cvtColor(lab[0].permute(1, 2, 0).numpy().astype(np.float32), cv2.COLOR_Lab2RGB)
    assert np.abs(ours - np.clip(theirs, 0, 1)).max() < 1e-3  # measured: 8e-5 (OpenCV computes in float32)


def test_canny_matches_opencv_on_real_photos(facades_root: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    for img in real_photos(facades_root, 6):
        gray = torch.from_numpy(
            np.asarray(Image.fromarray(img.permute(1, 2, 0).numpy()).convert("L"), np.float64)
        )
        smooth = gaussian_blur(gray, 2.0).round()  # OpenCV's Canny takes 8-bit images
        ours = canny(smooth, 40, 100).numpy()
        theirs = cv2.Canny(smooth.numpy().astype(np.uint8), 40, 100, L2gradient=True) > 0
        assert ours.sum() > 1000  # facades have plenty of edges
        # measured: identical on 40 photos; a float tan(22.5 deg) against OpenCV's fixed point could flip a
        # pixel that lies exactly on a direction boundary
        assert (ours != theirs).mean() < 1e-3


# --- data ----------------------------------------------------------------------------------------------------
def test_photo_folders_split_folders_and_one_folder(photos: Path, tmp_path: Path) -> None:
    pairs, problems = list_photos(photos, "train")
    assert not problems and len(pairs) == 8 and all(p.a == p.b for p in pairs)  # each photo pairs with itself
    assert list_photos(photos, "val")[1][0].endswith("split 'val' not found (splits present: train, test)")
    # one folder: a split by a hash of the name, stable and disjoint
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted((photos / "train").iterdir()) + sorted((photos / "test").iterdir()):
        (flat / f"{p.parent.name}_{p.name}").write_bytes(p.read_bytes())  # the splits share names
    train, val = (list_photos(flat, s, val_fraction=0.3)[0] for s in ("train", "val"))
    assert len(train) + len(val) == 12 and not {p.a for p in train} & {p.a for p in val} and val
    assert all(in_val(p.a.name, 0.3) for p in val) and list_photos(flat, "test", 0.3)[0] == val
    dm = PhotoDataModule(task="colorization", root=str(flat), in_channels=1, out_channels=2, val_fraction=0.3,
                         num_workers=0, load_size=64, crop_size=64)  # fmt: skip
    dm.setup("fit")
    assert len(dm.train_set) == len(train) and len(dm.val_set) == len(val)  # type: ignore[arg-type]


def test_every_photo_is_checked_before_training(photos: Path, tmp_path: Path) -> None:
    root = tmp_path / "bad"
    (root / "train").mkdir(parents=True)
    for p in sorted((photos / "train").iterdir())[:3]:
        (root / "train" / p.name).write_bytes(p.read_bytes())
    (root / "train" / "broken.png").write_bytes(b"not an image")
    dm = PhotoDataModule(task="edges", root=str(root), val_split="train", num_workers=0)
    with pytest.raises(DataError, match=r"broken\.png: cannot read image"):
        dm.setup("fit")
    skip = PhotoDataModule(task="edges", root=str(root), val_split="train", num_workers=0, on_bad_file="skip")
    skip.setup("fit")
    assert len(skip.train_set) == 3  # type: ignore[arg-type]


def test_channels_are_the_tasks(photos: Path) -> None:
    with pytest.raises(ConfigError, match=r"in_channels: colorization takes 1 channels, got 3"):
        PhotoDataModule(task="colorization", root=str(photos))
    with pytest.raises(ConfigError, match=r"out_channels: inpainting takes 3 channels, got 2"):
        PhotoDataModule(task="inpainting", root=str(photos), in_channels=4, out_channels=2)
    with pytest.raises(ConfigError, match=r"in_channels: images are converted to 1 or 3 channels, got 4"):
        p2p.data.PairedDataModule(root=str(photos), in_channels=4)
    with pytest.raises(ConfigError, match=r"direction: .* only AtoB"):
        PhotoDataModule(task="edges", root=str(photos), direction="BtoA")


def _dataset(photos: Path, task: str, train: bool, **kw) -> PhotoDataset:
    t = PairTransform(load_size=143, crop_size=128, train=train)
    return PhotoDataset(photos, "train", PhotoTask(task, **kw), transform=t)


def test_colorization_items_are_L_and_ab_of_the_augmented_photo(photos: Path) -> None:
    ds = _dataset(photos, "colorization", train=True)
    torch.manual_seed(0)
    item = ds[0]
    torch.manual_seed(0)
    photo, _, _ = ds.load_pair(0)
    cropped, _ = ds.transform(photo, photo)  # the same crop and flip draws
    rgb = torch.from_numpy(np.asarray(cropped)).permute(2, 0, 1).double() / 255
    assert item["input"].shape == (1, 128, 128) and item["target"].shape == (2, 128, 128)
    back = (lab_decode(item["input"][None], item["target"][None])[0].double() + 1) / 2
    assert (back - rgb).abs().max() * 255 < 1  # the item is exactly the cropped photo, as L and ab


def test_holes_are_deterministic_and_the_mask_travels_as_a_channel(photos: Path) -> None:
    for scheme in ("center", "random"):
        ds = _dataset(photos, "inpainting", train=True, mask=scheme, seed=3)
        items = []
        for epoch_seed in (0, 1):  # two epochs: other crops and flips, the same hole
            torch.manual_seed(epoch_seed)
            items.append(ds[2])
        masks = [it["input"][3] > 0 for it in items]
        assert torch.equal(masks[0], masks[1])
        top, left, h, w = hole_box(128, 128, scheme, ds.pairs[2].a.name, 3)
        assert masks[0].sum() == h * w and masks[0][top : top + h, left : left + w].all()
        it = items[0]
        assert it["input"].shape == (4, 128, 128) and it["target"].shape == (3, 128, 128)
        assert (it["input"][:3, masks[0]] == 0).all()  # the hole is grey (0 in [-1, 1])
        assert torch.equal(it["input"][:3, ~masks[0]], it["target"][:, ~masks[0]])  # the rest is the photo
    assert hole_box(256, 256, "center") == (64, 64, 128, 128)  # Context Encoders: the central quarter
    boxes = {hole_box(128, 128, "random", p.a.name, 3) for p in ds.pairs}
    assert len(boxes) > 1 and all(32 <= b[2] <= 64 and 32 <= b[3] <= 64 for b in boxes)


def test_edges_are_computed_once_and_cached(photos: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    ds = PhotoDataset(
        photos, "train", PhotoTask("edges"), transform=PairTransform(train=False), cache_dir=str(cache)
    )
    edges, photo, _ = ds.load_pair(1)
    assert edges.size == photo.size == (256, 256) and set(np.unique(np.asarray(edges))) == {0, 255}
    assert np.array_equal(np.asarray(edges), np.asarray(edge_map(photo, EdgeSettings())))
    assert len(list((cache / "edges").glob("*.png"))) == 1

    def fail(*args):
        raise AssertionError("edges computed again")

    monkeypatch.setattr("p2p.data.photos.edge_map", fail)
    again, _, _ = PhotoDataset(photos, "train", PhotoTask("edges"), transform=PairTransform(train=False),
                               cache_dir=str(cache)).load_pair(1)  # fmt: skip
    assert np.array_equal(np.asarray(again), np.asarray(edges))  # from the cache: the same every epoch
    monkeypatch.undo()
    # at the training resolution: the photo is resized first (286x286), then its edges drawn
    train_edges, train_photo, _ = PhotoDataset(
        photos, "train", PhotoTask("edges"), transform=PairTransform(), cache_dir=str(tmp_path / "other")
    ).load_pair(1)
    assert train_edges.size == train_photo.size == (286, 286)


@pytest.mark.parametrize("task", ["colorization", "inpainting"])
def test_device_augmentation_gives_the_workers_items(photos: Path, task: str) -> None:
    """With crop/flip on the accelerator the task's encoding happens after it, in on_after_batch_transfer."""
    ch = {"colorization": (1, 2), "inpainting": (4, 3)}[task]
    kw = dict(task=task, root=str(photos), in_channels=ch[0], out_channels=ch[1], load_size=143, crop_size=128,
              batch_size=4, num_workers=0, mask="random")  # fmt: skip
    worker, device = (
        PhotoDataModule(cache="none", **kw),
        PhotoDataModule(cache="ram", device_augment=True, **kw),
    )
    for dm in (worker, device):
        dm.setup("fit")
    assert isinstance(device.train_set, CachedPairs)
    for want, raw in zip(worker.train_dataloader(), device.train_dataloader(), strict=True):
        got = device.on_after_batch_transfer(raw, 0)
        assert got["path"] == want["path"]
        for key in ("input", "target"):
            assert got[key].shape == want[key].shape
            # the same float ops on a batch instead of one item at a time: identical in an earlier run,
            # 5e-16 apart here (colorization's ab, at values near 0); 1e-6 is far below a pixel's 1/127
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6)


def test_l1_restricted_to_the_hole() -> None:
    fake, target = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    target[..., :2, :] = 0  # wrong only in the top half
    hole = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    hole[..., 2:, :] = True
    assert l1_loss(fake, target) == 0.5 and l1_loss(fake, target, hole) == 1.0
    assert l1_loss(fake, target, ~hole) == 0.0


# --- end to end ---------------------------------------------------------------------------------------------
def _train(compose_train, photos: Path, task: str, out: Path, *extra: str) -> dict:
    cfg = compose_train([f"data={task}", f"data.root={photos}", "debug=smoke", "logger=none", *extra], out)
    return train(cfg)


@pytest.fixture(scope="module")
def trained(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    from conftest import compose_train

    runs = {}
    for task in TASKS:
        extra = ["loss.l1_region=hole", "data.mask=random"] if task == "inpainting" else []
        runs[task] = _train(compose_train, photos, task, tmp_path_factory.mktemp(task), *extra)
    return runs


def _panels(grid: Path) -> list[np.ndarray]:
    """The input | output | target panels of a validation grid's first row (torchvision pads by 2)."""
    arr = np.asarray(Image.open(grid)).astype(int)
    side = (arr.shape[1] - 2) // 3 - 2
    return [arr[2 : 2 + side, 2 + k * (side + 2) : 2 + k * (side + 2) + side] for k in range(3)]


def _colourful(panel: np.ndarray) -> float:
    """Mean spread between the R, G and B of each pixel: 0 for a grey image."""
    return float((panel.max(axis=2) - panel.min(axis=2)).mean())


@pytest.mark.slow
def test_each_task_trains_and_its_validation_grid_is_rgb(trained: dict[str, dict]) -> None:
    for task, run in trained.items():
        grid = Path(run["run_dir"]) / "images" / "val_epoch000.png"
        assert Image.open(grid).mode == "RGB", task
        inp, _, target = _panels(grid)
        assert _colourful(target) > 5, task  # the target is the colour photo in every task
        if task == "colorization":
            assert _colourful(inp) < 0.5  # its input, the L channel, shown grey (measured: 0)
        ckpt = torch.load(run["last_ckpt"], map_location="cpu", weights_only=True)
        assert ckpt["p2p"]["generator"]["photo_task"] == task  # the task travels with the generator


def _image(w: int, h: int, photos: Path) -> Image.Image:
    return Image.open(sorted((photos / "test").iterdir())[0]).convert("RGB").resize((w, h))


@pytest.mark.slow
def test_translate_colorizes_any_size_grey_or_colour(
    trained: dict[str, dict], photos: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _image(333, 211, photos).convert("L").save(src / "grey.png")
    _image(333, 211, photos).save(src / "colour.jpg")
    ckpt = trained["colorization"]["last_ckpt"]
    assert exit_code(translate_main, ["--checkpoint", ckpt, "--input", str(src), "--output", str(tmp_path / "out"),
                                      "--no-progress"]) == 0  # fmt: skip
    for name in ("grey.png", "colour.png"):
        out = Image.open(tmp_path / "out" / name)
        assert (out.size, out.mode) == ((333, 211), "RGB")
    # the output keeps the input's lightness: only a and b came from the network
    grey = Image.open(src / "grey.png").convert("RGB")
    out = Image.open(tmp_path / "out" / "grey.png")
    L_in, L_out = (rgb_to_lab(torch.from_numpy(np.asarray(i)).permute(2, 0, 1)[None].double() / 255)[0, 0]
                   for i in (grey, out))  # fmt: skip
    assert (L_in - L_out).abs().max() < 1  # measured: 0.23 at most (uint8 rounding of the output)
    # a save_pretrained folder says the task too
    G = p2p.load_generator(ckpt)
    G.save_pretrained(tmp_path / "hub")
    assert json.loads((tmp_path / "hub" / "config.json").read_text())["photo_task"] == "colorization"
    tr = p2p.Translator(tmp_path / "hub", device="cpu")
    assert tr.photo_task == "colorization" and tr(grey).size == (333, 211) and tr(grey).mode == "RGB"


@pytest.mark.slow
def test_translate_fills_the_hole_of_a_users_mask(
    trained: dict[str, dict], photos: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    image = _image(333, 211, photos)
    image.save(src / "photo.png")
    mask = np.zeros((211, 333), np.uint8)
    mask[50:120, 100:200] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    ckpt = trained["inpainting"]["last_ckpt"]
    args = ["--checkpoint", ckpt, "--input", str(src), "--output", str(tmp_path / "out"), "--no-progress"]
    assert exit_code(translate_main, [*args, "--mask", str(tmp_path / "mask.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "photo.png")).astype(int)
    assert out.shape == (211, 333, 3)
    hole = mask > 0
    assert np.array_equal(out[~hole], np.asarray(image).astype(int)[~hole])  # outside the hole: the photo
    # inside: the generator's output for the photo with that hole
    tr = p2p.Translator(ckpt, device="cpu")
    x, _ = tr.encode(image, Image.fromarray(mask))
    g = ((tr.translate_tensor(x)[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(int)
    assert np.abs(out[hole] - g[hole]).max() <= 1
    assert exit_code(translate_main, [*args, "--mask", str(tmp_path / "nope.png")]) == 2
    Image.fromarray(mask[:100]).save(tmp_path / "small.png")
    assert exit_code(translate_main, [*args, "--mask", str(tmp_path / "small.png")]) == 2  # wrong size
    col = trained["colorization"]["last_ckpt"]
    assert (
        exit_code(translate_main, ["--checkpoint", col, *args[2:], "--mask", str(tmp_path / "mask.png")]) == 2
    )


@pytest.mark.slow
def test_translate_edges_to_photo_keeps_the_size(
    trained: dict[str, dict], photos: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    edge_map(_image(333, 211, photos), EdgeSettings()).save(src / "edges.png")
    ckpt = trained["edges"]["last_ckpt"]
    assert exit_code(translate_main, ["--checkpoint", ckpt, "--input", str(src), "--output", str(tmp_path / "out"),
                                      "--no-progress"]) == 0  # fmt: skip
    out = Image.open(tmp_path / "out" / "edges.png")
    assert (out.size, out.mode) == ((333, 211), "RGB")


@pytest.mark.slow
def test_eval_scores_photo_tasks_on_images(
    compose_train, trained: dict[str, dict], photos: Path, tmp_path: Path
) -> None:
    for task in ("colorization", "inpainting"):
        cfg = compose_train([f"data={task}", f"data.root={photos}", "debug=smoke", "metrics=[l1,psnr,ssim,color]"],
                            tmp_path / task, config_name="eval")  # fmt: skip
        result = evaluate_checkpoint(trained[task]["last_ckpt"], cfg, tmp_path / task)
        assert result["num_images"] == 4 and 5 < result["psnr"] < 60
        assert all(0 < result[f"color_hist_{c}"] <= 1 for c in "Lab")
        samples = tmp_path / task / "samples"
        assert Image.open(samples / "000_output.png").mode == "RGB"
        if task == "inpainting":
            # inside the hole alone the error is larger than over the whole (composited) image
            assert result["l1_hole"] > result["l1"] and result["psnr_hole"] < result["psnr"]
    # the same channels, another task: an edges generator is no generator of ordinary pairs
    cfg = compose_train(["data=folder", f"data.root={photos}", "debug=smoke", "metrics=[l1]"], tmp_path / "x",
                        config_name="eval")  # fmt: skip
    with pytest.raises(ValueError, match=r"photo_task=edges, but data\.task=None"):
        evaluate_checkpoint(trained["edges"]["last_ckpt"], cfg, tmp_path / "x")


def test_config_checks_the_task(compose_train, photos: Path, tmp_path: Path) -> None:
    from p2p.config import check_config

    bad = [
        (["data=colorization", "data.in_channels=3"], "data.in_channels: colorization takes 1 channels"),
        (
            ["data=facades", f"data.root={photos}", "loss.l1_region=hole"],
            "l1_region: hole needs data=inpainting",
        ),
    ]
    for overrides, message in bad:
        cfg = compose_train([f"data.root={photos}", *overrides, "debug=smoke"], tmp_path)
        with pytest.raises(ConfigError, match=message):
            check_config(cfg)


@pytest.mark.parametrize(("data", "task", "channels"), [("colorization", "colorization", (1, 2)), ("inpainting", "inpainting", (4, 3)), ("facades", None, (3, 3))])  # fmt: skip
def test_the_module_takes_the_datas_channels_and_photo_task(
    compose_train, photos: Path, tmp_path: Path, data: str, task: str | None, channels: tuple[int, int]
) -> None:
    """p2p.config.build passes them: no model key repeats them, so none can disagree with the data."""
    cfg = compose_train([f"data={data}", f"data.root={photos}", "debug=smoke"], tmp_path)
    model = build_module(cfg)
    assert (model.hparams["in_channels"], model.hparams["out_channels"], model.photo_task) == (
        *channels,
        task,
    )
    assert model.G(torch.zeros(1, channels[0], 128, 128)).shape[1] == channels[1]
