"""The LightningModule follows the paper's algorithm: D step on the detached fake, then G step."""

from __future__ import annotations

import copy
from enum import Enum

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import p2p.training.module as module
from p2p.errors import NonFiniteLossError
from p2p.models.hub import generator_config
from p2p.models.patchgan import PatchDiscriminator
from p2p.models.unet import UNetGenerator
from p2p.training import Objective, Pix2Pix, discriminator_loss, gan_loss
from p2p.training.objective import l1_loss
from p2p.training.optim import Optim, linear_decay
from p2p.training.perf import fused_adam_available

SMALL_G = {"name": "unet_256", "num_downs": 5, "ngf": 4}
SMALL_D = {"name": "patchgan_70", "ndf": 4}


class Pairs(Dataset):
    def __init__(self, n: int = 4, size: int = 32, in_ch: int = 3, out_ch: int = 3) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, in_ch, size, size, generator=g) * 2 - 1
        self.y = torch.rand(n, out_ch, size, size, generator=g) * 2 - 1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input": self.x[i], "target": self.y[i], "path": f"{i}.png"}


def make_trainer(tmp_path, steps: int = 1, **trainer_kw) -> L.Trainer:
    """A quiet CPU trainer for ``steps`` batches and one validation batch; ``trainer_kw`` override."""
    kw = dict(
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )
    kw.update(trainer_kw)
    return L.Trainer(**kw)


def fit(model: Pix2Pix, tmp_path, steps: int = 1, data: Dataset | None = None, **trainer_kw) -> L.Trainer:
    """Train and validate on ``data`` (default: random pairs with the model's channels), two pairs a batch."""
    t = make_trainer(tmp_path, steps, **trainer_kw)
    data = data or Pairs(in_ch=model.hparams.in_channels, out_ch=model.hparams.out_channels)
    loader = DataLoader(data, batch_size=2)
    t.fit(model, loader, loader)
    return t


def snapshot(m: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def changed(before: list[torch.Tensor], m: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, m.parameters()))


def test_one_iteration_is_d_step_then_g_step_with_one_fake(tmp_path) -> None:
    torch.manual_seed(0)
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D)
    events: list[str] = []
    model.G.register_forward_hook(lambda *a: events.append("G"))
    model.D.register_forward_hook(lambda *a: events.append("D"))
    orig = model.configure_optimizers

    def tracked():
        opts, scheds = orig()
        opts[0].register_step_post_hook(lambda *a: events.append("step_G"))
        opts[1].register_step_post_hook(lambda *a: events.append("step_D"))
        return opts, scheds

    model.configure_optimizers = tracked  # type: ignore[method-assign]
    g0, d0 = snapshot(model.G), snapshot(model.D)
    fit(model, tmp_path, steps=1, limit_val_batches=0)
    # the fake is computed once; D judges real and detached fake, steps; then G's adversarial pass and step
    assert events == ["G", "D", "D", "step_D", "D", "step_G"]
    assert changed(g0, model.G) and changed(d0, model.D)
    assert model.trainer.global_step == 2  # Lightning counts both optimiser steps


def test_d_sees_input_and_output_for_cgan_and_output_only_for_gan() -> None:
    cgan = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, loss={"conditional": True}, in_channels=1)
    gan = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, loss={"conditional": False}, in_channels=1)
    assert cgan.D.model[0].in_channels == 1 + 3
    assert gan.D.model[0].in_channels == 3


def test_l1_only_builds_no_discriminator_and_trains_g(tmp_path) -> None:
    model = Pix2Pix(generator=SMALL_G, loss={"gan_weight": 0.0})
    assert model.D is None
    g0 = snapshot(model.G)
    trainer = fit(model, tmp_path, steps=2)
    assert changed(g0, model.G)
    assert "train/loss_d" not in trainer.callback_metrics
    assert trainer.callback_metrics["train/loss_g"] == pytest.approx(
        100 * trainer.callback_metrics["train/loss_g_l1"]
    )


