"""Speed features keep the results: bf16 autocast, channels-last, fused Adam, the RAM cache and device
augmentation against the plain fp32 path; precision=auto resolves by hardware; CUDA paths on a GPU."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from p2p.config.build import build_module, build_trainer
from p2p.data import PairedDataModule, SyntheticDataModule
from p2p.data.cache import CachedPairs
from p2p.runs.bench import PlainLoop
from p2p.runs.train import train
from p2p.training import Pix2Pix, perf

# 64x64 pairs, widths 8, no dropout: the same function in every path, so any difference is arithmetic
TINY = [
    "debug=smoke",
    "data=synthetic",
    "model.generator.num_downs=6",
    "data.load_size=72",
    "data.crop_size=64",
]
REFERENCE = [  # every speed feature off: the reference implementation's arithmetic
    "trainer.precision=32",
    "model.channels_last=false",
    "model.optim.fused=false",
    "data.cache=none",
    "data.device_augment=false",
]


def _batches(n: int) -> list[dict[str, torch.Tensor]]:
    dm = SyntheticDataModule(num_train=2 * n, image_size=64, load_size=72, crop_size=64, num_workers=0)
    dm.setup("fit")
    ds = dm.train_set
    return [
        {k: v for k, v in default_collate([ds[2 * i], ds[2 * i + 1]]).items() if k != "path"}
        for i in range(n)
    ]


class _Record(L.Callback):
    """Per-step losses, and the layout G's weights had while training."""

    def __init__(self) -> None:
        self.losses: list[dict[str, float]] = []
        self.nhwc: list[bool] = []

    def on_train_batch_start(self, trainer, module, *args) -> None:
        w = module.G.down[1].conv.weight
        self.nhwc.append(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous())

    def on_train_batch_end(self, trainer, module, *args) -> None:
        m = trainer.callback_metrics
        self.losses.append({k: float(m[f"train/{k}"]) for k in ("loss_d", "loss_g")})


def _fast_vs_plain(compose_train, tmp_path, precision: str, overrides=(), accelerator: str = "cpu", steps=4):
    """p2p's module (its defaults, the given precision and overrides) and the plain fp32 loop, from the same
    initial weights on the same batches."""
    cfg = compose_train([*TINY, "model.generator.dropout=0", *overrides], tmp_path)
    torch.manual_seed(0)
    model = build_module(cfg)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    plain = PlainLoop(cfg, device)
    plain.G.load_state_dict(model.G.state_dict())
    plain.D.load_state_dict(model.D.state_dict())
    w0 = [p.detach().clone() for p in model.G.parameters()]
    batches = _batches(steps)

    record = _Record()
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, precision=precision, max_epochs=1, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[record], default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(model, DataLoader(batches, batch_size=None))
    plain_losses = [plain.step(b["input"].to(device), b["target"].to(device)) for b in batches]

    def delta(params) -> torch.Tensor:
        return torch.cat([(p.detach().cpu() - a.cpu()).flatten() for a, p in zip(w0, params)])

    return record, plain_losses, delta(model.G.parameters()), delta(plain.G.parameters()), model


def test_the_module_with_speed_features_off_is_the_plain_loop_bit_for_bit(compose_train, tmp_path) -> None:
    """The reference to compare against: the Lightning module with every feature off computes exactly what
    the hand-written fp32 loop computes (same losses, same weights, to the last bit)."""
    off = ["model.channels_last=false", "model.optim.fused=false"]
    record, plain, d_fast, d_plain, _ = _fast_vs_plain(compose_train, tmp_path, "32", off)
    assert [r["loss_d"] for r in record.losses] == [float(p["loss_d"]) for p in plain]
    assert [r["loss_g"] for r in record.losses] == [float(p["loss_g"]) for p in plain]
    assert torch.equal(d_fast, d_plain)


def test_channels_last_and_fused_adam_change_only_rounding(compose_train, tmp_path) -> None:
    """In fp32, NHWC convolutions and fused Adam differ from the plain loop only by float rounding: losses
    within 0.1 % over 4 steps (measured: <= 1.2e-4) and G's updates with cosine > 0.98 (measured 0.992;
    Adam's first steps are ~lr * sign(grad), so rounding flips the sign of gradient entries near 0). The
    weights are NHWC while training and NCHW after fit."""
    nhwc = ["model.channels_last=true"]  # the CUDA default (auto keeps NCHW on CPU)
    record, plain, d_fast, d_plain, model = _fast_vs_plain(compose_train, tmp_path, "32", nhwc)
    assert all(record.nhwc), "G's weights were not channels-last during training"
    assert all(p.is_contiguous() for p in model.G.parameters()), "weights must be NCHW after fit"
    for step, (fast, ref) in enumerate(zip(record.losses, plain)):
        for key in ("loss_d", "loss_g"):
            assert fast[key] == pytest.approx(float(ref[key]), rel=1e-3), f"step {step} {key}"
    assert torch.nn.functional.cosine_similarity(d_fast, d_plain, dim=0) > 0.98


