"""Speed settings that leave the paper's results unchanged, and the hardware facts they depend on.

The reference pix2pix code trains in fp32, NCHW, eager, with the for-loop Adam. p2p's defaults differ only
where the change is numerically benign and measurably faster (BENCHMARKS.md has the figures):

- precision ``auto``: bf16 autocast where the hardware has native bf16 arithmetic (CUDA compute capability
  >= 8.0; x86 CPUs with AVX-512 BF16 or AMX), else fp32. bf16 keeps fp32's exponent range, so no loss
  scaling is needed; the losses and the optimiser stay in fp32 (``p2p.losses`` casts the logits).
- channels-last (NHWC) activations on CUDA, where cuDNN's tensor-core convolutions are NHWC-native. Not on
  CPU: oneDNN's NHWC BatchNorm and transposed convolutions cost more than they save there (measured, see
  BENCHMARKS.md), so ``auto`` keeps NCHW.
- fused Adam (one kernel for all parameters) on CUDA and, where PyTorch has the kernel, on CPU.
- cudnn autotuning when runs are not asked to be deterministic.
- opt-in ``torch.compile`` and CUDA graphs (``mode="reduce-overhead"``) for batch-1 training, where kernel
  launch overhead dominates on a GPU.
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


# --- hardware ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (/proc/cpuinfo); empty elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_fast_bf16() -> bool:
    """Native bf16 dot products (AVX-512 BF16 or AMX): oneDNN then runs bf16 convolutions at about twice the
    fp32 rate. Without them bf16 is emulated and slower than fp32, so ``auto`` stays in fp32."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"}) and torch.backends.mkldnn.is_available()


def cuda_has_fast_bf16(device: int | None = None) -> bool:
    """bf16 tensor cores: Ampere (compute capability 8.0) and newer."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)


def accelerator_type(accelerator: str | None) -> str:
    """What Lightning's ``accelerator`` setting will run on: ``cuda``, ``mps`` or ``cpu``."""
    acc = (accelerator or "auto").lower()
    if acc in ("gpu", "cuda"):
        return "cuda"
    if acc == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    return acc


def resolve_precision(precision: Any, accelerator: str | None) -> Any:
    """``auto`` (or null) -> ``bf16-mixed`` where the accelerator computes natively in bf16, else ``32``; any
    other value goes to Lightning unchanged (it checks them)."""
    if precision not in (None, "auto"):
        return precision
    kind = accelerator_type(accelerator)
    fast = (kind == "cuda" and cuda_has_fast_bf16()) or (kind == "cpu" and cpu_has_fast_bf16())
    return "bf16-mixed" if fast else "32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype a Lightning precision implies (None: no autocast)."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))


def fused_adam_available(device_type: str) -> bool:
    """Fused Adam exists for CUDA, and for CPU from PyTorch 2.4: one pass over all parameters instead of a
    dozen elementwise kernels per tensor (unet_256's optimiser step: 1.09 s -> 0.43 s on this project's
    loaded 2-core CPU; the whole training step: BENCHMARKS.md)."""
    if device_type == "cuda":
        return True
    if device_type != "cpu":
        return False
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key("aten::_fused_adam_", "CPU"))
    except (AttributeError, RuntimeError):
        return False


# --- modules -------------------------------------------------------------------------------------------------
def resolve_channels_last(value: bool | str | None, device_type: str) -> bool:
    """``auto`` (or null) -> NHWC on CUDA only; true/false as given."""
    if value in (None, "auto"):
        return device_type == "cuda"
    if not isinstance(value, bool):
        raise ValueError(f"model.channels_last must be true, false or auto, got {value!r}")
    return value


def to_channels_last(*modules: nn.Module | None) -> None:
    """NHWC weights (and so NHWC activations: convolutions follow their weight's layout). In place: the
    Parameter objects stay the same, so optimisers built earlier still hold them."""
    for m in modules:
        if m is not None:
            m.to(memory_format=torch.channels_last)


def to_contiguous(*modules: nn.Module | None) -> None:
    """Back to NCHW: what exporters and safetensors expect of a state dict."""
    for m in modules:
        if m is not None:
            m.to(memory_format=torch.contiguous_format)


def nhwc(x: torch.Tensor, on: bool = True) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if on and x.ndim == 4 else x


def compile_mode(compile: bool | str | None, cuda_graphs: bool = False) -> str | None:
    """The ``torch.compile`` mode the two model options ask for, or None for eager.

    ``cuda_graphs`` is inductor's ``reduce-overhead`` mode: each compiled graph is captured once and replayed
    with one launch, which is what batch-1 training on a GPU is bound by."""
    if cuda_graphs:
        if compile not in (None, False, True, "reduce-overhead"):
            raise ValueError(f"model.cuda_graphs=true is compile mode 'reduce-overhead', not {compile!r}")
        return "reduce-overhead"
    if compile in (None, False):
        return None
    if compile is True:
        return "default"
    if compile not in COMPILE_MODES:
        raise ValueError(f"model.compile must be true, false or one of {COMPILE_MODES}, got {compile!r}")
    return str(compile)


def compile_modules(mode: str | None, *modules: nn.Module | None) -> None:
    """``nn.Module.compile`` in place: the state dict keeps its keys (no ``_orig_mod.`` prefix), so
    checkpoints stay interchangeable with eager runs."""
    if mode is None:
        return
    for m in modules:
        if m is not None:
            m.compile(mode=mode)


def match_optimizer_state_layout(optimizer: torch.optim.Optimizer) -> int:
    """Give each optimiser state tensor its parameter's memory layout; returns how many were changed.

    Fused Adam walks parameter, gradient and moments by raw pointer, so a moment stored NCHW next to an NHWC
    parameter (a checkpoint resumed with channels-last toggled) would silently pair the wrong elements.
    """
    changed = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if (
                    isinstance(value, torch.Tensor)
                    and value.shape == p.shape
                    and value.stride() != p.stride()
                    and p.ndim == 4
                ):
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
                    changed += 1
    return changed
