"""The excess curve of ``probe-cbs`` as a monotone function of the batch factor, its crossing of the
tolerance (B_crit) with an 80% interval, and the rule that says "not determined" instead of a number.

Data: for each data seed s (a different token window; every branch of a seed sees the same sequences)
and factor k, the excess x[s, k] = L_k - L_1 of the branch at k x B over the reference branch of the
same seed (``probe.excess_table``); x[s, 0] = 0 by construction (k = 1 is the reference). The noise of
one seed's excess has two parts (the project's noise model): the within-run part (per-step scatter of
the tail mean; ``se[s, k]``) and the between-seed part (which window of data, and how the branches'
trajectories diverge on it). With several seeds their sum is measured by the scatter over seeds;
with one seed the between-seed part comes from a stated prior (``tau``).

Model and fit. Over the branches k > 1 the excess is assumed non-decreasing in log k (token efficiency
only falls as the batch grows: E = E_min (1 + B / B_noise), McCandlish et al. 2018, eq. 2.12; Merrill et al.
2025, the critical batch size hypothesis). The reference's own excess is 0 by definition, not a
measurement, so a branch that beats it (the LR rule at work, not the batch) is reported, not a
violation. The mean excess over seeds is fitted by weighted isotonic regression (pool-adjacent-
violators: Ayer et al. 1955; Barlow, Bartholomew, Bremner and Brunk 1972, ch. 1) with weights
1 / se_mean^2, and the fit is read between factors linearly in log k (from (1, 0) to the first branch).

B_crit. The fitted curve's first crossing of eps = tolerance x L_1, in log k, times the base batch.

Interval (80%), by test inversion: at each x = log k the per-seed excesses are interpolated linearly
in log k and their mean y(x) gets the one-sample t statistic over seeds (S - 1 degrees of freedom,
exact for Gaussian noise whatever its correlation across factors); the confidence set is every x
where |y(x) - eps| <= t_{0.9, S-1} SE(x), since at the true crossing y - eps has mean 0. Its hull is
reported (coverage >= 80% by construction; measured by simulation in tests/tools/test_probe_fit.py
and benchmarks/bench_probe.py). With one seed, each factor's SE^2 = se^2 + tau^2, neighbouring
factors correlated ``NEIGHBOUR_CORR``, and the normal quantile.
(A bootstrap over 2-4 seeds is not used: it has at most 35 distinct resamples and its variance is
(S - 1) / S of the unbiased one; its coverage is measured beside this one in the benchmark.)

Not determined (``reason``, one line): the data are not monotone within noise (a later branch's excess
below an earlier one's by more than t_{1 - 0.1 / P} standard errors of the per-seed difference,
Bonferroni over the P pairs of branches: a family-wise false alarm of at most 10% when the truth is
monotone); the fit never crosses the tolerance up to the largest batch (then a lower bound, '>=');
or it crosses before the first branch (B_crit below k_2 B: the factors start too high).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["CurveFit", "first_crossing", "fit_excess_curve", "isotonic"]

LEVEL = 0.8
NEIGHBOUR_CORR = 0.57
"""With one seed: correlation of the noise of neighbouring factors' excess (shared data and reference
branch; the median over 9 neighbouring pairs measured across seeds on the demo, docs/probe.md)."""
FAMILY_ALPHA = 0.1
"""Family-wise false-alarm rate of the non-monotone test when the truth is monotone."""


def isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of ``y`` (pool adjacent violators; Barlow et al. 1972)."""
    blocks: list[list[float]] = []  # [weighted mean, weight, count]
    for yi, wi in zip(np.asarray(y, float), np.asarray(w, float)):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, m) for m, _, n in blocks])


