"""The Gradio page: upload or draw an input, press Translate, see every generator's output side by side.

Two endpoints, ``/translate`` (an uploaded file) and ``/translate_drawing`` (the canvas), both with the
inference mode, the seed and the tile size, return one image per generator. A bad input raises
``gr.Error``: the page shows its message and the server keeps serving; a queue with a concurrency limit
serves several users in turn.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import torch.nn as nn
from PIL import Image

from p2p.demo.translate import MAX_PIXELS, Canvas, choose_canvas, translate
from p2p.errors import P2PError
from p2p.inference import INFERENCE_MODES
from p2p.inference.translator import MODE_NOTES
from p2p.models.hub import GeneratorHubMixin, generator_config


def default_inference(models: Mapping[str, nn.Module]) -> str:
    """The first generator's recommendation (a zoo entry: paper; a checkpoint: its validation mode)."""
    first = next(iter(models.values()))
    mode = generator_config(first).get("inference") if isinstance(first, GeneratorHubMixin) else None
    return mode if mode in INFERENCE_MODES else "eval"


def build_demo(
    generators: Mapping[str, nn.Module],
    *,
    palette: str = "auto",
    examples: Sequence[Image.Image] = (),
    canvas_size: tuple[int, int] = (256, 256),
    max_pixels: int = MAX_PIXELS,
    concurrency: int = 1,
    title: str = "pix2pix",
) -> gr.Blocks:
    """The demo of ``generators`` ({label: generator}, e.g. ``{"facades": p2p.load_generator(...)}``).

    ``palette``: the canvas's colours (`p2p.demo.choose_canvas`); ``examples``: input images offered under
    the upload; ``canvas_size`` (width, height) of the drawing; ``max_pixels``: larger inputs are refused;
    ``concurrency``: requests computed at once (the others wait in the queue). Launch it with
    ``.launch(server_name="127.0.0.1")``; nothing is shared unless ``share=True`` is asked for.
    """
    if not generators:
        raise ValueError("build_demo needs at least one generator")
    models = dict(generators)
    canvas = choose_canvas(models, palette, examples)

    def run(image: Any, inference: str, seed: float | None, tile: float | None) -> Any:
        try:
            outs = translate(models, image, inference, int(seed or 0), int(tile or 0), max_pixels)
        except P2PError as e:  # the user's input: a message in the page, and the server goes on
            raise gr.Error(str(e)) from None
        images = tuple(img for img, _ in outs)
        return images[0] if len(images) == 1 else images  # Gradio: one output component, one value

    def run_upload(
        payload: dict[str, Any] | None, inference: str, seed: float | None, tile: float | None
    ) -> Any:
        # unprocessed (Gradio's own preprocessing would fail on a file that is not an image, with no
        # message); only files Gradio stored from an upload are read
        path = Path((payload or {}).get("path") or "")
        if payload and not path.resolve().is_relative_to(Path(upload.GRADIO_CACHE).resolve()):
            raise gr.Error(f"{path.name}: not an uploaded file")
        return run(str(path) if payload else None, inference, seed, tile)

    def run_drawing(editor: dict[str, Any] | None, inference: str, seed: float | None, tile: float | None):  # type: ignore[no-untyped-def]
        composite = (editor or {}).get("composite")
        return run(composite, inference, seed, tile)

    with gr.Blocks(title=f"p2p: {title}", analytics_enabled=False) as demo:
        gr.Markdown(
            f"## {title}\nUpload an image or draw one, then press **Translate**. "
            f"{len(models)} generator{'s' if len(models) > 1 else ''}; the output has the input's size."
        )
        with gr.Row():
            with gr.Column():
                with gr.Tabs():
                    with gr.Tab("Upload"):
                        upload = gr.Image(
                            type="filepath", image_mode=None, format="png", label="input",
                            sources=["upload", "clipboard"], elem_id="p2p-upload",
                        )  # fmt: skip
                        upload_button = gr.Button("Translate", variant="primary", elem_id="p2p-translate")
                        if examples:
                            gr.Examples(example_files(examples), inputs=upload, label="examples")
                    with gr.Tab("Draw"):
                        editor = drawing_canvas(canvas, canvas_size)
                        draw_button = gr.Button(
                            "Translate drawing", variant="primary", elem_id="p2p-translate-drawing"
                        )
                with gr.Accordion("Settings", open=True):
                    inference = gr.Radio(
                        list(INFERENCE_MODES),
                        value=default_inference(models),
                        label="inference mode",
                        info="; ".join(f"{m}: {MODE_NOTES[m]}" for m in INFERENCE_MODES),
                    )
                    seed = gr.Number(0, precision=0, label="seed (paper mode's dropout)")
                    tile = gr.Number(
                        0, precision=0, minimum=0, label="tile size (0: the whole image at once)"
                    )
            with gr.Column(), gr.Row():
                outputs = [
                    gr.Image(
                        label=label,
                        type="pil",
                        format="png",
                        interactive=False,
                        buttons=["download"],
                        elem_id=f"p2p-output-{i}",
                    )
                    for i, label in enumerate(models)
                ]
        settings = [inference, seed, tile]
        upload_button.click(run_upload, [upload, *settings], outputs, api_name="translate", preprocess=False)
        draw_button.click(run_drawing, [editor, *settings], outputs, api_name="translate_drawing")
    return demo.queue(default_concurrency_limit=concurrency)


def drawing_canvas(canvas: Canvas, size: tuple[int, int]) -> gr.ImageEditor:
    """A canvas of ``size`` filled with the background label (or white), a brush in the canvas's colours."""
    colors: list[str | tuple[str, float]] = list(canvas.hex_colors())
    brush = gr.Brush(
        colors=colors, default_color=colors[1] if len(colors) > 1 else colors[0], color_mode="fixed"
    )
    return gr.ImageEditor(
        value=Image.new("RGB", size, canvas.background),
        type="pil",
        image_mode="RGB",
        format="png",
        sources=["upload"],
        brush=brush,
        eraser=False,
        layers=False,
        transforms=[],
        canvas_size=size,
        fixed_canvas=True,
        label=f"draw ({canvas.source})",
        elem_id="p2p-canvas",
    )


def example_files(examples: Sequence[Image.Image]) -> list[str]:
    """Gradio's examples are files: the example images as PNGs in a fresh temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="p2p-demo-examples-"))
    paths = []
    for i, img in enumerate(examples):
        img.save(folder / f"example_{i}.png")
        paths.append(str(folder / f"example_{i}.png"))
    return paths