def test_loss_terms_are_the_papers() -> None:
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.1]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    # non-saturating G loss = -log D(x, G(x)); D's objective is halved
    assert gan_loss(logits, True) == pytest.approx(bce(logits, torch.ones_like(logits)).item())
    real, fake = torch.tensor([1.5, 0.2]), torch.tensor([-0.3, 0.7])
    expected = 0.5 * (bce(real, torch.ones(2)) + bce(fake, torch.zeros(2)))
    assert discriminator_loss(real, fake, "vanilla") == pytest.approx(expected.item())
    assert gan_loss(logits, False, "lsgan") == pytest.approx((logits**2).mean().item())
    with pytest.raises(ValueError, match="gan_mode"):
        Objective(gan_mode="wgan")
    with pytest.raises(ValueError, match="nothing would be trained"):
        Objective(l1_weight=0, gan_weight=0)


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"l1_weight": 0.0}, None),  # the "GAN" / "cGAN" rows of Table 1
        ({"gan_weight": 0.0}, None),  # the "L1" row
        ({"l1_weight": 0.5, "gan_weight": 0.37, "gan_mode": "lsgan", "l1_region": "hole"}, None),
        ({"l1_weight": -0.01}, "l1_weight: must be >= 0, got -0.01"),
        ({"gan_weight": -1.0}, "gan_weight: must be >= 0, got -1.0"),
        ({"gan_weight": float("nan")}, "gan_weight: must be >= 0, got nan"),
        ({"l1_weight": float("nan")}, "l1_weight: must be >= 0, got nan"),
        ({"l1_region": "border"}, "^l1_region: 'border' is not one of image, hole"),
        ({"gan_mode": "hinge"}, "^gan_mode: 'hinge' is not one of vanilla, lsgan$"),
        ({"gan_mode": "lsgn"}, "^gan_mode: 'lsgn' is not one of vanilla, lsgan; did you mean 'lsgan'\\?$"),
    ],
)
def test_objective_checks_each_field_at_its_boundary(kwargs: dict, error: str | None) -> None:
    if error is None:
        obj = Objective(**kwargs)
        assert {k: getattr(obj, k) for k in kwargs} == kwargs
        assert obj.uses_gan is (obj.gan_weight > 0)
    else:
        with pytest.raises(ValueError, match=error.replace("(", r"\(")):
            Objective(**kwargs)


def test_structured_configs_enum_choices_become_their_values() -> None:
    """Hydra gives a Literal field of a structured config as an Enum member; the constructors keep strings."""
    mode, region = Enum("GanMode", {"lsgan": "lsgan"}), Enum("L1Region", {"hole": "hole"})
    obj = Objective(gan_mode=mode.lsgan, l1_region=region.hole)
    assert (obj.gan_mode, obj.l1_region) == ("lsgan", "hole") and type(obj.gan_mode) is str


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"lr": 0.0, "betas": [0, 0.999], "n_epochs": 0, "n_epochs_decay": 0}, None),  # every lower bound
        ({"betas": [0.9, 0.9999]}, None),
        ({"lr": -1e-4}, "lr: must be >= 0, got -0.0001"),
        ({"lr": float("nan")}, "lr: must be >= 0, got nan"),
        ({"betas": [0.5, 1.0]}, r"betas: must be two numbers in \[0, 1\)"),
        ({"betas": [-0.1, 0.999]}, "betas: must be two numbers"),
        ({"betas": [0.5]}, "betas: must be two numbers"),
        ({"betas": [0.5, 0.9, 0.99]}, "betas: must be two numbers"),
        ({"n_epochs": -1}, "n_epochs: must be >= 0, got -1"),
        ({"n_epochs_decay": -1}, "n_epochs_decay: must be >= 0, got -1"),
    ],
)
def test_optim_checks_each_field_at_its_boundary(kwargs: dict, error: str | None) -> None:
    if error is None:
        opt = Optim(**kwargs)
        assert {k: getattr(opt, k) for k in kwargs} == kwargs
        assert all(type(b) is float for b in opt.betas)  # ints from YAML become floats for Adam
    else:
        with pytest.raises(ValueError, match=error):
            Optim(**kwargs)


