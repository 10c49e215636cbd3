"""Bad data: every problem found before training and reported together with its path; skip trains on the rest;
a malformed file that slips through still names itself (also from a DataLoader worker); folders stay untouched."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader

from p2p.data import PairedDataModule, PairedImageDataset, PairTransform
from p2p.data.dataset import PairFiles
from p2p.data.validate import check_splits
from p2p.errors import DataError, short_message
from p2p.io.images import inspect_image

BIN = Path(sys.executable).parent
SMALL = {"load_size": 72, "crop_size": 64, "size_divisor": 64}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under root with its size and mtime: what 'never written to' means."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
    }


def jpeg_bytes(w: int = 128, h: int = 64, seed: int = 0) -> bytes:
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def bad_aligned(tmp_path: Path) -> Path:
    """An A|B dataset with two good training pairs and one of each problem the check must find."""
    root = tmp_path / "aligned"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for i in range(2):
            (root / split / f"good{i}.jpg").write_bytes(jpeg_bytes(seed=i))
    full = jpeg_bytes(seed=9)
    (root / "train" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "train" / "empty.jpg").write_bytes(b"")
    (root / "train" / "text.png").write_bytes(b"this is not an image")
    Image.new("RGB", (129, 64)).save(root / "train" / "odd.png")
    Image.new("RGB", (64, 32)).save(root / "train" / "small.png")  # 32x32 halves: smaller than crop_size=64
    return root


def test_check_reports_every_problem_with_its_path(bad_aligned: Path) -> None:
    crop = PairTransform(preprocess="crop", crop_size=64)
    with pytest.raises(DataError) as info:
        check_splits(bad_aligned, {"train": crop, "test": crop})
    problems = info.value.problems
    by_name = {Path(p.split(":")[0]).name: p for p in problems}
    assert set(by_name) == {"truncated.jpg", "empty.jpg", "text.png", "odd.png", "small.png"}, problems
    assert "truncated" in by_name["truncated.jpg"] and "empty file" in by_name["empty.jpg"]
    assert "cannot read image" in by_name["text.png"] and "odd" in by_name["odd.png"]
    assert "smaller than data.crop_size=64" in by_name["small.png"]
    assert all(str(bad_aligned) in p for p in problems)  # full paths
    assert "data.on_bad_file=skip" in str(info.value)
    # resize_and_crop never makes an image smaller than the crop: small.png is fine there
    with pytest.raises(DataError) as info:
        check_splits(bad_aligned, {"train": PairTransform(load_size=72, crop_size=64)})
    assert not any("small.png" in p for p in info.value.problems) and len(info.value.problems) == 4


def test_skip_keeps_the_good_pairs_and_warns(bad_aligned: Path, caplog: pytest.LogCaptureFixture) -> None:
    crop = PairTransform(preprocess="crop", crop_size=64)
    with caplog.at_level(logging.WARNING, logger="p2p.data.validate"):
        good = check_splits(bad_aligned, {"train": crop, "test": crop}, on_bad_file="skip")
    assert [p.a.name for p in good["train"]] == ["good0.jpg", "good1.jpg"] and len(good["test"]) == 2
    assert "leaving out 5 bad file(s)" in caplog.text and "truncated.jpg" in caplog.text
    for name in ("good0.jpg", "good1.jpg"):  # a split left empty by skipping is still an error
        (bad_aligned / "train" / name).unlink()
    with pytest.raises(DataError, match=r"would leave split.* train empty"):
        check_splits(bad_aligned, {"train": crop}, on_bad_file="skip")


def test_separate_layout_mismatches_sizes_and_empty_splits(tmp_path: Path) -> None:
    for side, names in (("A", ["1", "2", "3"]), ("B", ["1", "2", "4"])):
        (tmp_path / side / "train").mkdir(parents=True)
        (tmp_path / side / "val").mkdir(parents=True)  # empty on both sides
        for n in names:
            Image.new("RGB", (64, 64) if (side, n) != ("B", "2") else (64, 48)).save(
                tmp_path / side / "train" / f"{n}.png"
            )
    t = PairTransform(load_size=72, crop_size=64)
    with pytest.raises(DataError) as info:
        check_splits(tmp_path, {"train": t, "val": t, "test": t})
    text = "\n".join(info.value.problems)
    assert "A/train/3.png: no image named 3.* in" in text and "B/train/4.png: no image named 4.* in" in text
    assert "A/train/2.png: 64x64 but its pair" in text and "B/train/2.png is 64x48" in text
    assert "A/val: empty split" in text and "split 'test' not found" in text
    good = check_splits(tmp_path, {"train": t}, on_bad_file="skip")["train"]
    assert [(p.a.name, p.b.name if p.b else None) for p in good] == [("1.png", "1.png")]


def test_broken_symlinks_are_named_not_dropped(bad_aligned: Path, tmp_path: Path) -> None:
    """A link whose target was moved away is a missing image, not an absent one (issue 11, item 9)."""
    gone = tmp_path / "moved_away.jpg"
    (bad_aligned / "test" / "link.jpg").symlink_to(gone)
    t = PairTransform(load_size=72, crop_size=64)
    with pytest.raises(DataError) as info:
        check_splits(bad_aligned, {"test": t})
    assert info.value.problems == [
        f"{bad_aligned / 'test' / 'link.jpg'}: broken symbolic link (its target {gone} does not exist)"
    ]
    good = check_splits(bad_aligned, {"test": t}, on_bad_file="skip")[
        "test"
    ]  # skip: the rest, the link listed
    assert [p.a.name for p in good] == ["good0.jpg", "good1.jpg"]
    with pytest.raises(DataError, match=r"link\.jpg: broken symbolic link"):
        PairedImageDataset(bad_aligned, "test")  # the listing itself, without the file check
    (bad_aligned / "test" / "ok.jpg").symlink_to(bad_aligned / "test" / "good0.jpg")  # a live link is a file
    (bad_aligned / "test" / "link.jpg").unlink()
    assert len(PairedImageDataset(bad_aligned, "test")) == 3


def test_datamodule_checks_each_file_once_and_never_writes(
    bad_aligned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import p2p.io.images as images

    before = snapshot(bad_aligned)
    calls: list[Path] = []

    def counting(path: Path) -> tuple[int, int] | str:
        calls.append(path)
        return inspect_image(path)

    monkeypatch.setattr(images, "inspect_image", counting)
    with pytest.raises(DataError):
        PairedDataModule(str(bad_aligned), num_workers=0, **SMALL).setup("fit")
    dm = PairedDataModule(str(bad_aligned), num_workers=0, on_bad_file="skip", batch_size=2, **SMALL)
    calls.clear()
    dm.setup("fit")  # train + test (no val split: validation falls back to test)
    dm.setup("test")  # test again: already checked
    assert len(calls) == len(set(calls)) == 9
    assert len(dm.train_set) == 3  # type: ignore[arg-type]  # small.png is fine with resize_and_crop
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == (2, 3, 64, 64)
    assert snapshot(bad_aligned) == before


def test_worker_error_names_the_file(tmp_path: Path) -> None:
    """A file that goes bad after the check: the error from a DataLoader worker names it, no hang."""
    (tmp_path / "train").mkdir()
    path = tmp_path / "train" / "x.jpg"
    path.write_bytes(jpeg_bytes())
    ds = PairedImageDataset(tmp_path, "train", transform=PairTransform(**SMALL))
    path.write_bytes(path.read_bytes()[:300])  # truncated after listing
    batches = iter(DataLoader(ds, num_workers=1, timeout=60))
    with pytest.raises(DataError) as info:
        next(batches)
    batches._shutdown_workers()  # type: ignore[attr-defined]  # now, not at garbage collection
    assert "worker" in str(info.value)  # re-raised from the worker process, with its type
    assert short_message(info.value).splitlines()[-1].startswith(f"cannot read image {path}")
    assert "Traceback" not in short_message(info.value)


# --- fuzzing: random and damaged bytes never crash the loader with anything but a DataError naming the file
REAL = jpeg_bytes(128, 64, seed=3)
damaged = st.one_of(
    st.binary(max_size=2048),  # random bytes
    st.integers(0, len(REAL) - 1).map(lambda n: REAL[:n]),  # a JPEG cut short
    st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.integers(0, 255)), min_size=1, max_size=8).map(
        lambda flips: bytes(dict(flips).get(i, b) for i, b in enumerate(REAL))
    ),  # a JPEG with corrupted bytes
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=damaged, suffix=st.sampled_from([".jpg", ".png"]))
def test_fuzzed_files_fail_clearly_or_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, suffix: str
) -> None:
    # a random header may claim gigapixels: refuse them fast instead of allocating them
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2**20)
    folder = tmp_path / "fuzz" / "train"
    shutil.rmtree(folder.parent, ignore_errors=True)
    folder.mkdir(parents=True)
    path = folder / f"f{suffix}"
    path.write_bytes(data)
    t = PairTransform(load_size=36, crop_size=32, size_divisor=32)
    ds = PairedImageDataset(folder.parent, "train", transform=t, pairs=[PairFiles(path, None)])
    try:
        item = ds[0]
    except DataError as e:
        assert str(path) in str(e)
        with pytest.raises(DataError) as info:  # the check before training finds it too
            check_splits(folder.parent, {"train": t})
        assert info.value.problems and str(path) in info.value.problems[0]
    else:  # a file the loader accepts is a file the check accepts
        assert item["input"].shape == (3, 32, 32) and torch.isfinite(item["input"]).all()
        assert check_splits(folder.parent, {"train": t})["train"] == ds.pairs


@pytest.mark.slow
def test_cli_names_truncated_and_empty_jpegs_then_skip_trains(tmp_path: Path, facades_root: Path) -> None:
    """The acceptance: exit non-zero naming both bad files, no traceback; data.on_bad_file=skip trains."""
    root = tmp_path / "data"
    for split, names in (("train", ["1", "2", "3"]), ("test", ["1", "2"])):
        (root / split).mkdir(parents=True)
        for n in names:
            shutil.copy(facades_root / split / f"{n}.jpg", root / split)
    jpeg = (facades_root / "train" / "4.jpg").read_bytes()
    (root / "train" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (root / "train" / "empty.jpg").write_bytes(b"")
    before = snapshot(root)
    cmd = [str(BIN / "p2p-train"), "debug=smoke", "data=folder", f"data.root={root}", "data.direction=BtoA"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    bad = subprocess.run(
        [*cmd, f"hydra.run.dir={tmp_path / 'bad'}"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    out = bad.stdout + bad.stderr
    assert bad.returncode == 1, out[-3000:]
    assert f"{root / 'train' / 'truncated.jpg'}: cannot read image" in out
    assert f"{root / 'train' / 'empty.jpg'}: empty file" in out
    assert "Traceback" not in out and not (tmp_path / "bad" / "checkpoints").exists()
    ok = subprocess.run(
        [*cmd, "data.on_bad_file=skip", f"hydra.run.dir={tmp_path / 'skip'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, (ok.stdout + ok.stderr)[-3000:]
    assert "leaving out 2 bad file(s)" in ok.stdout + ok.stderr
    assert (tmp_path / "skip" / "checkpoints" / "last.ckpt").is_file()
    assert snapshot(root) == before  # the dataset folder was only read
