"""Developer sessions: ``nox -s tests lint typecheck build notebooks bench minimum mutation`` (``nox -l`` lists them).

Every session installs with ``constraints.txt``, which pins torch and torchvision to a pair that imports
together (see DEVELOPERS.md); pyproject.toml itself keeps loose ranges for users.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

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


@nox.session
def mutation(session: nox.Session) -> None:
    """mutmut over the core ([tool.mutmut] in pyproject.toml names the files and the tests), then the
    survivors; docs/testing.md records the score and why each kind of survivor is left. Resumes where an
    interrupted run stopped (its state is in mutants/); ``-- NAME...`` re-tests chosen mutants."""
    session.install(*CONSTRAINTS, "-e", ".[dev]", "mutmut>=3.8,<4")
    jobs = str(os.cpu_count() or 1)  # one mutant per core, each on one thread
    env = {"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    session.run("mutmut", "run", "--max-children", jobs, *session.posargs, env=env)
    session.run("mutmut", "export-cicd-stats", env=env)  # mutants/mutmut-cicd-stats.json: the counts
    session.run("mutmut", "results", env=env)  # the survivors, one per line


def floors() -> list[str]:
    """``name==X`` for every ``name>=X`` among p2p's own dependencies (pyproject.toml)."""
    deps = tomllib.loads(Path("pyproject.toml").read_text())["project"]["dependencies"]
    return [f"{m[1]}=={m[2]}" for d in deps if (m := re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+)", d))]


# the fast tests of what the core dependencies serve (the extras' tests need the extras)
MINIMUM_TESTS = ["tests/test_models.py", "tests/test_hub.py", "tests/test_compat.py", "tests/test_data.py",
                 "tests/test_module.py", "tests/test_train.py", "tests/test_translate.py", "tests/test_eval.py",
                 "tests/test_reliability_config.py"]  # fmt: skip


@nox.session(python="3.11")
def minimum(session: nox.Session) -> None:
    """The lowest versions pyproject.toml allows, each floor pinned, then the fast tests: every lower bound
    is one a test has run. (Not with constraints.txt: the floors are the pins.)"""
    pins = Path(session.create_tmp()) / "floors.txt"
    pins.write_text("\n".join(floors()) + "\n")
    session.install(
        "-c", str(pins), "-e", ".[tensorboard,wandb]", "pytest", "hypothesis"
    )  # (tensorboard: a logger test)
    session.run("python", "-m", "pip", "list")
    session.run("pytest", "-q", "-m", "not slow and not gpu", *(session.posargs or MINIMUM_TESTS),
                env={"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"})  # fmt: skip