def test_the_lr_multiplier_is_the_references_linear_policy() -> None:
    """lr * (1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)): 1 through epoch n_epochs - 1, then
    falling by 1 / (n_epochs_decay + 1) each epoch (the reference's epoch_count=1 makes the +1s)."""
    assert [linear_decay(e, 3, 4) for e in range(8)] == pytest.approx([1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0])
    assert [linear_decay(e, 0, 1) for e in range(2)] == pytest.approx([0.5, 0.0])


def test_reference_lr_schedule_constant_then_linear_decay() -> None:
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, optim={"n_epochs": 2, "n_epochs_decay": 3})
    opts, scheds = model.configure_optimizers()
    assert [type(o).__name__ for o in opts] == ["Adam", "Adam"]
    assert opts[0].defaults["lr"] == 2e-4 and opts[0].defaults["betas"] == (0.5, 0.999)
    lrs = []
    for _ in range(5):
        lrs.append(opts[0].param_groups[0]["lr"])
        for s in scheds:
            s.step()
    assert lrs == pytest.approx([2e-4, 2e-4, 2e-4 * 3 / 4, 2e-4 * 2 / 4, 2e-4 * 1 / 4])


def test_scheduler_is_stepped_once_per_epoch(tmp_path) -> None:
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, optim={"n_epochs": 1, "n_epochs_decay": 3})
    trainer = fit(model, tmp_path, steps=2, max_epochs=2)
    # after 2 epochs: the lambda is at epoch 2 -> 1 - (2 + 1 - 1) / 4
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(2e-4 * 0.5)
    assert trainer.optimizers[1].param_groups[0]["lr"] == pytest.approx(2e-4 * 0.5)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_steps_match_fp32(tmp_path, precision: str) -> None:
    """One step under autocast moves the weights like the fp32 step does (within low-precision error)."""
    results, losses = {}, {}
    for prec in ["32", precision]:
        torch.manual_seed(0)
        model = Pix2Pix(generator={**SMALL_G, "dropout": 0.0}, discriminator=SMALL_D)
        w0 = snapshot(model.G)
        if prec == "16-mixed":  # Lightning maps 16-mixed to bf16 on CPU; build fp16 + GradScaler explicitly
            if not hasattr(torch.amp, "GradScaler"):  # nox -s minimum's torch 2.2
                pytest.skip("torch < 2.3 has no torch.amp.GradScaler for the CPU")
            from lightning.pytorch.plugins import MixedPrecision

            scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)  # no overflow-skipped first step
            plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
            trainer = fit(model, tmp_path, steps=1, plugins=[plugin], limit_val_batches=0)
            assert scaler.get_scale() > 0 and scaler._scale is not None  # the scaler took part
        else:
            trainer = fit(model, tmp_path, steps=1, precision=prec, limit_val_batches=0)
        results[prec] = torch.cat([(p - b).flatten() for b, p in zip(w0, model.G.parameters())])
        losses[prec] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    d32, dlow = results["32"], results[precision]
    assert torch.isfinite(dlow).all() and dlow.abs().sum() > 0
    for key in ["train/loss_d", "train/loss_g"]:
        assert losses[precision][key] == pytest.approx(losses["32"][key], rel=0.02)
    # Adam's first step is close to lr * sign(grad), so low-precision noise flips the sign of tiny
    # gradient entries: the update directions agree closely but not exactly
    cos = torch.nn.functional.cosine_similarity(d32, dlow, dim=0)
    assert cos > 0.85, f"{precision} update direction differs from fp32 (cosine {cos:.3f})"


