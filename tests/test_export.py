"""p2p-export: ONNX (run in onnxruntime) and TorchScript files that compute what PyTorch computes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import p2p
from cli_helpers import exit_code
from inference_helpers import smoke_checkpoint
from p2p.cli import export as export_cli
from p2p.inference import export

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_checkpoint(tmp_path_factory)


def printed_diff(out: str) -> float:
    match = re.search(r"^max_abs_diff=(\S+)", out, re.MULTILINE)
    assert match, out
    return float(match.group(1))


def test_onnx_dynamic_size_matches_pytorch_in_onnxruntime(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The acceptance check: ONNX matches PyTorch to 1e-3, also at a size and batch it was not exported at."""
    path = tmp_path / "G.onnx"
    rc = exit_code(
        export_cli.main,
        ["--checkpoint", str(ckpt), "--format", "onnx", "--output", str(path), "--dynamic-size"],
    )
    out = capsys.readouterr().out
    assert rc == 0 and printed_diff(out) <= 1e-3
    assert "eval mode" in out  # it says what was exported
    G = p2p.load_generator(ckpt)
    d = 2**G.num_downs
    x = torch.rand(3, 3, 2 * d, 3 * d) * 2 - 1
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(y - G(x).numpy()).max() <= 1e-3


def test_onnx_fixed_size_by_default(ckpt: Path, tmp_path: Path) -> None:
    G = p2p.load_generator(ckpt)
    result = export.export_generator(G, tmp_path / "G.onnx", "onnx")
    assert result["max_abs_diff"] <= 1e-3 and len(result["checks"]) == 1
    dims = onnx.load(str(tmp_path / "G.onnx")).graph.input[0].type.tensor_type.shape.dim
    side = 2**G.num_downs
    assert [d.dim_value or d.dim_param for d in dims] == ["batch", 3, side, side]  # batch stays dynamic


def test_torchscript_export_runs_without_p2p(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "G.pt"
    rc = exit_code(
        export_cli.main,
        ["--checkpoint", str(ckpt), "--format", "torchscript", "--output", str(path), "--dynamic-size"],
    )
    assert rc == 0 and printed_diff(capsys.readouterr().out) <= 1e-3
    G = p2p.load_generator(ckpt)
    x = torch.rand(1, 3, 2**G.num_downs, 2 ** (G.num_downs + 1)) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(path))(x), G(x), atol=1e-5)


def test_export_fails_above_tolerance(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kw: object) -> dict:
        return {
            "path": str(tmp_path / "G.onnx"),
            "exporter": "x",
            "checks": [(1, 64, 64, 0.5)],
            "max_abs_diff": 0.5,
        }

    monkeypatch.setattr(export_cli, "export_generator", broken)
    rc = exit_code(export_cli.main, ["--checkpoint", str(ckpt), "--output", str(tmp_path / "G.onnx")])
    assert rc == 1 and "FAILED" in capsys.readouterr().out
    assert (
        exit_code(
            export_cli.main,
            ["--checkpoint", str(tmp_path / "missing.ckpt"), "--output", str(tmp_path / "x.onnx")],
        )
        == 2
    )
