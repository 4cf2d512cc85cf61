"""Optimal and critical batch size: fits from sweeps, then power laws across sizes.

- ``fit_optimal_batch``: per (N, D) cell of a batch (x learning-rate) sweep, either the near-optimal
  runs (within ``tolerance`` of the cell's best loss; Li et al. 2025, "Predictable Scale: Part I",
  sec. 3 and their ``fit_tool.py``: 0.25%, OLS in log space, bootstrap) or one optimum per cell from a
  parabola of loss against log batch (the isoFLOP-parabola idea of Hoffmann et al. 2022, approach 2,
  applied to batch); then power laws B_opt = c * D^g (or N, D, or C = 6 N D as DeepSeek-AI 2024) and
  lr_opt = c * N^a * D^b.
- ``fit_critical_batch``: steps to a target loss S(B) = S_min (1 + B_noise / B) (McCandlish et al.
  2018, eq. 2.11; Zhang et al. 2024, sec. 3), least squares on log S.
- ``fit_critical_batch_law``: per model size, then B_crit = c * N^a, with B_crit = B_noise
  (McCandlish) or Zhang et al.'s 20%-overhead definition (``laws.zhang_critical_batch``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from batchlaw.simulator.fits import FitResult, FitWarning, _positive, fit_power_law, percentile_ci
from batchlaw.simulator.laws import zhang_critical_batch

__all__ = ["fit_critical_batch", "fit_critical_batch_law", "fit_optimal_batch", "near_optimal_runs"]


def _cells(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Cell id of every run: one cell per distinct (N, D)."""
    return np.unique(np.stack([n, d], axis=1), axis=0, return_inverse=True)[1].ravel()


def near_optimal_runs(n, d, loss, tolerance: float = 0.0025) -> np.ndarray:
    """Indices of runs within ``tolerance`` (relative) of their (N, D) cell's best loss (Step Law)."""
    n, d, loss = (np.asarray(x, dtype=float) for x in (n, d, loss))
    cell = _cells(n, d)
    best = np.full(cell.max() + 1, np.inf)
    np.minimum.at(best, cell, np.where(np.isfinite(loss), loss, np.inf))
    return np.flatnonzero(np.abs(loss / best[cell] - 1.0) < tolerance)


def _vertex(x: np.ndarray, y: np.ndarray, span: float) -> tuple[float, bool]:
    """Minimum of a parabola through the points within ``span`` of the best x (in log units).

    Returns the vertex and whether it is a real interior minimum (else the best measured x).
    """
    i = int(np.argmin(y))
    sel = np.abs(x - x[i]) <= span
    if np.unique(x[sel]).size < 3:
        return float(x[i]), False
    a, b, _ = np.polyfit(x[sel], y[sel], 2)
    if a <= 0 or not x[sel].min() <= -b / (2 * a) <= x[sel].max():
        return float(x[i]), False
    return float(-b / (2 * a)), True


def _cell_optima(cell, hyper, loss, span):
    """Per cell: the parabola vertex of (min loss over the other hyperparameter) against log ``hyper``."""
    out, interior = [], []
    for c in range(cell.max() + 1):
        rows = cell == c
        hv = np.unique(hyper[rows])
        best = np.array([loss[rows & (hyper == h)].min() for h in hv])
        v, ok = _vertex(np.log(hv), best, span)
        out.append(np.exp(v))
        interior.append(ok)
    return np.array(out), np.array(interior)


def _variables(names: Sequence[str], n, d) -> list[np.ndarray]:
    table = {"N": n, "D": d, "C": 6.0 * n * d}
    bad = [v for v in names if v not in table]
    if bad or not names:
        raise ValueError(f"law variables = {list(names)}: allowed are N, D, C (C = 6 N D)")
    return [table[v] for v in names]


