"""``p2p-demo``: a web page to draw or upload an input and see each generator's translation (Gradio).

The only layer that imports Gradio (the ``demo`` extra), so ``import p2p`` stays light.
``build_demo(generators) -> gradio.Blocks`` serves notebooks and Hugging Face Spaces as well as the CLI;
``translate`` is what its endpoints compute (`p2p.Translator` on each generator).
"""

from __future__ import annotations

import os

# Gradio reads this when imported: no usage reports leave the machine (the demo must work offline)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from p2p.demo.app import build_demo
from p2p.demo.translate import (
    MAX_PIXELS,
    Canvas,
    choose_canvas,
    load_examples,
    load_models,
    sweep_runs,
    translate,
)

__all__ = [
    "MAX_PIXELS",
    "Canvas",
    "build_demo",
    "choose_canvas",
    "load_examples",
    "load_models",
    "sweep_runs",
    "translate",
]