def test_validation_logs_metrics_and_writes_a_grid(tmp_path) -> None:
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, num_grid_images=3)
    root = tmp_path / "not" / "yet"  # the run folder's parents are made too
    trainer = fit(model, tmp_path, steps=1, limit_val_batches=2, default_root_dir=str(root))
    for key in ["val/l1", "val/psnr", "val/ssim"]:
        assert torch.isfinite(trainer.callback_metrics[key])
    # what the progress bar shows: the two losses and the two validation scores a run is watched by
    assert set(trainer.progress_bar_metrics) == {"train/loss_d", "train/loss_g", "val/l1", "val/psnr"}
    img = Image.open(root / "images" / "val_epoch000.png")
    # one row per image (input | output | target), 2-pixel padding
    assert img.size == (3 * 32 + 2 * 2, 3 * 32 + 4 * 2)


def test_a_colorization_models_validation_scores_and_shows_rgb_images(tmp_path) -> None:
    """L in, ab out: validation turns input, output and target back into RGB (p2p.io.tasks.views) before
    the metrics and the grid, which would otherwise show one- and two-channel tensors side by side."""
    model = Pix2Pix(
        generator=SMALL_G, discriminator=SMALL_D, in_channels=1, out_channels=2, photo_task="colorization"
    )
    trainer = fit(model, tmp_path, steps=1, limit_val_batches=1)
    assert torch.isfinite(trainer.callback_metrics["val/psnr"])
    img = Image.open(tmp_path / "images" / "val_epoch000.png")
    assert img.mode == "RGB" and img.size == (3 * 32 + 2 * 2, 2 * 32 + 3 * 2)  # 2 rows: the batch of 2
    left = np.asarray(img)[2:34, 2:34].astype(int)  # the input, grey: L with a = b = 0
    assert np.abs(left - left[:, :, :1]).max() <= 1


def test_checkpoint_rebuilds_the_model_without_a_config(tmp_path) -> None:
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, loss={"gan_mode": "lsgan"}, in_channels=1)
    trainer = fit(model, tmp_path, steps=1, limit_val_batches=0)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    again = Pix2Pix.load_from_checkpoint(path, map_location="cpu")
    assert again.objective.gan_mode == "lsgan" and again.hparams.in_channels == 1
    x = torch.randn(1, 1, 32, 32)
    model.eval()
    again.eval()
    torch.testing.assert_close(model.G(x), again.G(x))


class Known(torch.nn.Module):
    """A 'generator' whose output is a fixed image per input: validation's metrics can be computed by hand."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value
        self.conv = torch.nn.Conv2d(3, 3, 1)  # a parameter, so an optimiser can be built

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(len(x), -1, -1, -1) + 0 * self.conv(x)


def test_validation_metrics_are_the_per_image_means_on_clamped_outputs(tmp_path) -> None:
    """val/l1 averages per image (3 images in batches of 2 and 1), PSNR and SSIM see the output clamped to
    [-1, 1] and mapped to [0, 1] in fp32; the values are recomputed here with torchmetrics' functions."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    data = Pairs(n=3)
    value = torch.linspace(-1.5, 1.5, 3 * 32 * 32).reshape(1, 3, 32, 32)  # a third of it outside [-1, 1]
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, num_grid_images=0)
    model.G = Known(value)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path))  # fmt: skip
    (got,) = trainer.validate(model, DataLoader(data, batch_size=2), verbose=False)
    fake = value.expand(3, -1, -1, -1)
    l1 = (fake - data.y).abs().mean(dim=(1, 2, 3)).mean()  # per image, then over images
    f01, y01 = (fake.clamp(-1, 1) + 1) / 2, (data.y + 1) / 2
    psnr = peak_signal_noise_ratio(f01, y01, data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(f01, y01, data_range=1.0)
    assert got["val/l1"] == pytest.approx(l1.item(), rel=1e-5)
    assert got["val/psnr"] == pytest.approx(psnr.item(), rel=1e-5)
    assert got["val/ssim"] == pytest.approx(ssim.item(), rel=1e-5)
    assert not (tmp_path / "images").exists()  # num_grid_images=0: no grid, and no error either


def test_validation_runs_g_in_the_configured_inference_mode(tmp_path) -> None:
    """val_inference=paper normalises with the batch's statistics: with running averages far from them
    (and dropout off), val/l1 is the one computed in paper mode, not in eval mode."""
    from p2p.inference import inference_mode

    data = Pairs(n=2)
    losses = {}
    for mode in ("paper", "eval"):
        torch.manual_seed(0)
        model = Pix2Pix(generator={**SMALL_G, "dropout": 0.0}, discriminator=SMALL_D, val_inference=mode,
                        num_grid_images=0)  # fmt: skip
        for m in model.G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(2.0)
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=str(tmp_path))  # fmt: skip
        (got,) = trainer.validate(model, DataLoader(data, batch_size=2), verbose=False)
        with torch.no_grad(), inference_mode(model.G, mode):
            want = (model.G(data.x) - data.y).abs().mean()
        assert got["val/l1"] == pytest.approx(want.item(), rel=1e-5), mode
        losses[mode] = got["val/l1"]
    assert abs(losses["paper"] - losses["eval"]) > 1e-3


