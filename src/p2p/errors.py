"""p2p's own error types: what went wrong, said once, in terms of the user's files and config keys.

Every console script prints these as one line without a traceback and exits with ``exit_code`` (1: the
run failed; 2: a usage error, as argparse's); anything else is a bug and keeps its traceback
(`p2p.cli.run_cli`). Every class takes a single message argument, so an error raised inside a
DataLoader worker is re-raised in the main process with its type intact (PyTorch rebuilds it as
``type(e)(text)``).
"""

from __future__ import annotations

import dataclasses
import difflib
import operator
from collections.abc import Iterable, Sequence
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from annotated_types import Ge, GroupedMetadata, Gt, Le, Lt

_BOUNDS = {Gt: ("gt", ">", operator.gt), Ge: ("ge", ">=", operator.ge), Lt: ("lt", "<", operator.lt),
           Le: ("le", "<=", operator.le)}  # fmt: skip


class P2PError(Exception):
    """Base class: a problem with the user's data, config or run, not with p2p."""

    exit_code = 1


class UsageError(P2PError):
    """A command was asked for something it cannot do: a missing input, a bad option value."""

    exit_code = 2  # like argparse's


class ConfigError(UsageError, ValueError):
    """A config key has a wrong type, an unknown value, or does not fit with another key."""


class InputNotFoundError(UsageError, FileNotFoundError):
    """A file, folder or pattern named on the command line does not exist or holds nothing usable."""


class DataError(P2PError, ValueError):
    """Bad input data. ``problems`` lists one ``"path: what is wrong"`` line per bad file."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class UnreadableImageError(DataError, RuntimeError):
    """An image that cannot be decoded (also a RuntimeError, the type p2p raised for it before)."""


class CheckpointError(UsageError, ValueError):
    """A weights file or checkpoint that cannot be used: missing, corrupt, not a checkpoint, or of another
    architecture than the config builds. The message names the file and what is wrong with it."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The named checkpoint, folder or model does not exist."""


class DownloadError(P2PError, OSError):
    """A download failed or did not match its sha256."""


class DiskFullError(P2PError, OSError):
    """No space (or quota) left on the device a file was being written to; the file named was left as it was
    (`p2p.io.atomic_write`)."""


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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the choice closest to a misspelt ``word``, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def check_value(key: str, value: Any, annotation: Any) -> Any:
    """``value`` if ``annotation`` allows it, else a `ConfigError` naming ``key``. An annotation says its
    rule once, for the constructor and the config schema alike: the choices of a ``Literal`` (with ``bool``
    and ``None`` where a union allows them: ``bool | Literal["auto"]``) and the bounds of an ``Annotated``
    number (`annotated_types`: ``Annotated[int, Ge(1)]``; NaN is within none). An enum member, as a
    structured config gives it, counts as its value, which is returned."""
    value = value.value if isinstance(value, Enum) else value
    base, *meta = get_args(annotation) if get_origin(annotation) is Annotated else (annotation,)
    members = get_args(base) if get_origin(base) in (Union, UnionType) else (base,)
    if value is None and type(None) in members:
        return None
    if all(m is bool or get_origin(m) is Literal for m in members if m is not type(None)):
        choices = [
            c for m in members if m is not type(None) for c in ((True, False) if m is bool else get_args(m))
        ]
        if not any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices):
            message = f"{key}: {value!r} is not one of {', '.join(map(str, choices))}"
            hint = did_you_mean(value, map(str, choices)) if isinstance(value, str) else ""
            raise ConfigError(f"{message}; {hint.strip()}" if hint else message)
    limits = [(sym, getattr(b, name), op) for m in meta for b in (m if isinstance(m, GroupedMetadata) else [m])
              for kind, (name, sym, op) in _BOUNDS.items() if isinstance(b, kind)]  # fmt: skip
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if limits and not (number and all(op(value, limit) for _, limit, op in limits)):
        allowed = " and ".join(f"{sym} {limit}" for sym, limit, _ in limits)
        raise ConfigError(
            f"{key}: must be {'null or ' if type(None) in members else ''}{allowed}, got {value!r}"
        )
    return value


def check_fields(settings: Any) -> None:
    """Every field of the dataclass ``settings`` by its annotation (`check_value`), enum members replaced by
    their values: a settings class's ``__post_init__`` is then left with its cross-field rules."""
    hints = get_type_hints(type(settings), include_extras=True)
    for f in dataclasses.fields(settings):
        object.__setattr__(settings, f.name, check_value(f.name, getattr(settings, f.name), hints[f.name]))
