"""A settings value is checked by its annotation (`p2p.errors.check_value`): the choices of a ``Literal``
and the bounds of an ``Annotated`` number, said once where the field is declared."""

from __future__ import annotations

import dataclasses
import enum
import math
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from annotated_types import Ge, Gt, Interval, Lt

from p2p import create_model
from p2p.data import PairTransform, PhotoDataModule, PhotoTask, SyntheticDataModule, SyntheticPairs
from p2p.errors import ConfigError, check_value
from p2p.inference import Translator, inference_mode
from p2p.inference.export import export_generator
from p2p.models import register_model
from p2p.training import Objective, Optim
from p2p.weights import read_weights


@pytest.mark.parametrize(
    ("value", "annotation", "error"),
    [
        (0, Annotated[int, Ge(1)], "^k: must be >= 1, got 0$"),
        (float("nan"), Annotated[float, Ge(0)], "^k: must be >= 0, got nan$"),  # NaN is within no bound
        (1.0, Annotated[float, Gt(0), Lt(1)], r"^k: must be > 0 and < 1, got 1.0$"),
        (13, Annotated[int, Interval(ge=2, le=12)], "^k: must be >= 2 and <= 12, got 13$"),
        (0, Annotated[int | None, Ge(1)], "^k: must be null or >= 1, got 0$"),
        ("4", Annotated[int, Ge(1)], "^k: must be >= 1, got '4'$"),  # not a number: no TypeError traceback
        (True, Annotated[int, Ge(0)], "^k: must be >= 0, got True$"),
        (
            "lsgn",
            Literal["vanilla", "lsgan"],
            "^k: 'lsgn' is not one of vanilla, lsgan; did you mean 'lsgan'\\?$",
        ),
        ("hinge", Literal["vanilla", "lsgan"], "^k: 'hinge' is not one of vanilla, lsgan$"),
        (1, bool | Literal["auto"], "^k: 1 is not one of True, False, auto$"),  # 1 == True, but not a bool
        (True, Literal[1, 3], "^k: True is not one of 1, 3$"),
        (None, Literal["a", "b"], "^k: None is not one of a, b$"),
    ],
)
def test_check_value_rejects_what_the_annotation_does_not_allow(
    value: Any, annotation: Any, error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        check_value("k", value, annotation)


Colour = enum.Enum("Colour", {"red": "red", "blue": "blue"})  # how a structured config gives a choice


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        (1, Annotated[int, Ge(1)], 1),
        (0.5, Annotated[float, Gt(0), Lt(1)], 0.5),
        (12, Annotated[int, Interval(ge=2, le=12)], 12),
        (None, Annotated[int | None, Ge(1)], None),
        ("auto", bool | Literal["auto"], "auto"),
        (False, bool | Literal["auto"], False),
        (None, Literal["a"] | None, None),
        (Colour.blue, Literal["red", "blue"], "blue"),  # an enum member is its value
        ("anything", str, "anything"),  # no choices, no bounds: nothing to check
        (-5, int, -5),
    ],
)
def test_check_value_returns_what_the_annotation_allows(value: Any, annotation: Any, expected: Any) -> None:
    result = check_value("k", value, annotation)
    assert result == expected and type(result) is type(expected)


