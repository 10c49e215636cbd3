"""scripts/gpu-check --cpu-smoke: the GPU check's every step at tiny sizes on CPU, so the script cannot rot
before a GPU is lent (BENCHMARKS.md). Real facades pairs, three per split, copied into a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
REPORT_KEYS = {"schema", "mode", "started", "finished", "wall_s", "facades", "peak_bf16_tflops", "versions",
               "device", "phases", "gpu_tests", "bench", "train", "outputs", "targets", "files"}  # fmt: skip


@pytest.mark.slow
def test_cpu_smoke_writes_every_figure_of_the_report(facades_root: Path, tmp_path: Path) -> None:
    facades = tmp_path / "facades"
    for split in ("train", "test"):
        (facades / split).mkdir(parents=True)
        for f in sorted((facades_root / split).iterdir())[:3]:
            shutil.copy(f, facades / split / f.name)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "P2P_CACHE": str(tmp_path / "cache"),
    }
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu-check"), "--cpu-smoke", "--out", str(out),
         "--work", str(tmp_path / "work"), "--facades", str(facades)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= REPORT_KEYS and report["mode"] == "cpu-smoke"
    phases = report["phases"]
    assert {k for k, p in phases.items() if p["status"] == "ok"} >= {
        "tests",
        "bench_eager",
        "train",
        "outputs",
    }
    assert all(p["status"] in ("ok", "skipped") for p in phases.values()), phases
    # training stops at its wall-clock budget and projects the paper's 200 epochs from what it did
    train = report["train"]
    assert train["epochs_planned"] == 200 and 0 < train["epochs_done"] <= 200
    plain = report["bench"]["paper_batch"]["modes"]["plain_fp32"]
    assert plain["train_images_per_s"] > 0 and 0 < plain["peak_fraction"] < 1
    # the 3 test outputs in both inference modes, scored in sane ranges, packed losslessly as PNGs
    for mode in ("eval", "paper"):
        scores = report["outputs"]["modes"][mode]
        assert scores["num_images"] == 3 and 0 < scores["l1"] < 2 and 0 < scores["psnr"] < 60
    with tarfile.open(out / "outputs_1.tar") as tar:
        pngs = [m for m in tar.getmembers() if m.name.endswith(".png")]
        assert len(pngs) == 6
        img = Image.open(tar.extractfile(pngs[0]))  # type: ignore[arg-type]
        assert img.size == tuple(report["outputs"]["resolution"][::-1])
    assert Image.open(out / "validation_grid.png").size[0] > 0
    assert len(report["files"]) <= 8 and all((out / f).stat().st_size < 16 * 2**20 for f in report["files"])
