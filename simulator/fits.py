"""Fits of scaling laws, independent of where the points come from (CSV, HDF5 logs, arrays).

- ``fit_loss``: Chinchilla L(N, D) by Huber loss on log-loss (delta 1e-3, summed) over a grid of
  4,500 initialisations, L-BFGS-B (Hoffmann et al. 2022, approach 3; Besiroglu et al. 2024, sec. 2).
  The grid is evaluated in one vectorised pass; only the best starts are polished with analytic
  gradients, which finds the same optimum as polishing all of them (checked in bench_fits.py).
- ``fit_power_law``: OLS in log space, bootstrap intervals.
- ``fit_optimal_batch``: the Step Law recipe (Li et al. 2025, sec. 3): per (N, D) cell the runs
  within 0.25% of the cell's best smoothed loss are near-optimal; OLS of log B (and log lr) on log D
  (and log N) over those runs; bootstrap over cells.
- ``fit_critical_batch``: S(B) = S_min (1 + B_noise / B) per model (McCandlish et al. 2018, eq. 2.11;
  Zhang et al. 2024, sec. 3), B_crit = B_noise, then a power law across sizes.
Every fit returns a ``FitResult`` and warns (``FitWarning``) when it did not converge or hit a bound.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

__all__ = ["FitResult", "FitWarning", "fit_critical_batch", "fit_loss", "fit_optimal_batch", "fit_power_law",
           "huber_objective", "loss_grid"]


class FitWarning(UserWarning):
    """A fit did not converge, hit a bound, or had too few points."""


@dataclass(frozen=True, kw_only=True)
class FitResult:
    """Parameters, intervals and diagnostics of one fit."""

    params: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    cov: Any = None
    success: bool = True
    message: str = ""
    nfev: int = 0
    n_points: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``batchlaw fit --json``)."""
        return {"params": self.params, "ci": {k: list(v) for k, v in self.ci.items()}, "success": self.success,
                "message": self.message, "nfev": self.nfev, "n_points": self.n_points,
                **({"extra": self.extra} if self.extra else {})}


def _ci(samples: np.ndarray, names: Sequence[str], level: float = 0.8) -> dict[str, tuple[float, float]]:
    lo, hi = 50 * (1 - level), 50 * (1 + level)
    return {n: (float(np.nanpercentile(samples[:, i], lo)), float(np.nanpercentile(samples[:, i], hi)))
            for i, n in enumerate(names)}


# --- loss law ------------------------------------------------------------------------------------
def loss_grid() -> np.ndarray:
    """The 4,500 initialisations (a, b, e, alpha, beta) of Besiroglu et al. 2024 (a = log A, ...)."""
    a = np.arange(0, 30, 5.0)
    b = np.arange(0, 30, 5.0)
    e = np.arange(-1, 1.5, 0.5)
    al = np.arange(0, 2.5, 0.5)
    be = np.arange(0, 2.5, 0.5)
    return np.stack(np.meshgrid(a, b, e, al, be, indexing="ij"), -1).reshape(-1, 5)


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    a = np.abs(r)
    val = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    grad = np.where(a <= delta, r, delta * np.sign(r))
    return val, grad


def huber_objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                    delta: float = 1e-3) -> tuple[float, np.ndarray]:
    """Sum of Huber(log L_pred - log L) and its gradient; theta = (a, b, e, alpha, beta)."""
    a, b, e, al, be = theta
    terms = np.stack([a - al * log_n, b - be * log_d, np.full_like(log_n, e)])
    pred = logsumexp(terms, axis=0)
    val, g = _huber(pred - log_l, delta)
    w = np.exp(terms - pred)  # softmax weights
    grad = np.array([np.sum(g * w[0]), np.sum(g * w[1]), np.sum(g * w[2]),
                     np.sum(g * w[0] * -log_n), np.sum(g * w[1] * -log_d)])
    return float(val.sum()), grad


def _grid_values(starts: np.ndarray, log_n, log_d, log_l, delta) -> np.ndarray:
    a, b, e, al, be = (starts[:, i:i + 1] for i in range(5))
    terms = np.stack(np.broadcast_arrays(a - al * log_n, b - be * log_d, e + 0 * log_n))
    val, _ = _huber(logsumexp(terms, axis=0) - log_l, delta)
    return val.sum(axis=1)