@dataclass(frozen=True, kw_only=True, slots=True)
class CurveFit:
    """The fitted excess curve of one checkpoint and what it says about B_crit (in factors of B)."""

    mean: np.ndarray
    """Mean excess over seeds per factor (nats)."""
    se: np.ndarray
    """Standard error of the mean per factor: between seeds (several seeds) or within + prior (one)."""
    fitted: np.ndarray
    """Isotonic (non-decreasing over k > 1) fit of ``mean``; index 0 is the reference (0)."""
    seed_sd: np.ndarray
    """Scatter of one seed's excess per factor (measured over seeds; NaN with one seed)."""
    source: str
    """'seeds' (S >= 2: the spread measured over seeds) or 'prior' (one seed: within-run + prior tau)."""
    quantile: float
    """t (S - 1 degrees of freedom) or normal quantile of the two-sided 80% interval."""
    point: float
    """Crossing factor of the fitted curve (NaN when not determined or never crossing)."""
    lo: float
    hi: float
    """80% interval of the crossing factor (hi = inf: the band reaches the largest factor)."""
    determined: bool
    reason: str
    """Empty when determined, else one line: why no number is given."""
    bound: str
    """'>=' when the fit never crosses (``lo`` is then a lower bound), '<' when it crosses before the
    first branch, else ''."""


def first_crossing(logk: np.ndarray, f: np.ndarray, eps: float) -> float:
    """First x at which the piecewise-linear f crosses above eps (NaN if never; f[0] = 0 <= eps)."""
    for i in range(1, len(f)):
        if f[i] > eps:
            d0 = min(f[i - 1], eps)
            return float(logk[i - 1] + (eps - d0) / (f[i] - d0) * (logk[i] - logk[i - 1]))
    return math.nan


def _violation(k, x, se1, seed_based: bool, q_pair: float) -> str:
    """A one-line description of the largest significant drop between branches (k > 1), or ''."""
    worst, text = 0.0, ""
    for i in range(1, len(k)):
        for j in range(i + 1, len(k)):
            if seed_based:
                d = x[:, i] - x[:, j]
                sd = float(np.std(d, ddof=1)) / math.sqrt(len(d))
                drop = float(np.mean(d))
            else:
                sd, drop = math.hypot(se1[i], se1[j]), float(x[0, i] - x[0, j])
            t = drop / sd if sd > 0 else (math.inf if drop > 0 else 0.0)
            if t > q_pair and t > worst:
                worst = t
                text = (f"not monotone within noise: the excess falls from {float(np.mean(x[:, i])):+.4f} at"
                        f" k = {k[i]} to {float(np.mean(x[:, j])):+.4f} at k = {k[j]} ({t:.1f} standard errors)")
    return text


def fit_excess_curve(factors, x: np.ndarray, se: np.ndarray, eps: float, *, tau: float = 0.0) -> CurveFit:
    """Fit the excess curve of one checkpoint and read B_crit off it (module docstring).

    Args:
        factors: tested factors k, increasing, starting with 1.
        x: (S, K) excess per seed and factor (nats); column 0 is 0.
        se: (S, K) within-run standard error of each x (paired per-step scatter); used with one seed.
        eps: the tolerance in nats (tolerance x reference loss).
        tau: prior between-seed standard deviation of one seed's excess (nats), used with one seed.
    """
    k = np.asarray(factors, int)
    assert k[0] == 1 and np.all(np.diff(k) > 0) and x.shape[1] == len(k), "factors start at 1 and increase"
    logk = np.log(k.astype(float))
    x = np.where(np.isfinite(x), x, np.nan)
    keep = np.all(np.isfinite(x), axis=1)  # a seed with a missing branch is left out
    x, se = x[keep], np.asarray(se, float)[keep]
    s = len(x)
    mean = x.mean(axis=0) if s else np.full(len(k), np.nan)
    tau_k = np.where(k > 1, tau, 0.0)
    if s >= 2:
        seed_sd = x.std(axis=0, ddof=1)
        se_mean = seed_sd / math.sqrt(s)
        q = float(stats.t.ppf(0.5 + LEVEL / 2, s - 1))
        q_pair = float(stats.t.ppf(1 - FAMILY_ALPHA / max(1, (len(k) - 1) * (len(k) - 2) / 2), s - 1))
        source = "seeds"
    else:
        seed_sd = np.full(len(k), np.nan)
        se_mean = np.sqrt(np.nan_to_num(se[0] if s else np.full(len(k), np.inf), nan=np.inf) ** 2 + tau_k**2)
        q = float(stats.norm.ppf(0.5 + LEVEL / 2))
        q_pair = float(stats.norm.ppf(1 - FAMILY_ALPHA / max(1, (len(k) - 1) * (len(k) - 2) / 2)))
        source = "prior"
    se_mean[0] = 0.0
    se_mean = np.where(np.isfinite(se_mean), se_mean, 1e6)  # unknown (too few tail steps): nothing is excluded
    nan_fit = dict(mean=mean, se=se_mean, seed_sd=seed_sd, source=source, quantile=q)
    if s == 0:
        return CurveFit(**nan_fit, fitted=mean, point=math.nan, lo=math.nan, hi=math.nan, determined=False,
                        reason="no seed has all its branches", bound="")
    w = 1.0 / np.maximum(se_mean[1:], 1e-12) ** 2
    fitted = np.concatenate([[0.0], isotonic(mean[1:], w)])
    why = _violation(k, x, se_mean, s >= 2, q_pair)
    if why:
        return CurveFit(**nan_fit, fitted=fitted, point=math.nan, lo=math.nan, hi=math.nan, determined=False,
                        reason=why, bound="")
    lo, hi = _confidence_hull(logk, x, se_mean, eps, q, s)
    point = first_crossing(logk, fitted, eps)
    if math.isnan(point):  # never crosses: the data allow a lower bound, where the confidence set begins
        lo_f = math.exp(lo) if math.isfinite(lo) else float(k[-1])
        return CurveFit(**nan_fit, fitted=fitted, point=math.nan, lo=lo_f, hi=math.inf, determined=False,
                        reason=f"never crosses the tolerance up to k = {k[-1]}: only a lower bound", bound=">=")
    # the monotone fit may move the point off the raw curve's confidence set: widen to contain it
    lo, hi = (point, point) if math.isnan(lo) else (min(lo, point), max(hi, point))
    if point < logk[1]:
        return CurveFit(**nan_fit, fitted=fitted, point=math.nan, lo=1.0, hi=float(k[1]), determined=False,
                        reason=f"crosses before the first branch (k = {k[1]}): use smaller factors", bound="<")
    return CurveFit(**nan_fit, fitted=fitted, point=math.exp(point), lo=math.exp(lo), hi=math.exp(hi),
                    determined=True, reason="", bound="")


