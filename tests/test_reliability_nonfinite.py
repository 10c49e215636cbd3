"""Numerical faults: a NaN/inf loss stops the run naming the term and the step (the last checkpoint stays the last
good one), or, with model.on_nonfinite=skip, skips that step and trains on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from p2p.errors import NonFiniteLossError
from p2p.runs.train import train


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