def test_checkpoint_hooks_record_the_generator_and_bring_its_data_settings_back() -> None:
    import p2p
    from p2p.models.hub import generator_config

    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D)
    model.guard.check_checkpoint = lambda *a: None  # type: ignore[method-assign]  # (no trainer here)
    ckpt: dict = {}
    model.on_save_checkpoint(ckpt)
    assert ckpt["p2p"]["version"] == p2p.__version__
    assert ckpt["p2p"]["generator"]["name"] == "unet_256" and ckpt["p2p"]["generator"]["num_downs"] == 5
    again = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D)
    settings = {"name": "facades", "crop_size": 128}
    again.on_load_checkpoint({"p2p": {"generator": {**ckpt["p2p"]["generator"], "data": settings}}})
    assert generator_config(again.G)["data"] == settings
    again.on_load_checkpoint({})  # a checkpoint of a p2p version that stored nothing: no error, nothing set
    assert generator_config(again.G)["data"] == settings


def test_no_validation_grid_from_the_sanity_check(tmp_path) -> None:
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, num_grid_images=2)
    fit(model, tmp_path, steps=1, num_sanity_val_steps=1, check_val_every_n_epoch=2)  # no real validation
    assert not (tmp_path / "images").exists()


def test_the_grid_goes_to_the_loggers_with_its_key_path_and_step(tmp_path, monkeypatch) -> None:
    sent = []
    monkeypatch.setattr(module, "log_image", lambda *args: sent.append(args))
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, num_grid_images=1)
    trainer = fit(model, tmp_path, steps=1, logger=CSVLogger(tmp_path))
    assert sent == [(trainer.logger, "val/grid", tmp_path / "images" / "val_epoch000.png", 2)]


def test_log_image_sends_the_png_to_tensorboard_and_wandb(tmp_path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    png = tmp_path / "grid.png"
    pixels = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)
    Image.fromarray(pixels).save(png)
    calls = []

    class TB(TensorBoardLogger):
        def __init__(self) -> None:  # no event files: only what reaches the writer
            pass

        @property
        def experiment(self):  # type: ignore[override]
            return type("W", (), {"add_image": lambda _, *a, **k: calls.append(("tb", a, k))})()

    class WB(WandbLogger):
        def __init__(self) -> None:
            pass

        def log_image(self, *args, **kwargs) -> None:  # type: ignore[override]
            calls.append(("wandb", args, kwargs))

    module.log_image(TB(), "val/grid", png, 7)
    module.log_image(WB(), "val/grid", png, 7)
    module.log_image(None, "val/grid", png, 7)  # the CSV logger, or none: the file alone
    (_, tb_args, tb_kw), (_, wb_args, wb_kw) = calls
    assert tb_args[0] == "val/grid" and tb_args[2] == 7 and tb_kw == {"dataformats": "HWC"}
    assert np.array_equal(tb_args[1], pixels)
    assert wb_args == () and wb_kw == {"key": "val/grid", "images": [str(png)], "step": 7}