def fit_optimal_batch(n, d, batch, loss, *, lr=None, method: str = "near-optimal", tolerance: float = 0.0025,
                      batch_vars: Sequence[str] = ("D",), lr_vars: Sequence[str] = ("N", "D"),
                      bootstrap: int = 1000, resample: str = "rows", estimate: str = "ols", span: float = 2.08,
                      seed: int = 0, level: float = 0.8) -> dict[str, FitResult]:
    """Optimal batch (and learning-rate) laws from sweeps over (N, D) cells.

    Args:
        n, d, batch, loss: per run: parameters, tokens, global batch (tokens), final loss.
        lr: per run peak learning rate, to fit lr_opt too.
        method: "near-optimal" (Step Law: every run within ``tolerance`` of its cell's best) or
            "parabola" (one optimum per cell: vertex of loss against log batch / log lr).
        tolerance: relative band of the near-optimal set (0.0025 in Step Law).
        batch_vars, lr_vars: inputs of each law among N, D and C = 6 N D.
        bootstrap: refits for intervals; ``resample`` "rows" (Step Law) or "cells".
        estimate: "ols" or "bootstrap-mean" (Step Law's reported laws are bootstrap means).
        span: half-width (natural log units, 2.08 = factor 8) of the points used for each parabola.

    Returns:
        {"batch": FitResult, "lr": FitResult (with ``lr``)}; extra holds the cells used.

    Raises:
        ValueError: unknown method, resample or variable names.
    """
    if method not in ("near-optimal", "parabola"):
        raise ValueError(f"method = {method!r}: allowed are 'near-optimal', 'parabola'")
    if resample not in ("rows", "cells"):
        raise ValueError(f"resample = {resample!r}: allowed are 'rows', 'cells'")
    n, d, batch, loss = (np.asarray(x, dtype=float) for x in (n, d, batch, loss))
    ok = _positive(n, d, batch, loss) & (_positive(np.asarray(lr, float)) if lr is not None else True)
    n, d, batch, loss = n[ok], d[ok], batch[ok], loss[ok]
    lr = np.asarray(lr, dtype=float)[ok] if lr is not None else None
    cell = _cells(n, d)
    if cell.max() + 1 < 3:
        warnings.warn(f"optimal-batch fit from {cell.max() + 1} (N, D) cells; a law needs at least 3",
                      FitWarning, stacklevel=2)
    kw = {"bootstrap": bootstrap, "seed": seed, "level": level, "estimate": estimate}
    if method == "near-optimal":
        idx = near_optimal_runs(n, d, loss, tolerance)
        groups = cell[idx] if resample == "cells" else None
        out = {"batch": _law(batch_vars, n[idx], d[idx], batch[idx], groups, kw)}
        if lr is not None:
            out["lr"] = _law(lr_vars, n[idx], d[idx], lr[idx], groups, kw)
        extra = {"method": method, "n_cells": int(cell.max() + 1), "n_near_optimal": int(idx.size)}
    else:
        first = np.unique(cell, return_index=True)[1]
        cn, cd = n[first], d[first]
        b_opt, b_in = _cell_optima(cell, batch, loss, span)
        out = {"batch": _law(batch_vars, cn, cd, b_opt, None, kw)}
        extra = {"method": method, "n_cells": int(cn.size), "cells": {"N": cn, "D": cd, "B_opt": b_opt}}
        if lr is not None:
            lr_opt, lr_in = _cell_optima(cell, lr, loss, span)
            out["lr"] = _law(lr_vars, cn, cd, lr_opt, None, kw)
            extra["cells"]["lr_opt"] = lr_opt
            b_in &= lr_in
        if not b_in.all():
            warnings.warn(f"{int((~b_in).sum())} cells have their optimum at the edge of the sweep or no convex "
                          "basin; their best measured value is used", FitWarning, stacklevel=2)
    return {k: FitResult(params=v.params, ci=v.ci, ci_level=v.ci_level, cov=v.cov, success=v.success,
                         message=v.message, n_points=v.n_points, extra={**v.extra, **extra})
            for k, v in out.items()}


