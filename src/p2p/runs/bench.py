"""``bench(cfg)``: how fast p2p trains and translates, against a plain eager fp32 loop of the same networks.

p2p-bench model=unet_patch70 data=facades data.root=/data/facades          # paper recipe: batch 1, 256x256
p2p-bench ... bench.compare=[plain_fp32,p2p,p2p_fp32,p2p_nchw]              # switch features off one at a time
p2p-bench ... bench.batch_size=64 trainer=gpu

It composes ``p2p-train``'s config (bench.yaml extends train.yaml), so a variant measures exactly what
``p2p-train`` with the same overrides runs: the Lightning module, the data module with its cache and loaders,
the trainer's precision. Modes, listed in ``bench.compare``:

- ``plain_fp32``: a hand-written loop of the same G and D: fp32, NCHW, ``torch.optim.Adam`` with PyTorch's
  defaults, one D step and one G step per batch (the paper's section 3.3), on a batch already in memory.
- every name in ``bench.variants``: ``trainer.fit`` of p2p's module with that variant's overrides (``p2p``:
  none, so p2p's defaults), data loading included.

The machine may be shared, so the modes are interleaved step by step: each p2p fit runs one plain step
between its batches (a callback, not counted), inference batches alternate, and every figure is a median
over steps. The speedup is the median of per-step ratios (a p2p step against the plain step right after
it), so load that changes between steps cancels. The last stdout line is one JSON object (see `bench`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader, default_collate
from torch.utils.flop_counter import FlopCounterMode

from p2p.config import check_config
from p2p.config.build import build_datamodule, build_module, build_trainer, plain
from p2p.inference import Translator, inference_mode
from p2p.models.hub import p2p_version
from p2p.training import Objective, build_networks, discriminator_loss, gan_loss, perf

log = logging.getLogger(__name__)

PLAIN = "plain_fp32"


# --- measuring ---------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Memory:
    """Peak memory of a stretch of code: CUDA's max allocated bytes, or on CPU the process's peak resident
    set (Linux VmHWM, reset through /proc/self/clear_refs; DataLoader workers are other processes)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS (VmHWM)"

    def reset(self) -> float:
        """Start a stretch; returns the memory in use now (MB)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return torch.cuda.memory_allocated(self.device) / 2**20
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.kind = "process peak RSS since start (ru_maxrss)"
        return _status_mb("VmRSS")

    def peak(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        hwm = _status_mb("VmHWM")
        if hwm > 0:
            return hwm
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _status_mb(key: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class StepTimer(Callback):
    """Times each training batch after the first ``warm`` from the end of the previous one (so data loading,
    transfer and Lightning's own work are counted) and stops the fit after ``stop_after`` batches.

    ``between``, if set, runs before each timed batch and is not counted in it: the bench runs one step of
    the plain loop there, so the two alternate step by step and see the same load on a shared machine. The
    warm batches (a fresh fit forks its loader workers and allocates the optimiser state) are not timed, and
    ``between`` runs untimed after each of them but the last: after the inference timing and the fork (whose
    copy-on-write faults its first writes pay) its first steps are slower than in a loop of its own.
    """

    WARM = 3

    def __init__(self, stop_after: int = 1, warm: int = WARM) -> None:
        self.stop_after, self.warm, self.seen = stop_after, warm, 0
        self.between: Callable[[], float] | None = None
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.between_times: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        device = trainer.strategy.root_device
        _sync(device)
        self.seen += 1
        if len(self.ends) < len(self.starts):  # the batch that just ended was timed
            self.ends.append(time.perf_counter())
        if self.seen >= self.stop_after:
            trainer.should_stop = True
            return
        if self.seen < self.warm:
            if self.between is not None:  # untimed: the other loop warms up again too (see the class doc)
                self.between()
            return
        if self.between is not None:
            self.between_times.append(self.between())
            _sync(device)
        self.starts.append(time.perf_counter())

    def intervals(self) -> list[float]:
        """The durations of the timed batches."""
        return [end - start for start, end in zip(self.starts, self.ends)]


# --- the plain loop --------------------------------------------------------------------------------------
class PlainLoop:
    """pix2pix as one would write it from the paper: eager fp32 NCHW, Adam with PyTorch's defaults."""

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        model = plain(cfg.model)
        cin, cout = int(cfg.data.in_channels), int(cfg.data.out_channels)
        self.obj = Objective(**plain(cfg.loss))
        self.device = device
        G, D = build_networks(model["generator"], model.get("discriminator"), self.obj, cin, cout)
        self.G, self.D = G.to(device), None if D is None else D.to(device)
        lr, betas = float(model["optim"]["lr"]), tuple(model["optim"]["betas"])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=lr, betas=betas)  # type: ignore[arg-type]
        self.opt_d = (
            torch.optim.Adam(self.D.parameters(), lr=lr, betas=betas)  # type: ignore[arg-type]
            if self.D is not None
            else None
        )

    def _d(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert self.D is not None
        return self.D(torch.cat([x, y], 1) if self.obj.conditional else y)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D step then one G step; returns the losses (detached)."""
        self.G.train()
        fake = self.G(x)
        losses = {}
        if self.D is not None and self.opt_d is not None:
            self.D.train()
            loss_d = discriminator_loss(self._d(x, y), self._d(x, fake.detach()), self.obj.gan_mode)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            self.D.requires_grad_(False)  # D is frozen for G's step
            losses["loss_d"] = loss_d.detach()
        loss_l1 = F.l1_loss(fake, y)
        loss_g = self.obj.l1_weight * loss_l1
        if self.D is not None:
            loss_gan = gan_loss(self._d(x, fake), True, self.obj.gan_mode)
            loss_g = loss_g + self.obj.gan_weight * loss_gan
            losses["loss_g_gan"] = loss_gan.detach()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        if self.D is not None:
            self.D.requires_grad_(True)
        return {**losses, "loss_g_l1": loss_l1.detach(), "loss_g": loss_g.detach()}

    def timed_steps(self, batch: dict[str, torch.Tensor], n: int) -> list[float]:
        x, y = batch["input"].to(self.device), batch["target"].to(self.device)
        cudnn = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False  # PyTorch's default; p2p's trainer turns it on process-wide
        try:
            times = []
            for _ in range(n):
                _sync(self.device)
                t = time.perf_counter()
                self.step(x, y)
                _sync(self.device)
                times.append(time.perf_counter() - t)
            return times
        finally:
            torch.backends.cudnn.benchmark = cudnn


# --- p2p variants ------------------------------------------------------------------------------------------
def apply_overrides(cfg: DictConfig, overrides: Any) -> DictConfig:
    """A copy of ``cfg`` with ``["key=value", ...]`` applied (values parsed as YAML: 32, false, none)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    assert isinstance(out, DictConfig)
    for item in overrides or []:
        key, sep, value = str(item).partition("=")
        if not sep:
            raise ValueError(f"bench variant override {item!r} is not key=value")
        if OmegaConf.select(out, key.strip(), default=KeyError) is KeyError:
            raise ValueError(f"bench variant override {item!r}: no key {key.strip()!r} in the config")
        OmegaConf.update(out, key.strip(), yaml.safe_load(value), merge=False)
    return out


class Variant:
    """p2p's module and data module under one config, fitted afresh each round (same objects)."""

    def __init__(self, name: str, cfg: DictConfig) -> None:
        self.name, self.cfg = name, cfg
        self.datamodule = build_datamodule(cfg)
        self.model = build_module(cfg)
        trainer_cfg = cfg.trainer
        self.precision = str(
            perf.resolve_precision(trainer_cfg.get("precision"), trainer_cfg.get("accelerator"))
        )

    def channels_last(self, device: torch.device) -> bool:
        return perf.resolve_channels_last(self.cfg.model.get("channels_last"), device.type)

    def fit(self, timed: int, between: Callable[[], float] | None = None) -> tuple[list[float], list[float]]:
        """``StepTimer.WARM`` + ``timed`` training batches; returns the durations of the timed ones, and of
        the ``between`` calls that preceded them (see StepTimer)."""
        cfg = OmegaConf.create(OmegaConf.to_container(self.cfg, resolve=True))
        assert isinstance(cfg, DictConfig)
        with open_dict(cfg):
            cfg.logger = None
            cfg.callbacks = {
                "bench_timer": {"_target_": "p2p.runs.bench.StepTimer", "stop_after": timed + StepTimer.WARM}
            }
            cfg.trainer.update(
                max_epochs=-1, max_steps=-1, limit_train_batches=None, limit_val_batches=0,
                num_sanity_val_steps=0, enable_progress_bar=False, val_check_interval=None,
            )  # fmt: skip
        trainer = build_trainer(cfg, enable_checkpointing=False, enable_model_summary=False)
        timer: StepTimer = next(c for c in trainer.callbacks if isinstance(c, StepTimer))  # type: ignore[attr-defined]
        timer.between = between
        trainer.fit(self.model, datamodule=self.datamodule)
        return timer.intervals(), timer.between_times

    def infer_fn(self, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        """G as this variant runs it: eval mode, autocast dtype of its precision, channels-last if set."""
        G: nn.Module = self.model.G.to(device)  # type: ignore[union-attr,operator,assignment]
        cl = self.channels_last(device)
        if cl:
            perf.to_channels_last(G)
        dtype = perf.autocast_dtype(self.precision)

        def run(x: torch.Tensor) -> torch.Tensor:
            amp = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
            with torch.inference_mode(), inference_mode(G, "eval"), amp:
                return G(perf.nhwc(x, cl))

        return run


def time_inference(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int) -> list[float]:
    times = []
    for _ in range(n):
        _sync(x.device)
        t = time.perf_counter()
        fn(x)
        _sync(x.device)
        times.append(time.perf_counter() - t)
    return times


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the convolutions and matmuls ``fn`` runs (torch.utils.flop_counter; a multiply-add is 2)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def loop_flops(loop: PlainLoop, batch: dict[str, torch.Tensor], x_infer: torch.Tensor) -> tuple[int, int]:
    """FLOPs of one training step of ``loop`` on ``batch`` and of one inference forward of its G."""
    device = loop.device
    train = count_flops(lambda: loop.step(batch["input"].to(device), batch["target"].to(device)))
    with torch.no_grad():
        infer = count_flops(lambda: loop.G.eval()(x_infer))
    return train, infer


# --- the benchmark ---------------------------------------------------------------------------------------
def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else perf.cpu_model(),
        "cpu_model": perf.cpu_model(),
        "cpu_bf16": sorted(perf.cpu_flags() & {"avx512_bf16", "amx_bf16"}),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": L.__version__,
            "p2p": p2p_version(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "onednn": torch.backends.mkldnn.is_available(),
        },
        "date": dt.datetime.now().isoformat(timespec="seconds"),
    }
    if hasattr(os, "getloadavg"):
        env["load_avg_start"] = [round(x, 2) for x in os.getloadavg()]
    return env


def bench(cfg: DictConfig) -> dict[str, Any]:
    """Time every mode of ``cfg.bench.compare`` and return the figures (the JSON ``p2p-bench`` prints).

    Top-level figures are those of the first p2p variant in ``compare`` (the main mode); ``modes`` has
    every mode's, with ``speedup`` (training) and ``infer_speedup`` over ``plain_fp32`` when it ran, and the
    raw per-step times. Rates are batch size / median step time (``*_best``: / the fastest step, and
    ``speedup_best`` from the two fastest steps: the figures least disturbed by other load).
    """
    check_config(cfg)  # the same checks, and errors, as p2p-train
    b = cfg.bench
    if b.get("threads"):
        torch.set_num_threads(int(b.threads))
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    with open_dict(cfg):
        if b.get("batch_size"):
            cfg.data.batch_size = int(b.batch_size)
    bs = int(cfg.data.batch_size)
    infer_bs = int(b.get("infer_batch_size") or bs)
    steps, warmup, rounds = int(b.steps), int(b.warmup), int(b.rounds)
    if steps < 1 or rounds < 1 or warmup < 0:
        raise ValueError(f"bench: need steps >= 1, rounds >= 1, warmup >= 0; got {steps}, {rounds}, {warmup}")
    compare = list(b.compare)
    unknown = [m for m in compare if m != PLAIN and m not in b.variants]
    if unknown:
        raise ValueError(f"bench.compare: unknown mode(s) {unknown}; modes: {[PLAIN, *b.variants]}")
    device = torch.device(perf.accelerator_type(cfg.trainer.get("accelerator")))
    if device.type == "mps":
        device = torch.device("mps")
    env = environment(device)
    memory = Memory(device)

    # the modes, each built once (compiled graphs and caches persist across rounds)
    variants = {m: Variant(m, apply_overrides(cfg, b.variants[m])) for m in compare if m != PLAIN}
    plain = PlainLoop(cfg, device) if PLAIN in compare else None
    dm = next(iter(variants.values())).datamodule if variants else build_datamodule(cfg)
    dm.setup("fit")
    ds = dm.train_set
    batch = default_collate([ds[i % len(ds)] for i in range(bs)])
    batch = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    x_infer = batch["input"].repeat((infer_bs + bs - 1) // bs, 1, 1, 1)[:infer_bs].to(device)

    # FLOPs: one training step and one inference forward of the plain loop (the same networks in every mode)
    flops_train, flops_infer = loop_flops(plain or PlainLoop(cfg, device), batch, x_infer)

    # warm-up: compilation, autotuning, allocator, worker start
    if plain is not None:
        plain.timed_steps(batch, warmup)
    for variant in variants.values():
        variant.fit(warmup)
    infer = {m: v.infer_fn(device) for m, v in variants.items()}
    if plain is not None:
        G = plain.G

        def plain_infer(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return G.eval()(x)

        infer[PLAIN] = plain_infer
    for fn in infer.values():
        time_inference(fn, x_infer, max(1, min(warmup, 2)))

    # timed rounds. Training: each variant's fit runs one plain step between its batches (A B A B ...);
    # inference batches alternate the same way. A mode's rate is batch / its median step time; its speedup
    # is the median over steps of (plain step time / its step time), each plain step being the one run
    # right after, under the same load.
    step_times: dict[str, list[float]] = {m: [] for m in compare}
    infer_times: dict[str, list[float]] = {m: [] for m in compare}
    paired: dict[str, list[float]] = {m: [] for m in variants}
    infer_paired: dict[str, list[float]] = {m: [] for m in variants}
    plain_step = (lambda: plain.timed_steps(batch, 1)[0]) if plain is not None else None
    for r in range(rounds):
        names = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for m in names:
            times, plain_times = variants[m].fit(steps, between=plain_step)
            step_times[m] += times
            if plain is not None:
                step_times[PLAIN] += plain_times
                paired[m] += [p / t for p, t in zip(plain_times, times)]
        if plain is not None and not variants:
            step_times[PLAIN] += plain.timed_steps(batch, steps)
        for i in range(steps):
            once = {m: time_inference(infer[m], x_infer, 1)[0] for m in (compare if i % 2 else compare[::-1])}
            for m, t in once.items():
                infer_times[m].append(t)
                if m in infer_paired and PLAIN in once:
                    infer_paired[m].append(once[PLAIN] / t)
        log.info(
            "round %d: median step s %s",
            r,
            {m: round(statistics.median(v), 3) for m, v in step_times.items() if v},
        )

    # memory: each mode on its own, after the timing (one step; CPU: the whole process's peak RSS)
    peaks: dict[str, float] = {}
    baselines: dict[str, float] = {}
    for m in compare:
        baselines[m] = memory.reset()
        if m == PLAIN and plain is not None:
            plain.timed_steps(batch, 1)
        else:
            variants[m].fit(0)
        peaks[m] = memory.peak()

    modes: dict[str, Any] = {}
    for m in compare:
        rate, irate = bs / statistics.median(step_times[m]), infer_bs / statistics.median(infer_times[m])
        v = variants.get(m)
        modes[m] = {
            "train_images_per_s": rate,
            "train_images_per_s_best": bs / min(step_times[m]),  # the fastest step: least disturbed by load
            "train_step_s": [round(x, 4) for x in step_times[m]],
            "infer_images_per_s": irate,
            "infer_images_per_s_best": infer_bs / min(infer_times[m]),
            "infer_batch_s": [round(x, 4) for x in infer_times[m]],
            "peak_mem_mb": round(peaks[m], 1),
            "mem_at_start_mb": round(baselines[m], 1),
            "precision": v.precision if v is not None else "32",
            "channels_last": v.channels_last(device) if v is not None else False,
            "compile": perf.compile_mode(v.cfg.model.get("compile"), bool(v.cfg.model.get("cuda_graphs")))
            if v is not None
            else None,
            "overrides": list(b.variants[m]) if v is not None else [],
        }
        modes[m]["achieved_tflops"] = flops_train / bs * rate / 1e12
        modes[m]["infer_achieved_tflops"] = flops_infer / infer_bs * irate / 1e12
        if paired.get(m):  # median over steps of (plain step time / this mode's step time, same load)
            modes[m]["speedup"] = statistics.median(paired[m])
            modes[m]["speedup_steps"] = [round(x, 3) for x in paired[m]]
            modes[m]["speedup_best"] = min(step_times[PLAIN]) / min(step_times[m])
            modes[m]["infer_speedup"] = statistics.median(infer_paired[m])

    main = next((m for m in compare if m != PLAIN), PLAIN)
    side = tuple(batch["input"].shape[-2:])
    result: dict[str, Any] = {
        "main_mode": main,
        "train_images_per_s": modes[main]["train_images_per_s"],
        "infer_images_per_s": modes[main]["infer_images_per_s"],
        "peak_mem_mb": modes[main]["peak_mem_mb"],
        "peak_mem_kind": memory.kind,
        "flops_per_image": flops_train / bs,
        "infer_flops_per_image": flops_infer / infer_bs,
        "achieved_tflops": modes[main].get("achieved_tflops"),
        "speedup_vs_plain_fp32": modes[main].get("speedup"),
        "precision": modes[main]["precision"],
        "batch_size": bs,
        "infer_batch_size": infer_bs,
        "image_size": list(side),
        "generator": cfg.model.generator.name,
        "discriminator": cfg.model.discriminator.name,
        "steps": steps,
        "warmup": warmup,
        "rounds": rounds,
        **env,
        "modes": modes,
    }
    if hasattr(os, "getloadavg"):
        result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


# --- how large an image fits -----------------------------------------------------------------------------
def _probe(cfg_yaml: str, size: int, what: str, budget_mb: float, out: Any) -> None:
    """In a fresh process: one p2p training step (``train``) or one whole-image translation (``translate``,
    ``tile:N`` for tiled) of a size x size image at batch 1; puts (ok, MB before, peak MB, seconds, error)
    on ``out``. The model is built before the measurement starts, so "before" includes it."""
    import resource

    cfg = OmegaConf.create(cfg_yaml)
    assert isinstance(cfg, DictConfig)
    device = torch.device(perf.accelerator_type(cfg.trainer.get("accelerator")))
    memory = Memory(device)
    model = build_module(cfg)
    if (
        device.type == "cpu" and budget_mb > 0
    ):  # allocations past the budget fail instead of the host swapping
        limit = int((_status_mb("VmSize") + budget_mb) * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    x = torch.rand(1, int(cfg.data.in_channels), size, size) * 2 - 1
    try:
        start = memory.reset()
        t = time.perf_counter()
        if what == "train":
            with open_dict(cfg):
                cfg.logger, cfg.callbacks = None, {}
                cfg.trainer.update(max_epochs=1, max_steps=-1, limit_train_batches=1, limit_val_batches=0,
                                   num_sanity_val_steps=0, enable_progress_bar=False)  # fmt: skip
            trainer = build_trainer(cfg, enable_checkpointing=False, enable_model_summary=False)
            trainer.fit(model, DataLoader([{"input": x, "target": x}], batch_size=None))  # type: ignore[arg-type]
        else:
            tile = int(what.split(":")[1]) if what.startswith("tile:") else None
            Translator(model.G, device=device, inference="eval", tile=tile).translate_tensor(x)  # type: ignore[arg-type]
        _sync(device)
        out.put((True, start, memory.peak(), time.perf_counter() - t, None))
    except (RuntimeError, MemoryError) as e:  # CPU: the budget's limit; CUDA: out of memory
        error = f"{type(e).__name__}: {str(e)[:200]}"
        out.put((False, start, memory.peak(), time.perf_counter() - t, error))


def memory_sweep(cfg: DictConfig) -> dict[str, Any]:
    """The largest square image that trains at batch 1, and that translates in one piece (and tiled), trying
    ``bench.sizes`` in order, each in a fresh process, until one fails, exceeds ``bench.memory_budget_mb``
    (CPU: an address-space limit), or runs past ``bench.memory_timeout_s``."""
    import multiprocessing as mp

    b = cfg.bench
    cfg_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    ctx = mp.get_context("spawn")
    device = torch.device(perf.accelerator_type(cfg.trainer.get("accelerator")))
    results: dict[str, Any] = {
        "sizes": {},
        "largest": {},
        "budget_mb": float(b.memory_budget_mb),
        **environment(device),
    }
    for what in list(b.memory_modes):
        for size in list(b.sizes):
            queue = ctx.Queue()
            proc = ctx.Process(
                target=_probe, args=(cfg_yaml, int(size), what, float(b.memory_budget_mb), queue)
            )
            proc.start()
            proc.join(float(b.memory_timeout_s))
            if proc.is_alive():
                proc.kill()
                proc.join()
                row = {"ok": False, "error": f"over bench.memory_timeout_s={b.memory_timeout_s}"}
            elif queue.empty():
                row = {"ok": False, "error": f"the probe process died (exit code {proc.exitcode})"}
            else:
                ok, start, peak, seconds, error = queue.get()
                row = {
                    "ok": ok,
                    "peak_mb": round(peak, 1),
                    "start_mb": round(start, 1),
                    "seconds": round(seconds, 1),
                }
                row["error"] = error
            results["sizes"].setdefault(what, {})[int(size)] = row
            log.info("%s %dx%d: %s", what, size, size, row)
            if not row["ok"]:
                break
            results["largest"][what] = int(size)
    return results
