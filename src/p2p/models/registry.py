"""A timm-style model registry: the one place model names live.

Builders are plain functions decorated with ``@register_model``; `build_model` calls one by name with the
caller's overrides (the architecture's constructor arguments). Defaults live in the builders and the
classes they return, never in configs. Models are never looked up by file name or ``getattr``.
Weights are the business of `p2p.weights` (``p2p.create_model(name, pretrained=...)``).
"""

from __future__ import annotations

import fnmatch
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import torch.nn as nn

from p2p.errors import check_value, did_you_mean
from p2p.models import zoo

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)
Kind = Literal["generator", "discriminator"]

_REGISTRY: dict[str, Builder] = {}
_KIND: dict[str, str] = {}


def register_model(fn: B | None = None, *, name: str | None = None, kind: str = "generator") -> Any:
    """Register a builder under ``name`` (default: the function's name). Duplicate names are errors."""
    check_value("kind", kind, Kind)

    def wrap(f: B) -> B:
        key = name or f.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered (by {_REGISTRY[key].__module__})")
        _REGISTRY[key] = f
        _KIND[key] = kind
        return f

    return wrap(fn) if fn is not None else wrap


def list_models(pattern: str = "*", kind: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered model names matching a shell-style ``pattern``, optionally only one ``kind``
    (``"generator"`` or ``"discriminator"``). ``pretrained=True``: the pretrained models instead, named
    ``arch.tag`` (``unet_256.facades_label2photo``), which ``p2p.create_model`` and ``p2p.load_generator``
    take; ``p2p.models.zoo.pretrained_info(name)`` has their metadata."""
    names = zoo.names() if pretrained else list(_REGISTRY)
    return sorted(
        n
        for n in names
        if fnmatch.fnmatch(n, pattern) and (kind is None or _KIND[n.partition(".")[0]] == kind)
    )


def _check(name: str) -> None:
    if name not in _REGISTRY:
        raise KeyError(
            f"unknown model {name!r}; {did_you_mean(name, _REGISTRY)}choose from: {', '.join(list_models())}"
        )


def model_kind(name: str) -> str:
    _check(name)
    return _KIND[name]


def model_spec(spec: Mapping[str, Any] | None, default: str) -> tuple[str, dict[str, Any]]:
    """(builder name, overrides) of a config's network spec ``{"name": ..., **overrides}`` (``default`` when
    there is none). Null-valued overrides are dropped: that is how a config unsets a key it inherited."""
    overrides = {str(k): v for k, v in (spec or {"name": default}).items() if v is not None}
    return str(overrides.pop("name", default)), overrides


def build_model(name: str, **overrides: Any) -> nn.Module:
    """A freshly initialised ``name`` built with ``overrides`` (its constructor arguments)."""
    _check(name)
    valid = valid_overrides(name)
    if unknown := sorted(set(overrides) - set(valid)):  # name the first, its closest match and the valid ones
        raise TypeError(
            f"{name} has no argument {unknown[0]!r}; {did_you_mean(unknown[0], valid)}valid: {', '.join(valid)}"
        )
    return _REGISTRY[name](**overrides)


def valid_overrides(name: str) -> list[str]:
    """Constructor arguments of the class a builder returns (read from its return annotation)."""
    _check(name)
    cls = typing.get_type_hints(_REGISTRY[name]).get("return")
    if cls is None:
        return []
    return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
