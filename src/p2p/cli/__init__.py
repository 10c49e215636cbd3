"""The console scripts, one thin module each, all through one error wrapper (`run_cli`).

A p2p error (`p2p.errors.P2PError`: the user's data, config or files) prints one line naming the file or
key and exits 1 (the run failed) or 2 (a usage error); Hydra's config errors are usage errors too. Anything
else is a bug in p2p and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

from p2p.config import explain
from p2p.errors import P2PError, UsageError, short_message


def _one_line(e: BaseException) -> str:
    """Hydra's message and the OmegaConf cause behind it (which names the full key), on one line."""
    parts = [str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__]
    cause = e.__cause__
    if isinstance(cause, OmegaConfBaseException) and str(cause).strip():
        parts.append(str(cause).strip().splitlines()[0])
    return ": ".join(p.rstrip(".") for p in parts)


@contextmanager
def p2p_errors(prog: str) -> Iterator[None]:
    """A `P2PError` raised in the block: its message on one line, and exit with its code. Inside a Hydra
    task this comes before Hydra's own error report; in a multirun the sweep reports failed jobs itself."""
    try:
        yield
    except P2PError as e:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"{prog}: error: {short_message(e)}", file=sys.stderr)
        sys.exit(e.exit_code)


def run_cli(prog: str, main: Callable[[], int | None], hydra_app: bool = False) -> None:
    """Run a console script's ``main`` and exit with its status (see the module docstring)."""
    if hydra_app:
        # config errors and exceptions reach us as they are, instead of Hydra printing them and exiting 1
        os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with p2p_errors(prog):
            code = main()
    except (HydraException, OmegaConfBaseException) as e:
        if not hydra_app:
            raise
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        if hint := explain(e):
            print(hint, file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)


def parse_arch(text: str | None) -> dict[str, Any] | None:
    """``--arch`` (p2p-translate, p2p-export) as JSON, with a usage error naming the option."""
    if not text:
        return None
    try:
        arch = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--arch is not valid JSON ({e}): {text}") from None
    if not isinstance(arch, dict):
        raise UsageError(f'--arch must be a JSON object such as \'{{"norm": "instance"}}\', got {text}')
    return arch