def _polish(starts, log_n, log_d, log_l, delta):
    best = None
    nfev = 0
    for x0 in starts:
        res = minimize(huber_objective, x0, args=(log_n, log_d, log_l, delta), jac=True, method="L-BFGS-B",
                       options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12})
        nfev += res.nfev
        if best is None or res.fun < best.fun:
            best = res
    return best, nfev


def fit_loss(n, d, loss, *, bootstrap: int = 0, delta: float = 1e-3, keep: int = 8, seed: int = 0) -> FitResult:
    """Fit L = E + A/N^alpha + B/D^beta (Huber on log L, 4,500 starts, best ``keep`` polished)."""
    n, d, loss = (np.asarray(x, dtype=float) for x in (n, d, loss))
    ok = np.isfinite(n) & np.isfinite(d) & np.isfinite(loss) & (n > 0) & (d > 0) & (loss > 0)
    if ok.sum() < 5:
        raise ValueError(f"fit loss: {int(ok.sum())} usable points; need at least 5")
    log_n, log_d, log_l = np.log(n[ok]), np.log(d[ok]), np.log(loss[ok])
    grid = loss_grid()
    vals = _grid_values(grid, log_n, log_d, log_l, delta)
    best, nfev = _polish(grid[np.argsort(vals)[:keep]], log_n, log_d, log_l, delta)
    names = ["A", "B", "E", "alpha", "beta"]

    def to_params(x):
        return np.array([np.exp(x[0]), np.exp(x[1]), np.exp(x[2]), x[3], x[4]])

    params = dict(zip(names, map(float, to_params(best.x))))
    ci: dict[str, tuple[float, float]] = {}
    samples = None
    if bootstrap:
        rng = np.random.default_rng(seed)
        m = len(log_n)
        samples = np.empty((bootstrap, 5))
        starts = np.vstack([best.x, grid[np.argsort(vals)[:2]]])
        for k in range(bootstrap):
            idx = rng.integers(0, m, m)
            res, f = _polish(starts, log_n[idx], log_d[idx], log_l[idx], delta)
            nfev += f
            samples[k] = to_params(res.x)
        ci = _ci(samples, names)
    if not best.success:
        warnings.warn(f"fit loss did not converge: {best.message}", FitWarning, stacklevel=2)
    return FitResult(params=params, ci=ci, success=bool(best.success), message=str(best.message), nfev=nfev,
                     n_points=int(ok.sum()), extra={"objective": float(best.fun)})


# --- power laws ----------------------------------------------------------------------------------
def fit_power_law(xs, y, *, names: Sequence[str] | None = None, bootstrap: int = 1000, seed: int = 0,
                  groups=None) -> FitResult:
    """OLS of log y on log x_i: y = c * prod x_i^a_i. ``xs`` is one array or a list of arrays.

    Bootstrap resamples points, or whole groups (e.g. cells) when ``groups`` is given.
    """
    xs = [np.asarray(xs, float)] if np.ndim(xs[0]) == 0 else [np.asarray(x, float) for x in xs]
    y = np.asarray(y, dtype=float)
    names = list(names or [f"a{i + 1}" for i in range(len(xs))])
    ok = np.isfinite(y) & (y > 0) & np.all([np.isfinite(x) & (x > 0) for x in xs], axis=0)
    if ok.sum() < len(xs) + 1:
        raise ValueError(f"power-law fit: {int(ok.sum())} usable points for {len(xs) + 1} parameters")
    X = np.column_stack([np.ones(ok.sum())] + [np.log(x[ok]) for x in xs])
    ly = np.log(y[ok])
    coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
    resid = ly - X @ coef
    dof = max(1, len(ly) - X.shape[1])
    cov = np.linalg.pinv(X.T @ X) * (resid @ resid) / dof
    params = {"c": float(np.exp(coef[0])), **{n: float(c) for n, c in zip(names, coef[1:])}}
    ci = {}
    if bootstrap:
        rng = np.random.default_rng(seed)
        g = np.asarray(groups)[ok] if groups is not None else np.arange(len(ly))
        uniq = np.unique(g)
        members = [np.flatnonzero(g == u) for u in uniq]
        draws = np.empty((bootstrap, len(coef)))
        for k in range(bootstrap):
            idx = np.concatenate([members[j] for j in rng.integers(0, len(uniq), len(uniq))])
            draws[k], *_ = np.linalg.lstsq(X[idx], ly[idx], rcond=None)
        draws[:, 0] = np.exp(draws[:, 0])
        ci = _ci(draws, ["c"] + names)
    return FitResult(params=params, ci=ci, cov=cov, n_points=int(ok.sum()),
                     extra={"rmse_log": float(np.sqrt(np.mean(resid**2)))})


