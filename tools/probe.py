"""The critical batch measured directly by branched training (Merrill et al. 2025, "Critical Batch Size
Revisited", arXiv 2505.23971): from a checkpoint of a run at batch B, continue at batch k x B for
factors k with the learning rate rescaled, each branch for the same token window, and call the
critical batch the largest batch whose loss at the end of the window stays within a tolerance of the
k = 1 branch. Pure logic (planning, reading branch logs, the estimate); ``probe_cmd`` runs it.

Comparison. Every branch starts at the same consumed-sample counter with the same data seed, so the
trainer's data order (a function of seed and counter, ``plugin/data.py``) gives every branch the
same sequences in the same order; the window and its evaluation tail are multiples of the largest
batch, so the tail mean of every branch is over exactly the same sequences. L_k is the mean training
loss over the last ``tail`` of the window; the excess is D_k = L_k - L_1; a branch is within
tolerance when D_k <= eps = tolerance x L_1.

Interval (80%). Per-step loss noise, paired: step j of branch k covers exactly the sequences of k
consecutive steps of branch 1, so d_j = loss_k[j] - mean(those k losses of branch 1) has the
sequence-to-sequence scatter removed. D_k is the mean of d_j over the tail; its standard error is
the scatter of d_j over the second half of the window (around a line in tokens) divided by the
square root of the number of tail steps. With several seeds (different data in the window) the
between-seed standard error of the mean excess is used where larger. B_crit is where D(k) crosses
eps, interpolated linearly in log k between the tested factors; its interval is where D - z se and
D + z se cross eps (z = 1.2816). No crossing up to the largest factor gives a bound ">= k_max B".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from batchlaw.simulator.ramp import lr_scale

__all__ = ["BranchPlan", "CheckpointEstimate", "ProbeSettings", "estimate", "excess_table", "paired_excess",
           "plan_branches", "tail_loss"]

Z80 = 1.2816


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeSettings:
    """How to branch and how to judge the branches."""

    factors: tuple[int, ...] = (1, 2, 4, 8, 16)
    """Batch multipliers k (must include 1, the reference)."""
    lr_rule: str = "sqrt"
    """LR rescaling with k: 'sqrt' (Adam; Malladi et al. 2022), 'linear' (Goyal et al. 2017) or 'none'."""
    window_tokens: int = 0
    """Tokens each branch trains after the checkpoint (rounded up to a multiple of k_max x B x seq_len)."""
    tolerance: float = 0.01
    """A branch is within tolerance when its loss exceeds the k = 1 branch's by at most this fraction."""
    tail: float = 0.25
    """Fraction of the window (at its end) whose mean loss is compared."""
    seeds: tuple[int, ...] = (0,)
    """Data seeds of the branches (0: the base run's seed); several seeds give a between-seed interval."""

    def __post_init__(self) -> None:
        if 1 not in self.factors or any(int(k) != k or k < 1 for k in self.factors):
            raise ValueError(f"--factors = {list(self.factors)}: positive integers including 1")
        if self.lr_rule not in ("sqrt", "linear", "none"):
            raise ValueError(f"--lr-rule = {self.lr_rule!r}: allowed are sqrt, linear, none")
        if not (math.isfinite(self.tolerance) and 0 < self.tolerance < 1):
            raise ValueError(f"--tolerance = {self.tolerance}: a fraction of the loss in (0, 1), e.g. 0.01")
        if not 0 < self.tail <= 1:
            raise ValueError(f"--tail = {self.tail}: a fraction in (0, 1]")
        if self.window_tokens < 0:
            raise ValueError(f"--window-tokens = {self.window_tokens}: must be >= 0 (0 = 2 k_max steps of k_max B)")


@dataclass(frozen=True, kw_only=True, slots=True)
class BranchPlan:
    """One branch: a short continuation of the base run from one checkpoint at one batch and seed."""

    name: str
    """Folder name, e.g. 'step00000200/k04/seed1234'."""
    checkpoint: str
    """The base run's checkpoint directory (step_XXXXXXXX) the branch starts from."""
    step: int
    """Base step of the checkpoint."""
    consumed: int
    """Samples consumed at the checkpoint."""
    tokens_at: int
    """Tokens consumed at the checkpoint."""
    factor: int
    batch: int
    """Global batch of the branch (factor x base batch), sequences."""
    lr: float
    """Constant learning rate of the branch (base LR at the checkpoint x lr_scale(factor))."""
    seed: int
    window_samples: int
    """Samples the branch trains."""
    num_steps: int


