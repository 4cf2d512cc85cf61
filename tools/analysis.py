"""From run summaries to the answer: optimal and critical batch per model, laws across sizes,
extrapolation, published overlays.

- Optimal batch of a model at its token budget: a parabola of final loss in ln(batch) through its
  constant-batch runs (the basin shape of Li et al. 2025, sec. 3); B_opt at the vertex, with an 80%
  interval from a residual bootstrap. With fewer than 3 batch sizes: the best run, no interval.
- Laws: B_opt(N) and B_opt(D) power laws (OLS in log space, ``simulator.fits``); the critical batch
  taken as the noise scale B_simple near the end of training (McCandlish et al. 2018, sec. 2.2), and
  its power law in N.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchlaw.simulator import fits, laws
from batchlaw.tools.logs import RunSummary

__all__ = ["ModelOptimum", "StudyResult", "analyse", "optimal_batch"]


@dataclass(frozen=True, kw_only=True)
class ModelOptimum:
    """Optimal and critical batch of one model size (sequences)."""

    model_name: str
    num_params: int
    tokens: int
    b_opt: float
    b_opt_lo: float
    b_opt_hi: float
    b_crit: float
    b_crit_lo: float
    b_crit_hi: float
    best_loss: float
    n_runs: int
    batches: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    curve: tuple[float, float, float] | None = None


@dataclass(frozen=True, kw_only=True)
class StudyResult:
    """Everything ``batchlaw analyze`` reports."""

    optima: list[ModelOptimum]
    b_opt_vs_n: fits.FitResult | None
    b_opt_vs_d: fits.FitResult | None
    b_crit_vs_n: fits.FitResult | None
    extrapolation: dict[str, Any]
    published: dict[str, Any]


def optimal_batch(batches, losses, *, bootstrap: int = 500, seed: int = 0):
    """(B_opt, lo, hi, parabola coefficients) from final losses at several batch sizes."""
    b, y = np.asarray(batches, float), np.asarray(losses, float)
    ok = np.isfinite(b) & np.isfinite(y)
    b, y = b[ok], y[ok]
    if len(np.unique(b)) < 3:
        i = int(np.argmin(y))
        return float(b[i]), np.nan, np.nan, None
    x = np.log(b)
    coef = np.polyfit(x, y, 2)
    if coef[0] <= 0:  # no basin inside the sweep: the optimum is at an edge
        i = int(np.argmin(y))
        return float(b[i]), np.nan, np.nan, tuple(coef)
    vertex = float(-coef[1] / (2 * coef[0]))
    if not x.min() <= vertex <= x.max():  # the basin's bottom lies outside the sweep: report the edge
        i = int(np.argmin(y))
        return float(b[i]), np.nan, np.nan, tuple(coef)
    if len(x) <= 3:  # an exact parabola through three points: no residuals to resample
        return float(np.exp(vertex)), np.nan, np.nan, tuple(coef)
    rng = np.random.default_rng(seed)
    resid = y - np.polyval(coef, x)
    draws = []
    for _ in range(bootstrap):
        c = np.polyfit(x, np.polyval(coef, x) + rng.choice(resid, len(resid)), 2)
        if c[0] > 0:
            draws.append(np.clip(-c[1] / (2 * c[0]), x.min(), x.max()))
    lo, hi = (np.exp(np.percentile(draws, [10, 90])) if draws else (np.nan, np.nan))
    return float(np.exp(vertex)), float(lo), float(hi), tuple(coef)


def _budget(r: RunSummary) -> float:
    """The run's token budget: ``train.tokens`` of its config, else its tokens to 2 significant digits
    (the last step of a run overshoots the budget by up to one batch)."""
    from batchlaw.simulator.ramp import parse_count

    budget = parse_count(str(r.spec().train.tokens), "train.tokens") if r.config else 0
    return float(budget) if budget else float(f"{r.tokens:.2g}")


def _per_model(runs: list[RunSummary]) -> list[ModelOptimum]:
    groups: dict[tuple[int, float], list[RunSummary]] = {}
    for r in runs:
        if r.status == "completed":
            groups.setdefault((r.num_params, _budget(r)), []).append(r)
    out = []
    for (n, _), rs in sorted(groups.items()):
        const = [r for r in rs if r.first_batch == r.global_batch]  # ramps are reported, not fitted
        bs = [r.global_batch for r in const]
        ls = [r.final_loss for r in const]
        if not const:
            continue
        b_opt, lo, hi, curve = optimal_batch(bs, ls)
        crit = np.array([r.b_simple for r in rs if np.isfinite(r.b_simple)])
        clo = np.array([r.b_simple_lo for r in rs if np.isfinite(r.b_simple_lo)])
        chi = np.array([r.b_simple_hi for r in rs if np.isfinite(r.b_simple_hi)])
        out.append(ModelOptimum(
            model_name=rs[0].model_name, num_params=n, tokens=int(np.median([r.tokens for r in rs])), b_opt=b_opt,
            b_opt_lo=lo, b_opt_hi=hi, b_crit=float(np.median(crit)) if len(crit) else np.nan,
            b_crit_lo=float(np.median(clo)) if len(clo) else np.nan,
            b_crit_hi=float(np.median(chi)) if len(chi) else np.nan, best_loss=float(min(ls)), n_runs=len(rs),
            batches=[float(b) for b in bs], losses=[float(v) for v in ls], curve=curve))
    return out


def analyse(runs: list[RunSummary], *, extrapolate_n: float | None = None, bootstrap: int = 500) -> StudyResult:
    """Optima per model, laws across models, extrapolation and published overlays."""
    optima = _per_model(runs)
    n = np.array([o.num_params for o in optima], float)
    d = np.array([o.tokens for o in optima], float)
    b = np.array([o.b_opt for o in optima], float)
    bc = np.array([o.b_crit for o in optima], float)
    enough = len(optima) >= 3
    law_n = fits.fit_power_law([n], b, names=["N"], bootstrap=bootstrap) if enough else None
    law_d = fits.fit_power_law([d], b, names=["D"], bootstrap=bootstrap) if enough else None
    ok = np.isfinite(bc) & (bc > 0)
    law_c = fits.fit_power_law([n[ok]], bc[ok], names=["N"], bootstrap=bootstrap) if ok.sum() >= 3 else None
    extra: dict[str, Any] = {}
    if extrapolate_n and law_n is not None:
        p = law_n.params
        extra = {"N": float(extrapolate_n), "b_opt": p["c"] * extrapolate_n ** p["N"]}
        if law_n.ci:
            ends = [law_n.ci["c"][i] * extrapolate_n ** law_n.ci["N"][j] for i in (0, 1) for j in (0, 1)]
            extra["b_opt_range"] = (float(min(ends)), float(max(ends)))
        if law_c is not None:
            extra["b_crit"] = law_c.params["c"] * extrapolate_n ** law_c.params["N"]
    seq = runs[0].seq_len or 1
    published = {"steplaw_b_opt_seqs": [float(laws.load_law("steplaw-batch").predict(t) / seq) for t in d]}
    return StudyResult(optima=optima, b_opt_vs_n=law_n, b_opt_vs_d=law_d, b_crit_vs_n=law_c, extrapolation=extra,
                       published=published)
