"""A learning-rate schedule counted in samples, never in iterations.

Under a batch ramp the number of iterations per token changes, so warmup and decay are functions of
the consumed-samples counter (tokens = samples x seq_len: every sequence has seq_len tokens):

    warmup (Goyal et al. 2017, sec. 2.2):     lr(c) = lr_peak * (c + B) / S_warmup     for c < S_warmup
    cosine (Loshchilov & Hutter 2017, eq. 5): lr(c) = lr_min + (lr_peak - lr_min) * (1 + cos(pi f)) / 2
    linear:                                   lr(c) = lr_min + (lr_peak - lr_min) * (1 - f)

with ``c`` the samples consumed before the step, ``B`` its global batch and
``f = (c - S_warmup) / (S_total - S_warmup)`` clipped to [0, 1]. The result is multiplied by
``lr_scale(B, global_batch, rule)`` (none; sqrt: Malladi et al. 2022, the square-root rule for Adam;
linear: Goyal et al. 2017, sec. 2.1) so that a ramp's smaller early batches run at a smaller LR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from batchlaw.simulator.ramp import lr_scale

__all__ = ["LrSchedule"]


@dataclass(frozen=True, kw_only=True, slots=True)
class LrSchedule:
    """Learning rate as a function of (consumed samples, this step's global batch)."""

    peak_lr: float
    """Learning rate at the end of warmup."""
    min_lr: float = 0.0
    """Learning rate at the end of the decay."""
    warmup_samples: int = 0
    """Linear warmup length, samples."""
    decay: str = "cosine"
    """Decay shape: cosine, linear or constant."""
    total_samples: int = 1
    """Samples of the whole run (the decay ends there)."""
    reference_batch: int = 1
    """Batch at which ``peak_lr`` applies unscaled (train.global_batch)."""
    lr_scaling: str = "none"
    """Rescale rule for other batches: none, sqrt or linear."""

    def __post_init__(self) -> None:
        if self.decay not in ("cosine", "linear", "constant"):
            raise ValueError(f"train.decay = {self.decay!r}: expected one of 'cosine', 'linear', 'constant'")
        if self.warmup_samples < 0:
            raise ValueError(f"train.warmup_samples = {self.warmup_samples}: must be >= 0")

    @classmethod
    def from_train(cls, train, total_samples: int) -> "LrSchedule":
        """The schedule of a ``[train]`` config section for a run of ``total_samples`` samples."""
        return cls(peak_lr=train.lr, min_lr=train.min_lr, warmup_samples=train.warmup_samples,
                   decay=train.decay, total_samples=total_samples, reference_batch=train.global_batch,
                   lr_scaling=train.lr_scaling)

    def __call__(self, consumed_samples: int, batch: int) -> float:
        """Learning rate of the step that starts after ``consumed_samples`` with global batch ``batch``."""
        if consumed_samples < self.warmup_samples:
            lr = self.peak_lr * min(1.0, (consumed_samples + batch) / self.warmup_samples)
        else:
            span = max(1, self.total_samples - self.warmup_samples)
            frac = min(1.0, (consumed_samples - self.warmup_samples) / span)
            if self.decay == "cosine":
                shape = 0.5 * (1.0 + math.cos(math.pi * frac))
            elif self.decay == "linear":
                shape = 1.0 - frac
            else:
                shape = 1.0
            lr = self.min_lr + (self.peak_lr - self.min_lr) * shape
        return lr * lr_scale(batch, self.reference_batch, self.lr_scaling)
