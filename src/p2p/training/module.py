"""The pix2pix LightningModule: the paper's training algorithm (section 3.3) with manual optimisation.

Per batch: G computes the fake once; D takes one gradient step on (real, fake.detach()) with its objective
halved; then G takes one step on the non-saturating adversarial loss plus lambda * L1. Adam(2e-4,
(0.5, 0.999)) for both; the learning rate is constant for ``n_epochs`` and decays linearly over
``n_epochs_decay`` (the reference schedule, stepped per epoch; p2p.training.optim). NaN/inf losses are
p2p.training.guard's; memory layout and compilation p2p.training.perf's.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from p2p.errors import ConfigError, check_value
from p2p.inference import grid_rows, inference_mode
from p2p.inference.modes import InferenceMode
from p2p.io.tasks import PhotoTaskName, in_hole, views
from p2p.models import build_model, model_spec
from p2p.models.hub import GeneratorHubMixin, generator_config, p2p_version, set_metadata
from p2p.training.guard import CheckFinite, NonfiniteAction, NonFiniteGuard
from p2p.training.objective import Objective, discriminator_loss, gan_loss, l1_loss
from p2p.training.optim import Optim
from p2p.training.perf import (
    compile_mode,
    compile_modules,
    match_optimizer_state_layout,
    nhwc,
    resolve_channels_last,
    to_channels_last,
    to_contiguous,
)

log = logging.getLogger(__name__)


def build_networks(
    generator: dict[str, Any] | None,
    discriminator: dict[str, Any] | None,
    objective: Objective,
    in_channels: int,
    out_channels: int,
) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """G and, when the objective has a GAN term, D, from their specs (``{"name": ..., **arguments}``), D
    taking what the objective shows it (`Objective.discriminator_channels`)."""
    g_name, g_args = model_spec(generator, "unet_256")
    G = build_model(g_name, in_channels=in_channels, out_channels=out_channels, **g_args)
    if not objective.uses_gan:
        return G, None
    d_name, d_args = model_spec(discriminator, "patchgan_70")
    return G, build_model(
        d_name, in_channels=objective.discriminator_channels(in_channels, out_channels), **d_args
    )


class Pix2Pix(L.LightningModule):
    """pix2pix. Hyperparameters are plain dicts so a checkpoint rebuilds the model with no config at hand
    (``Pix2Pix.load_from_checkpoint(path)``).

    ``check_finite`` (`NonFiniteGuard` has the figures): ``auto``, the default, checks the loss terms before
    every optimiser step on CPU, where reading them back waits for nothing, and on CUDA reads a device-side
    flag only every ``trainer.log_every_n_steps`` batches and before each checkpoint, because a host sync
    per step stalls the GPU's kernel queue (and CUDA graph replays). Either way no checkpoint with NaN/inf
    weights is written; deferred, the error names a range of global steps instead of the step.
    ``on_nonfinite=skip`` always checks per step."""

    def __init__(
        self,
        generator: dict[str, Any] | None = None,  # {"name": "unet_256", **constructor overrides}
        discriminator: dict[str, Any]
        | None = None,  # {"name": "patchgan_70", ...}; unused without a GAN term
        loss: dict[str, Any] | None = None,  # fields of p2p.training.Objective
        optim: Optim | dict[str, Any] | None = None,  # p2p.training.optim.Optim: lr, betas, schedule
        in_channels: int = 3,
        out_channels: int = 3,
        val_inference: InferenceMode = "eval",  # how validation runs G: eval (deterministic) or paper (section 6.2)
        num_grid_images: int = 8,  # validation images shown in the input | output | target grid
        on_nonfinite: NonfiniteAction = "error",  # a NaN/inf loss term: error (stop, naming it) or skip (that step)
        check_finite: CheckFinite = "auto",  # when to look: step, deferred (a device flag), auto (p2p.training.guard)
        max_skipped_steps: float = 0.25,  # on_nonfinite=skip: stop past this share of steps skipped (>= 1: a count)
        channels_last: bool
        | Literal["auto"] = "auto",  # NHWC while training; auto: CUDA only (p2p.training.perf)
        compile: bool | str = False,  # torch.compile G and D: true or a mode (p2p.perf.COMPILE_MODES)
        cuda_graphs: bool = False,  # CUDA graphs via compile mode reduce-overhead: for batch-1 training on GPU
        photo_task: PhotoTaskName | None = None,  # the data's photo task (p2p.io.tasks), recorded with G
    ) -> None:  # pragma: no mutate block (mutmut's wrapper hides the arguments save_hyperparameters reads)
        super().__init__()
        self.save_hyperparameters()
        self.optim = Optim(**optim) if isinstance(optim, dict) else (optim or Optim())
        self.hparams["optim"] = asdict(self.optim)  # plain data in checkpoints (they load with weights_only)
        self.objective = Objective(**(loss or {}))
        self.val_inference = check_value("val_inference", val_inference, InferenceMode)
        self.num_grid_images = num_grid_images
        self.guard = NonFiniteGuard(on_nonfinite, check_finite, max_skipped_steps)
        channels_last = check_value("channels_last", channels_last, bool | Literal["auto"])
        self.channels_last_option, self.channels_last = channels_last, False  # resolved in setup()
        self.compile_mode = compile_mode(compile, cuda_graphs)  # checked here: a typo fails before training
        self._compiled = False

        self.G, self.D = build_networks(generator, discriminator, self.objective, in_channels, out_channels)
        # what G's output means (colorization: ab, shown with the input's L): read back from checkpoints and
        # save_pretrained folders by p2p.load_generator, p2p.Translator and p2p-eval
        self.photo_task = check_value("photo_task", photo_task, PhotoTaskName | None)
        if self.photo_task is not None and isinstance(self.G, GeneratorHubMixin):
            set_metadata(self.G, photo_task=self.photo_task)
        if self.objective.l1_region == "hole" and self.photo_task != "inpainting":
            raise ConfigError("loss.l1_region: hole needs data=inpainting (the hole is the input's mask)")
        self.automatic_optimization = False  # two optimisers, stepped by hand as in the paper

        self.val_l1 = MeanMetric()
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self._grid: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.G(x)

    def _d(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert self.D is not None
        return self.D(torch.cat([x, y], 1) if self.objective.conditional else y)

    # --- speed (p2p.perf): layout and compilation change how the networks run, never what they compute ----
    def setup(self, stage: str) -> None:
        settings = getattr(getattr(self.trainer, "datamodule", None), "settings", None)  # p2p's data modules
        if stage == "fit" and callable(settings) and isinstance(self.G, GeneratorHubMixin):
            # what shaped the training images, kept with G (checkpoints, save_pretrained): p2p-eval rebuilds
            # the data from it, so a model trained at 128x128 is scored at 128x128 (p2p.runs.eval)
            set_metadata(self.G, data=settings())
        device = self.trainer.strategy.root_device.type  # setup runs before the move to the device
        self.guard.resolve(device)  # check_finite=auto: per step on CPU, deferred on CUDA
        self.channels_last = resolve_channels_last(self.channels_last_option, device)
        if self.channels_last:
            to_channels_last(self.G, self.D)
        if self.compile_mode is not None and not self._compiled:
            if self.compile_mode == "reduce-overhead" and device != "cuda":
                raise ValueError(f"model.cuda_graphs=true needs a CUDA device; this run is on {device}")
            compile_modules(self.compile_mode, self.G, self.D)
            self._compiled = True

    def teardown(self, stage: str) -> None:
        if self.channels_last:  # exporters and safetensors expect NCHW weights
            to_contiguous(self.G, self.D)

    def on_fit_start(self) -> None:
        # after the strategy's setup, so SyncBatchNorm (not a BatchNorm2d) is in place if it was asked for
        unsynced = any(isinstance(m, torch.nn.BatchNorm2d) for m in self.modules())
        if unsynced and self.trainer.world_size > 1 and self.trainer.is_global_zero:
            log.warning("BatchNorm under DDP without trainer.sync_batchnorm=true normalises each process's batch "
                        "separately: the result differs from one process with the same global batch "
                        "(docs/reliability.md)")  # fmt: skip

    def on_train_start(self) -> None:
        # a resumed optimiser state stored in another layout than the parameters (see the function)
        opts = self.optimizers(use_pl_optimizer=False)
        for opt in opts if isinstance(opts, list) else [opts]:
            match_optimizer_state_layout(opt)

    # --- the algorithm (section 3.3) ---------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x, y = nhwc(batch["input"], self.channels_last), nhwc(batch["target"], self.channels_last)
        opt_g, opt_d = self._optimizers()
        obj = self.objective
        loss_d: torch.Tensor | None = None
        loss_gan: torch.Tensor | None = None
        with self.guard.batch(self, batch_idx):  # NaN/inf losses (p2p.training.guard)
            fake = self.G(x)

            # (1) D step: maximise log D(x, y) + log(1 - D(x, G(x))), halved; on fake.detach(): G is untouched
            if self.D is not None:
                with self.toggled_optimizer(opt_d):
                    loss_d = discriminator_loss(self._d(x, y), self._d(x, fake.detach()), obj.gan_mode)
                    self._step(opt_d, loss_d, loss_d=loss_d)

            # (2) G step: non-saturating GAN loss (maximise log D(x, G(x))) + lambda * L1; D is frozen
            with self.toggled_optimizer(opt_g):
                hole = in_hole(x) if obj.l1_region == "hole" else None
                loss_l1 = l1_loss(fake.float(), y.float(), hole)
                loss_g = obj.l1_weight * loss_l1
                if self.D is not None:
                    loss_gan = gan_loss(self._d(x, fake), True, obj.gan_mode)
                    loss_g = loss_g + obj.gan_weight * loss_gan
                self._step(opt_g, loss_g, loss_g_gan=loss_gan, loss_g_l1=loss_l1)
            self._log(loss_d=loss_d, loss_g=loss_g, loss_g_gan=loss_gan, loss_g_l1=loss_l1)

    def _step(self, opt: Any, loss: torch.Tensor, **terms: torch.Tensor | None) -> None:
        """One optimiser step on ``loss``, unless the guard holds it back for a NaN/inf one of ``terms``."""
        opt.zero_grad(set_to_none=True)
        if self.guard.allows(self, **terms):
            self.manual_backward(loss)
            opt.step()

    def _log(self, **losses: torch.Tensor | None) -> None:
        for name, value in losses.items():
            if value is not None:  # loss_d and loss_g_gan exist only with a GAN term
                self.log(f"train/{name}", value.detach(), prog_bar=name in ("loss_d", "loss_g"))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # no checkpoint with NaN/inf weights is ever written (Lightning writes it after this hook)
        self.guard.check_checkpoint(
            self, checkpoint, f"before writing a checkpoint (epoch {self.current_epoch})"
        )
        # the generator's every constructor argument, so that loading it (p2p.weights) never depends on the
        # builder defaults of the p2p version that reads it
        if isinstance(self.G, GeneratorHubMixin):  # p2p's generators (a user's own may not describe itself)
            checkpoint["p2p"] = {"generator": generator_config(self.G), "version": p2p_version()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the metadata recorded with G (its data settings, above) comes back with the checkpoint
        saved = (checkpoint.get("p2p") or {}).get("generator") or {}
        if "data" in saved and isinstance(self.G, GeneratorHubMixin):
            set_metadata(self.G, data=saved["data"])

    def on_train_end(self) -> None:
        self.guard.check(self, "at the end of training")

    def on_train_epoch_end(self) -> None:
        # manual optimisation: schedulers are ours to step, once per epoch like the reference
        scheds = self.lr_schedulers()
        for s in scheds if isinstance(scheds, list) else [scheds]:
            if s is not None:
                s.step()
        self.log("train/lr", self._optimizers()[0].param_groups[0]["lr"])

    def _optimizers(self) -> tuple[Any, Any]:
        opts = self.optimizers()
        return (opts[0], opts[1]) if isinstance(opts, list) else (opts, None)

    def configure_optimizers(self) -> Any:
        return self.optim.build([self.G, *([self.D] if self.D is not None else [])], self.device.type)

    # --- validation -------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        # fresh metric states: ones left by trainer.validate() are inference tensors that fit's
        # validation (run under no_grad, not inference_mode) could not update in place
        for metric in (self.val_l1, self.val_psnr, self.val_ssim):
            metric.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x, y = batch["input"], batch["target"]
        with inference_mode(self.G, self.val_inference):
            fake = self.G(x).float()
        # metrics in fp32 even under bf16-mixed: SSIM's Gaussian windows are convolutions, which autocast
        # would run in bf16, and its variances (E[x^2] - E[x]^2) cancel catastrophically at that precision
        with torch.autocast(x.device.type, enabled=False):
            x, fake, y = views(self.photo_task, x.float(), fake, y.float())  # photo tasks: RGB images again
            self.val_l1.update(F.l1_loss(fake, y, reduction="none").mean(dim=(1, 2, 3)))
            fake01, y01 = (fake.clamp(-1, 1) + 1) / 2, (y + 1) / 2
            self.val_psnr.update(fake01, y01)
            self.val_ssim.update(fake01, y01)
        self.log("val/l1", self.val_l1, prog_bar=True)
        self.log("val/psnr", self.val_psnr, prog_bar=True)
        self.log("val/ssim", self.val_ssim)
        have = sum(g.shape[0] for g in self._grid)
        if have < self.num_grid_images:
            k = self.num_grid_images - have
            self._grid.append(grid_rows(x[:k], fake[:k], y[:k]).cpu())

    def on_validation_epoch_end(self) -> None:
        rows, self._grid = self._grid, []
        if not rows or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        from torchvision.utils import save_image

        path = Path(self.trainer.default_root_dir) / "images" / f"val_epoch{self.current_epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid = torch.cat(rows)  # (N, 3, 3 * ... ) each row: input | output | target
        save_image(grid, path, nrow=1, padding=2)
        log_image(self.logger, "val/grid", path, self.global_step)


def log_image(logger: Any, key: str, path: Path, step: int) -> None:
    """Send a saved PNG to whichever logger is active (the CSV logger keeps only the file)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    if isinstance(logger, WandbLogger):
        logger.log_image(key=key, images=[str(path)], step=step)
    elif isinstance(logger, TensorBoardLogger):
        import numpy as np
        from PIL import Image

        img = np.asarray(Image.open(path).convert("RGB"))
        logger.experiment.add_image(key, img, step, dataformats="HWC")
