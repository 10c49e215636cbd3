"""Saving generators: ``save_pretrained`` / ``push_to_hub`` through huggingface_hub's mixin.

``G.save_pretrained(folder)`` writes ``config.json`` (registry name + every constructor argument) and
``model.safetensors``; ``G.push_to_hub("owner/name")`` uploads the same two files; ``p2p.load_generator``
reads them back (`p2p.weights`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from huggingface_hub import PyTorchModelHubMixin

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
# keys of config.json that describe the model rather than build it (kept when it is saved again)
# photo_task: what the generator's channels mean (p2p.io.tasks: colorization, inpainting, edges)
METADATA_KEYS = ("p2p_version", "task", "dataset", "direction", "input_size", "preprocess", "inference",
                 "source", "data", "photo_task")  # fmt: skip


def p2p_version() -> str:
    try:
        return version("p2p")
    except PackageNotFoundError:  # a source tree on sys.path without an install
        return "unknown"


class GeneratorHubMixin(
    PyTorchModelHubMixin,
    library_name="p2p",
    tags=["pix2pix", "image-to-image"],
    pipeline_tag="image-to-image",
    paper_url="https://arxiv.org/abs/1611.07004",
    license="bsd-3-clause",
):
    """huggingface_hub's mixin, plus the registry name in ``config.json`` so ``load_generator`` rebuilds the
    network through the registry. The mixin records the constructor arguments at construction, which for
    p2p's generators are plain numbers and strings; ``Cls.from_pretrained(folder)`` works as well."""

    def save_pretrained(self, save_directory: str | Path, *, config: Any = None, **kwargs: Any) -> Any:
        full = {**generator_config(self), **(config or {})}
        return super().save_pretrained(save_directory, config=full, **kwargs)  # type: ignore[misc]


def set_metadata(model: Any, **metadata: Any) -> None:
    """Record ``metadata`` (METADATA_KEYS) with the generator: `generator_config` returns it, so checkpoints
    and ``save_pretrained`` folders carry it, and ``p2p.load_generator`` puts it back."""
    if unknown := sorted(set(metadata) - set(METADATA_KEYS)):
        raise ValueError(f"not metadata keys: {unknown}; choose from {METADATA_KEYS}")
    model._hub_mixin_config = {**dict(getattr(model, "_hub_mixin_config", None) or {}), **metadata}


def generator_config(model: Any) -> dict[str, Any]:
    """Registry name + every constructor argument (so the builder's own defaults never matter)."""
    captured = dict(getattr(model, "_hub_mixin_config", None) or {})
    if "name" not in captured:
        captured["name"] = model.registry_name()
    captured["p2p_version"] = p2p_version()
    return captured
