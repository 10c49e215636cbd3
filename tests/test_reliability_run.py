"""A run's life: Ctrl-C saves last.ckpt and exits 130 like a shell reports it; one run per run folder
(a second p2p-train on a folder in use is refused; a lock left by a dead process does not block)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from p2p.config.build import build_datamodule
from p2p.io.runlock import LOCK_NAME, RunFolderInUse, run_lock
from p2p.runs.train import train
from reliability_helpers import PauseUntilFile, wait_for

BIN = Path(sys.executable).parent
TESTS = Path(__file__).parent
LONG = ["debug=smoke", "trainer.limit_train_batches=100", "model.optim.n_epochs=2"]  # smoke, 100 batches


def start_train(run: Path, *overrides: str, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "p2p-train"), *overrides, "+logger.csv.flush_logs_every_n_steps=1", f"hydra.run.dir={run}"],
        cwd=run.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen,
    )  # fmt: skip


def steps_logged(run: Path, n: int) -> Any:
    metrics = run / "csv" / "version_0" / "metrics.csv"
    return lambda: metrics.is_file() and len(metrics.read_text().splitlines()) > n


def batches_done(ckpt: Path) -> int:
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    return int(saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"])


@pytest.mark.slow
def test_ctrl_c_saves_last_ckpt_exits_130_and_resumes(compose_train, tmp_path: Path) -> None:
    """Ctrl-C in a terminal: SIGINT to the whole process group (here with a DataLoader worker in it)."""
    run = tmp_path / "run"
    proc = start_train(run, *LONG, "data.num_workers=1", start_new_session=True)
    wait_for(steps_logged(run, 2), proc)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == 130, out[-3000:]
    assert "SIGINT received: saved" in out and "Resume with ckpt_path=" in out, out[-3000:]
    assert "Traceback" not in out and "graceful shutdown" not in out and "did you mean" not in out, out[
        -3000:
    ]
    last = run / "checkpoints" / "last.ckpt"
    done = batches_done(last)
    assert 2 <= done < 100  # mid-epoch

    cfg = compose_train([*LONG, "ckpt_path=last", f"trainer.max_steps={2 * done + 4}"], run)
    result = train(cfg)
    assert Path(result["last_ckpt"]) == last and batches_done(last) == done + 2


@pytest.mark.slow
def test_second_run_on_a_folder_in_use_is_refused(tmp_path: Path) -> None:
    run, go = tmp_path / "run", tmp_path / "go"
    pause = [
        f"+callbacks.pause._target_={PauseUntilFile.__module__}.PauseUntilFile",
        f"+callbacks.pause.go={go}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    first = start_train(run, "debug=smoke", *pause, env=env)  # holds the folder until `go` exists
    wait_for(Path(f"{go}.waiting").exists, first)
    second = subprocess.run(
        [str(BIN / "p2p-train"), "debug=smoke", f"hydra.run.dir={run}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    go.touch()
    out = first.communicate(timeout=240)[0]
    assert second.returncode == 2, second.stderr[-3000:]
    lines = second.stderr.strip().splitlines()
    assert lines[-1].startswith(
        f"p2p-train: error: run folder {run} is in use by another run (pid {first.pid} "
    )
    assert "hydra.run.dir=" in lines[-1] and "Traceback" not in second.stderr
    assert first.returncode == 0, out[-3000:]
    assert sorted(p.name for p in (run / "checkpoints").glob("last*.ckpt")) == ["last.ckpt"]
    assert (run / LOCK_NAME).read_text() == ""  # released cleanly


def test_lock_is_exclusive_and_released_on_error(tmp_path: Path) -> None:
    # another open file: refused, even in the same process
    with run_lock(tmp_path), pytest.raises(RunFolderInUse, match=f"pid {os.getpid()} "), run_lock(tmp_path):
        pass
    with pytest.raises(ZeroDivisionError), run_lock(tmp_path):
        1 / 0  # noqa: B018
    with run_lock(tmp_path):  # free again
        pass


def test_a_lock_left_by_a_killed_process_does_not_block(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from p2p.io.runlock import run_lock\nwith run_lock({str(tmp_path)!r}):\n"
         "    print('held', flush=True)\n    input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with pytest.raises(RunFolderInUse, match=f"pid {holder.pid} "), run_lock(tmp_path):
        pass
    holder.kill()  # SIGKILL: no clean-up ran, the file still names the dead process
    holder.wait()
    assert f"pid {holder.pid} " in (tmp_path / LOCK_NAME).read_text()
    with run_lock(tmp_path):
        assert f"pid {os.getpid()} " in (tmp_path / LOCK_NAME).read_text()
    assert "did not end cleanly" in caplog.text


def test_train_refuses_a_folder_in_use_before_reading_data(compose_train, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()  # a data folder without splits: a DataError once data is read
    cfg = compose_train(["debug=smoke", "data=folder", f"data.root={tmp_path / 'empty'}"], tmp_path / "run")
    with run_lock(tmp_path / "run"), pytest.raises(RunFolderInUse):
        train(cfg)


def test_dataloader_workers_survive_ctrl_c(compose_train, tmp_path: Path) -> None:
    """Ctrl-C reaches the workers too; the main process must still get every batch while it finishes its own."""
    cfg = compose_train(["debug=smoke", "data.num_workers=1", "data.batch_size=1"], tmp_path)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    batches = iter(dm.train_dataloader())
    next(batches)
    os.kill(batches._workers[0].pid, signal.SIGINT)  # type: ignore[attr-defined]
    # without SIG_IGN the worker died: RuntimeError "DataLoader worker exited unexpectedly"
    assert len(list(batches)) == len(dm.train_dataloader()) - 1


def test_a_full_disk_stops_the_run_with_one_line_and_the_last_checkpoint_intact(
    tmp_path: Path, facades_root: Path
) -> None:
    """Epoch 1's checkpoint is written; from then on every write hits ENOSPC (reliability_helpers.DiskFullAfter).
    With data=folder, whose data.root is mandatory: no false "did you mean" beside the error (issue 11, item 3)."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [str(BIN / "p2p-train"), "debug=smoke", "data=folder", f"data.root={facades_root}", "trainer.max_epochs=2",
         "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "logger=none", f"hydra.run.dir={run}",
         "+callbacks.full._target_=reliability_helpers.DiskFullAfter", "+callbacks.full.saves=1"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    last = run / "checkpoints" / "last.ckpt"
    assert proc.returncode == 1, out[-3000:]
    error = out.strip().splitlines()[-1]
    assert "Traceback" not in out and "did you mean" not in out, out[-3000:]
    assert error.startswith(f"p2p-train: error: no space left on device writing {last.parent}/"), error
    assert error.endswith("; the file there is the previous one, intact"), error
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0  # epoch 1's, complete
    assert not list(run.rglob("*.tmp")), "a temporary file was left behind"