def test_lsgan_halves_the_least_squares_terms_of_d() -> None:
    real, fake = torch.tensor([1.5, 0.2]), torch.tensor([-0.3, 0.7])
    want = 0.5 * (((real - 1) ** 2).mean() + (fake**2).mean())
    assert discriminator_loss(real, fake, "lsgan") == pytest.approx(want.item())


def test_the_hole_region_restricts_the_training_l1_to_the_hole(tmp_path) -> None:
    """Inpainting with loss.l1_region=hole: the logged L1 is the mean over the hole's pixels only."""
    torch.manual_seed(0)
    g = {**SMALL_G, "dropout": 0.0}  # so the step's fake can be recomputed exactly
    model = Pix2Pix(generator=g, discriminator=SMALL_D, in_channels=4, photo_task="inpainting",
                    loss={"l1_region": "hole"})  # fmt: skip
    data = Pairs(in_ch=4)
    data.x[:, 3] = -1.0
    data.x[:, 3, 8:24, 4:20] = 1.0  # the hole: 16 x 16 of 32 x 32
    g0 = copy.deepcopy(model.G).train()
    logged = fit(model, tmp_path, steps=1, data=data, limit_val_batches=0).callback_metrics
    with torch.no_grad():
        fake = g0(data.x[:2])
    want = (fake - data.y[:2])[:, :, 8:24, 4:20].abs().mean()
    assert logged["train/loss_g_l1"] == pytest.approx(want.item(), rel=1e-5)
    assert logged["train/loss_g_l1"] != pytest.approx((fake - data.y[:2]).abs().mean().item())


def test_a_nonfinite_loss_stops_training_naming_the_batch(tmp_path) -> None:
    data = Pairs()
    data.x[2] = float("nan")  # in the second batch of two
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D)
    with pytest.raises(NonFiniteLossError, match=r"global step 2 \(epoch 0, batch 1\): loss_d=nan"):
        fit(model, tmp_path, steps=2, data=data, limit_val_batches=0)


def test_resumed_optimiser_states_get_their_parameters_layout_at_the_start(tmp_path, monkeypatch) -> None:
    seen: list[object] = []
    monkeypatch.setattr(module, "match_optimizer_state_layout", seen.append)
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D)
    trainer = fit(model, tmp_path, steps=1)
    assert seen == trainer.optimizers  # the torch optimisers themselves, G's and D's
    assert [type(o) for o in seen] == [torch.optim.Adam, torch.optim.Adam]


def test_the_g_step_uses_the_real_target_in_the_objectives_gan_mode_and_guards_both_its_terms(
    tmp_path, monkeypatch
) -> None:
    """G's adversarial term is gan_loss(D(x, G(x)), real=True, mode) (non-saturating; lsgan: (D - 1)^2), and
    the NaN guard of each step sees every term of that step's loss (p2p.training.guard)."""
    calls, guarded = [], []
    real_gan_loss = module.gan_loss
    monkeypatch.setattr(module, "gan_loss", lambda z, real, mode: calls.append((real, mode)) or real_gan_loss(z, real, mode))  # fmt: skip
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, loss={"gan_mode": "lsgan"})
    allows = model.guard.allows
    monkeypatch.setattr(
        model.guard,
        "allows",
        lambda m, **terms: (
            guarded.append(sorted(k for k, v in terms.items() if v is not None)) or allows(m, **terms)
        ),
    )
    trainer = fit(model, tmp_path, steps=1, limit_val_batches=0)
    assert calls == [(True, "lsgan")]
    assert guarded == [["loss_d"], ["loss_g_gan", "loss_g_l1"]]
    assert {"train/loss_d", "train/loss_g", "train/loss_g_gan", "train/loss_g_l1"} <= set(
        trainer.callback_metrics
    )
    assert trainer.callback_metrics["train/loss_g"] == pytest.approx(
        (
            100 * trainer.callback_metrics["train/loss_g_l1"] + trainer.callback_metrics["train/loss_g_gan"]
        ).item()
    )