def fit_optimal_batch(n, d, batch, loss, *, lr=None, tolerance: float = 0.0025, bootstrap: int = 1000,
                      seed: int = 0) -> dict[str, FitResult]:
    """Step Law recipe: near-optimal runs per (N, D) cell, then OLS laws B(D) and lr(N, D)."""
    n, d, batch, loss = (np.asarray(x, dtype=float) for x in (n, d, batch, loss))
    cells = {}
    for i, key in enumerate(zip(n, d)):
        cells.setdefault(key, []).append(i)
    near = []
    cell_id = []
    for c, (key, idx) in enumerate(cells.items()):
        idx = np.array(idx)
        best = np.nanmin(loss[idx])
        sel = idx[loss[idx] <= best * (1 + tolerance)]
        near.extend(sel)
        cell_id.extend([c] * len(sel))
    near, cell_id = np.array(near), np.array(cell_id)
    if len(cells) < 3:
        warnings.warn(f"optimal-batch fit from {len(cells)} cells", FitWarning, stacklevel=2)
    out = {"batch": fit_power_law([d[near]], batch[near], names=["D"], bootstrap=bootstrap, seed=seed, groups=cell_id)}
    if lr is not None:
        lr = np.asarray(lr, dtype=float)
        out["lr"] = fit_power_law([n[near], d[near]], lr[near], names=["N", "D"], bootstrap=bootstrap, seed=seed,
                                  groups=cell_id)
    return out


def fit_critical_batch(batch, steps, *, bootstrap: int = 0, seed: int = 0) -> FitResult:
    """S(B) = S_min (1 + B_noise / B): linear in 1/B, S = S_min + S_min B_noise / B (least squares on
    log S, which weights every batch alike)."""
    b, s = np.asarray(batch, float), np.asarray(steps, float)
    ok = np.isfinite(b) & np.isfinite(s) & (b > 0) & (s > 0)
    if ok.sum() < 3:
        raise ValueError(f"critical-batch fit: {int(ok.sum())} usable points; need at least 3")
    b, s = b[ok], s[ok]

    def fit(bb, ss):
        def obj(x):
            pred = x[0] + np.log1p(np.exp(x[1]) / bb)
            r = pred - np.log(ss)
            return float(r @ r)
        x0 = np.array([np.log(ss.min()), np.log(np.median(bb))])
        res = minimize(obj, x0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 5000})
        return res, np.array([np.exp(res.x[0]), np.exp(res.x[1])])

    res, p = fit(b, s)
    ci = {}
    if bootstrap:
        rng = np.random.default_rng(seed)
        draws = np.array([fit(b[i], s[i])[1] for i in (rng.integers(0, len(b), len(b)) for _ in range(bootstrap))])
        ci = _ci(draws, ["S_min", "B_crit"])
    if not res.success:
        warnings.warn(f"critical-batch fit did not converge: {res.message}", FitWarning, stacklevel=2)
    if p[1] > 10 * b.max() or p[1] < b.min() / 10:
        warnings.warn(f"critical batch {p[1]:.3g} lies far outside the measured batches", FitWarning, stacklevel=2)
    return FitResult(params={"S_min": float(p[0]), "B_crit": float(p[1])}, ci=ci, success=bool(res.success),
                     message=str(res.message), nfev=int(res.nfev), n_points=int(len(b)))
