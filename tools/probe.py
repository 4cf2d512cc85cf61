"""The critical batch measured directly by branched training (Merrill et al. 2025, "Critical Batch Size
Revisited", arXiv 2505.23971): from a checkpoint of a run at batch B, continue at batch k x B for
factors k with the learning rate rescaled, each branch for the same token window, and call the
critical batch the largest batch whose loss at the end of the window stays within a tolerance of the
k = 1 branch. Pure logic (planning, reading branch logs, the estimate); ``probe_cmd`` runs it.

Comparison. Every branch starts at the same consumed-sample counter, and the branches of one data
seed share it, so the trainer's data order (a function of seed and counter, ``plugin/data.py``) gives
them the same sequences in the same order (another seed: another window of data); the window and
its evaluation tail are multiples of the largest batch, so the tail means of a seed's branches are
over exactly the same sequences, and each seed's k = 1 branch is the reference of its other branches. L_k is the mean training
loss over the last ``tail`` of the window; the excess is D_k = L_k - L_1; a branch is within
tolerance when D_k <= eps = tolerance x L_1.

Noise, fit and interval (``probe_plan``, ``probe_fit``). Before launch the plan chooses how many data
seeds and how long a window the noise needs (from the base run's per-step loss scatter and a stated
prior for the between-seed spread). After the branches, the excess is fitted as a non-decreasing
function of log k over the branches (isotonic regression), B_crit is where the fit crosses eps, and its
80% interval comes from the scatter of the per-seed excess curves (t over seeds); when the data are
not monotone within noise, never cross the tolerance, or cross before the first branch, the estimate
says so ("not determined", with the reason) instead of giving a number.

The within-run standard error of one seed's excess (used with one seed only): step j of branch k
covers exactly the sequences of k consecutive steps of branch 1, so d_j = loss_k[j] - mean(those k
losses of branch 1) has the sequence-to-sequence scatter removed; its scatter over the second half of
the window (around a line in tokens) divided by the square root of the number of tail steps.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from batchlaw.simulator.ramp import lr_scale
from batchlaw.tools.probe_fit import first_crossing, fit_excess_curve

__all__ = ["MAX_FACTOR", "BranchPlan", "CheckpointEstimate", "ProbeSettings", "estimate", "excess_table",
           "paired_excess", "plan_branches", "tail_loss", "user_window_samples"]

MAX_FACTOR = 1024
"""Largest batch factor: every branch trains the same window, at least a few steps of the largest batch,
so the reference branch trains k_max times as many steps (16,384 at k_max = 1024 and the minimum window)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeSettings:
    """How to branch and how to judge the branches."""

    factors: tuple[int, ...] = (1, 2, 4, 8, 16)
    """Batch multipliers k (must include 1, the reference)."""
    lr_rule: str = "sqrt"
    """LR rescaling with k: 'sqrt' (Adam; Malladi et al. 2022), 'linear' (Goyal et al. 2017) or 'none'."""
    window_tokens: int = 0
    """Tokens each branch trains after the checkpoint (rounded up to a multiple of k_max x B x seq_len);
    0: planned from the noise (``probe_plan``)."""
    tolerance: float = 0.01
    """A branch is within tolerance when its loss exceeds the k = 1 branch's by at most this fraction."""
    tail: float = 0.25
    """Fraction of the window (at its end) whose mean loss is compared."""
    seeds: tuple[int, ...] = ()
    """Data seeds of the branches (0: the base run's seed); empty: as many as the noise plan needs, from
    the base run's seed up. Several seeds measure the between-seed spread the interval needs."""
    precision: float = 0.5
    """Target 80% half-width of each mean excess, as a fraction of the tolerance (the noise plan)."""

    def __post_init__(self) -> None:
        text = ",".join(str(k) for k in self.factors)
        if 1 not in self.factors or any(int(k) != k or k < 1 for k in self.factors):
            raise ValueError(f"--factors = {text}: positive integers including 1")
        if max(self.factors) > MAX_FACTOR:
            raise ValueError(f"--factors = {text}: each factor must be in 1..{MAX_FACTOR} (the k = 1 branch trains"
                             f" k_max times the steps of the largest one)")
        if len(set(self.factors)) < 2:
            raise ValueError(f"--factors = {text}: at least one factor above 1 besides the reference 1")
        if self.lr_rule not in ("sqrt", "linear", "none"):
            raise ValueError(f"--lr-rule = {self.lr_rule!r}: allowed are sqrt, linear, none")
        if not (math.isfinite(self.tolerance) and 0 < self.tolerance < 1):
            raise ValueError(f"--tolerance = {self.tolerance}: a fraction of the loss in (0, 1), e.g. 0.01")
        if not 0 < self.tail <= 1:
            raise ValueError(f"--tail = {self.tail}: a fraction in (0, 1]")
        if self.window_tokens < 0:
            raise ValueError(f"--window-tokens = {self.window_tokens}: must be >= 0 (0 = planned from the noise)")
        if not (math.isfinite(self.precision) and 0 < self.precision <= 10):
            raise ValueError(f"--precision = {self.precision}: a fraction of the tolerance in (0, 10], e.g. 0.5")


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