def _confidence_hull(logk, x, se_mean, eps, q, s) -> tuple[float, float]:
    """(lo, hi) in log k of the set where the 80% band of the interpolated mean excess contains eps;
    hi = inf when it reaches the largest factor, (nan, nan) when it is empty.

    On each segment between factors, with t in [0, 1], the mean is A + B t (minus eps) and its variance
    a quadratic in t, so the set is where a quadratic is <= 0 (Fieller 1954): solved exactly.
    """
    m = x.mean(axis=0) - eps
    cov = np.cov(x, rowvar=False, ddof=1) / s if s >= 2 else None
    inside: list[tuple[float, float]] = []
    for i in range(len(logk) - 1):
        a, b = m[i], m[i + 1] - m[i]
        if cov is not None:
            vaa, vab, vbb = cov[i, i], cov[i, i + 1], cov[i + 1, i + 1]
            v0, v1, v2 = vaa, 2 * (vab - vaa), vaa - 2 * vab + vbb
        else:  # one seed: neighbouring factors' noise correlated NEIGHBOUR_CORR (measured on the demo)
            sa, sb, c_ab = se_mean[i], se_mean[i + 1], NEIGHBOUR_CORR * se_mean[i] * se_mean[i + 1]
            v0, v1, v2 = sa * sa, 2 * (c_ab - sa * sa), sa * sa - 2 * c_ab + sb * sb
        c = (b * b - q * q * v2, 2 * a * b - q * q * v1, a * a - q * q * v0)  # c0 t^2 + c1 t + c2 <= 0
        roots = [float(r.real) for r in np.roots(c) if abs(r.imag) < 1e-12 and 0 < r.real < 1] if any(c) else []
        pts = [0.0] + sorted(roots) + [1.0]
        f = lambda t: (c[0] * t + c[1]) * t + c[2]  # noqa: E731
        for t0, t1 in zip(pts, pts[1:]):
            if t1 > t0 and f(0.5 * (t0 + t1)) <= 0:
                inside.append((logk[i] + t0 * (logk[i + 1] - logk[i]), logk[i] + t1 * (logk[i + 1] - logk[i])))
        if f(1.0) <= 0 and i == len(logk) - 2:
            inside.append((logk[-1], math.inf))
    if not inside:
        return math.nan, math.nan
    return min(lo for lo, _ in inside), max(hi for _, hi in inside)
