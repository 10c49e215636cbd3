"""p2p's own error types: what went wrong, said once, in terms of the user's files and config keys.

``p2p-train`` prints these without a traceback and exits non-zero (``exit_code``); anything else is a bug
and keeps its traceback. Every class takes a single message argument, so an error raised inside a
DataLoader worker is re-raised in the main process with its type intact (PyTorch rebuilds it as
``type(e)(text)``).
"""

from __future__ import annotations

from collections.abc import Sequence


class P2PError(Exception):
    """Base class: a problem with the user's data, config or run, not with p2p."""

    exit_code = 1


class ConfigError(P2PError, ValueError):
    """A config key has a wrong type, an unknown value, or does not fit with another key."""

    exit_code = 2  # a usage error, like argparse's


class DataError(P2PError, ValueError):
    """Bad input data. ``problems`` lists one ``"path: what is wrong"`` line per bad file."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class UnreadableImageError(DataError, RuntimeError):
    """An image that cannot be decoded (also a RuntimeError, the type p2p raised for it before)."""


class NonFiniteLossError(P2PError, FloatingPointError):
    """A loss term became NaN or infinite; the message names the term, the step and the epoch."""


def short_message(error: BaseException) -> str:
    """The error's message without the worker traceback PyTorch embeds when it re-raises an exception from
    a DataLoader worker ("Caught DataError in DataLoader worker process 0. Original Traceback ...")."""
    text = str(error)
    marker = "Original Traceback (most recent call last):"
    if marker not in text:
        return text
    head, tb = text.split(marker, 1)
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    # the original message is everything after the last "module.Class: " line of the embedded traceback
    lines = tb.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(prefix):
            return head.strip() + "\n" + "\n".join([lines[i][len(prefix) :], *lines[i + 1 :]]).strip()
    return text
