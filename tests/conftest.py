"""Shared fixtures: the real facades data, and Hydra configs composed the way ``p2p-train`` composes them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from p2p.config import config_dir

REPO = Path(__file__).resolve().parents[1]
FACADES = Path(os.environ.get("P2P_FACADES", REPO.parent / "shared" / "datasets" / "facades"))
REFERENCE = Path(os.environ.get("P2P_REFERENCE", REPO.parent / "shared" / "reference"))


def missing_shared(reason: str) -> None:
    """Skip a test whose ``../shared`` data is missing, except in CI (``CI=true``), where it fails.

    A CI run without the data would otherwise pass while the reference-parity and real-data tests never ran.
    """
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: tests needing ../shared must not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def facades_root() -> Path:
    if not (FACADES / "train").is_dir():
        missing_shared(f"facades data not found at {FACADES} (set P2P_FACADES)")
    return FACADES


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "reference_unet64_ngf8_patch70_ndf8.safetensors").is_file():
        missing_shared(f"reference parity data not found at {REFERENCE}")
    return REFERENCE


def compose_train(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose p2p-train's config as the CLI would, with the run folder pointed at ``output_dir``."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=[*overrides, f"paths.output_dir={output_dir}"])
    with open_dict(cfg):
        cfg.callbacks.rich_progress_bar = None  # keep test logs plain
    return cfg


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("p2p_cache")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, _session_cache: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # downloads, segmenters and FID features go to a per-session cache, never the user's ~/.cache/p2p
    # (tests that need a fresh cache set their own)
    monkeypatch.setenv("P2P_CACHE", str(_session_cache))


@pytest.fixture(name="compose_train")
def compose_train_fixture():
    """``compose_cfg(overrides, output_dir)``: p2p-train's config as the CLI would compose it."""
    return compose_train
