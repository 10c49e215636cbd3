"""The paper's ablations as sweeps: experiment configs, multirun through each launcher, p2p-report's table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from cli_helpers import exit_code
from conftest import FACADES
from p2p.cli.report import main as report_main
from p2p.config import config_dir
from p2p.errors import InputNotFoundError
from p2p.runs.report import find_runs, markdown

SWEEPS = {
    "ablation_loss": {"loss": "l1,gan,cgan,l1_gan,l1_cgan"},
    "ablation_patch": {"model": "unet_patch1,unet_patch16,unet_patch70,unet_patch286"},
    "ablation_generator": {"model": "encdec_patch70,unet_patch70", "loss": "l1,l1_cgan"},
}
# seconds per run: FID/KID and a tiny segmenter on debug=smoke's 4 test images
FAST_EVAL = ["+fcn.steps=10", "+fcn.width=8"]


@pytest.mark.parametrize("experiment", sorted(SWEEPS))
def test_each_experiment_carries_its_sweep_and_evaluates(experiment: str) -> None:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert dict(cfg.hydra.sweeper.params) == SWEEPS[experiment]
    assert cfg.eval_after_train is True and list(cfg.ablation["keys"]) == list(SWEEPS[experiment])
    for group, options in SWEEPS[experiment].items():
        for option in options.split(","):  # every swept option is a config that exists
            assert (config_dir() / group / f"{option}.yaml").is_file(), (group, option)


def fake_run(sweep: Path, num: int, loss: str, fid: float, size: int = 8) -> None:
    run = sweep / f"{num}_loss={loss}"
    (run / "samples").mkdir(parents=True)
    metrics = {"fid": fid, "kid": 0.1, "psnr": 12.0, "ssim": 0.3, "fcn_pixel_acc": 0.5, "fcn_class_acc": 0.2,
               "fcn_class_iou": 0.1, "fcn_real_pixel_acc": 0.8, "fcn_real_class_acc": 0.6, "fcn_real_class_iou": 0.4,
               "color_hist_L": 0.9, "color_hist_a": 0.8, "color_hist_b": 0.7, "inference": "eval", "num_images": 106,
               "split": "test", "dataset": "facades", "resolution": [size, size],
               "choices": {"loss": loss, "model": "unet_patch70"}, "ablation": {"name": "loss", "keys": ["loss"]}}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    for i in range(2):
        for kind in ("input", "output", "target"):
            Image.new("RGB", (size, size), (num * 40, i * 100, 0)).save(
                run / "samples" / f"{i:03d}_{kind}.png"
            )


def test_report_prints_the_papers_table_and_writes_the_figure(tmp_path: Path, capsys) -> None:
    losses = ["l1", "gan", "cgan", "l1_gan", "l1_cgan"]
    for num, loss in enumerate(losses):
        fake_run(tmp_path, num, loss, fid=100.0 + num)
    (tmp_path / "5_loss=broken" / ".hydra").mkdir(parents=True)  # a run that died before its evaluation
    assert exit_code(report_main, [str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| Loss | Per-pixel acc. | Per-class acc. | Class IOU | FID")
    assert [r.split(" | ")[0][2:] for r in rows[1:7]] == [
        "L1",
        "GAN",
        "cGAN",
        "L1+GAN",
        "L1+cGAN",
        "Ground truth",
    ]
    assert rows[1].split(" | ")[1:5] == ["0.50", "0.20", "0.10", "100.0"]
    assert rows[6].split(" | ")[1:4] == ["0.80", "0.60", "0.40"]  # the segmenter on real photos
    assert "5_loss=broken" in out and (tmp_path / "report.md").read_text() == out
    fig = Image.open(tmp_path / "report.png")
    assert fig.size[0] > 7 * 8 and fig.size[1] > 2 * 8  # input, five variants, ground truth; two rows


def test_report_errors_name_the_folder(tmp_path: Path) -> None:
    assert exit_code(report_main, [str(tmp_path / "missing")]) == 2
    with pytest.raises(InputNotFoundError, match=r"metrics\.json"):
        markdown([])


def p2p(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run a console script (p2p-train, p2p-report) as a user would, caches in cwd."""
    env = {**os.environ, "P2P_CACHE": str(cwd / "cache"), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    exe = Path(sys.executable).with_name(args[0])
    proc = subprocess.run(
        [str(exe), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_loss_ablation_smoke_sweep_on_facades_then_report(tmp_path: Path) -> None:
    """The acceptance run: five losses, each with a checkpoint and metrics.json; p2p-report's five rows."""
    data = ["data=facades", f"data.root={FACADES}"] if (FACADES / "train").is_dir() else ["data=synthetic"]
    sweep = tmp_path / "sweep"
    p2p("p2p-train", "-m", "experiment=ablation_loss", "debug=smoke", *data, *FAST_EVAL, f"hydra.sweep.dir={sweep}",
        cwd=tmp_path)  # fmt: skip
    runs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert [r.name for r in runs] == ["0_l1", "1_gan", "2_cgan", "3_l1_gan", "4_l1_cgan"]  # plain paths
    assert all((r / "checkpoints" / "last.ckpt").is_file() for r in runs)
    out = p2p("p2p-report", str(sweep), cwd=tmp_path).stdout
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ")][1:7]
    assert [r[0][2:] for r in rows] == ["L1", "GAN", "cGAN", "L1+GAN", "L1+cGAN", "Ground truth"]
    for r in rows[:5]:  # FCN accuracies and IoU are fractions, FID a positive distance
        acc, cls, iou, fid = (float(v) for v in r[1:5])
        assert 0 <= iou <= cls <= 1 and 0 <= acc <= 1 and fid > 0, r
    # the figure: input | the five outputs | ground truth, one row per test image shown (at most 4)
    w, h = Image.open(runs[0] / "samples" / "000_input.png").size
    n = min(4, len(list((runs[0] / "samples").glob("*_input.png"))))
    assert Image.open(sweep / "report.png").size == (7 * (w + 4) + 4, 18 + n * (h + 4) + 4)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers_run_a_two_run_sweep(launcher: str, tmp_path: Path) -> None:
    """Local parallel runs (joblib) and SLURM's launcher (submitit, tested through its local executor)."""
    pytest.importorskip({"joblib": "hydra_plugins.hydra_joblib_launcher",
                         "submitit_local": "hydra_plugins.hydra_submitit_launcher"}[launcher])  # fmt: skip
    sweep = tmp_path / "sweep"
    p2p("p2p-train", "-m", "experiment=ablation_loss", "loss=l1,l1_cgan", "debug=smoke", f"hydra/launcher={launcher}",
        "+metrics=[l1,psnr]", f"hydra.sweep.dir={sweep}", cwd=tmp_path)  # fmt: skip
    done = {json.loads(p.read_text())["choices"]["loss"] for p in sweep.glob("*/metrics.json")}
    assert done == {"l1", "l1_cgan"}


def seeded_run(sweep: Path, num: int, loss: str, seed: int, fid: float, acc: float) -> None:
    """A run of a ``seed=1,2,3`` sweep: metrics.json and Hydra's record of its overrides."""
    fake_run(sweep, num, loss, fid=fid)
    run = sweep / f"{num}_loss={loss}"
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "fcn_pixel_acc": acc}))
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text(
        f"- loss={loss}\n- experiment=ablation_loss\n- seed={seed}\n- data.seed=$\\{{seed\\}}\n"
    )


