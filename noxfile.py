"""Developer sessions: ``nox -s tests lint typecheck build notebooks bench`` (``nox -l`` lists them).

Every session installs with ``constraints.txt``, which pins torch and torchvision to a pair that imports
together (see DEVELOPERS.md); pyproject.toml itself keeps loose ranges for users.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
CONSTRAINTS = ("-c", "constraints.txt")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (CPU; includes tests marked slow; gpu tests skip without CUDA)."""
    session.install(*CONSTRAINTS, "-e", ".[dev]")
    session.run("pytest", *session.posargs, env={"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint + format) and the import-linter contracts: the package's layers, no import cycle."""
    session.install("ruff", "import-linter")
    session.run("ruff", "check", "src", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "noxfile.py")
    session.run("lint-imports", env={"PYTHONPATH": "src"})


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, "-e", ".[all]", "mypy")
    session.run("mypy", "src/p2p")


@nox.session
def build(session: nox.Session) -> None:
    """Build the wheel, install it (not editable) into this fresh venv, and use it from an unrelated folder."""
    import glob
    import tempfile

    session.install("build")
    outdir = tempfile.mkdtemp(prefix="p2p-dist-")
    session.run("python", "-m", "build", "--wheel", "--outdir", outdir)
    wheel = glob.glob(f"{outdir}/p2p-*.whl")[0]
    session.install(*CONSTRAINTS, wheel)
    elsewhere = tempfile.mkdtemp(prefix="p2p-elsewhere-")
    session.chdir(elsewhere)
    session.run("p2p-train", "--cfg", "job", "model=unet_patch70", "data=cityscapes")
    session.run("p2p-train", "debug=smoke", f"hydra.run.dir={elsewhere}/run", env={"WANDB_MODE": "offline"})
    session.run("python", "-c", "import glob; assert glob.glob('run/checkpoints/last.ckpt'), 'no checkpoint'")


@nox.session
def notebooks(session: nox.Session) -> None:
    """Execute the notebooks at tiny settings so they cannot rot."""
    session.install(*CONSTRAINTS, "-e", ".[dev]")
    session.run("pytest", "--nbmake", "notebooks", env={"P2P_NOTEBOOK_FAST": "1", "WANDB_MODE": "offline"})


@nox.session
def bench(session: nox.Session) -> None:
    """p2p-bench on the paper recipe; pass overrides after --, e.g. ``nox -s bench -- data.root=...``."""
    session.install(*CONSTRAINTS, "-e", ".[dev]")
    session.run("p2p-bench", "model=unet_patch70", *session.posargs)
