"""Batch-size ramps: pure functions from the consumed-samples counter to the global batch size.

A run's ramp is written once as a ``rampspec.RampSpec`` (its one value and text form); ``RampSpec.bind``
returns one of the functions below.

The simulator uses them to predict steps and time, the plugin to drive each training step, so both
see exactly the same schedule. Every value is a multiple of the granularity ``micro_batch x dp``
and never decreases; a ramp depends only on the consumed counter (restored on resume), except the
adaptive ramp, whose small explicit state is checkpointed with ``state_dict()``.

Shapes:
- constant;
- Megatron's linear staircase ``"start,incr,ramp_samples"`` (megatron-core 0.16
  ``RampupBatchsizeNumMicroBatchesCalculator``, ``--rampup-batch-size``);
- the megatron-core 0.18+ step schedule ``"0:768 250B:1536"`` (``--step-batch-size-schedule``;
  thresholds in samples, or in tokens with ``unit = "tokens"``, K/M/B/T suffixes);
- GPT-3 style linear growth in tokens (Brown et al. 2020, appendix B: "linearly increase the batch
  size from a small value (32k tokens) to the full value over the first 4-12 billion tokens");
- doubling every ``every_tokens`` tokens up to a cap;
- adaptive: grow when the smoothed noise scale B_simple (McCandlish et al. 2018) exceeds the
  current batch, with bounds and hysteresis;
- probe: batch-size warmup that follows a measured B_crit(tokens) curve from ``batchlaw probe-cbs``
  (Merrill et al. 2025, arXiv 2505.23971, sec. 5: start small and grow as the critical batch grows,
  never above it), as doublings of ``start`` (built as a step schedule in tokens).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from dataclasses import dataclass
from typing import Any, Literal, Mapping


__all__ = [
    "AdaptiveRamp", "BatchRamp", "ConstantRamp", "DoublingRamp", "LinearTokensRamp", "StaircaseRamp",
    "StepScheduleRamp", "lr_scale", "num_steps", "parse_count", "probe_schedule", "segments",
]

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}


def parse_count(text: str, where: str = "ramp") -> int:
    """Parse ``"250B"``, ``"1.5M"``, ``"768"`` into an integer (K/M/B/T = 1e3/1e6/1e9/1e12), exactly (in
    decimal, so ``"1.1B"`` is 1100000000); a count that is not whole (``"2.5"``) is an error."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMBGT]?)\s*", str(text), flags=re.I)
    value = Decimal(m.group(1)) * _SUFFIX[m.group(2).upper()] if m else None
    if value is None or value != value.to_integral_value():
        raise ValueError(f"{where} = {text!r}: expected a whole count such as 768, 1.5M or 250B")
    return int(value)


def _check_multiple(name: str, value: int, granularity: int) -> None:
    if value < 1 or value % granularity:
        raise ValueError(f"ramp.{name} = {value}: must be a positive multiple of micro_batch x dp"
                         f" = {granularity}")


class BatchRamp:
    """Base class: ``ramp(consumed_samples) -> global batch size`` (sequences)."""

    granularity: int
    final: int

    def __call__(self, consumed_samples: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True, slots=True)
class ConstantRamp(BatchRamp):
    """The same global batch at every step."""

    final: int
    """Global batch size, sequences."""
    granularity: int = 1
    """micro_batch x dp."""

    def __post_init__(self) -> None:
        _check_multiple("global_batch", self.final, self.granularity)

    def __call__(self, consumed_samples: int) -> int:
        return self.final



@dataclass(frozen=True, kw_only=True, slots=True)
class StaircaseRamp(BatchRamp):
    """Megatron's linear staircase, bit-for-bit equal to megatron-core 0.16's calculator.

    ``batch = start + incr * int(consumed / (ramp_samples / num_increments))`` while
    ``consumed <= ramp_samples``, then ``final`` (num_microbatches_calculator.py,
    RampupBatchsizeNumMicroBatchesCalculator.update). Unlike Megatron, ``start == final`` is allowed
    (a constant batch) instead of dividing by zero.
    """

    start: int
    """First global batch size."""
    incr: int
    """Increment per stair."""
    ramp_samples: int
    """Samples over which the batch grows from start to final."""
    final: int
    """Global batch size after the ramp."""
    granularity: int = 1
    """micro_batch x dp."""

    def __post_init__(self) -> None:
        for name in ("start", "incr", "final"):
            _check_multiple(name, getattr(self, name), self.granularity)
        if self.ramp_samples < 0:
            raise ValueError(f"ramp.ramp_samples = {self.ramp_samples}: must be >= 0")
        if self.final < self.start or (self.final - self.start) % self.incr:
            raise ValueError(f"ramp.start = {self.start}: final - start = {self.final - self.start} must be"
                             f" >= 0 and a multiple of incr = {self.incr}")

    def __call__(self, consumed_samples: int) -> int:
        num_increments = (self.final - self.start) // self.incr
        if num_increments == 0 or consumed_samples > self.ramp_samples:
            return self.final
        per_increment = self.ramp_samples / num_increments
        return self.start + int(consumed_samples / per_increment) * self.incr




