"""Ship a generator as ONNX or TorchScript, checked against PyTorch (``p2p-export`` runs it).

The network is exported in ``eval`` mode: running BatchNorm statistics, dropout off, deterministic. The
paper's test-time behaviour (``--inference paper``: dropout on and batch statistics, section 3.1) is not
part of the exported graph; use p2p itself for that. The batch axis is always dynamic; ``--dynamic-size``
makes height and width dynamic too (they must still be multiples of the network's divisor, e.g. 256 for
unet_256: pad as ``p2p.Translator`` does). After writing the file, the exported model is run on random
inputs (and, with ``--dynamic-size``, on a second size) and compared with PyTorch; the command prints
``max_abs_diff=...`` and fails if it exceeds ``--atol``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Literal, get_args

import torch
import torch.nn as nn

from p2p.errors import UsageError, check_value
from p2p.inference.translator import generator_channels, size_divisor

log = logging.getLogger(__name__)

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = get_args(Format)


def _onnx_export(model: nn.Module, x: torch.Tensor, path: Path, dynamic_size: bool, opset: int) -> str:
    """Write ``path``; returns which exporter did it. The torch.export-based ("dynamo") exporter needs
    onnxscript; without it (or if it fails) the TorchScript-based exporter is used."""
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    try:
        import onnxscript  # noqa: F401

        d = size_divisor(model)
        shapes: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
        if dynamic_size:  # sides as multiples of the divisor, so the exporter can prove the U-Net's check
            shapes |= {2: d * torch.export.Dim("h", min=1), 3: d * torch.export.Dim("w", min=1)}
        # torch.export specialises sizes of 1: trace with batch 2 and, for dynamic sides, 2 multiples
        sides = [max(s, 2 * d) if dynamic_size else s for s in x.shape[2:]]
        example = torch.rand(2, x.shape[1], *sides) * 2 - 1
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["input"],
            output_names=["output"],
            opset_version=opset,
            dynamic_shapes=({**shapes},),
            external_data=False,
        )
        assert program is not None
        program.save(str(path))
        return "dynamo"
    except Exception as e:  # ImportError, or a graph the new exporter cannot handle
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        log.info("torch.export-based ONNX export unavailable (%s); using the TorchScript-based one", reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            opset_version=opset,
            dynamic_axes={"input": axes, "output": axes},
        )
    return "torchscript-based"


def _check_sizes(model: nn.Module, size: tuple[int, int], dynamic_size: bool) -> list[tuple[int, int, int]]:
    """(batch, h, w) of the checks: the export size, and with dynamic sizes another batch and aspect."""
    h, w = size
    d = size_divisor(model)
    return [(1, h, w)] + ([(2, h + d, w + 2 * d)] if dynamic_size else [])


def export_generator(
    model: nn.Module,
    output: str | Path,
    fmt: str = "onnx",
    *,
    size: tuple[int, int] | None = None,
    dynamic_size: bool = False,
    opset: int = 17,
    seed: int = 0,
) -> dict[str, Any]:
    """Export ``model`` (in eval mode) to ``output`` and compare it with PyTorch on random inputs.

    Returns ``{"format", "exporter", "path", "checks": [(batch, h, w, max_abs_diff)], "max_abs_diff"}``.
    ``size`` defaults to the network's divisor (2**num_downs for a U-Net), at least 64.
    """
    check_value("format", fmt, Format)
    if opset < 17:
        raise UsageError(f"opset must be >= 17, got {opset}")
    model = model.cpu().eval()
    in_ch, _ = generator_channels(model)
    d = size_divisor(model)
    size = size or (max(d, 64),) * 2
    if size[0] % d or size[1] % d:
        raise UsageError(f"size {size} must be multiples of {d} for this network")
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, in_ch, *size, generator=gen) * 2 - 1
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)

    if fmt == "onnx":
        exporter = _onnx_export(model, x, path, dynamic_size, opset)
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(t: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {"input": t.numpy()})[0])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarning: the U-Net's size check is evaluated once
            traced = torch.jit.trace(model, x)
        traced.save(str(path))  # type: ignore[no-untyped-call]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still works
            exporter, loaded = "torch.jit.trace", torch.jit.load(str(path))

        def run(t: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return loaded(t)

    checks = []
    for b, h, w in _check_sizes(model, size, dynamic_size):
        t = torch.rand(b, in_ch, h, w, generator=gen) * 2 - 1
        with torch.no_grad():
            ref = model(t)
        out = run(t)
        if out.shape != ref.shape:
            raise RuntimeError(f"{path}: output shape {tuple(out.shape)} != PyTorch's {tuple(ref.shape)}")
        checks.append((b, h, w, float((out - ref).abs().max())))
    return {
        "format": fmt,
        "exporter": exporter,
        "path": str(path),
        "checks": checks,
        "max_abs_diff": max(c[3] for c in checks),
    }