def _bounded_fields(cls: type) -> list[tuple[str, float, float]]:
    """(field, the value at its lower bound, a value just below it) for every field with a lower bound."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        for bound in getattr(hints[f.name], "__metadata__", ()):
            for b in bound if isinstance(bound, Interval) else [bound]:
                if isinstance(b, Ge):
                    out.append((f.name, b.ge, b.ge - (1 if isinstance(b.ge, int) else 0.01)))
                elif isinstance(b, Gt):
                    out.append((f.name, b.gt + 0.01, b.gt))
    return out


def _photos(tmp_path: Path, **kwargs: Any) -> PhotoDataModule:
    return PhotoDataModule(root=str(tmp_path), task="edges", **kwargs)


BUILDERS = {
    "SyntheticDataModule": (SyntheticDataModule, lambda tmp, **kw: SyntheticDataModule(**kw)),
    "PhotoDataModule": (PhotoDataModule, _photos),
    "PairTransform": (PairTransform, lambda tmp, **kw: PairTransform(**kw)),
    "Objective": (Objective, lambda tmp, **kw: Objective(**kw)),
    "Optim": (Optim, lambda tmp, **kw: Optim(**kw)),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_every_bounded_settings_field_accepts_its_bound_and_names_itself_past_it(
    name: str, tmp_path: Path
) -> None:
    cls, build = BUILDERS[name]
    fields = _bounded_fields(cls)
    assert fields, f"{name} declares no bounds"
    for key, ok, bad in fields:
        extra = (
            {"load_size": ok, "crop_size": ok} if key in ("load_size", "crop_size") else {}
        )  # crop <= load
        build(tmp_path, **{key: ok, **extra})
        with pytest.raises(ConfigError, match=f"^{key}: must be "):
            build(tmp_path, **{**extra, key: bad})


def test_the_declared_bounds_are_the_documented_ones(tmp_path: Path) -> None:
    """What a bound means for a user, for the fields whose range is not just 'positive'."""
    assert ("image_size", 32, 31) in _bounded_fields(SyntheticDataModule)
    with pytest.raises(ConfigError, match=r"^num_classes: must be >= 2 and <= 12, got 13$"):
        SyntheticDataModule(num_classes=13)
    with pytest.raises(ConfigError, match=r"^val_fraction: must be > 0 and < 1, got 1.0$"):
        _photos(tmp_path, val_fraction=1.0)
    with pytest.raises(ConfigError, match=r"^max_val_samples: must be null or >= 1, got 0$"):
        SyntheticDataModule(max_val_samples=0)
    assert SyntheticDataModule(max_val_samples=None).max_val_samples is None


def test_choices_are_checked_in_every_class_that_takes_them() -> None:
    """The data module, and the datasets and tasks a user may build alone, each name the key they were given."""
    with pytest.raises(ConfigError, match=r"^cache: 'disk' is not one of auto, ram, none$"):
        SyntheticDataModule(cache="disk")
    with pytest.raises(ConfigError, match=r"^device_augment: 'yes' is not one of True, False, auto$"):
        SyntheticDataModule(device_augment="yes")
    with pytest.raises(ConfigError, match=r"^num_samples: must be >= 1, got 0$"):
        SyntheticPairs(0)
    with pytest.raises(ConfigError, match=r"^in_channels: 2 is not one of 1, 3$"):
        SyntheticPairs(4, in_channels=2)
    with pytest.raises(
        ConfigError, match=r"^mask: 'centre' is not one of center, random; did you mean 'center'"
    ):
        PhotoTask("inpainting", "centre")
    assert math.isclose(Objective(l1_weight=0.0, gan_weight=0.5).gan_weight, 0.5)


def test_the_python_apis_name_a_bad_choice_the_same_way(tmp_path: Path) -> None:
    """Every function that takes one of a few names says which, and the closest (one check, `check_value`)."""
    G = create_model("unet_256", num_downs=5, ngf=4)
    calls = {
        "inference": lambda: Translator(G, inference="paperr"),
        "blend": lambda: Translator(G, blend="cosin"),
        "network": lambda: read_weights(tmp_path / "x.ckpt", network="E"),
        "kind": lambda: register_model(lambda: G, name="x", kind="generater"),
        "format": lambda: export_generator(G, tmp_path / "g.onnx", fmt="onx"),
    }
    for key, call in calls.items():
        with pytest.raises(ConfigError, match=rf"^{key}: '\w+' is not one of "):
            call()
    with (
        pytest.raises(ConfigError, match=r"^inference: 'test' is not one of paper, eval$"),
        inference_mode(G, "test"),
    ):
        pass