def test_report_groups_seeds_into_mean_and_std_and_marks_real_differences(tmp_path: Path) -> None:
    # l1 and l1_cgan: FIDs far apart for their spread; gan and l1_cgan: per-pixel accuracies within it
    runs = {"l1": ([200.0, 210.0, 205.0], [0.50, 0.52, 0.54]), "gan": ([300.0, 310.0, 320.0], [0.40, 0.60, 0.50]),
            "l1_cgan": ([100.0, 104.0, 102.0], [0.55, 0.56, 0.57])}  # fmt: skip
    num = 0
    for loss, (fids, accs) in runs.items():
        for seed, (fid, acc) in enumerate(zip(fids, accs), start=1):
            seeded_run(tmp_path, num, loss, seed, fid, acc)
            num += 1
    md = markdown(find_runs(tmp_path)[0])
    table = md.split("\n\n")[1]  # the paper's table (the colour table follows further down)
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ")]
    assert rows[0][:3] == ["| Loss", "Seeds", "Per-pixel acc."]
    assert [r[0][2:] for r in rows[1:]] == ["L1", "GAN", "L1+cGAN", "Ground truth"]  # one row per variant
    assert rows[1][1] == "1, 2, 3" and rows[1][2] == "0.52 ± 0.02" and rows[1][5] == "205.0 ± 5.0"
    assert rows[3][5] == "102.0 ± 2.0"
    fid = next(line for line in md.splitlines() if line.startswith("- FID:"))
    assert fid == "- FID: L1+cGAN (102.0) > L1 (205.0) > GAN (310.0)"  # lower is better, all separated
    acc = next(line for line in md.splitlines() if line.startswith("- Per-pixel acc.:"))
    assert acc == "- Per-pixel acc.: L1+cGAN (0.56) > L1 (0.52) ≈ GAN (0.50)"  # GAN's std 0.10 overlaps


def test_report_without_repeated_seeds_keeps_one_value_per_cell(tmp_path: Path) -> None:
    for num, loss in enumerate(["l1", "l1_cgan"]):
        seeded_run(tmp_path, num, loss, seed=1, fid=100.0 + num, acc=0.5)
    md = markdown(find_runs(tmp_path)[0])
    assert "Seeds" not in md and "±" not in md and "| L1 | 0.50 |" in md


def test_a_variant_with_one_seed_beside_repeated_ones_claims_no_spread(tmp_path: Path) -> None:
    """A single run has an unknown spread, not a zero one: no '± 0.00', and '?' instead of '>' beside it."""
    for seed, (fid, acc) in enumerate([(200.0, 0.50), (210.0, 0.52)], start=1):
        seeded_run(tmp_path, seed - 1, "l1", seed, fid, acc)
    seeded_run(tmp_path, 2, "l1_cgan", 1, 100.0, 0.70)
    md = markdown(find_runs(tmp_path)[0])
    rows = {
        r.split(" | ")[0][2:]: r.split(" | ") for r in md.split("\n\n")[1].splitlines() if r.startswith("| ")
    }
    assert rows["L1"][2] == "0.51 ± 0.01" and rows["L1+cGAN"][1] == "1" and rows["L1+cGAN"][2] == "0.70"
    assert "- FID: L1+cGAN (100.0) ? L1 (205.0)" in md
