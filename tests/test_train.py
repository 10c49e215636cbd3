"""p2p-train end to end: configs compose, combinations train, the CLI runs on real data, DDP, resume, wheel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from p2p.config import config_dir
from p2p.config.build import build_module, build_trainer
from p2p.runs.train import train

CONF = config_dir()
BIN = Path(sys.executable).parent


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def group_overrides(facades_root: Path) -> list[list[str]]:
    runs = [[f"model={m}"] for m in options("model")] + [[f"loss={x}"] for x in options("loss")]
    runs += [[f"logger={x}"] for x in options("logger")] + [[f"trainer={x}"] for x in options("trainer")]
    runs += [[f"experiment={x}"] for x in options("experiment")]
    for d in options("data"):
        if d == "checkpoint":  # p2p-eval's (the checkpoint's own data settings), refused by p2p-train
            continue
        # your own data and the photo tasks need an existing folder (nothing is read)
        own = [f"data.root={facades_root}"]
        root = {"folder": own, "colorization": own, "inpainting": own, "edges": own, "synthetic": []}.get(
            d, ["data.root=/nonexistent"]
        )
        runs.append([f"data={d}", *root])
    return runs


def test_every_config_group_composes_and_instantiates(compose_train, tmp_path, facades_root) -> None:
    """Each option of each group composes with the others and builds its objects (data is not read)."""
    assert {"model", "data", "loss", "trainer", "logger", "debug", "experiment", "callbacks"} <= {
        p.name for p in CONF.iterdir() if p.is_dir()
    }
    for overrides in group_overrides(facades_root):
        cfg = compose_train([*overrides, "debug=smoke"], tmp_path)
        OmegaConf.resolve(cfg)  # every interpolation resolves
        dm = instantiate(cfg.data)
        model = build_module(cfg)
        trainer = build_trainer(cfg)
        assert dm.in_channels == model.hparams.in_channels, overrides
        assert trainer.max_epochs == 1, overrides


def test_defaults_are_the_paper(compose_train, tmp_path) -> None:
    cfg = compose_train([], tmp_path)
    model = build_module(cfg)
    assert cfg.model.generator.name == "unet_256" and model.G.num_downs == 8
    assert cfg.model.discriminator.name == "patchgan_70"
    assert (
        model.objective.l1_weight == 100 and model.objective.conditional and model.objective.gan_weight == 1
    )
    assert cfg.model.optim.lr == 2e-4 and list(cfg.model.optim.betas) == [0.5, 0.999]
    assert cfg.trainer.max_epochs == 200 and cfg.data.batch_size == 1
    assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.flip) == (286, 256, True)


@pytest.mark.parametrize(
    "overrides",
    [
        [f"model={m}"]
        for m in [
            "unet_patch1",
            "unet_patch16",
            "unet_patch70",
            "unet_patch286",
            "encdec_patch70",
            "resnet9_patch70",
        ]
    ]
    + [[f"loss={x}"] for x in ["l1", "gan", "cgan", "l1_gan"]],
    ids=lambda o: o[0],
)
def test_smoke_trains_any_model_and_loss(compose_train, tmp_path, overrides: list[str]) -> None:
    cfg = compose_train([*overrides, "debug=smoke"], tmp_path)
    result = train(cfg)
    assert Path(result["last_ckpt"]).is_file()
    assert all(torch.isfinite(torch.tensor(v)) for v in result["metrics"].values())
    assert list((tmp_path / "images").glob("*.png"))


def test_training_learns_on_synthetic_data(compose_train, tmp_path) -> None:
    """A few dozen steps already beat the untrained generator on validation L1."""
    overrides = ["debug=smoke", "trainer.limit_train_batches=40", "trainer.max_epochs=2", "loss=l1"]
    overrides += [
        "model.optim.lr=1e-3",
        "model.optim.n_epochs=2",
        "data.max_val_samples=8",
        "trainer.limit_val_batches=4",
    ]
    cfg = compose_train(overrides, tmp_path)
    torch.manual_seed(0)
    dm, model, trainer = instantiate(cfg.data), build_module(cfg), build_trainer(cfg)
    before = trainer.validate(model, dm, verbose=False)[0]["val/l1"]
    trainer.fit(model, dm)
    after = float(trainer.callback_metrics["val/l1"])
    assert after < 0.8 * before, (before, after)


def run_cli(
    args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    assert proc.returncode == 0, (
        f"{' '.join(args)}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"
    )
    return proc


@pytest.mark.slow
def test_cli_trains_the_paper_networks_on_real_facades(tmp_path, facades_root) -> None:
    """The acceptance command: full-size U-Net + 70x70 PatchGAN, a few real batches, a .ckpt and a PNG grid."""
    run_dir = tmp_path / "run"
    run_cli(
        [str(BIN / "p2p-train"), "model=unet_patch70", "data=facades", f"data.root={facades_root}",
         "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
         f"hydra.run.dir={run_dir}", "data.num_workers=2"],
        cwd=tmp_path,
    )  # fmt: skip
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", mmap=True, weights_only=True)
    assert ckpt["global_step"] == 8  # 4 batches, a D step and a G step each
    assert ckpt["p2p"]["generator"]["name"] == "unet_256" and "D.model.0.weight" in ckpt["state_dict"]
    # the validation grid: one row per validation image (2 at batch 1), each input | output | target at
    # 256x256, torchvision's 2-pixel padding around and between the rows
    grid = Image.open(run_dir / "images" / "val_epoch000.png")
    assert grid.size == (3 * 256 + 2 * 2, 2 * 256 + 3 * 2)
    assert len(set(grid.convert("L").getdata())) > 100  # an image, not a blank canvas


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path, facades_root) -> None:
    run_dir = tmp_path / "ddp"
    proc = run_cli(
        [str(BIN / "p2p-train"), "debug=smoke", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
         "data=facades", f"data.root={facades_root}", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert "world_size: 2" in proc.stdout + proc.stderr or "MEMBER: 2/2" in proc.stdout + proc.stderr
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_resume_continues_from_last_checkpoint(compose_train, tmp_path) -> None:
    first = train(compose_train(["debug=smoke", "model.optim.n_epochs=3"], tmp_path / "a"))
    ckpt = torch.load(first["last_ckpt"], map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0 and len(ckpt["optimizer_states"]) == 2 and len(ckpt["lr_schedulers"]) == 2
    cfg = compose_train(
        ["debug=smoke", "model.optim.n_epochs=3", "trainer.max_epochs=2", f"ckpt_path={first['last_ckpt']}"],
        tmp_path / "b",
    )
    second = train(cfg)
    resumed = torch.load(second["last_ckpt"], map_location="cpu", weights_only=False)
    assert resumed["epoch"] == 1  # the epoch counter went on instead of restarting
    assert resumed["global_step"] == 2 * ckpt["global_step"]
    # Adam's step count carried over: 2 batches per epoch, 2 epochs
    assert all(s["step"] == 4 for s in resumed["optimizer_states"][0]["state"].values())


def test_loggers_receive_the_validation_grid(compose_train, tmp_path) -> None:
    cfg = compose_train(["debug=smoke", "logger=tensorboard"], tmp_path)
    train(cfg)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert "val/grid" in acc.Tags()["images"]
    assert "val/psnr" in acc.Tags()["scalars"]


@pytest.mark.slow
def test_wandb_logger_offline(compose_train, tmp_path) -> None:
    train(compose_train(["debug=smoke", "logger=wandb"], tmp_path))
    assert list((tmp_path / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_built_wheel_carries_the_configs(tmp_path) -> None:
    """A non-editable wheel, installed apart from the source tree, finds its configs from any folder."""
    repo = Path(__file__).resolve().parents[1]
    run_cli(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(repo)],
        cwd=tmp_path,
    )
    wheel = next((tmp_path / "dist").glob("p2p-*.whl"))
    site = tmp_path / "site"
    run_cli(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        cwd=tmp_path,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site)}
    code = "import p2p, p2p.config; print(p2p.__file__); print(p2p.config.config_dir())"
    proc = run_cli([sys.executable, "-c", code], cwd=elsewhere, env=env)
    assert str(site) in proc.stdout and "p2p/conf" in proc.stdout
    proc = run_cli(
        [sys.executable, "-m", "p2p.cli.train", "--cfg", "job", "model=unet_patch70", "data=cityscapes"],
        cwd=elsewhere,
        env=env,
    )
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.model.discriminator.name == "patchgan_70" and cfg.data.name == "cityscapes"