def test_deferred_checks_still_read_the_last_steps_flags_when_training_ends(tmp_path) -> None:
    """check_finite=deferred (CUDA's default, chosen here on CPU): a NaN loss after the last periodic read is
    reported by the read at the end of training."""
    data = Pairs()
    data.x[2] = float("nan")  # the second and last batch
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, check_finite="deferred")
    with pytest.raises(
        NonFiniteLossError, match=r"between global steps 0 and 4: loss_d.*found at the end of training"
    ):
        fit(model, tmp_path, steps=2, data=data, limit_val_batches=0, log_every_n_steps=50)


def test_the_learning_rate_is_logged_each_epoch_and_adam_is_fused_where_pytorch_has_it(tmp_path) -> None:
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, optim={"n_epochs": 1, "n_epochs_decay": 3})
    trainer = fit(model, tmp_path, steps=1, max_epochs=2, limit_val_batches=0)
    assert trainer.callback_metrics["train/lr"] == pytest.approx(2e-4 * 0.5)  # after the second epoch's step
    assert [o.defaults["fused"] for o in trainer.optimizers] == [fused_adam_available("cpu")] * 2
    net = torch.nn.Linear(2, 2)
    assert Optim(fused=False).build([net], "cpu")[0][0].defaults["fused"] is False
    assert Optim().build([net], "cpu")[0][0].defaults["fused"] == fused_adam_available("cpu")
    assert Optim().build([net], "mps")[0][0].defaults["fused"] is False  # a device without fused Adam


def test_l1_inside_a_region_is_the_mean_over_its_pixels() -> None:
    fake, target = torch.full((1, 1, 2, 3), 0.25), torch.zeros(1, 1, 2, 3)
    fake[0, 0, 1, 2] = -0.75
    one = torch.zeros(1, 1, 2, 3, dtype=torch.bool)
    one[0, 0, 1, 2] = True  # a one-pixel region of a one-channel image
    assert l1_loss(fake, target, one).item() == 0.75
    assert l1_loss(fake, target, ~one).item() == 0.25
    assert l1_loss(fake, target, torch.zeros_like(one)).item() == 0.0  # an empty region: 0, not NaN


class Settings(L.LightningDataModule):
    """A data module that describes its data, as p2p's do (``settings()``), over the test's pairs."""

    def settings(self) -> dict:
        return {"load_size": 36, "crop_size": 32, "preprocess": "resize_and_crop"}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Pairs(), batch_size=2)

    val_dataloader = train_dataloader


def test_fit_records_the_data_settings_with_g_and_validate_alone_does_not(tmp_path) -> None:
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D)
    make_trainer(tmp_path).validate(model, datamodule=Settings(), verbose=False)
    assert "data" not in generator_config(model.G)
    make_trainer(tmp_path).fit(model, datamodule=Settings())
    assert generator_config(model.G)["data"] == Settings().settings()


def test_channels_last_and_compilation_are_set_up_once_as_asked(tmp_path, monkeypatch) -> None:
    """channels_last=true is honoured on CPU too (auto: CUDA only); compile compiles G and D once, even
    when setup runs again (fit, then validate)."""
    compiled: list[tuple] = []
    monkeypatch.setattr(module, "compile_modules", lambda mode, *nets: compiled.append((mode, *nets)))
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, channels_last=True, compile=True)
    trainer = fit(model, tmp_path, steps=1)
    trainer.validate(model, DataLoader(Pairs(), batch_size=2), verbose=False)
    assert model.channels_last is True
    assert compiled == [("default", model.G, model.D)]
    compiled.clear()
    fit(Pix2Pix(generator=SMALL_G, discriminator=SMALL_D), tmp_path, steps=1)
    assert compiled == []  # eager by default