@dataclass(frozen=True, kw_only=True, slots=True)
class StepScheduleRamp(BatchRamp):
    """Piecewise-constant schedule ``"0:768 250B:1536"``: batch b_i from threshold t_i on.

    Thresholds count samples, or tokens when ``unit == "tokens"`` (megatron-core 0.18+
    ``--step-batch-size-schedule`` interprets them as tokens when the sequence length is given).
    """

    thresholds: tuple[int, ...]
    """Increasing thresholds; the first must be 0."""
    batches: tuple[int, ...]
    """Global batch from each threshold on; non-decreasing."""
    unit: Literal["samples", "tokens"] = "samples"
    """What the thresholds count."""
    seq_len: int = 1
    """Tokens per sample (for unit = tokens)."""
    granularity: int = 1
    """micro_batch x dp."""
    final: int = 0
    """Set from batches[-1]."""

    def __post_init__(self) -> None:
        if not self.thresholds or self.thresholds[0] != 0:
            raise ValueError("ramp: a step schedule must start at threshold 0, e.g. '0:768 250B:1536'")
        if any(b <= a for a, b in zip(self.thresholds, self.thresholds[1:])):
            raise ValueError(f"ramp: thresholds {list(self.thresholds)} must increase")
        for b in self.batches:
            _check_multiple("batch", b, self.granularity)
        if any(b < a for a, b in zip(self.batches, self.batches[1:])):
            raise ValueError(f"ramp: batches {list(self.batches)} must never decrease")
        object.__setattr__(self, "final", self.batches[-1])

    def __call__(self, consumed_samples: int) -> int:
        x = consumed_samples * (self.seq_len if self.unit == "tokens" else 1)
        batch = self.batches[0]
        for t, b in zip(self.thresholds, self.batches):
            if x >= t:
                batch = b
        return batch



@dataclass(frozen=True, kw_only=True, slots=True)
class LinearTokensRamp(BatchRamp):
    """GPT-3 style: batch grows linearly in tokens from ``start`` to ``final`` over ``ramp_tokens``,
    rounded down to the granularity (Brown et al. 2020, appendix B)."""

    start: int
    """Initial global batch, sequences."""
    final: int
    """Global batch after the ramp, sequences."""
    ramp_tokens: int
    """Tokens over which the batch grows."""
    seq_len: int = 1
    """Tokens per sequence."""
    granularity: int = 1
    """micro_batch x dp."""

    def __post_init__(self) -> None:
        _check_multiple("start", self.start, self.granularity)
        _check_multiple("final", self.final, self.granularity)
        if self.final < self.start or self.ramp_tokens < 0:
            raise ValueError(f"ramp.final = {self.final}: must be >= start = {self.start}")

    def __call__(self, consumed_samples: int) -> int:
        tokens = consumed_samples * self.seq_len
        if self.ramp_tokens == 0 or tokens >= self.ramp_tokens:
            return self.final
        b = self.start + (self.final - self.start) * tokens / self.ramp_tokens
        return max(self.start, int(b) // self.granularity * self.granularity)


@dataclass(frozen=True, kw_only=True, slots=True)
class DoublingRamp(BatchRamp):
    """Start at ``start`` and double every ``every_tokens`` tokens until ``final``."""

    start: int
    """Initial global batch, sequences."""
    final: int
    """Cap, sequences."""
    every_tokens: int
    """Tokens between doublings."""
    seq_len: int = 1
    """Tokens per sequence."""
    granularity: int = 1
    """micro_batch x dp."""

    def __post_init__(self) -> None:
        _check_multiple("start", self.start, self.granularity)
        _check_multiple("final", self.final, self.granularity)
        if self.every_tokens < 1:
            raise ValueError(f"ramp.every_tokens = {self.every_tokens}: must be >= 1")

    def __call__(self, consumed_samples: int) -> int:
        doublings = consumed_samples * self.seq_len // self.every_tokens
        return min(self.final, self.start * 2 ** min(int(doublings), 62))


@dataclass(kw_only=True, slots=True)
class AdaptiveRamp(BatchRamp):
    """Grow the batch when the measured noise scale says it is too small.

    Each decision: if ``b_simple >= current * (1 + hysteresis)`` and at least ``min_steps`` steps
    passed since the last change, multiply the batch by ``factor`` (rounded down to the granularity,
    capped at ``final``). The batch never shrinks. B_simple must be the ratio of separately smoothed
    tr(Sigma) and |G|^2 (McCandlish et al. 2018, sec. 2.2), never a smoothed ratio.
    """

    start: int
    """Initial global batch, sequences."""
    final: int
    """Upper bound, sequences."""
    factor: float = 2.0
    """Growth factor per decision."""
    hysteresis: float = 0.25
    """Relative margin B_simple must exceed the current batch by."""
    min_steps: int = 50
    """Minimum steps between decisions."""
    granularity: int = 1
    """micro_batch x dp."""
    current: int = 0
    """State: current batch (0 = start)."""
    last_change_step: int = 0
    """State: step of the last change."""

    def __post_init__(self) -> None:
        _check_multiple("start", self.start, self.granularity)
        _check_multiple("final", self.final, self.granularity)
        if self.factor <= 1.0:
            raise ValueError(f"ramp.factor = {self.factor}: must be > 1")
        if self.current == 0:
            self.current = self.start

    def __call__(self, consumed_samples: int) -> int:
        return self.current

    def observe(self, step: int, b_simple: float) -> dict[str, Any] | None:
        """Feed the smoothed noise scale after ``step``; return a decision record if the batch grew."""
        if not math.isfinite(b_simple) or step - self.last_change_step < self.min_steps:
            return None
        if b_simple < self.current * (1.0 + self.hysteresis) or self.current >= self.final:
            return None
        new = int(self.current * self.factor) // self.granularity * self.granularity
        new = min(self.final, max(new, self.current + self.granularity))
        record = {"step": step, "old_batch": self.current, "new_batch": new, "b_simple": float(b_simple)}
        self.current, self.last_change_step = new, step
        return record

    def state_dict(self) -> dict[str, int]:
        """The state to checkpoint."""
        return {"current": self.current, "last_change_step": self.last_change_step}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore the state saved by ``state_dict``."""
        self.current = int(state["current"])
        self.last_change_step = int(state["last_change_step"])


def probe_schedule(tokens, b_crit, *, start: int, final: int, fraction: float = 1.0) -> tuple[tuple[int, ...],
                                                                                                tuple[int, ...]]:
    """Thresholds (tokens) and batches of a doubling warmup under a measured B_crit(tokens).

    The safe curve is the running minimum from the right of ``fraction x B_crit`` (so it never
    decreases and never exceeds any later measurement), linear in tokens between measurements and
    constant after the last; before the first measurement the batch stays at ``start``. Batch
    ``start x 2^i`` (capped at ``final``) begins where the safe curve first reaches it.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"train.ramp.fraction = {fraction}: must be in (0, 1]")
    if start < 1 or start > final:
        raise ValueError(f"train.ramp.start = {start}: must be in [1, train.global_batch = {final}]")
    safe = [fraction * b for b in b_crit]
    for i in range(len(safe) - 2, -1, -1):
        safe[i] = min(safe[i], safe[i + 1])
    thresholds, batches = [0], [start]
    level = start
    while level < final:
        nxt = min(2 * level, final)
        at = _first_reach(tokens, safe, nxt)
        if at is None:
            break
        at = max(int(math.ceil(at)), thresholds[-1] + 1)
        thresholds.append(at)
        batches.append(nxt)
        level = nxt
    return tuple(thresholds), tuple(batches)