def test_bf16_fast_path_agrees_with_plain_fp32_within_bf16_noise(compose_train, tmp_path) -> None:
    """p2p's fast CPU path (bf16 autocast + fused Adam) vs the plain fp32 loop over 4 steps. Measured on the
    project's CPU: losses within 4.2e-4 (relative), cosine of G's updates 0.924. Tolerances: losses within
    1 % (bf16 keeps 8 mantissa bits), cosine > 0.85 (Adam's early steps are ~lr * sign(grad), so bf16 noise
    flips the sign of the tiniest gradient entries; a wrong computation gives ~0)."""
    record, plain, d_fast, d_plain, _ = _fast_vs_plain(compose_train, tmp_path, "bf16-mixed")
    for step, (fast, ref) in enumerate(zip(record.losses, plain)):
        for key in ("loss_d", "loss_g"):
            assert fast[key] == pytest.approx(float(ref[key]), rel=0.01), f"step {step} {key}"
    cos = torch.nn.functional.cosine_similarity(d_fast, d_plain, dim=0)
    assert cos > 0.85, f"bf16 update direction differs from fp32 (cosine {cos:.3f})"


@pytest.mark.slow
def test_short_facades_run_with_fast_defaults_matches_fp32_eager(
    compose_train, facades_root, tmp_path
) -> None:
    """40 steps of the paper recipe (batch 1, facades labels -> photo) at 128x128 and widths 8, once with
    p2p's fast defaults (bf16 autocast, fused Adam, RAM cache) and once with all of them off. Measured
    differences: val L1 1e-4, PSNR 0.004 dB, SSIM 7e-4 (again on 2026-12-02: 1.0e-4, 0.0034, 9.5e-4), against 1e-3, 0.026 dB and 0.011 between two fp32
    seeds. Tolerances: half the seed-to-seed spread, so a fast path that changed training as much as another
    seed does fails: L1 5e-4, PSNR 0.013 dB, SSIM 0.005. (SSIM computed under autocast was 0.15 off, hence
    the module's fp32 metrics.)"""
    common = [
        "debug=smoke", "data=facades", f"data.root={facades_root}", "data.batch_size=1",
        "trainer.limit_train_batches=40", "data.max_val_samples=16", "trainer.limit_val_batches=null",
    ]  # fmt: skip
    fast = train(compose_train([*common, "trainer.precision=bf16-mixed"], tmp_path / "fast"))["metrics"]
    ref = train(compose_train([*common, *REFERENCE], tmp_path / "ref"))["metrics"]
    assert fast["val/l1"] == pytest.approx(ref["val/l1"], abs=5e-4)
    assert fast["val/psnr"] == pytest.approx(ref["val/psnr"], abs=0.013)
    assert fast["val/ssim"] == pytest.approx(ref["val/ssim"], abs=0.005)


# --- fused Adam and layouts ------------------------------------------------------------------------------
def test_fused_adam_makes_the_same_update_as_the_default_adam() -> None:
    if not perf.fused_adam_available("cpu"):
        pytest.skip("this PyTorch has no fused Adam for CPU")
    torch.manual_seed(0)
    w = torch.randn(16, 8, 4, 4)
    params = {f: torch.nn.Parameter(w.clone()) for f in (False, True)}
    opts = {f: torch.optim.Adam([p], lr=2e-4, betas=(0.5, 0.999), fused=f) for f, p in params.items()}
    for _ in range(3):
        g = torch.randn_like(w)
        for f in (False, True):
            params[f].grad = g.clone()
            opts[f].step()
    assert torch.allclose(params[True], params[False], rtol=0, atol=1e-7)


