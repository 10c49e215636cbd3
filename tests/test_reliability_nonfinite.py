"""Numerical faults: a NaN/inf loss stops the run naming the term and the step (the last checkpoint stays the last
good one), or, with model.on_nonfinite=skip, skips that step and trains on; with deferred checks
(model.check_finite, CUDA's default) it stops the run before any checkpoint holds the weights it produced."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import Strategy
from torch.utils.data import DataLoader

from p2p.errors import NonFiniteLossError
from p2p.runs.train import train
from p2p.training import NonFiniteGuard, Pix2Pix


class PoisonBatch(L.Callback):
    """Fills one training batch's input with NaN; remembers last.ckpt's hash just before."""

    last_before: str | None = None

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            PoisonBatch.last_before = (
                hashlib.sha256(last.read_bytes()).hexdigest() if last.is_file() else None
            )
            batch["input"].fill_(float("nan"))


def run(compose_train: Any, tmp_path: Path, overrides: list[str], epoch: int, batch: int) -> Any:
    """train() with one poisoned batch; returns its result or the NonFiniteLossError."""
    poison = [f"+callbacks.poison._target_={__name__}.PoisonBatch", f"+callbacks.poison.epoch={epoch}"]
    cfg = compose_train(
        ["debug=smoke", "model.optim.n_epochs=2", *overrides, *poison, f"+callbacks.poison.batch={batch}"],
        tmp_path,
    )
    PoisonBatch.last_before = None
    try:
        return train(cfg)
    except NonFiniteLossError as e:
        return e


@pytest.mark.slow
@pytest.mark.parametrize(("loss", "term"), [("l1_cgan", "loss_d"), ("l1", "loss_g_l1")])
def test_nonfinite_loss_stops_naming_term_and_step(
    compose_train, tmp_path: Path, loss: str, term: str
) -> None:
    error = run(compose_train, tmp_path, [f"loss={loss}", "trainer.max_epochs=2"], epoch=1, batch=1)
    assert isinstance(error, NonFiniteLossError), error
    steps_per_batch = 2 if loss == "l1_cgan" else 1  # the D step and the G step; L1 alone has no D
    step = (2 + 1) * steps_per_batch  # epoch 0's two batches, then batch 1 of epoch 1
    assert f"non-finite loss at global step {step} (epoch 1, batch 1): {term}=nan" in str(error)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert PoisonBatch.last_before is not None  # epoch 0 had written it
    assert hashlib.sha256(last.read_bytes()).hexdigest() == PoisonBatch.last_before  # untouched since
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


@pytest.mark.slow
def test_skip_mode_skips_the_step_and_trains_on(compose_train, tmp_path: Path) -> None:
    result = run(
        compose_train, tmp_path, ["model.on_nonfinite=skip", "trainer.max_epochs=1"], epoch=0, batch=0
    )
    assert not isinstance(result, Exception), result
    ckpt = torch.load(result["last_ckpt"], map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2  # batch 0's D and G steps were skipped, batch 1's taken
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert result["metrics"]["train/skipped_steps"] == 2.0


# --- when the guard looks: model.check_finite ----------------------------------------------------------------
class BlowUpLR(L.Callback):
    """From ``epoch`` on, trains at lr 1e12: the weights, then the losses, turn inf/NaN within a batch or two."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.current_epoch >= self.epoch:
            for opt in trainer.optimizers:
                for group in opt.param_groups:
                    group["lr"] = 1e12


def tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in tensors(v)]
    return []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "found"),
    [
        # epoch 1's must not be written. Which of the guard's two checks stops it depends on whether the
        # overflow reached a loss term before the save or only the weights/BatchNorm buffers, and that varies
        # with the torch build (torch 2.14.1 on this CPU: the weights): either message is the promise kept
        (["callbacks.model_checkpoint.monitor=null"], r"non-finite loss between global steps 4 and 8: loss_d, "
         r"loss_g_gan, loss_g_l1, found before writing a checkpoint \(epoch 1\)|non-finite values in the "
         r"checkpoint to be written at global step 8"),
        # no best (val/l1 is NaN: p2p.training.best keeps no NaN best), but last.ckpt is written every epoch:
        # its check stops the run, by the loss flags or by the tensors, as above
        ([], r"non-finite loss between global steps 4 and 8: loss_d, loss_g_gan, loss_g_l1, found before writing "
         r"a checkpoint \(epoch 1\)|non-finite values in the checkpoint to be written at global step 8"),
    ],
    ids=["checkpoint_each_epoch", "best_by_val_l1"],
)  # fmt: skip
def test_deferred_checks_stop_the_run_before_a_checkpoint_with_nonfinite_weights(
    compose_train, tmp_path: Path, overrides: list[str], found: str
) -> None:
    """Deferred, the NaN steps do reach the weights (no per-step decision), so no checkpoint may be written
    after them: the run stops naming the range of global steps, and every checkpoint on disk is finite."""
    cfg = compose_train(
        [
            "debug=smoke", "model.check_finite=deferred", "trainer.max_epochs=3", "model.optim.n_epochs=3",
            "trainer.log_every_n_steps=50",  # no interval read within the run: the others must stop it
            f"+callbacks.blowup._target_={__name__}.BlowUpLR", "+callbacks.blowup.epoch=1", *overrides,
        ],
        tmp_path,
    )  # fmt: skip
    with pytest.raises(NonFiniteLossError) as error:
        train(cfg)
    # epoch 0 (2 batches, a D and a G step each) ended with a checkpoint whose read found all finite
    assert re.search(found, str(error.value)), str(error.value)
    assert "the checkpoints on disk are intact" in str(error.value)
    ckpts = sorted((tmp_path / "checkpoints").glob("*.ckpt"))
    assert ckpts, "epoch 0 should have written its checkpoints"
    for path in ckpts:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        assert ckpt["epoch"] == 0, path.name
        # best files hold G alone (p2p.training.best); ModelCheckpoint's own state holds an inf (the worst
        # score so far, with monitor=null), so only weights and moments are looked at
        state = tensors([ckpt["state_dict"], ckpt.get("optimizer_states", [])])
        assert len(state) > 50
        bad = [t for t in state if t.is_floating_point() and not torch.isfinite(t).all()]
        assert not bad, f"{path.name} holds {len(bad)} non-finite weights or optimiser moments"


def fit_tiny(tmp_path: Path, batches: int, **module_kw: Any) -> Pix2Pix:
    torch.manual_seed(0)
    model = Pix2Pix(
        generator={"name": "unet_256", "num_downs": 5, "ngf": 4}, discriminator={"name": "patchgan_70", "ndf": 4},
        **module_kw,
    )  # fmt: skip
    pairs = [
        {"input": torch.rand(1, 3, 32, 32) * 2 - 1, "target": torch.rand(1, 3, 32, 32) * 2 - 1}
    ] * batches
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_val_batches=0, log_every_n_steps=batches, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(model, DataLoader(pairs, batch_size=None))
    return model


@pytest.mark.parametrize(("check_finite", "reads_per_batch"), [("step", 2), ("auto", 2), ("deferred", 0)])
def test_deferred_checks_read_the_device_once_per_log_interval(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, check_finite: str, reads_per_batch: int
) -> None:
    """Per step, the guard reads every loss term back to the host (a sync on a GPU) and asks the DDP ranks; deferred,
    it does both once per ``trainer.log_every_n_steps`` batches. ``auto`` on CPU is per step: there a read waits
    for nothing, and the error can name the step."""
    reads, decisions = [], []
    for name in (
        "item",
        "tolist",
        "__bool__",
        "__float__",
        "__int__",
    ):  # every way to read a tensor on the host
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *a: Any, _original: Any = original, _name: str = name) -> Any:
            caller = sys._getframe(1).f_code.co_filename
            if f"{os.sep}p2p{os.sep}" in caller:
                reads.append(f"{_name} in {Path(caller).name}")
            return _original(self, *a)

        monkeypatch.setattr(torch.Tensor, name, counted)
    original_decision = Strategy.reduce_boolean_decision

    def decision(self: Strategy, *a: Any, **kw: Any) -> bool:
        decisions.append(a)
        return original_decision(self, *a, **kw)

    monkeypatch.setattr(Strategy, "reduce_boolean_decision", decision)
    batches = 6
    model = fit_tiny(tmp_path, batches, check_finite=check_finite)
    assert model.guard.deferred == (check_finite == "deferred")
    expected = batches * reads_per_batch or 1  # deferred: the one read after batch 6 (log_every_n_steps=6)
    assert len(reads) == expected, reads
    assert len(decisions) == expected
    assert model.trainer.global_step == 2 * batches  # every step was taken


