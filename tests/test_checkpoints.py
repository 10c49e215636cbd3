"""Checkpoint sizes (p2p.training.best): last.ckpt keeps everything a resume needs, the best file keeps the
generator alone, every command that takes a checkpoint takes it, and a best that is the last is no copy."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

import p2p
from cli_helpers import exit_code
from conftest import compose_train
from p2p.cli.export import main as export_main
from p2p.cli.translate import main as translate_main
from p2p.runs.eval import evaluate
from p2p.runs.train import train
from test_reliability_resume import SignalSelf

# monitor=step, mode=min: the best is the first epoch, whatever the losses
FIRST_IS_BEST = ["callbacks.model_checkpoint.monitor=step", "callbacks.model_checkpoint.mode=min"]
TWO_EPOCHS = ["debug=smoke", "logger=none", "trainer.max_epochs=2", "model.optim.n_epochs=2"]


def load(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two smoke epochs whose best is epoch 0: its file is written when epoch 1 overwrites last.ckpt."""
    return train(compose_train([*TWO_EPOCHS, *FIRST_IS_BEST], tmp_path_factory.mktemp("first_best")))


def test_best_holds_the_generator_of_its_epoch_and_is_at_most_a_third_of_last(run: dict) -> None:
    best, last = Path(run["best_ckpt"]), Path(run["last_ckpt"])
    assert best.name == "best_epoch000.ckpt" and not best.is_symlink()
    assert os.path.getsize(best) <= os.path.getsize(last) / 3  # smoke: 2.6 of 8.5 MB; unet_256: 218 of 686
    b, full = load(best), load(last)
    assert full["epoch"] == 1 and "optimizer_states" in full  # last.ckpt: the last epoch, resumable
    assert b["epoch"] == 0 and "optimizer_states" not in b and "callbacks" not in b
    assert b["state_dict"] and all(k.startswith("G.") for k in b["state_dict"])
    G = p2p.load_generator(best)
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    assert torch.isfinite(G(x)).all()


def test_every_command_that_takes_a_checkpoint_takes_the_best(run: dict, tmp_path: Path) -> None:
    best = run["best_ckpt"]
    (tmp_path / "in").mkdir()
    Image.new("RGB", (150, 130), (90, 40, 200)).save(tmp_path / "in" / "a.png")
    args = ["--checkpoint", best, "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert exit_code(translate_main, args) == 0
    assert Image.open(tmp_path / "out" / "a.png").size == (150, 130)
    ts = tmp_path / "g.pt"
    assert exit_code(export_main, ["--checkpoint", best, "--format", "torchscript", "--output", str(ts)]) == 0
    assert ts.is_file()
    cfg = compose_train(["debug=smoke", f"ckpt_path={best}", "metrics=[l1,psnr,ssim]", "max_samples=2"],
                        tmp_path / "eval", config_name="eval")  # fmt: skip
    scores = evaluate(cfg)
    assert 0 < scores["l1"] < 2 and scores["psnr"] > 0


def test_a_best_that_is_the_last_is_a_link_not_a_copy(tmp_path: Path) -> None:
    one_epoch = ["debug=smoke", "logger=none", *FIRST_IS_BEST]
    result = train(compose_train(one_epoch, tmp_path))
    best, last = Path(result["best_ckpt"]), Path(result["last_ckpt"])
    assert best.name == "best_epoch000.ckpt" and best.is_symlink() and best.resolve() == last.resolve()
    assert sorted(p.name for p in last.parent.iterdir() if not p.is_symlink()) == ["last.ckpt"]
    # resumed for an epoch that is not the best: the link becomes epoch 0's generator before last.ckpt moves on
    epoch0 = load(last)["state_dict"]
    cfg = compose_train([*one_epoch, "trainer.max_epochs=2", "model.optim.n_epochs=2", f"ckpt_path={last}"],
                        tmp_path)  # fmt: skip
    resumed = train(cfg)
    assert Path(resumed["best_ckpt"]) == best and not best.is_symlink()
    b = load(best)
    assert b["epoch"] == 0 and load(last)["epoch"] == 1
    assert b["state_dict"].keys() == {k for k in epoch0 if k.startswith("G.")}
    assert all(torch.equal(v, epoch0[k]) for k, v in b["state_dict"].items())


def test_bfloat16_best_is_half_the_size_and_loads(tmp_path: Path) -> None:
    result = train(compose_train([*TWO_EPOCHS, *FIRST_IS_BEST, "callbacks.model_checkpoint.dtype=bfloat16"],
                                 tmp_path))  # fmt: skip
    best = load(result["best_ckpt"])
    assert {v.dtype for v in best["state_dict"].values() if v.is_floating_point()} == {torch.bfloat16}
    G = p2p.load_generator(result["best_ckpt"])
    assert next(G.parameters()).dtype == torch.float32  # read into a float32 network


def test_a_preemption_save_turns_the_link_into_the_generator_first(tmp_path: Path) -> None:
    """PreemptionCheckpoint writes last.ckpt itself (mid-epoch): the best link must not follow it there."""
    one_epoch = ["debug=smoke", "logger=none", *FIRST_IS_BEST]
    last = Path(train(compose_train(one_epoch, tmp_path))["last_ckpt"])
    best = last.parent / "best_epoch000.ckpt"
    assert best.is_symlink()
    epoch0 = load(last)["state_dict"]
    signal_self = [f"+callbacks.signal_self._target_={SignalSelf.__module__}.SignalSelf",
                   f"+callbacks.signal_self.signum={int(signal.SIGUSR1)}", "+callbacks.signal_self.at_batch=1"]  # fmt: skip
    cfg = compose_train([*one_epoch, "trainer.max_epochs=2", "model.optim.n_epochs=2", f"ckpt_path={last}", "trainer.limit_train_batches=4",
                         *signal_self], tmp_path)  # fmt: skip
    with pytest.raises(SystemExit):
        train(cfg)
    saved = load(last)  # the pre-emption save, mid-epoch 1 (2 of 4 batches: a D and a G step each)
    assert saved["epoch"] == 1 and saved["global_step"] == 8
    assert not best.is_symlink()
    b = load(best)
    assert b["epoch"] == 0 and all(torch.equal(v, epoch0[k]) for k, v in b["state_dict"].items())