def user_window_samples(settings: ProbeSettings, batch: int, seq_len: int) -> int:
    """The user's window in sequences, rounded up to a multiple of k_max x B (0: not given: planned)."""
    if not settings.window_tokens:
        return 0
    unit = max(settings.factors) * batch
    want = -(-settings.window_tokens // seq_len)
    return -(-want // unit) * unit


def plan_branches(checkpoints: Sequence[dict[str, Any]], settings: ProbeSettings, *, seq_len: int,
                  base_seed: int) -> list[BranchPlan]:
    """Branches for each checkpoint x seed x factor.

    Args:
        checkpoints: dicts with path, step, consumed, batch, lr, and the noise plan's ``window_samples``
            and ``num_seeds`` (``probe_plan.plan_noise``).
    """
    out = []
    for c in checkpoints:
        w = int(c["window_samples"])
        seeds = [s or base_seed for s in settings.seeds] or [base_seed + i for i in range(int(c["num_seeds"]))]
        for s in seeds:
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
    """B_crit at one checkpoint (sequences), with the per-factor evidence. NaN (null in probe.json) where
    the data give no number."""

    step: int
    tokens: int
    base_batch: int
    b_crit: float
    """Crossing of the tolerance by the monotone fit; with bound '>=' the 80% lower bound; NaN when not
    determined otherwise."""
    lo: float
    hi: float
    """80% interval; hi is inf when the band reaches the largest factor."""
    bound: str
    """'>=' when the fit never crosses the tolerance (b_crit is a lower bound), '<' when it crosses before
    the first branch (B_crit < hi), else ''."""
    determined: bool
    reason: str
    """Why no number is given (one line), empty when determined."""
    largest_within: int
    """The largest tested batch whose mean excess is within tolerance (discrete reading)."""
    loss_ref: float
    eps: float
    num_seeds: int
    interval_from: str
    """'seeds' (the scatter over seeds, t with S - 1 degrees of freedom) or 'prior' (one seed)."""
    factors: list[int] = field(default_factory=list)
    excess: list[float] = field(default_factory=list)
    """Mean excess over seeds per factor (nats)."""
    excess_se: list[float] = field(default_factory=list)
    """Its standard error (between seeds, or within-run + prior with one seed)."""
    excess_fit: list[float] = field(default_factory=list)
    """The monotone fit of ``excess``."""
    seed_sd: list[float] = field(default_factory=list)
    """Measured scatter of one seed's excess per factor (compare with the plan's prior)."""
    per_seed: dict[int, float] = field(default_factory=dict)
    """Crossing of each seed's own excess curve (sequences; the largest batch when it never crosses)."""
    per_seed_excess: dict[int, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return json.loads(json.dumps(d, default=float).replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null"))


def _raw_crossing(k: np.ndarray, d: np.ndarray, eps: float) -> float:
    """Smallest factor at which d(k) first exceeds eps (log-linear between tested factors); inf if never."""
    x = first_crossing(np.log(k.astype(float)), d, eps)
    return math.inf if math.isnan(x) else math.exp(x)


def excess_table(branches: dict[int, dict[int, dict[str, np.ndarray]]], *, start_tokens: float, end_tokens: float,
                 tail: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, list[int]]:
    """Per seed and factor: the paired excess, its within-run standard error; the reference loss; seeds.

    Args:
        branches: seed -> factor -> columns (tokens, loss, global_batch_size) of that branch's log.

    Returns:
        (factors, x, se, reference loss, seeds) with x and se of shape (seeds, factors); NaN where a
        branch is missing; column 0 (k = 1) is 0.
    """
    factors = sorted({k for per in branches.values() for k in per})
    t0 = end_tokens - tail * (end_tokens - start_tokens)
    seeds = sorted(branches)
    x = np.full((len(seeds), len(factors)), np.nan)
    se = np.full_like(x, np.nan)
    refs = []
    for i, seed in enumerate(seeds):
        per = branches[seed]
        refs.append(tail_loss(per[1]["tokens"], per[1]["loss"], per[1]["global_batch_size"], t0, end_tokens))
        for j, k in enumerate(factors):
            if k in per:
                x[i, j], se[i, j] = paired_excess(per[1], per[k], start_tokens=start_tokens, end_tokens=end_tokens,
                                                  tail=tail)
        x[i, 0], se[i, 0] = 0.0, 0.0  # the reference against itself
    return np.array(factors), x, se, float(np.nanmean(refs)), seeds


def estimate(branches, *, step: int, tokens_at: int, base_batch: int, window_tokens: int,
             settings: ProbeSettings, tau: float = 0.0) -> CheckpointEstimate:
    """B_crit at one checkpoint from its branches' logs (module docstring; ``probe_fit``).

    Args:
        tau: prior between-seed standard deviation of one seed's excess (nats), used with one seed only.
    """
    end = tokens_at + window_tokens
    k, x, se, ref, seeds = excess_table(branches, start_tokens=tokens_at, end_tokens=end, tail=settings.tail)
    eps = settings.tolerance * ref
    fit = fit_excess_curve(k, x, se, eps, tau=tau)
    largest = 1
    for kk, dd in zip(k, fit.mean):  # scan upward; stop at the first batch outside the tolerance
        if not dd <= eps:
            break
        largest = int(kk)
    b = fit.point if fit.determined else (fit.lo if fit.bound == ">=" else math.nan)
    per_seed = {s: min(_raw_crossing(k, v, eps), float(k[-1])) * base_batch
                for s, v in zip(seeds, x) if np.all(np.isfinite(v))}
    return CheckpointEstimate(
        step=step, tokens=tokens_at, base_batch=base_batch, b_crit=b * base_batch, lo=fit.lo * base_batch,
        hi=fit.hi * base_batch, bound=fit.bound, determined=fit.determined, reason=fit.reason,
        largest_within=largest * base_batch, loss_ref=ref, eps=eps, num_seeds=int(np.all(np.isfinite(x), axis=1).sum()),
        interval_from=fit.source, factors=[int(v) for v in k], excess=[float(v) for v in fit.mean],
        excess_se=[float(v) for v in fit.se], excess_fit=[float(v) for v in fit.fitted],
        seed_sd=[float(v) for v in fit.seed_sd], per_seed={int(s): float(v) for s, v in per_seed.items()},
        per_seed_excess={int(s): [float(a) for a in v] for s, v in zip(seeds, x)})
