"""Helpers shared by test_hub.py, test_translate.py and test_export.py (plain functions, not fixtures)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from p2p.config import config_dir
from p2p.weights.reference import unet_key_map as _unet_key_map


def smoke_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained by ``p2p-train debug=smoke`` (~10 s), trained once per pytest session: the
    session's base temp folder is shared by every test file, so the first caller trains and the rest reuse."""
    run_dir = tmp_path_factory.getbasetemp() / "p2p_smoke_run"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        from p2p.runs.train import train

        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(
                config_name="train",
                overrides=["debug=smoke", "logger=none", f"paths.output_dir={run_dir}"],
            )
        result = train(cfg)
        assert Path(result["last_ckpt"]) == ckpt, result
    return ckpt


def to_reference_layout(state: dict[str, torch.Tensor], num_downs: int) -> dict[str, torch.Tensor]:
    """A p2p U-Net state dict renamed to the reference pix2pix PyTorch layout (``model.model.1.model.3...``),
    as in the official ``latest_net_G.pth`` files, without the BatchNorm step counters that files written by
    PyTorch < 0.4.1 lack."""
    inverse = {p2p: ref for ref, p2p in _unet_key_map(num_downs).items()}
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if leaf != "num_batches_tracked":
            out[f"{inverse[module]}.{leaf}"] = value
    return out


def randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial running statistics, so eval-mode outputs depend on them being loaded."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model


@contextmanager
def serve(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``folder`` over HTTP on 127.0.0.1 in a thread; yields (base URL, list of requested paths)."""
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