def test_optimizer_state_in_another_layout_is_matched_before_fused_adam_steps() -> None:
    """Resuming an NCHW optimiser state onto NHWC parameters: fused Adam pairs elements by memory position,
    so without `match_optimizer_state_layout` the update is silently wrong."""
    if not perf.fused_adam_available("cpu"):
        pytest.skip("this PyTorch has no fused Adam for CPU")
    torch.manual_seed(0)
    w, g1, g2 = torch.randn(8, 4, 3, 3), torch.randn(8, 4, 3, 3), torch.randn(8, 4, 3, 3)
    p = torch.nn.Parameter(w.clone())
    opt = torch.optim.Adam([p], lr=0.1, fused=True)  # load_state_dict restores "fused" from the state too
    p.grad = g1
    opt.step()
    saved = copy.deepcopy(opt.state_dict())  # NCHW moments, as a checkpoint of an NCHW run holds them
    ref = torch.nn.Parameter(p.detach().clone())
    ref_opt = torch.optim.Adam([ref], lr=0.1)
    ref_opt.load_state_dict(copy.deepcopy(saved))
    ref.grad = g2.clone()
    ref_opt.step()

    def resumed(fix: bool) -> torch.Tensor:
        q = torch.nn.Parameter(p.detach().clone().contiguous(memory_format=torch.channels_last))
        o = torch.optim.Adam([q], lr=0.1, fused=True)
        o.load_state_dict(copy.deepcopy(saved))
        if fix:
            assert perf.match_optimizer_state_layout(o) == 2  # exp_avg and exp_avg_sq
        q.grad = g2.contiguous(memory_format=torch.channels_last)
        o.step()
        return q.detach()

    assert not torch.allclose(resumed(fix=False), ref, atol=1e-3)  # the hazard is real
    assert torch.allclose(resumed(fix=True), ref, atol=1e-6)


