"""p2p.Translator and p2p-translate: any size and aspect in, same size out; tiling; inference modes."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import p2p
from cli_helpers import exit_code
from inference_helpers import randomise_batchnorm, smoke_checkpoint
from p2p.cli.translate import main
from p2p.inference.translator import blend_window, tile_starts


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_checkpoint(tmp_path_factory)


def noise_image(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
    return Image.fromarray(arr)


def test_cli_keeps_names_and_sizes(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The acceptance check: 300x200, 517x389 and 256x256 inputs give outputs of the same sizes."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    noise_image(300, 200).save(src / "wide.jpg")
    noise_image(517, 389).save(src / "odd.png")
    noise_image(256, 256, mode="L").save(src / "sub" / "square.png")  # grayscale: converted to RGB
    assert (
        exit_code(main, ["--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path / "out")])
        == 0
    )
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    out = {p.relative_to(tmp_path / "out").as_posix(): Image.open(p) for p in files}
    assert {k: (v.size, v.mode) for k, v in out.items()} == {
        "wide.png": ((300, 200), "RGB"),
        "odd.png": ((517, 389), "RGB"),
        "sub/square.png": ((256, 256), "RGB"),
    }
    assert "inference=eval" in capsys.readouterr().out  # the mode used is always said


def test_cli_globs_keep_ext_and_errors(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noise_image(70, 50).save(tmp_path / "a.jpg")
    noise_image(70, 50).save(tmp_path / "a.png")
    args = ["--checkpoint", str(ckpt), "--output", str(tmp_path / "out"), "--no-progress"]
    assert (
        exit_code(main, [*args, "--input", str(tmp_path / "*.jpg"), "--keep-ext", "--inference", "paper"])
        == 0
    )
    assert Image.open(tmp_path / "out" / "a.jpg").size == (70, 50)
    assert "inference=paper" in capsys.readouterr().out
    # a.jpg and a.png would both become a.png
    assert exit_code(main, [*args, "--input", str(tmp_path / "a.jpg"), str(tmp_path / "a.png")]) == 2
    assert "would both be written" in capsys.readouterr().err
    assert exit_code(main, [*args, "--input", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, code",
    [(["--batch-size", "1"], 1), ([], 1), (["--on-bad-file", "skip"], 0)],
    ids=["batch1", "batched", "skip"],
)
def test_a_bad_image_is_named_and_the_good_ones_written(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], code: int
) -> None:
    """A truncated PNG among good ones (in the same batch, and before others with batch size 1): every good
    image is written, the bad one is named with what is wrong, and the exit code says so (skip: 0)."""
    src = tmp_path / "in"
    src.mkdir()
    for name, (w, h) in {"a": (70, 50), "b": (70, 50), "c": (70, 50), "d": (90, 40)}.items():
        noise_image(w, h, seed=ord(name)).save(src / f"{name}.png")
    data = (src / "b.png").read_bytes()
    (src / "b.png").write_bytes(data[: len(data) // 2])
    args = [
        "--checkpoint",
        str(ckpt),
        "--input",
        str(src),
        "--output",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    assert exit_code(main, [*args, *extra]) == code
    out = {p.name: Image.open(p).size for p in (tmp_path / "out").iterdir()}
    assert out == {"a.png": (70, 50), "c.png": (70, 50), "d.png": (90, 40)}
    err = capsys.readouterr().err
    assert f"{src / 'b.png'}: cannot read image: OSError: image file is truncated" in err
    assert ("warning" if code == 0 else "error: 1 bad input file(s)") in err


def test_a_corrupt_checkpoint_is_called_corrupt(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint cut in half, random bytes, text, a legacy torch file cut inside a class name and a legacy
    pickled module cut in its tensor bytes are not checkpoints; --allow-pickle is suggested only for a
    well-formed file that needs it (a pickled module, zip or legacy)."""
    data = ckpt.read_bytes()
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer, _use_new_zipfile_serialization=False)  # pickles, then tensors
    legacy = buffer.getvalue()
    buffer = io.BytesIO()
    module = p2p.create_model("unet_128", num_downs=5, ngf=4)
    torch.save(module, buffer, _use_new_zipfile_serialization=False)  # needs full unpickling; tensors last
    legacy_module = buffer.getvalue()
    bad = {
        "half.ckpt": data[: len(data) // 2],
        "random.ckpt": np.random.default_rng(0).bytes(4096),  # torch: "Weights only load failed"
        "text.ckpt": b"not a checkpoint\n" * 20,  # torch: a KeyError
        "cut.pth": legacy[: legacy.index(b"collections\nOrderedDict") + 14],  # torch: "GLOBAL collections.O"
        "module_cut.pth": legacy_module[:-100],  # its pickles whole, its last tensor's bytes cut short
    }
    noise_image(32, 32).save(tmp_path / "x.png")
    args = ["--input", str(tmp_path / "x.png"), "--output", str(tmp_path / "out"), "--no-progress"]
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
        assert exit_code(main, ["--checkpoint", str(tmp_path / name), *args]) == 2, name
        err = capsys.readouterr().err
        assert f"{tmp_path / name}: not a checkpoint (truncated, corrupt" in err
        assert "allow" not in err and "weights_only" not in err, err  # no advice to unpickle it
    torch.save(module, tmp_path / "module.pt")
    (tmp_path / "module_legacy.pt").write_bytes(legacy_module)
    for name in ("module.pt", "module_legacy.pt"):
        assert exit_code(main, ["--checkpoint", str(tmp_path / name), *args]) == 2
        assert f"{name}: a well-formed torch file that needs full unpickling" in capsys.readouterr().err


def test_translator_accepts_pil_arrays_and_tensors(ckpt: Path) -> None:
    tr = p2p.Translator(ckpt, device="cpu")
    img = noise_image(90, 70)
    out = tr(img)
    assert isinstance(out, Image.Image) and out.size == (90, 70)
    u8 = tr(np.asarray(img))
    assert u8.dtype == np.uint8 and u8.shape == (70, 90, 3)
    assert np.array_equal(u8, np.asarray(out))  # same pixels whichever way the image came in
    f = tr(np.asarray(img, dtype=np.float32) / 255)
    assert f.dtype == np.float32 and np.abs(f - u8 / 255).max() <= 0.5 / 255 + 1e-6
    x = torch.rand(2, 3, 70, 90) * 2 - 1
    y = tr(x)
    assert y.shape == (2, 3, 70, 90) and y.abs().max() <= 1
    assert torch.equal(tr(x[0]), y[0])  # eval mode: an image does not depend on its batch
    assert [o.size for o in tr([img, noise_image(20, 30)])] == [(90, 70), (20, 30)]
    with pytest.raises(TypeError, match="cannot translate a str"):
        tr("image.png")


def test_sizes_the_network_takes_are_not_padded(ckpt: Path) -> None:
    tr = p2p.Translator(ckpt, device="cpu")
    x = torch.rand(1, 3, tr.divisor, 2 * tr.divisor) * 2 - 1
    with torch.no_grad():
        assert torch.equal(tr(x), tr.model.eval()(x))


class Pointwise(nn.Module):
    """A 1x1-conv 'generator': its output at a pixel depends on that pixel only, so tiling must be exact."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.tanh(self.conv(x))


@pytest.mark.parametrize("blend", ["linear", "cosine"])
def test_tiles_blend_back_to_the_whole_image(blend: str) -> None:
    net = Pointwise()
    x = torch.rand(1, 3, 100, 77) * 2 - 1
    whole = p2p.Translator(net, device="cpu")(x)
    calls = net.calls
    tiled = p2p.Translator(net, device="cpu", tile=32, overlap=8, blend=blend, batch_size=3)(x)
    assert net.calls - calls == 4  # 12 tiles (4 rows x 3 columns), 3 per forward pass
    assert torch.allclose(tiled, whole, atol=1e-6)


def test_tile_layout_covers_with_the_overlap() -> None:
    for size, tile, overlap in [(100, 32, 8), (64, 64, 16), (257, 64, 0), (300, 128, 100)]:
        starts = tile_starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == max(size, tile)
        assert all(0 < b - a <= tile - overlap for a, b in itertools.pairwise(starts))
    w = blend_window(32, 8, "cosine")
    assert w.min() > 0 and w[8:24].eq(1).all() and torch.allclose(w, w.flip(0))


def test_tiled_unet_gives_full_size_output(ckpt: Path) -> None:
    tr = p2p.Translator(ckpt, device="cpu", tile=256, overlap=32)
    assert max(517, 389) > tr.tile  # so the image really goes in tiles
    out = tr(noise_image(517, 389))
    assert out.size == (517, 389)


def test_paper_mode_uses_each_images_own_statistics() -> None:
    """Paper mode: BatchNorm on the image's own statistics (no dropout here, so it is deterministic);
    batching must not mix images, and the result differs from eval mode's running statistics."""
    G = randomise_batchnorm(p2p.create_model("unet_256", num_downs=5, ngf=8, dropout=0.0))
    before = [m.training for m in G.modules()]
    x = torch.rand(3, 3, 40, 50) * 2 - 1
    paper = p2p.Translator(G, device="cpu", inference="paper", batch_size=3)
    together = paper(x)
    alone = torch.cat([paper(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-6)
    assert not torch.allclose(together, p2p.Translator(G, device="cpu", inference="eval")(x), atol=1e-3)
    assert [m.training for m in G.modules()] == before  # the modes leave the model as they found it


@pytest.mark.parametrize("columns", [80, 60])
def test_list_pretrained_shows_whole_tags(
    columns: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tags are what one types after --checkpoint: none cut ("facades_…") or wrapped, in 80 columns."""
    monkeypatch.setenv("COLUMNS", str(columns))
    assert exit_code(main, ["--list-pretrained"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= columns
    shown = {line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")}
    assert set(p2p.list_models(pretrained=True)) <= shown
    assert "…" not in out


def test_usage_names_list_pretrained(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(main, []) == 2
    err = capsys.readouterr().err
    assert "p2p-translate --list-pretrained" in err
    usage = [line for line in err.splitlines() if not line.startswith("p2p-translate: error")]
    assert max(map(len, usage)) <= 80
