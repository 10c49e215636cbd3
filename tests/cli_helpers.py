"""Running a console script's ``main`` in-process, as its entry point would, and reading its exit status."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def exit_code(main: Callable[[Sequence[str]], object], argv: Sequence[str]) -> int:
    """``main(argv)``'s exit status: every p2p console script ends in ``sys.exit``."""
    try:
        main(list(argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