# --- precision and trainer defaults ---------------------------------------------------------------------
def test_precision_auto_resolves_by_hardware(monkeypatch, compose_train, tmp_path) -> None:
    monkeypatch.setattr(perf, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert perf.resolve_precision("auto", "cpu") == "bf16-mixed"
    cfg = compose_train(["debug=smoke", "trainer.precision=auto"], tmp_path)
    benchmark = torch.backends.cudnn.benchmark
    try:
        assert build_trainer(cfg).precision == "bf16-mixed"
        assert torch.backends.cudnn.benchmark  # autotuning on unless deterministic
        monkeypatch.setattr(perf, "cpu_flags", lambda: frozenset({"avx512f", "avx2"}))  # bf16 emulated
        assert perf.resolve_precision("auto", "cpu") == "32"
        assert build_trainer(cfg).precision == "32-true"
        det = compose_train(["debug=smoke", "trainer.deterministic=true"], tmp_path)
        build_trainer(det)
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = benchmark
    monkeypatch.setattr(perf, "cuda_has_fast_bf16", lambda device=None: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert perf.resolve_precision("auto", "gpu") == "32"  # a pre-Ampere GPU has no bf16 tensor cores
    assert perf.resolve_precision("16-mixed", "gpu") == "16-mixed"  # explicit values pass through


def test_speed_options_are_checked_with_clear_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"model\.compile"):
        Pix2Pix(compile="fastest")
    with pytest.raises(ValueError, match=r"cache: .disk. is not one of"):
        SyntheticDataModule(cache="disk")
    with pytest.raises(ValueError, match=r"device_augment: true .* needs cache"):
        SyntheticDataModule(cache="none", device_augment=True)
    model = Pix2Pix(generator={"name": "unet_128", "ngf": 4}, discriminator={"name": "patchgan_70", "ndf": 4},
                    cuda_graphs=True)  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        default_root_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(ValueError, match="cuda_graphs=true needs a CUDA device"):
        trainer.fit(model, DataLoader(_batches(1), batch_size=None))


# --- data: RAM cache and device augmentation -------------------------------------------------------------
def _synthetic(**kw) -> SyntheticDataModule:
    base = dict(
        num_train=8, num_val=4, image_size=64, load_size=80, crop_size=64, batch_size=2, num_workers=0
    )
    dm = SyntheticDataModule(**{**base, **kw})
    dm.setup("fit")
    return dm


def _equal_batches(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        assert x["path"] == y["path"]
        assert torch.equal(x["input"], y["input"]) and torch.equal(x["target"], y["target"])


def test_ram_cache_yields_bit_identical_batches() -> None:
    plain, cached = _synthetic(cache="none"), _synthetic(cache="ram")
    assert isinstance(cached.train_set, CachedPairs) and not isinstance(plain.train_set, CachedPairs)
    for _ in range(2):  # the second epoch is served from the cache
        _equal_batches(plain.train_dataloader(), cached.train_dataloader())
    _equal_batches(plain.val_dataloader(), cached.val_dataloader())


def test_cache_auto_caches_only_within_its_budget() -> None:
    assert isinstance(_synthetic(cache="auto").train_set, CachedPairs)
    assert not isinstance(_synthetic(cache="auto", cache_max_mb=0).train_set, CachedPairs)
    # workers re-forked every epoch would throw their caches away
    dm = _synthetic(cache="auto", num_workers=2, persistent_workers=False)
    assert not isinstance(dm.train_set, CachedPairs)


def _device_augmented(dm) -> list[dict]:
    out = []
    for batch in dm.train_dataloader():
        assert (
            batch["input"].dtype == torch.uint8 and batch["input"].shape[-1] == dm.train_transform.load_size
        )
        out.append(dm.on_after_batch_transfer(batch, 0))
    return out


def test_device_augmentation_reproduces_the_worker_crops_and_flips_exactly() -> None:
    """Same per-sample seeds -> the same crop positions and flips as PairTransform draws in the workers."""
    worker = _synthetic(cache="none", num_train=16)
    device = _synthetic(cache="ram", device_augment=True, num_train=16)
    _equal_batches(worker.train_dataloader(), _device_augmented(device))
    params = torch.cat([b["crop"] for b in device.train_dataloader()])
    assert params[:, 0].unique().numel() > 1 and params[:, 2].unique().numel() == 2  # crops vary, some flip


def test_device_augmentation_on_real_facades_jpegs(facades_root) -> None:
    kw = dict(root=str(facades_root), name="facades", direction="BtoA", batch_size=4, num_workers=0)
    worker, device = (
        PairedDataModule(cache="none", **kw),
        PairedDataModule(cache="ram", device_augment=True, **kw),
    )
    for dm in (worker, device):
        dm.setup("fit")
    assert isinstance(device.train_set, CachedPairs)
    got = []
    for i, batch in enumerate(device.train_dataloader()):
        if i == 3:
            break
        got.append(device.on_after_batch_transfer(batch, 0))
    want = [b for _, b in zip(range(3), worker.train_dataloader())]
    _equal_batches(want, got)
    assert got[0]["input"].shape == (4, 3, 256, 256)


# --- GPU paths (skipped without CUDA) --------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@cuda
def test_gpu_defaults_agree_with_plain_fp32(compose_train, tmp_path) -> None:
    """On CUDA: precision auto (bf16 on sm80+), channels-last, fused Adam, cudnn autotuning vs plain fp32."""
    precision = perf.resolve_precision("auto", "gpu")
    record, plain, d_fast, d_plain, _ = _fast_vs_plain(compose_train, tmp_path, precision, accelerator="gpu")
    for fast, ref in zip(record.losses, plain):
        for key in ("loss_d", "loss_g"):
            assert fast[key] == pytest.approx(float(ref[key]), rel=0.03)
    assert torch.nn.functional.cosine_similarity(d_fast, d_plain, dim=0) > 0.9


@pytest.mark.gpu
@pytest.mark.slow
@cuda
@pytest.mark.parametrize("option", ["model.compile=true", "model.cuda_graphs=true"])
def test_gpu_compiled_training_agrees_with_eager(compose_train, tmp_path, option: str) -> None:
    """torch.compile and CUDA graphs (reduce-overhead) train the same function as eager, in fp32."""
    common = [*TINY, "model.generator.dropout=0", "trainer.accelerator=gpu", "trainer.precision=32",
              "trainer.limit_train_batches=6", "trainer.limit_val_batches=0", "data.cache=ram"]  # fmt: skip
    eager = train(compose_train(common, tmp_path / "eager"))["metrics"]
    compiled = train(compose_train([*common, option], tmp_path / "compiled"))["metrics"]
    for key in ("train/loss_d", "train/loss_g"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-2)


@pytest.mark.gpu
@cuda
def test_gpu_device_augmentation_is_on_by_default_and_trains(compose_train, tmp_path) -> None:
    from hydra.utils import instantiate

    cfg = compose_train([*TINY, "trainer.accelerator=gpu", "trainer.limit_train_batches=3"], tmp_path)
    dm, model = instantiate(cfg.data), build_module(cfg)
    trainer = build_trainer(cfg)
    trainer.fit(model, datamodule=dm)
    assert isinstance(dm.train_set, CachedPairs) and dm.train_set.device_augment
    assert torch.isfinite(trainer.callback_metrics["train/loss_g"])