def conv_weights(model: Pix2Pix) -> list[torch.Tensor]:
    """A 4x4 conv weight of G and of D, with more than one input channel: their layout shows."""
    return [model.G.down[1].conv.weight, model.D.model[0].weight]


class Layouts(L.Callback):
    """Records, at each training batch, whether G's and D's conv weights are stored channels-last."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, ...]] = []

    def on_train_batch_start(self, trainer, model, batch, batch_idx) -> None:
        self.seen.append(
            tuple(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(model))
        )


def test_channels_last_converts_both_networks_for_training_and_back_after(tmp_path) -> None:
    layouts = Layouts()
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, channels_last=True)
    fit(model, tmp_path, steps=1, callbacks=[layouts])
    assert layouts.seen == [(True, True)]
    # NCHW again after training, for exporters and safetensors
    assert all(
        w.is_contiguous() and not w.is_contiguous(memory_format=torch.channels_last)
        for w in conv_weights(model)
    )
    plain = Layouts()
    fit(Pix2Pix(generator=SMALL_G, discriminator=SMALL_D), tmp_path, steps=1, callbacks=[plain])
    assert plain.seen == [(False, False)]  # auto: NHWC on CUDA only


def test_cuda_graphs_on_a_cpu_run_stop_before_training(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(module, "compile_modules", lambda *a: pytest.fail("compiled on CPU"))
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, cuda_graphs=True)
    with pytest.raises(ValueError, match=r"model\.cuda_graphs=true needs a CUDA device; this run is on cpu"):
        fit(model, tmp_path, steps=1)


@pytest.mark.parametrize(
    ("loss", "d_in"),
    [({}, 6), ({"conditional": False}, 3), ({"gan_weight": 0.0}, None)],
    ids=["cgan", "gan", "l1"],
)
def test_build_networks_defaults_to_the_papers_pair_and_feeds_d_what_the_loss_shows_it(
    loss: dict, d_in: int | None
) -> None:
    """No specs: the paper's U-Net-256 (8 levels) and 70x70 PatchGAN (section 3.2); D's input is the
    (input, output) stack for the cGAN, the output for the GAN, and no D is built without a GAN term."""
    with torch.device("meta"):
        G, D = module.build_networks(None, None, Objective(**loss), 3, 3)
    assert isinstance(G, UNetGenerator) and G.num_downs == 8
    if d_in is None:
        assert D is None
    else:
        convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
        assert isinstance(D, PatchDiscriminator) and len(convs) == 5  # n_layers=3: the 70x70 PatchGAN
        assert convs[0].in_channels == d_in


@pytest.mark.parametrize(
    ("norm", "world_size", "sync", "warns"),
    [
        ("batch", 2, False, True),
        ("batch", 1, False, False),
        ("instance", 2, False, False),
        ("batch", 2, True, False),
    ],
)
def test_unsynced_batchnorm_under_several_processes_is_said_once_the_run_is_set_up(
    norm: str, world_size: int, sync: bool, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Said where the run's real world size is known (any devices=, num_nodes=), after Lightning has put
    SyncBatchNorm in place when trainer.sync_batchnorm asks for it."""
    model = Pix2Pix({**SMALL_G, "norm": norm}, {**SMALL_D, "norm": norm})
    if sync:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model._trainer = type("T", (), {"world_size": world_size, "is_global_zero": True})()  # type: ignore[assignment]
    with caplog.at_level("WARNING", logger="p2p.training.module"):
        model.on_fit_start()
    assert ("BatchNorm under DDP without trainer.sync_batchnorm=true" in caplog.text) is warns
