"""DDP correctness on CPU (gloo): the two ranks end with identical weights, and with instance norm (no batch
statistics) 2 processes x batch 1 compute what 1 process x batch 2 does (docs/reliability.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from p2p import create_model
from p2p.runs.train import train

BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent


def outputs(state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """G's output and D's logits on fixed inputs: what the weights compute. (Weights alone overstate the
    difference: a conv bias right before an InstanceNorm gets a mathematically zero gradient, so Adam turns
    its float noise into full-size steps that the normalisation then removes.)"""
    G = create_model("unet_256", num_downs=7, ngf=8, norm="instance", dropout=0.0)
    D = create_model("patchgan_70", in_channels=6, ndf=8, norm="instance")
    G.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("G.")})
    D.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("D.")})
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fake = G(x)
        return fake, D(torch.cat([x, fake], 1))


@pytest.mark.slow
def test_ddp_ranks_agree_and_equal_one_process_with_the_same_global_batch(
    compose_train, tmp_path: Path, facades_root: Path
) -> None:
    common = [
        "debug=smoke", "data=facades", f"data.root={facades_root}", "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1", "model.optim.n_epochs=2", "trainer.precision=32",
        # exact under DDP: no batch statistics (instance norm) and no per-rank randomness (dropout 0)
        "model.generator.norm=instance", "model.discriminator.norm=instance", "model.generator.dropout=0",
        "+callbacks.dump._target_=reliability_helpers.DumpRankState",
    ]  # fmt: skip
    ddp = tmp_path / "ddp"
    cmd = [
        str(BIN / "p2p-train"),
        *common,
        "data.batch_size=1",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
    ]
    cmd += ["trainer.strategy=ddp", f"+callbacks.dump.dirpath={ddp / 'ranks'}", f"hydra.run.dir={ddp}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rank0, rank1 = (torch.load(ddp / "ranks" / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # bit-identical on both ranks

    # one process, batch 2: the same samples with the same crops/flips (p2p.data.sampler), same steps
    train(
        compose_train(
            [*common, "data.batch_size=2", f"+callbacks.dump.dirpath={tmp_path / 'one'}"], tmp_path / "one"
        )
    )
    single = torch.load(tmp_path / "one" / "rank0.pt")
    # Equal up to float noise, which six Adam steps amplify as far as the CPU's kernels differ. Measured on
    # 2026-12-03 (outputs of scale 0.4 and 1.3): 6e-7 with oneDNN's AVX2 kernels, 7e-5 with AVX-512, 7e-4 with
    # ONEDNN_MAX_CPU_ISA=SSE41. Other crops and flips (data.seed=1) move them by 0.11 and 0.14. (The weights
    # separate worse: 4e-4 of noise against 1.3e-3; a conv bias before InstanceNorm drifts freely.)
    for a, b in zip(outputs(rank0), outputs(single)):
        assert torch.allclose(a, b, atol=5e-3, rtol=0), (a - b).abs().max()


@pytest.mark.slow
@pytest.mark.parametrize("check_finite", ["step", "deferred"])
def test_ddp_ranks_stop_together_on_nonfinite_and_leave_finite_checkpoints(
    tmp_path: Path, check_finite: str
) -> None:
    """lr 1e12 from epoch 1 on 2 CPU processes: both ranks stop with the error (none waits in a collective
    for the other), and no checkpoint on disk holds a NaN/inf tensor. Measured: the losses stay finite through
    epoch 1 while BatchNorm's running variances overflow, so epoch 1's checkpoint is the one refused."""
    run = tmp_path / "run"
    cmd = [
        str(BIN / "p2p-train"), "debug=smoke", "data.batch_size=1", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.strategy=ddp", f"model.check_finite={check_finite}", "trainer.max_epochs=3",
        "model.optim.n_epochs=3", "trainer.log_every_n_steps=50", "callbacks.model_checkpoint.monitor=null",
        "+callbacks.blowup._target_=test_reliability_nonfinite.BlowUpLR", "+callbacks.blowup.epoch=1",
        f"hydra.run.dir={run}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert out.count("p2p-train: error: non-finite") == 2, out[-3000:]  # one line from each rank
    ckpts = sorted((run / "checkpoints").glob("*.ckpt"))
    assert ckpts, out[-3000:]
    for path in ckpts:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = [ckpt["state_dict"], *[s for o in ckpt["optimizer_states"] for s in o["state"].values()]]
        bad = [
            k for d in state for k, v in d.items() if v.is_floating_point() and not torch.isfinite(v).all()
        ]
        assert not bad, f"{path.name} (epoch {ckpt['epoch']}) holds non-finite {bad[:3]}"


@pytest.mark.slow
def test_ddp_sigterm_mid_epoch_stops_every_rank_and_resumes_exactly(tmp_path: Path) -> None:
    """SIGTERM to every process of a 2-process run after batch 4 of 6 (as a scheduler sends it): all ranks
    stop before the same batch, one last.ckpt, exit 0; resumed with 2 processes, the run ends bit for bit
    where an uninterrupted 2-process run does. Before PreemptionCheckpoint decided for all ranks together,
    this run hung (one rank saving, the other in the next step's collectives; Lightning issue #20806)."""
    common = [
        str(BIN / "p2p-train"), "debug=smoke", "data.batch_size=1", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.strategy=ddp", "trainer.limit_train_batches=6", "trainer.max_epochs=2", "model.optim.n_epochs=2",
        "trainer.precision=32", "model.generator.norm=instance", "model.discriminator.norm=instance",
        "model.generator.dropout=0", "logger=none",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}

    def run(*extra: str) -> str:
        proc = subprocess.run([*common, *extra], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300, start_new_session=True)  # fmt: skip  # its own process group
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        return proc.stdout + proc.stderr

    run(f"hydra.run.dir={tmp_path / 'straight'}")
    stopped = tmp_path / "stopped"
    out = run(
        "+callbacks.stop._target_=reliability_helpers.SignalGroupAt", "+callbacks.stop.at_batch=3",
        f"hydra.run.dir={stopped}",
    )  # fmt: skip
    assert out.count("SIGTERM received: saved") == 1, out[-3000:]  # rank 0 says it
    assert [p.name for p in (stopped / "checkpoints").iterdir()] == ["last.ckpt"]
    mid = torch.load(stopped / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (mid["epoch"], mid["global_step"]) == (0, 8)  # 4 of epoch 1's 6 batches, both optimisers
    run("ckpt_path=last", f"hydra.run.dir={stopped}")

    a, b = (torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False) for d in (tmp_path / "straight", stopped))  # fmt: skip
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (1, 24)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())
    moments = [[t for s in ck["optimizer_states"] for st in s["state"].values() for t in st.values()] for ck in (a, b)]  # fmt: skip
    assert len(moments[0]) == len(moments[1]) > 0 and all(map(torch.equal, *moments))
