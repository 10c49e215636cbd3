"""The LightningModule follows the paper's algorithm: D step on the detached fake, then G step."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from p2p.training import Objective, Pix2Pix, discriminator_loss, gan_loss

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


def fit(model: Pix2Pix, tmp_path, steps: int = 1, **trainer_kw) -> L.Trainer:
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
    trainer = L.Trainer(**kw)
    loader = DataLoader(
        Pairs(in_ch=model.hparams.in_channels, out_ch=model.hparams.out_channels), batch_size=2
    )
    trainer.fit(model, loader, loader)
    return trainer


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
    trainer = fit(model, tmp_path, steps=1, limit_val_batches=2)
    for key in ["val/l1", "val/psnr", "val/ssim"]:
        assert torch.isfinite(trainer.callback_metrics[key])
    grid = tmp_path / "images" / "val_epoch000.png"
    from PIL import Image

    img = Image.open(grid)
    # one row per image (input | output | target), 2-pixel padding
    assert img.size == (3 * 32 + 2 * 2, 3 * 32 + 4 * 2)


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