def test_no_checkpoint_is_written_with_nonfinite_weights_though_every_loss_was_finite(tmp_path: Path) -> None:
    """BatchNorm's running variance can overflow while the batch statistics, and so the losses, stay finite
    (seen under DDP at lr 1e12): the checkpoint itself is checked, in the default per-step mode too."""
    model = fit_tiny(tmp_path, batches=1)
    path = tmp_path / "m.ckpt"
    model.trainer.save_checkpoint(path)  # finite: written
    model.G.down[1].norm.running_var[0] = float("inf")
    with pytest.raises(
        NonFiniteLossError,
        match=r"checkpoint to be written at global step 2 \(G\.down\.1\.norm\.running_var\)",
    ):
        model.trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()
    assert all(torch.isfinite(v).all() for v in torch.load(path, weights_only=False)["state_dict"].values())


def test_check_finite_resolves_by_device_and_skip_always_checks_per_step() -> None:
    for check_finite, on_nonfinite, device, deferred in [
        ("auto", "error", "cpu", False),
        ("auto", "error", "cuda", True),
        ("auto", "skip", "cuda", False),  # a skip needs the decision before the step
        ("step", "error", "cuda", False),
        ("deferred", "error", "cpu", True),
    ]:
        guard = NonFiniteGuard(on_nonfinite, check_finite)
        guard.resolve(device)
        assert guard.deferred == deferred, (check_finite, on_nonfinite, device)
    with pytest.raises(ValueError, match="on_nonfinite=skip decides before every optimiser step"):
        Pix2Pix(on_nonfinite="skip", check_finite="deferred")
    with pytest.raises(ValueError, match="check_finite: 'never' is not one of auto, step, deferred"):
        Pix2Pix(check_finite="never")


class PoisonValidation(L.Callback):
    """NaN inputs in every validation batch of epoch ``epoch``: val/l1 is NaN, the weights stay finite."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, *args: Any) -> None:
        if trainer.current_epoch == self.epoch and not trainer.sanity_checking:
            batch["input"].fill_(float("nan"))


@pytest.mark.slow
def test_skip_mode_stops_a_run_that_skips_most_steps(compose_train, tmp_path: Path) -> None:
    """Issue 11 item 2: lr=1e12 makes most steps non-finite; past model.max_skipped_steps (a share of the
    steps, default 0.25) the run stops with the error instead of training a dead model to the end."""
    base = ["debug=smoke", "model.optim.lr=1e12", "model.on_nonfinite=skip", "trainer.limit_train_batches=4",
            "trainer.max_epochs=2", "logger=none"]  # fmt: skip
    with pytest.raises(
        NonFiniteLossError, match=r"optimiser steps skipped .* more than model\.max_skipped_steps=0\.25"
    ):
        train(compose_train(base, tmp_path / "share"))
    with pytest.raises(NonFiniteLossError, match=r"more than model\.max_skipped_steps=2"):
        train(compose_train([*base, "model.max_skipped_steps=2"], tmp_path / "count"))


def test_a_nan_validation_metric_is_never_the_best(compose_train, tmp_path: Path) -> None:
    """Lightning keeps a NaN epoch as best while it has fewer than save_top_k (the issue's one-epoch run
    left best_epoch000.ckpt): p2p's best file skips it, and the next finite epoch is the first best."""
    cfg = compose_train(["debug=smoke", "trainer.max_epochs=1", "logger=none",
                         f"+callbacks.poison._target_={__name__}.PoisonValidation", "+callbacks.poison.epoch=0"],
                        tmp_path)  # fmt: skip
    train(cfg)
    assert not list((tmp_path / "checkpoints").glob("best_epoch*.ckpt"))  # epoch 0's val/l1 was NaN
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()  # what a resume needs is still written
    cfg = compose_train(["debug=smoke", "trainer.max_epochs=2", "logger=none", "ckpt_path=last"], tmp_path)
    train(cfg)
    assert [p.name for p in (tmp_path / "checkpoints").glob("best_epoch*.ckpt")] == ["best_epoch001.ckpt"]
