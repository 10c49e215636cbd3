"""A timm/torchvision-style model registry.

Builders are plain functions decorated with ``@register_model``; ``create_model`` calls one by name with
the caller's overrides (the architecture's constructor arguments) and optionally loads weights.
Models are never looked up by file name or ``getattr``: the registry is the one place names live.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

import torch.nn as nn

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

_REGISTRY: dict[str, Builder] = {}
_KIND: dict[str, str] = {}


def register_model(fn: B | None = None, *, name: str | None = None, kind: str = "generator") -> Any:
    """Register a builder under ``name`` (default: the function's name). Duplicate names are errors."""

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
    (``"generator"`` or ``"discriminator"``). ``pretrained=True``: the pretrained zoo's tags instead
    (``p2p.load_generator(tag)`` loads one; ``p2p.zoo.pretrained_info(tag)`` has its metadata)."""
    if pretrained:
        from p2p.zoo import list_pretrained

        return list_pretrained(pattern, kind)
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern) and (kind is None or _KIND[n] == kind))


def model_kind(name: str) -> str:
    _check(name)
    return _KIND[name]


def _check(name: str) -> None:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; choose from: {', '.join(list_models())}")


def create_model(name: str, pretrained: str | None = None, **overrides: Any) -> nn.Module:
    """Build a registered model.

    ``overrides`` are the architecture's constructor arguments (``ngf``/``ndf``, ``num_downs``, ``norm``,
    ``in_channels``, ``out_channels``, ``dropout``, ...). ``pretrained`` is a path to a checkpoint: a state
    dict in p2p's layout or in the reference pix2pix PyTorch layout (``latest_net_G.pth``), or a
    ``.safetensors`` file.
    """
    _check(name)
    try:
        model = _REGISTRY[name](**overrides)
    except TypeError as e:  # an unknown override: name it and the valid ones
        raise TypeError(f"{name}: {e}; valid overrides: {', '.join(_valid_overrides(name))}") from None
    if pretrained is not None:
        from p2p.checkpoint import load_state_dict_file

        load_state_dict_file(model, pretrained)
    return model


def _valid_overrides(name: str) -> list[str]:
    """Constructor arguments of the class a builder returns (read from its return annotation)."""
    import inspect
    import typing

    cls = typing.get_type_hints(_REGISTRY[name]).get("return")
    if cls is None:
        return []
    return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
