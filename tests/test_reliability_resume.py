"""Exact resume and preemption: last.ckpt continues a run bit for bit, SIGTERM/SIGUSR1 save and exit cleanly,
and a crash while saving never corrupts last.ckpt."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

from p2p.config.build import build_trainer
from p2p.data.sampler import EpochSampler, SeededItems
from p2p.data.transforms import PairTransform
from p2p.errors import DiskFullError
from p2p.runs.train import train
from p2p.training import AtomicCheckpointIO, RNGState
from reliability_helpers import wait_for

BIN = Path(sys.executable).parent


def load(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def tensors(obj: Any) -> list[torch.Tensor]:
    """Every tensor in a nested checkpoint structure, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in tensors(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in tensors(x)]
    return []


# --- the pieces --------------------------------------------------------------------------------------------
def test_epoch_sampler_order_is_a_function_of_seed_and_epoch() -> None:
    a, b = EpochSampler(10, seed=3), EpochSampler(10, seed=3)
    b.set_epoch(1)
    first, second = list(a), list(b)
    assert sorted(i for i, _ in first) == list(range(10))
    assert first != second and list(EpochSampler(10, seed=4)) != first
    a.set_epoch(1)
    assert list(a) == second  # another instance (a resumed run) at the same epoch: the same order and seeds
    # the trainer's epoch counter wins over set_epoch (it is right before Lightning calls set_epoch)
    assert list(EpochSampler(10, seed=3, epoch_fn=lambda: 1)) == second
    # two DDP ranks: their k-th items together are the single process's items 2k and 2k+1
    ranks = [list(EpochSampler(10, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert [x for pair in zip(*ranks) for x in pair] == first


def test_seeded_items_repeat_their_crop_and_leave_the_global_rng_alone() -> None:
    class Crops(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> tuple[int, int]:
            from PIL import Image

            t = PairTransform(load_size=64, crop_size=32, flip=False)
            a, _ = t(Image.new("L", (64, 64)), Image.new("L", (64, 64)))
            return torch.randint(0, 10**9, ()).item(), a.size[0]

    ds = SeededItems(Crops())
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = ds[(0, 123)]
    assert torch.equal(torch.get_rng_state(), state)  # dropout's RNG did not move
    torch.manual_seed(99)
    assert ds[(0, 123)] == first and ds[(0, 124)] != first


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    cb = RNGState()
    torch.save({"rng": cb.state_dict()}, tmp_path / "x.ckpt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    cb.load_state_dict(torch.load(tmp_path / "x.ckpt", weights_only=True)["rng"])  # how Lightning loads it
    cb.on_train_start(None, None)  # type: ignore[arg-type]
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_crash_while_saving_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compose_train
) -> None:
    assert isinstance(
        build_trainer(compose_train(["debug=smoke"], tmp_path)).strategy.checkpoint_io, AtomicCheckpointIO
    )
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)
    before = path.read_bytes()

    def torn_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    import p2p.io.atomic

    monkeypatch.setattr(p2p.io.atomic.torch, "save", torn_save)
    with pytest.raises(
        DiskFullError,
        match=f"no space left on device writing {path} .*; the file there is the previous one, intact",
    ):
        io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and io.load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left behind


def test_only_a_full_disk_is_called_a_full_disk(tmp_path: Path) -> None:
    """/dev/full: the kernel's own ENOSPC, under torch.save's "unexpected pos" error; any other failure
    passes through as it is (a bug keeps its traceback)."""
    import p2p.io.atomic

    path = tmp_path / "new.ckpt"
    real_open = open
    p2p.io.atomic.open = lambda *a, **k: real_open("/dev/full", "wb")  # type: ignore[attr-defined]
    try:
        with pytest.raises(DiskFullError, match=f"writing {path} .*; nothing was written"):
            p2p.io.atomic.atomic_save({"w": torch.zeros(100_000)}, path)
    finally:
        del p2p.io.atomic.open  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyError), p2p.io.atomic.atomic_write(path):
        raise KeyError("a bug")
    assert list(tmp_path.iterdir()) == []


# --- end to end ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_epochs_equal_one_epoch_then_resume(compose_train, tmp_path: Path) -> None:
    """The acceptance: debug=smoke seed=7, 2 epochs straight == 1 epoch + resume from last.ckpt (1e-5).
    n_epochs=2 keeps the learning rate non-zero in epoch 2 (smoke's 1-epoch schedule would decay it to 0)."""
    base = ["debug=smoke", "seed=7", "model.optim.n_epochs=2"]
    straight = train(compose_train([*base, "trainer.max_epochs=2"], tmp_path / "straight"))
    first = train(compose_train([*base, "trainer.max_epochs=1"], tmp_path / "first"))
    resumed = train(
        compose_train(
            [*base, "trainer.max_epochs=2", f"ckpt_path={first['last_ckpt']}"], tmp_path / "resumed"
        )
    )
    a, b = load(straight["last_ckpt"]), load(resumed["last_ckpt"])
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (1, 8)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        assert torch.allclose(v.float(), b["state_dict"][k].float(), atol=1e-5, rtol=0), k
    for key in ("optimizer_states", "lr_schedulers"):
        ta, tb = tensors(a[key]), tensors(b[key])
        assert len(ta) == len(tb) > 0 or key == "lr_schedulers"
        assert all(torch.allclose(x.float(), y.float(), atol=1e-5, rtol=0) for x, y in zip(ta, tb)), key
    assert a["lr_schedulers"] == b["lr_schedulers"]
    assert "RNGState" in b["callbacks"]  # the RNG states travel in last.ckpt


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_last_ckpt_and_resume_continues(compose_train, tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = ["debug=smoke", "trainer.limit_train_batches=100", "model.optim.n_epochs=2"]
    metrics = run / "csv" / "version_0" / "metrics.csv"
    proc = subprocess.Popen(
        [str(BIN / "p2p-train"), *overrides, "+logger.csv.flush_logs_every_n_steps=1", f"hydra.run.dir={run}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 3, proc)  # 2 steps logged
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "SIGTERM received: saved" in out and "Traceback" not in out
    saved = load(run / "checkpoints" / "last.ckpt")
    done = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    assert saved["epoch"] == 0 and 2 <= done < 100 and saved["global_step"] == 2 * done  # mid-epoch
    assert len(saved["optimizer_states"]) == 2 and "RNGState" in saved["callbacks"]

    # resume in the same run folder with ckpt_path=last, for two more batches
    cfg = compose_train([*overrides, "ckpt_path=last", f"trainer.max_steps={saved['global_step'] + 4}"], run)
    result = train(cfg)
    resumed = load(result["last_ckpt"])
    assert Path(result["last_ckpt"]) == run / "checkpoints" / "last.ckpt"  # not last-v1.ckpt
    assert resumed["global_step"] == saved["global_step"] + 4
    assert resumed["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] == done + 2
    adam = resumed["optimizer_states"][0]["state"]
    assert all(int(s["step"]) == done + 2 for s in adam.values())  # Adam's moments carried on


class SignalSelf(L.Callback):
    def __init__(self, signum: int, at_batch: int) -> None:
        self.signum, self.at_batch = signum, at_batch

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.current.completed == self.at_batch:
            os.kill(os.getpid(), self.signum)


@pytest.mark.slow
def test_sigusr1_warning_saves_and_stops(compose_train, tmp_path: Path) -> None:
    """SLURM's --signal=USR1@90 warning (outside Lightning's SLURM auto-requeue): save last.ckpt, stop, exit 0."""
    target = f"+callbacks.signal_self._target_={__name__}.SignalSelf"
    overrides = [
        target,
        f"+callbacks.signal_self.signum={int(signal.SIGUSR1)}",
        "+callbacks.signal_self.at_batch=2",
    ]
    cfg = compose_train(["debug=smoke", "trainer.limit_train_batches=50", *overrides], tmp_path)
    previous = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as info:
        train(cfg)
    assert info.value.code in (0, None)
    assert (
        signal.getsignal(signal.SIGUSR1),
        signal.getsignal(signal.SIGINT),
    ) == previous  # handlers put back
    saved = load(tmp_path / "checkpoints" / "last.ckpt")
    done = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    assert done == 3 and saved["global_step"] == 2 * done  # the batch the signal came in was finished


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])  # workers prefetch batches the loop has not trained on
def test_a_mid_epoch_resume_equals_the_uninterrupted_run(compose_train, tmp_path: Path, workers: int) -> None:
    """SIGUSR1 after batch 3 of 6 saves last.ckpt mid-epoch; resumed from it, the run ends (epoch 2 included)
    with every weight, buffer and optimiser state equal to a run never stopped: the resumed epoch goes on
    with its remaining samples (the loader's state in the checkpoint), not from that epoch's beginning."""
    base = [
        "debug=smoke",
        "seed=7",
        "trainer.limit_train_batches=6",
        "model.optim.n_epochs=2",
        "trainer.max_epochs=2",
        f"data.num_workers={workers}",
    ]
    straight = load(train(compose_train(base, tmp_path / "straight"))["last_ckpt"])
    stop = [f"+callbacks.signal_self._target_={__name__}.SignalSelf", f"+callbacks.signal_self.signum={int(signal.SIGUSR1)}",
            "+callbacks.signal_self.at_batch=2"]  # fmt: skip
    with pytest.raises(SystemExit):
        train(compose_train([*base, *stop], tmp_path / "stopped"))
    mid = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert load(mid)["global_step"] == 2 * 3  # three batches of six
    resumed = load(train(compose_train([*base, f"ckpt_path={mid}"], tmp_path / "resumed"))["last_ckpt"])
    assert (
        (resumed["epoch"], resumed["global_step"]) == (straight["epoch"], straight["global_step"]) == (1, 24)
    )
    assert resumed["state_dict"].keys() == straight["state_dict"].keys()
    for k, v in straight["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), (
            k,
            (v.float() - resumed["state_dict"][k].float()).abs().max(),
        )
    ta, tb = tensors(straight["optimizer_states"]), tensors(resumed["optimizer_states"])
    assert len(ta) == len(tb) > 0 and all(torch.equal(x, y) for x, y in zip(ta, tb))
