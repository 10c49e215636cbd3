"""Tests needing ``../shared`` fail in CI when the data is missing, instead of silently skipping (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PARITY = "tests/test_models.py::test_reference_parity"
REAL_DATA = "tests/test_metrics.py::test_scores_on_real_images_are_those_of_the_hand_written_metrics"


def run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "P2P_FACADES": str(tmp_path / "none"), "P2P_REFERENCE": str(tmp_path / "none")}
    env.pop("CI", None)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", PARITY, REAL_DATA],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_missing_shared_data_fails_in_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    ci = run_pytest(tmp_path, "true")
    assert ci.returncode == 1, ci.stdout
    assert "2 errors" in ci.stdout or "2 failed" in ci.stdout, ci.stdout
    assert "CI=true: tests needing ../shared must not skip" in ci.stdout
    local = run_pytest(tmp_path, None)
    assert local.returncode == 0, local.stdout
    assert "2 skipped" in local.stdout, local.stdout