def _first_reach(tokens, safe, value: float) -> float | None:
    """First token count at which the piecewise-linear non-decreasing ``safe`` curve reaches ``value``."""
    if safe[0] >= value:
        return tokens[0]
    for (t0, s0), (t1, s1) in zip(zip(tokens, safe), zip(tokens[1:], safe[1:])):
        if s1 >= value:
            return t0 + (value - s0) / (s1 - s0) * (t1 - t0) if s1 > s0 else t1
    return None


def lr_scale(batch: float, reference_batch: float, rule: str = "none") -> float:
    """Multiplier of the learning rate at ``batch`` relative to ``reference_batch``.

    ``sqrt``: Adam-style square-root scaling (Malladi et al. 2022, "On the SDEs and scaling rules
    for adaptive gradient algorithms"); ``linear``: Goyal et al. 2017 linear scaling for SGD.
    """
    if rule == "none":
        return 1.0
    ratio = batch / reference_batch
    if rule == "sqrt":
        return math.sqrt(ratio)
    if rule == "linear":
        return ratio
    raise ValueError(f"train.lr_scaling = {rule!r}: allowed are 'none', 'sqrt', 'linear'")


def segments(ramp: BatchRamp, total_samples: int) -> list[tuple[int, int, int]]:
    """Constant-batch runs ``(batch, num_steps, start_samples)`` until ``total_samples`` are consumed.

    The last step may overshoot the budget (a partial batch is never taken). Long segments are
    advanced by bisection on the next batch change, not step by step.
    """
    out: list[tuple[int, int, int]] = []
    consumed = 0
    while consumed < total_samples:
        batch = ramp(consumed)
        max_steps = -(-(total_samples - consumed) // batch)
        lo, hi = 1, max_steps  # largest n with ramp(consumed + (n-1)*batch) == batch
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if ramp(consumed + (mid - 1) * batch) == batch:
                lo = mid
            else:
                hi = mid - 1
        out.append((batch, lo, consumed))
        consumed += lo * batch
    return out


def num_steps(ramp: BatchRamp, total_samples: int) -> int:
    """Optimizer steps needed to consume ``total_samples``."""
    return sum(n for _, n, _ in segments(ramp, total_samples))
