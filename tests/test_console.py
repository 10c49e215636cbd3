"""What p2p-train prints in an 80-column terminal (p2p.training.console): nothing wraps, no third-party
noise, epochs from 1, one line per epoch, and an end that says where the outputs are."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from PIL import Image

from p2p.training.console import epoch_line

NOISE = ("v_num", "LeafSpec", "litlogger", "FLOPs", "not supported by the model summary", "Epoch 0/")


def run_in_terminal(args: list[str], cwd: Path, columns: int = 80) -> str:
    """Run ``args`` on a pseudo-terminal ``columns`` wide, as a user's shell would; everything it printed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm-256color"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(args, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode("utf-8", errors="replace")


def screen_lines(raw: str, columns: int = 80) -> list[str]:
    """The text rows a terminal shows: each erase-line or carriage return starts a row; a row of exactly
    ``columns`` characters followed by more text is where the terminal itself moves to the next row."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw.replace("\x1b[2K", "\n"))
    rows: list[str] = []
    for seg in re.split(r"\r\n|\n|\r", text):
        while len(seg) > columns and seg[:columns].startswith(("Epoch", "Validation")):
            rows.append(seg[:columns])  # a full-width bar row: the cursor is at the margin
            seg = seg[columns:]
        if seg.strip():
            rows.append(seg.rstrip())
    return rows


def ab_folder(root: Path) -> Path:
    """Two A|B pairs in train/ and test/, no val/ (the run says once that test/ validates)."""
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (256, 128), (40 * i, 90, 200)).save(root / split / f"{i}.jpg")
    return root


@pytest.mark.slow
def test_smoke_run_fits_80_columns_and_says_what_it_did(tmp_path: Path) -> None:
    data = ab_folder(tmp_path / "pairs")
    raw = run_in_terminal(
        [sys.executable, "-m", "p2p.cli.train", "debug=smoke", "logger=csv", "data=folder", f"data.root={data}",
         "trainer.max_epochs=2", "model.optim.n_epochs=2", "hydra.run.dir=run"],
        tmp_path,
    )  # fmt: skip
    rows = screen_lines(raw)
    assert [r for r in rows if len(r) > 80] == []
    # a wrapped row continues the one above it: it starts far right, under the bar's metrics column
    assert [r for r in rows if re.match(r"^ {20,}\S", r)] == []
    for noise in NOISE:
        assert noise not in raw, noise
    assert {r.split()[1] for r in rows if r.startswith("Epoch ")} == {"1/2", "2/2"}  # counted from 1
    epochs = [r for r in rows if r.startswith("epoch ")]
    pattern = r"epoch {}/2 D [\d.]+ G [\d.]+ \| L1 \d\.\d{{3}} PSNR [\d.]+ SSIM \d\.\d{{3}} \| \d+s ETA \d+s"
    assert len(epochs) == 2 and all(re.fullmatch(pattern.format(i + 1), r) for i, r in enumerate(epochs)), (
        epochs
    )
    assert sum("no 'val' split" in r for r in rows) == 1
    assert any(re.fullmatch(r"G: UNetGenerator, 0\.66 M parameters, 2\.6 MB", r) for r in rows)
    # the end: best epoch and metrics, where each output is, the command that uses the result
    done = next(r for r in rows if r.startswith("done: 2 epochs"))
    assert re.search(r"best epoch [12]: L1 \d\.\d{3} PSNR [\d.]+ SSIM \d\.\d{3}$", done)
    places = {r.split()[0]: r.split()[-1] for r in rows if r.startswith("  ") and len(r.split()) in (2, 3)}
    assert places["resume"] == "run/checkpoints/last.ckpt" and places["metrics"].endswith("metrics.csv")
    assert re.fullmatch(r"run/checkpoints/best_epoch00[01]\.ckpt", places["generator"])
    assert places["image"] == "run/images/val_epochNNN.png"
    i = rows.index("translate images with:")
    assert rows[i + 1] == "  p2p-translate --input my_images/ --output translated/ --checkpoint \\"
    assert rows[i + 2].strip() == places["generator"] and (tmp_path / places["generator"]).exists()


def test_epoch_line_fits_80_columns_in_long_runs() -> None:
    metrics = {"train/loss_d": 12.3456, "train/loss_g": 123.456, "val/l1": 0.123, "val/psnr": 23.456,
               "val/ssim": 0.789}  # fmt: skip
    line = epoch_line(199, 200, metrics, seconds=3599, eta=7 * 3600 + 59 * 60)
    assert line == "epoch 199/200 D 12.3 G 123.5 | L1 0.123 PSNR 23.46 SSIM 0.789 | 59m59s ETA 7h59m"
    assert len(line) <= 80
