"""NaN/inf losses: `NonFiniteGuard` keeps them out of the weights or out of the checkpoints.

A non-finite loss term (too high a learning rate, a corrupt image) turns every weight its gradient reaches
into NaN at the next optimiser step, and a run that saves those weights has lost everything since its last
good checkpoint. The guard watches the loss terms of every optimiser step; ``model.on_nonfinite`` says what
a bad one does, ``model.check_finite`` when the guard looks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, get_args

import torch

from p2p.errors import ConfigError, NonFiniteLossError, check_value

log = logging.getLogger(__name__)

NonfiniteAction = Literal["error", "skip"]
NONFINITE_ACTIONS: tuple[str, ...] = get_args(NonfiniteAction)
CheckFinite = Literal["auto", "step", "deferred"]
CHECK_FINITE_MODES: tuple[str, ...] = get_args(CheckFinite)


class NonFiniteGuard:
    """What a NaN/inf loss term does (``on_nonfinite``) and when the guard looks for one (``check_finite``).

    ``on_nonfinite``:

    - ``error``: stop the run with `NonFiniteLossError`, naming the term and the global step(s).
    - ``skip``: skip that optimiser step (putting back the BatchNorm statistics its forward pass changed),
      count it (``train/skipped_steps``) and train on. Needs a decision before every step, so it always
      checks per step (``check_finite=deferred`` with it is an error).

    Whatever the mode, every checkpoint is checked before it is written (`check_checkpoint`): a finite loss
    does not make finite weights, so the guard also looks at every tensor the checkpoint holds.

    ``check_finite``:

    - ``step``: decide before every optimiser step, so the bad step never changes a weight. Each decision
      reads a value back from the device: one host sync per optimiser step (two per batch with a GAN term),
      and an all-reduce under DDP so that the ranks skip or stop together.
    - ``deferred``: a step only ORs "this term was non-finite" into a flag on the device, with no sync. The
      flag is read (one sync, and the all-reduce under DDP) every ``trainer.log_every_n_steps`` batches,
      before every checkpoint is written and at the end of training. The bad step does reach the weights,
      but a checkpoint holding them is never written: the error says between which global steps the loss
      went bad, and every checkpoint on disk predates that.
    - ``auto`` (the default): ``step`` on CPU, ``deferred`` on CUDA. On CPU the thread that reads the loss
      also computed it, so the read waits for nothing: the check costs its few scalar ops (measured on the
      project's 2-core CPU: 65 us per optimiser step, deferred 71 us, against ~320 ms for a paper-recipe
      batch, BENCHMARKS.md), and the error names the exact step. On a GPU the CPU runs ahead, queueing
      kernels while the device works; a sync per step drains that queue twice a batch, leaving the GPU idle
      while the CPU launches the next kernels, and puts a stall after every CUDA graph replay
      (``model.cuda_graphs``). Deferred, the guard costs three tiny kernels per loss term and step, and
      one sync per logging interval, where Lightning's logging reads the logged losses back anyway. (A
      progress bar reads the ``prog_bar`` losses after every batch, one sync of Lightning's own;
      ``trainer.enable_progress_bar=false`` leaves none per step.)
    """

    def __init__(
        self, on_nonfinite: str = "error", check_finite: str = "auto", max_skipped: float = 0.25
    ) -> None:
        on_nonfinite = check_value("on_nonfinite", on_nonfinite, NonfiniteAction)
        if not max_skipped > 0:  # also rejects NaN
            raise ConfigError(
                f"max_skipped_steps: must be a share in (0, 1) or a count >= 1, got {max_skipped}"
            )
        check_finite = check_value("check_finite", check_finite, CheckFinite)
        if on_nonfinite == "skip" and check_finite == "deferred":
            raise ConfigError(
                "check_finite: model.on_nonfinite=skip decides before every optimiser step, which "
                "model.check_finite=deferred does not: use check_finite=auto or step with it"
            )
        self.on_nonfinite, self.check_finite = on_nonfinite, check_finite
        self.deferred = False  # resolved per device by resolve(); until then, per step
        self.skipped, self.max_skipped, self._steps = 0, max_skipped, 0
        self._buffers: list[tuple[torch.Tensor, torch.Tensor]] = []  # (buffer, copy) for skip mode
        self._flags: dict[str, torch.Tensor] = {}  # deferred: term -> "was non-finite since the last read"
        self._batches = 0
        self._clean_at: int | None = None  # global step of the last read that found every term finite
        self._saved_at: int | None = None  # global step of the newest checkpoint written (or resumed from)
        self._batch_idx = 0

    def resolve(self, device_type: str) -> None:
        """Pick per-step or deferred checks for the device the run trains on (``auto``: deferred on CUDA)."""
        auto = device_type == "cuda" and self.on_nonfinite == "error"
        self.deferred = self.check_finite == "deferred" or (self.check_finite == "auto" and auto)
        self._flags, self._clean_at, self._saved_at = {}, None, None

    @contextmanager
    def batch(self, module: Any, batch_idx: int) -> Iterator[None]:
        """Around one training batch: first saves the buffers a skipped step must put back (skip mode); after
        it, every ``trainer.log_every_n_steps`` batches, reads the deferred flags."""
        if self._clean_at is None:  # the first batch of this fit (a resumed run starts past 0)
            self._clean_at = self._saved_at = module.global_step
        if self.on_nonfinite == "skip":
            self._buffers = [(b, b.detach().clone()) for b in module.buffers()]
        self._batch_idx = batch_idx
        yield
        self._batches += 1
        every = module.trainer.log_every_n_steps
        if self.deferred and every > 0 and self._batches % every == 0:
            self.check(module, f"after batch {batch_idx} of epoch {module.current_epoch}")

    def allows(self, module: Any, **terms: torch.Tensor | None) -> bool:
        """Whether the optimiser step on these loss terms (None: a term this objective lacks) may go ahead."""
        terms_ = {k: v.detach() for k, v in terms.items() if v is not None}
        bad_now = {k: ~torch.isfinite(v).all() for k, v in terms_.items()}
        if self.deferred:  # remember on the device; check() reads it
            for k, b in bad_now.items():
                self._flags[k] = self._flags[k].logical_or_(b) if k in self._flags else b
            return True
        self._steps += 1
        flags = torch.stack(list(bad_now.values())).tolist()  # the one host sync of this step
        bad = [k for k, f in zip(bad_now, flags) if f]
        if not module.trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            return True  # DDP ranks decide together: none waits for a gradient the others skip
        what = ", ".join(f"{k}={terms_[k].item()}" for k in bad) or "a loss term on another DDP rank"
        where = f"global step {module.global_step} (epoch {module.current_epoch}, batch {self._batch_idx})"
        if self.on_nonfinite == "error":
            raise NonFiniteLossError(
                f"non-finite loss at {where}: {what}. Training stopped before this step changed the weights; "
                "the checkpoints already written are intact. Lower model.optim.lr, check the data, or set "
                "model.on_nonfinite=skip to skip such steps"
            )
        for buffer, saved in self._buffers:  # the forward passes updated running stats with NaN
            buffer.copy_(saved)
        self.skipped += 1
        if self._too_many():
            raise NonFiniteLossError(
                f"{self.skipped} of {self._steps} optimiser steps skipped for non-finite losses (the last at {where}: "
                f"{what}), more than model.max_skipped_steps={self.max_skipped} allows: the model is not training. "
                "Training stopped; the checkpoints already written are intact. Lower model.optim.lr or check the data"
            )
        log.warning(
            "skipping the optimiser step at %s: non-finite %s (%d skipped so far)", where, what, self.skipped
        )
        module.log("train/skipped_steps", float(self.skipped))
        return False

    def _too_many(self) -> bool:
        """More skipped steps than ``max_skipped`` allows: a count (>= 1), or a share of this fit's steps
        judged from the third skip on (so that one early spike does not stop a run)."""
        if self.max_skipped >= 1:
            return self.skipped > self.max_skipped
        return self.skipped >= 3 and self.skipped > self.max_skipped * self._steps

    def check(self, module: Any, when: str) -> None:
        """Deferred mode: read the flags of the steps since the last read (one sync; an all-reduce under DDP)
        and raise `NonFiniteLossError` if any term was NaN/inf. A no-op when no step ran since."""
        if not self._flags:
            return
        names, flags = list(self._flags), torch.stack(list(self._flags.values())).tolist()
        self._flags = {}
        bad = [k for k, f in zip(names, flags) if f]
        start, now = self._clean_at or 0, module.global_step
        self._clean_at = now
        if not module.trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            return
        what = ", ".join(bad) or "a loss term on another DDP rank"
        raise NonFiniteLossError(
            f"non-finite loss between global steps {start} and {now}: {what}, found {when}. Training "
            "stopped before writing a checkpoint with the weights it produced: the checkpoints on disk are "
            f"intact ({self._newest()}). Lower model.optim.lr, check the data, "
            "or set model.check_finite=step to stop at the exact step (or model.on_nonfinite=skip to skip "
            "such steps)"
        )

    def check_checkpoint(self, module: Any, checkpoint: dict[str, Any], when: str) -> None:
        """Before a checkpoint is written, in every mode: the deferred flags, then every weight, buffer and
        optimiser moment in it. A finite loss does not make finite weights: the last step before a save
        can overflow them, and BatchNorm's running variance can overflow while the batch statistics that
        normalise (and so the losses) stay finite. One isfinite per tensor and one sync, once per checkpoint."""
        self.check(module, when)
        state = {
            "state_dict": checkpoint.get("state_dict"),
            "optimizer_states": checkpoint.get("optimizer_states"),
        }
        named = [(k.removeprefix("state_dict."), v) for k, v in _tensors(state) if v.is_floating_point()]
        finite = torch.stack([torch.isfinite(v).all() for _, v in named]).tolist() if named else []
        bad = [k for (k, _), ok in zip(named, finite) if not ok]
        if not module.trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            self._saved_at = module.global_step
            return
        what = (
            ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            or "on another DDP rank"
        )
        raise NonFiniteLossError(
            f"non-finite values in the checkpoint to be written at global step {module.global_step} ({what}), "
            "though no loss term was: an optimiser step or BatchNorm's running statistics overflowed. Training "
            f"stopped without writing it: the checkpoints on disk are intact ({self._newest()}). Lower "
            "model.optim.lr or check the data"
        )

    def _newest(self) -> str:
        return f"the newest from global step {self._saved_at or 0} or earlier"


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor in a nested checkpoint structure."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")
