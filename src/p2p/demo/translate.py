"""What the demo computes, without Gradio: the generators it serves, the canvas that suits them, and one
translation of one image through each of them (`translate`), as `p2p.Translator` computes it.

Inputs are checked here, so a bad one raises a `p2p.errors.UsageError` whose message the page shows: a file
that is not an image, an image above the pixel budget. Grayscale, palette and RGBA images are converted to
the generator's channels (alpha dropped, as PIL's ``convert("RGB")``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import yaml
from PIL import Image, UnidentifiedImageError

from p2p.data.palettes import PALETTES, derive_palette
from p2p.errors import InputNotFoundError, UsageError
from p2p.inference import Translator
from p2p.models.hub import GeneratorHubMixin, generator_config
from p2p.weights import load_generator

MAX_PIXELS = 16_000_000  # a 4000x4000 image; larger ones are refused (the budget is named in the message)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
EDGES_DATASETS = ("edges2shoes", "edges2handbags", "edges")  # datasets whose inputs are black-on-white lines


@dataclass(frozen=True)
class Canvas:
    """What the drawing canvas offers: ``kind`` labels (a palette on the first colour) or edges (black on
    white), and where the palette came from."""

    kind: str
    colors: tuple[tuple[int, int, int], ...]
    background: tuple[int, int, int]
    source: str

    def hex_colors(self) -> list[str]:
        return ["#{:02x}{:02x}{:02x}".format(*c) for c in self.colors]


EDGES_CANVAS = Canvas("edges", ((0, 0, 0),), (255, 255, 255), "edges: black on white")


def load_models(
    checkpoints: Sequence[str | Path] = (), sweep: str | Path | None = None, device: str = "cpu"
) -> dict[str, nn.Module]:
    """The generators to serve, by label: each ``--checkpoint`` (labelled by its path or tag) and every run
    of a ``--sweep`` folder (labelled by the Hydra overrides of the run, the variant of the ablation)."""
    models: dict[str, nn.Module] = {}
    for source in checkpoints:
        models[str(source)] = load_generator(source, device=device)
    if sweep is not None:
        for label, ckpt in sweep_runs(sweep):
            models[label] = load_generator(ckpt, device=device)
    if not models:
        raise UsageError("give at least one --checkpoint or a --sweep folder")
    return models


def sweep_runs(sweep: str | Path) -> list[tuple[str, Path]]:
    """(label, last checkpoint) of every run of a Hydra multirun folder (``multirun/<experiment>/<time>``)."""
    root = Path(sweep)
    if not root.is_dir():
        raise InputNotFoundError(f"--sweep {root}: no such folder")
    runs = []
    for ckpt in sorted(root.glob("*/checkpoints/last.ckpt")):
        run = ckpt.parent.parent
        overrides = run / ".hydra" / "overrides.yaml"
        items = yaml.safe_load(overrides.read_text()) if overrides.is_file() else None
        runs.append((" ".join(items) if items else run.name, ckpt))
    if not runs:
        raise InputNotFoundError(f"--sweep {root}: no run folder with checkpoints/last.ckpt in it")
    return runs


def choose_canvas(
    models: Mapping[str, nn.Module], palette: str = "auto", examples: Sequence[Image.Image] = ()
) -> Canvas:
    """The canvas for these generators. ``palette``: a dataset with a known palette (facades, cityscapes,
    synthetic), ``edges``, ``examples`` (the colours of the example inputs, as the FCN-score derives a
    dataset's palette), or ``auto``: the dataset a zoo entry names, else the examples' colours, else
    facades' (the paper's best-known label maps)."""
    if palette == "auto":
        datasets = {
            str(generator_config(m).get("dataset"))
            for m in models.values()
            if isinstance(m, GeneratorHubMixin)
        }
        known = [d for d in datasets if d in PALETTES or d in EDGES_DATASETS]
        palette = known[0] if known else "examples" if examples else "facades"
    if palette in EDGES_DATASETS:
        return EDGES_CANVAS
    if palette == "examples":
        if not examples:
            raise UsageError("--palette examples needs --examples DIR")
        derived = [(int(r), int(g), int(b)) for r, g, b in derive_palette(examples)]
        return Canvas("labels", tuple(derived), derived[0], f"derived from {len(examples)} example inputs")
    if palette not in PALETTES:
        choices = ", ".join([*PALETTES, "edges", "examples", "auto"])
        raise UsageError(f"--palette {palette}: choose from {choices}")
    colors = PALETTES[palette]
    return Canvas("labels", tuple(colors), colors[0], f"the {palette} label colours")


def open_input(image: Any, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An uploaded file (path), PIL image or uint8 array -> a PIL image, checked against the pixel budget."""
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                im.load()
                img = im.copy()
        except (UnidentifiedImageError, OSError):
            raise UsageError(
                f"{Path(image).name}: not an image PIL can read (PNG, JPEG, WebP, ...)"
            ) from None
    elif isinstance(image, np.ndarray):
        img = Image.fromarray(image)
    elif isinstance(image, Image.Image):
        img = image
    else:
        raise UsageError("no input image: upload one or draw on the canvas")
    w, h = img.size
    if w * h > max_pixels:
        raise UsageError(
            f"the image is {w}x{h} = {w * h:,} pixels, above the demo's budget of {max_pixels:,} "
            "(--max-pixels); scale it down"
        )
    if img.mode not in ("RGB", "L"):  # RGBA, LA, P, I;16, CMYK ... -> RGB; Translator matches channels
        img = img.convert("RGBA").convert("RGB") if img.mode in ("P", "LA", "PA") else img.convert("RGB")
    return img


def translate(
    models: Mapping[str, nn.Module],
    image: Any,
    inference: str = "eval",
    seed: int = 0,
    tile: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> list[tuple[Image.Image, str]]:
    """``image`` through every generator: (output at the input's size, label) in order. In ``paper``
    mode each generator's dropout is drawn from ``seed`` (the same drawing and seed give the same output);
    ``tile``: translate in overlapping tiles of this side (0 or None: the whole image at once)."""
    img = open_input(image, max_pixels)
    outputs = []
    for label, model in models.items():
        device = next(model.parameters()).device
        tr = Translator(model, device=device, inference=inference, tile=tile or None)
        # the seed touches no other request's random state (paper mode's dropout draws from it)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            outputs.append((tr(img), label))
    return outputs


def load_examples(folder: str | Path, half: str | None = None, limit: int = 8) -> list[Image.Image]:
    """Up to ``limit`` example inputs from ``folder`` (e.g. a dataset's test split). ``half``: A or B takes
    the left or right half of pix2pix's side-by-side A|B files (facades' label maps are B)."""
    root = Path(folder)
    files = sorted(f for f in root.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else []
    if not files:
        raise InputNotFoundError(f"--examples {root}: no folder with images ({', '.join(IMAGE_SUFFIXES)})")
    picked = [files[round(i)] for i in np.linspace(0, len(files) - 1, min(limit, len(files)))]
    images = []
    for f in picked:
        img = open_input(f)
        if half is not None:
            w, h = img.size
            img = img.crop((0, 0, w // 2, h) if half == "A" else (w // 2, 0, w, h))
        images.append(img)
    return images