def _law(names, n, d, y, groups, kw) -> FitResult:
    return fit_power_law(_variables(names, n, d), y, names=list(names), groups=groups, **kw)


def _critical_fit(b: np.ndarray, log_s: np.ndarray) -> tuple[float, float, float, bool]:
    """(log S_min, log B_noise, SSE, at_bound) of log S = log S_min + log(1 + B_noise / B).

    For a fixed B_noise the best log S_min is the mean residual, so only log B_noise is searched.
    """
    lo, hi = np.log(b.min()) - 7.0, np.log(b.max()) + 7.0

    def sse(u):
        r = log_s - np.log1p(np.exp(u) / b)
        return float(np.sum((r - r.mean()) ** 2))

    res = minimize_scalar(sse, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    u = float(res.x)
    at_bound = min(u - lo, hi - u) < 1e-3
    return float(np.mean(log_s - np.log1p(np.exp(u) / b))), u, float(res.fun), at_bound


def fit_critical_batch(batch, steps, *, bootstrap: int = 0, seed: int = 0, level: float = 0.8) -> FitResult:
    """Fit S(B) = S_min (1 + B_noise / B) to steps-to-target per batch (least squares on log S).

    Returns:
        FitResult with params S_min (steps) and B_noise (the McCandlish critical batch B_crit =
        E_min / S_min, in the unit of ``batch``); cov of (log S_min, log B_noise) by Gauss-Newton.

    Raises:
        ValueError: fewer than 3 usable points.
    """
    b, s = np.asarray(batch, float), np.asarray(steps, float)
    ok = _positive(b, s)
    if ok.sum() < 3:
        raise ValueError(f"critical-batch fit: {int(ok.sum())} usable points (finite and > 0); need at least 3")
    b, log_s = b[ok], np.log(s[ok])
    c, u, sse, at_bound = _critical_fit(b, log_s)
    w = 1.0 / (1.0 + b / np.exp(u))  # d log S / d log B_noise
    jac = np.column_stack([np.ones_like(b), w])
    cov = np.linalg.pinv(jac.T @ jac) * sse / max(1, len(b) - 2)
    ci = {}
    if bootstrap:
        rng = np.random.default_rng(seed)
        draws = np.empty((bootstrap, 2))
        for i in range(bootstrap):
            idx = rng.integers(0, len(b), len(b))
            ci_c, ci_u, *_ = _critical_fit(b[idx], log_s[idx])
            draws[i] = np.exp([ci_c, ci_u])
        ci = percentile_ci(draws, ["S_min", "B_noise"], level)
    params = {"S_min": float(np.exp(c)), "B_noise": float(np.exp(u))}
    message = "converged"
    if at_bound:
        message = "B_noise hit the search bound (1e-3 to 1e3 times the measured batches)"
        warnings.warn(f"critical-batch fit: {message}", FitWarning, stacklevel=2)
    elif not b.min() / 10 <= params["B_noise"] <= 10 * b.max():
        message = f"B_noise = {params['B_noise']:.4g} lies far outside the measured batches"
        warnings.warn(f"critical-batch fit: {message}", FitWarning, stacklevel=2)
    return FitResult(params=params, ci=ci, ci_level=level, cov=cov, success=not at_bound, message=message,
                     n_points=len(b), extra={"rmse_log": float(np.sqrt(sse / len(b)))})


def fit_critical_batch_law(n, batch, steps, *, definition: str = "mccandlish", b_ref: float | None = None,
                           overhead: float = 0.2, bootstrap: int = 0, seed: int = 0,
                           level: float = 0.8) -> dict[str, object]:
    """S(B) fits per model size, then B_crit = c * N^a across sizes.

    Args:
        n, batch, steps: per point: model size, batch, steps to the target loss.
        definition: "mccandlish" (B_crit = B_noise) or "zhang" (the batch where S(B) is ``overhead``
            above linear scaling from ``b_ref``; Zhang et al. 2024, ``laws.zhang_critical_batch``).
        b_ref: reference batch of the "zhang" definition (their 256 sequences), unit of ``batch``.
        bootstrap: refits per size; the law's interval refits the power law on paired draws.

    Returns:
        {"per_size": {N: FitResult (with B_crit)}, "law": FitResult (c, N) or None under 3 sizes}.
    """
    if definition not in ("mccandlish", "zhang"):
        raise ValueError(f"definition = {definition!r}: allowed are 'mccandlish', 'zhang'")
    if definition == "zhang" and (b_ref is None or b_ref <= 0):
        raise ValueError(f"b_ref = {b_ref!r}: the 'zhang' definition needs a positive reference batch")
    n, batch, steps = (np.asarray(x, dtype=float) for x in (n, batch, steps))

    def crit(s_min, b_noise):
        return b_noise if definition == "mccandlish" else zhang_critical_batch(s_min, b_noise, b_ref, overhead)

    sizes = np.unique(n[np.isfinite(n)])
    per, draws = {}, []
    for size in sizes:
        sel = n == size
        r = fit_critical_batch(batch[sel], steps[sel], bootstrap=bootstrap, seed=seed, level=level)
        bc = float(crit(r.params["S_min"], r.params["B_noise"]))
        ci = dict(r.ci)
        if bootstrap:
            ci["B_crit"] = tuple(float(crit(np.nan, v)) for v in r.ci["B_noise"])  # crit is increasing
        per[float(size)] = FitResult(params={**r.params, "B_crit": bc}, ci=ci, ci_level=level, cov=r.cov,
                                     success=r.success, message=r.message, n_points=r.n_points, extra=r.extra)
    if len(sizes) < 3:
        warnings.warn(f"critical-batch law from {len(sizes)} model sizes; a law needs at least 3", FitWarning,
                      stacklevel=2)
        return {"per_size": per, "law": None}
    bad = [float(s) for s in sizes if not per[float(s)].success]
    if bad:  # a size whose S(B) fit failed (B_noise at its search bound) has no B_crit to put in a law
        warnings.warn(f"critical-batch law: sizes {', '.join(f'{s:.4g}' for s in bad)} left out (their S(B) fit did"
                      " not converge: B_noise at a search bound)", FitWarning, stacklevel=2)
        sizes = np.array([s for s in sizes if per[float(s)].success])
        if len(sizes) < 3:
            return {"per_size": per, "law": None}
    bc = np.array([per[float(s)].params["B_crit"] for s in sizes])
    law = fit_power_law([sizes], bc, names=["N"], bootstrap=0, level=level)
    if bootstrap:
        draws = _paired_law_draws(sizes, batch, steps, n, crit, bootstrap, seed)
        law = FitResult(params=law.params, ci=percentile_ci(draws, ["c", "N"], level), ci_level=level, cov=law.cov,
                        n_points=law.n_points, extra={**law.extra, "definition": definition})
    return {"per_size": per, "law": law}


def _paired_law_draws(sizes, batch, steps, n, crit, k, seed) -> np.ndarray:
    """Power-law refits on bootstrap draws of every size's S(B) points (propagates per-size error)."""
    rng = np.random.default_rng(seed)
    logn = np.log(sizes)
    X = np.column_stack([np.ones_like(logn), logn])
    per = []
    for size in sizes:
        sel = n == size
        b, log_s = batch[sel], np.log(steps[sel])
        vals = []
        for _ in range(k):
            idx = rng.integers(0, len(b), len(b))
            c, u, *_ = _critical_fit(b[idx], log_s[idx])
            vals.append(crit(np.exp(c), np.exp(u)))
        per.append(vals)
    logb = np.log(np.array(per))  # (sizes, k)
    coef = np.linalg.lstsq(X, logb, rcond=None)[0]  # (2, k)
    return np.column_stack([np.exp(coef[0]), coef[1]])