def _window_samples(settings: ProbeSettings, batch: int, seq_len: int) -> int:
    unit = max(settings.factors) * batch
    want = -(-settings.window_tokens // seq_len) if settings.window_tokens else 8 * unit
    return -(-want // unit) * unit


def plan_branches(checkpoints: Sequence[dict[str, Any]], settings: ProbeSettings, *, seq_len: int,
                  base_seed: int) -> list[BranchPlan]:
    """Branches for each checkpoint (dicts with path, step, consumed, batch, lr) x factor x seed."""
    out = []
    for c in checkpoints:
        w = _window_samples(settings, int(c["batch"]), seq_len)
        for seed in settings.seeds:
            s = seed or base_seed
            for k in sorted(settings.factors):
                b = k * int(c["batch"])
                out.append(BranchPlan(
                    name=f"step{int(c['step']):08d}/k{k:02d}/seed{s}", checkpoint=str(c["path"]), step=int(c["step"]),
                    consumed=int(c["consumed"]), tokens_at=int(c["consumed"]) * seq_len, factor=k, batch=b,
                    lr=float(c["lr"]) * lr_scale(b, int(c["batch"]), settings.lr_rule), seed=s, window_samples=w,
                    num_steps=w // b))
    return out


def tail_loss(tokens: np.ndarray, loss: np.ndarray, batch: np.ndarray, start_tokens: float,
              end_tokens: float) -> float:
    """Batch-weighted mean loss of the steps that end in (start_tokens, end_tokens]."""
    sel = (tokens > start_tokens) & (tokens <= end_tokens) & np.isfinite(loss)
    return float(np.average(loss[sel], weights=batch[sel])) if sel.any() else math.nan


def paired_excess(ref: dict[str, np.ndarray], other: dict[str, np.ndarray], *, start_tokens: float,
                  end_tokens: float, tail: float) -> tuple[float, float]:
    """(mean excess over the tail, its standard error) of ``other`` against ``ref`` step by step on the
    same sequences (module docstring)."""
    t_ref, l_ref = ref["tokens"], ref["loss"]
    t, loss = other["tokens"], other["loss"]
    prev = np.concatenate([[start_tokens], t[:-1]])
    d = np.full(len(t), np.nan)
    for j in range(len(t)):
        sel = (t_ref > prev[j]) & (t_ref <= t[j])
        if sel.any():
            d[j] = loss[j] - float(np.mean(l_ref[sel]))
    tail_sel = (t > end_tokens - tail * (end_tokens - start_tokens)) & (t <= end_tokens) & np.isfinite(d)
    half = (t > (start_tokens + end_tokens) / 2) & (t <= end_tokens) & np.isfinite(d)
    if not tail_sel.any():
        return math.nan, math.nan
    mean = float(np.mean(d[tail_sel]))
    if half.sum() >= 3:
        x = t[half] - t[half].mean()
        resid = d[half] - np.polyval(np.polyfit(x, d[half], 1), x)
        sd = float(np.sqrt(np.sum(resid**2) / (half.sum() - 2)))
    else:
        sd = float(np.std(d[half], ddof=1)) if half.sum() > 1 else math.nan
    return mean, sd / math.sqrt(tail_sel.sum())


@dataclass(frozen=True, kw_only=True)
class CheckpointEstimate:
    """B_crit at one checkpoint (sequences), with the per-factor evidence."""

    step: int
    tokens: int
    base_batch: int
    b_crit: float
    """Interpolated crossing of the tolerance (a lower bound when ``bound`` is '>=')."""
    lo: float
    hi: float
    """80% interval; hi is inf when even the upper curve stays within tolerance."""
    bound: str
    """'>=' when no tested batch left the tolerance, else ''."""
    largest_within: int
    """The largest tested batch within tolerance (discrete reading)."""
    loss_ref: float
    eps: float
    factors: list[int] = field(default_factory=list)
    excess: list[float] = field(default_factory=list)
    excess_se: list[float] = field(default_factory=list)
    per_seed: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return json.loads(json.dumps(d, default=float).replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null"))


def _crossing(k: np.ndarray, d: np.ndarray, eps: float) -> float:
    """Smallest factor at which d(k) first exceeds eps (log-linear between tested factors); inf if never."""
    for i in range(1, len(k)):
        if d[i] > eps:
            x0, x1 = math.log(k[i - 1]), math.log(k[i])
            d0 = min(d[i - 1], eps)
            t = (eps - d0) / (d[i] - d0) if d[i] > d0 else 0.0
            return math.exp(x0 + t * (x1 - x0))
    return math.inf


def excess_table(branches: dict[int, dict[int, dict[str, np.ndarray]]], *, start_tokens: float, end_tokens: float,
                 tail: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, dict[int, np.ndarray]]:
    """Per factor: mean excess over seeds, its standard error, the reference loss, per-seed excess.

    Args:
        branches: seed -> factor -> columns (tokens, loss, global_batch_size) of that branch's log.
    """
    factors = sorted({k for per in branches.values() for k in per})
    t0 = end_tokens - tail * (end_tokens - start_tokens)
    per_seed, per_se, refs = {}, {}, []
    for seed, per in branches.items():
        refs.append(tail_loss(per[1]["tokens"], per[1]["loss"], per[1]["global_batch_size"], t0, end_tokens))
        pairs = [paired_excess(per[1], per[k], start_tokens=start_tokens, end_tokens=end_tokens, tail=tail)
                 if k in per else (np.nan, np.nan) for k in factors]
        per_seed[seed] = np.array([m for m, _ in pairs])
        per_se[seed] = np.array([e for _, e in pairs])
    mat = np.vstack(list(per_seed.values()))
    mean = np.nanmean(mat, axis=0)
    se = np.sqrt(np.nansum(np.vstack(list(per_se.values())) ** 2, axis=0)) / len(per_seed)
    if len(per_seed) > 1:
        se = np.maximum(se, np.nanstd(mat, axis=0, ddof=1) / math.sqrt(len(per_seed)))
    mean[0], se[0] = 0.0, 0.0  # the reference against itself
    return np.array(factors), mean, np.nan_to_num(se, nan=np.inf), float(np.nanmean(refs)), per_seed


def estimate(branches, *, step: int, tokens_at: int, base_batch: int, window_tokens: int,
             settings: ProbeSettings) -> CheckpointEstimate:
    """B_crit at one checkpoint from its branches' logs (see the module docstring)."""
    end = tokens_at + window_tokens
    k, d, se, ref, per_seed = excess_table(branches, start_tokens=tokens_at, end_tokens=end, tail=settings.tail)
    eps = settings.tolerance * ref
    point = _crossing(k, d, eps)
    lo = _crossing(k, d + Z80 * se, eps)
    hi = _crossing(k, d - Z80 * se, eps)
    largest = 1
    for kk, dd in zip(k, d):  # scan upward; stop at the first batch outside the tolerance
        if dd > eps:
            break
        largest = int(kk)
    bound = ">=" if math.isinf(point) else ""
    seeds = {s: (_crossing(k, v, eps) if math.isfinite(_crossing(k, v, eps)) else float(k[-1])) * base_batch
             for s, v in per_seed.items()}
    b = (point if math.isfinite(point) else float(k[-1])) * base_batch
    return CheckpointEstimate(step=step, tokens=tokens_at, base_batch=base_batch, b_crit=b,
                              lo=(lo if math.isfinite(lo) else float(k[-1])) * base_batch, hi=hi * base_batch,
                              bound=bound, largest_within=largest * base_batch, loss_ref=ref, eps=eps,
                              factors=[int(x) for x in k], excess=[float(x) for x in d],
                              excess_se=[float(x) for x in se], per_seed={int(s): float(v) for s, v in seeds.items()})
