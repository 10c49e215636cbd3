"""Structured config schemas (Hydra's ConfigStore): a wrong type or an unknown value fails at compose time,
naming the key (``trainer.max_epochs=abc``, ``data.direction=AtoX``), before anything runs.

The schemas are generated from the classes the configs instantiate, so defaults and choices live in one
place, the code: the data modules' dataclass fields, the objective's fields, ``Pix2Pix``'s and Lightning
``Trainer``'s constructor signatures. Types OmegaConf can check become typed fields (``Literal`` choices of
strings become enums); anything else stays ``Any``, for the constructor to check.

A YAML file of a group uses its schema as the first entry of its defaults list, e.g. conf/data/facades.yaml:

    defaults: [/schema/data/paired@_here_, _self_]
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

import lightning as L
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from p2p.data import PairedDataModule, PhotoDataModule, SyntheticDataModule
from p2p.training import Objective, Pix2Pix

_PRIMITIVES = (int, float, bool, str, type(None))


def field_type(annotation: Any) -> Any:
    """The closest type OmegaConf validates for ``annotation``, else ``Any``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _PRIMITIVES:
        return annotation
    if origin is Literal:
        if all(isinstance(a, str) for a in args):  # choices: an enum, matched by name
            return _enum(args)
        kinds = {type(a) for a in args}
        return kinds.pop() if len(kinds) == 1 else Any  # Literal[1, 3]: int (the class checks the value)
    if origin in (Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        if len(others) == 1 and field_type(others[0]) not in _PRIMITIVES:  # X | None, X a dict or an enum
            inner = field_type(others[0])
            return inner if inner is Any else typing.Optional[inner]  # noqa: UP045  (OmegaConf needs typing)
        # a union of primitives, where a Literal of strings counts as str (bool | Literal["auto"])
        members = [
            str if typing.get_origin(a) is Literal and field_type(a) is not Any else field_type(a)
            for a in args
        ]
        return Union[tuple(members)] if all(m in _PRIMITIVES for m in members) else Any  # noqa: UP007
    if origin is dict:
        return dict[str, Any]
    if origin in (list, tuple):
        inner = {field_type(a) for a in args if a is not Ellipsis}
        element = inner.pop() if len(inner) == 1 else Any
        return typing.cast(Any, list)[element] if element in _PRIMITIVES else Any
    return Any


@functools.cache
def _enum(choices: tuple[str, ...]) -> type[enum.Enum]:
    """One enum per set of choices: a value interpolated from one schema into another is then a member of
    the same enum on both sides."""
    return enum.Enum("_".join(choices), {a: a for a in choices})  # type: ignore[return-value]


def schema(name: str, source: Any, target: str | None = None, skip: tuple[str, ...] = ()) -> type:
    """A dataclass schema with one field per field of ``source`` (a dataclass) or per parameter of its
    constructor, with the same defaults, plus ``_target_`` when ``target`` is given. A parameter that takes a
    settings dataclass (Pix2Pix's ``optim``) gets that dataclass's schema, filled with its defaults."""
    if dataclasses.is_dataclass(source):
        hints = typing.get_type_hints(source)
        params = [(f.name, f.default if f.default_factory is dataclasses.MISSING else f.default_factory())
                  for f in dataclasses.fields(source)]  # fmt: skip
    else:
        hints = typing.get_type_hints(source.__init__)
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        params = [
            (k, p.default) for k, p in inspect.signature(source).parameters.items() if p.kind in keyword
        ]
    fields: list[tuple[str, Any, Any]] = (
        [("_target_", str, dataclasses.field(default=target))] if target else []
    )
    for key, default in params:
        if key in skip:
            continue
        annotation = hints.get(key, Any)
        nested = next(
            (a for a in (annotation, *typing.get_args(annotation)) if dataclasses.is_dataclass(a)), None
        )
        if nested is not None:
            kind = schema(f"{getattr(nested, '__name__', key)}Schema", nested)
            fields.append((key, kind, dataclasses.field(default_factory=kind)))
        elif isinstance(default, (list, dict)):
            fields.append((key, field_type(annotation), dataclasses.field(default_factory=_copier(default))))
        else:
            default = default if isinstance(default, _PRIMITIVES) else None  # inspect's `empty`: no default
            fields.append((key, field_type(annotation), dataclasses.field(default=default)))
    return dataclasses.make_dataclass(name, fields)


def _copier(value: list[Any] | dict[str, Any]) -> Callable[[], Any]:
    return lambda: type(value)(value)


def _open(node_schema: type, *keys: str) -> DictConfig:
    """The schema as a config whose ``keys`` are open dicts: ``model.generator.norm=instance`` sets an
    architecture argument the config does not mention (the builder's defaults are not copied into configs;
    `p2p.config.check` checks the arguments against the builder instead)."""
    node = OmegaConf.structured(node_schema)
    for key in keys:
        node[key] = {}
        OmegaConf.set_struct(node[key], False)
    return node


# the schema of each data module class, by class (p2p-eval checks a checkpoint's data settings against it)
DATA_SCHEMAS: dict[type, type] = {
    PairedDataModule: schema("PairedData", PairedDataModule, "p2p.data.PairedDataModule"),
    SyntheticDataModule: schema("SyntheticData", SyntheticDataModule, "p2p.data.SyntheticDataModule"),
    PhotoDataModule: schema("PhotoData", PhotoDataModule, "p2p.data.PhotoDataModule"),
}


def register_schemas(store: ConfigStore | None = None) -> None:
    """Put p2p's schemas into Hydra's ConfigStore (idempotent; done when p2p.config is imported)."""
    cs = store or ConfigStore.instance()
    # photos: colorization, inpainting, edges from a folder of photos (conf/data/{colorization,...}.yaml)
    names = {PairedDataModule: "paired", SyntheticDataModule: "synthetic", PhotoDataModule: "photos"}
    for cls, name in names.items():
        cs.store(group="schema/data", name=name, node=DATA_SCHEMAS[cls])
    # p2p-eval's data=checkpoint: any data.* key, checked once the checkpoint says its class (p2p.runs.eval)
    anything = OmegaConf.create({})
    OmegaConf.set_struct(anything, False)
    cs.store(group="schema/data", name="checkpoint", node=anything)
    cs.store(group="schema", name="loss", node=schema("Loss", Objective))
    # loss is its own group, and the channels and photo task are the data's (all passed to Pix2Pix by
    # p2p.config.build, so the networks take what the data gives); the rest of Pix2Pix's arguments are model.*
    model = schema(
        "Model", Pix2Pix, "p2p.training.Pix2Pix", skip=("loss", "in_channels", "out_channels", "photo_task")
    )
    cs.store(group="schema", name="model", node=_open(model, "generator", "discriminator"))
    # Lightning's own defaults; precision also takes p2p's "auto" (p2p.training.perf.resolve_precision)
    cs.store(group="schema", name="trainer", node=schema("Trainer", L.Trainer, "lightning.pytorch.Trainer"))
