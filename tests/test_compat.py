"""Files written by earlier p2p releases still load and compute what they computed then
(tests/fixtures/v0_1_0/README.md says how each was made)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import p2p
from p2p.training import Pix2Pix

FIXTURES = Path(__file__).parent / "fixtures" / "v0_1_0"
SOURCES = ["smoke_last.ckpt", "save_pretrained", "reference_layout_G.pth"]


@pytest.mark.parametrize("name", SOURCES)
def test_v0_1_0_files_load_and_compute_the_same_function(name: str) -> None:
    expected = load_file(FIXTURES / "expected.safetensors")
    G = p2p.load_generator(FIXTURES / name)
    assert G.num_downs == 7 and G.down[0].conv.out_channels == 1  # unet_128 at ngf=1, as trained
    with torch.no_grad():
        out = G(expected["input"])
    assert torch.equal(out, expected["output_eval"])  # same weights, same function: bit for bit


def test_v0_1_0_checkpoint_rebuilds_the_lightning_module() -> None:
    module = Pix2Pix.load_from_checkpoint(str(FIXTURES / "smoke_last.ckpt"), map_location="cpu")
    assert module.D is not None and module.objective.l1_weight == 100.0
    expected = load_file(FIXTURES / "expected.safetensors")
    with torch.no_grad():
        assert torch.equal(module.G.eval()(expected["input"]), expected["output_eval"])
