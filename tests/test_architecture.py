"""The package's layers (pyproject.toml's import-linter contracts) and what importing a layer costs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_import_contracts_are_kept() -> None:
    """Every folder imports only from the layers below it, no import cycle at any level (imports inside
    functions count), and the networks/weights/inference layers need neither Lightning nor Hydra."""
    out = subprocess.run([str(BIN / "lint-imports")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert f"{len(contracts)} kept, 0 broken" in out.stdout  # every contract of pyproject was checked


def test_the_model_layer_imports_neither_lightning_nor_hydra() -> None:
    code = (
        "import sys, p2p.models, p2p\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'pytorch_lightning', 'hydra', 'omegaconf'})\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_pretrained_name_builds_its_architecture() -> None:
    import p2p
    from p2p.models import UNetGenerator

    names = p2p.list_models(pretrained=True)
    assert names and all("." in n for n in names)  # arch.tag, timm-style
    for name in names:  # the architecture only: nothing is downloaded
        G = p2p.create_model(name)
        assert isinstance(G, UNetGenerator) and G.num_downs == 8, name
    assert p2p.create_model("unet_256.facades_label2photo", ngf=8).down[0].conv.out_channels == 8


def test_a_builder_name_alone_sets_the_depth(compose_train, tmp_path: Path) -> None:
    """Defaults live in the builders: naming unet_128 gives its 7 levels, no second key to keep in step."""
    from p2p.config.build import build_module

    cfg = compose_train(
        ["model.generator.name=unet_128", "model.generator.ngf=4", "model.discriminator.ndf=4"], tmp_path
    )
    assert build_module(cfg).G.num_downs == 7
    quick = compose_train(["experiment=quickstart"], tmp_path)
    assert "num_downs" not in quick.model.generator and quick.model.generator.name == "unet_128"


def test_a_wrong_trainer_type_is_one_line_and_exit_2_before_anything_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(BIN / "p2p-train"), "debug=smoke", "trainer.max_epochs=abc", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "trainer.max_epochs" in lines[0] and "Traceback" not in out.stderr, out.stderr
    assert not list(tmp_path.iterdir())  # nothing was written: no data read, no network built
