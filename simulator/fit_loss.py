"""Fit of the Chinchilla loss law L(N, D) = E + A / N^alpha + B / D^beta.

Method of Hoffmann et al. 2022 (approach 3, eq. 3-4) as corrected by Besiroglu et al. 2024 (sec. 2):
minimise the SUM over runs of Huber_delta(LSE(a - alpha log N, b - beta log D, e) - log L), delta =
1e-3, with A = e^a, B = e^b, E = e^e, by L-BFGS-B from a grid of 4,500 initialisations. The grid is
evaluated on all starts at once in numpy; only the ``keep`` best starts are polished, with analytic
gradients (checked against polishing every start in ``benchmarks/bench_fits.py``).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from batchlaw.simulator.fits import FitResult, FitWarning, _positive, percentile_ci

__all__ = ["fit_loss", "fit_loss_heldout", "huber_objective", "loss_grid"]

_NAMES = ("A", "B", "E", "alpha", "beta")
_OPTIONS = {"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12}


def loss_grid() -> np.ndarray:
    """The 4,500 initialisations (a, b, e, alpha, beta) of Besiroglu et al. 2024 (their notebook):
    a, b in {0, 5, ..., 25}, e in {-1, -0.5, ..., 1}, alpha, beta in {0, 0.5, ..., 2}."""
    a = np.arange(0, 30, 5.0)
    e = np.arange(-1, 1.5, 0.5)
    al = np.arange(0, 2.5, 0.5)
    return np.stack(np.meshgrid(a, a, e, al, al, indexing="ij"), -1).reshape(-1, 5)


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    a = np.abs(r)
    inside = a <= delta
    return np.where(inside, 0.5 * r * r, delta * (a - 0.5 * delta)), np.where(inside, r, delta * np.sign(r))


def huber_objective(theta, log_n, log_d, log_l, delta: float = 1e-3) -> tuple[float, np.ndarray]:
    """Sum of Huber(log L_pred - log L) and its gradient in theta = (a, b, e, alpha, beta).

    log L_pred = LSE(a - alpha log N, b - beta log D, e) (Hoffmann et al. 2022, eq. 4); its gradient
    is the softmax of the three terms times the derivative of each term.
    """
    a, b, e, al, be = theta
    terms = np.stack([a - al * log_n, b - be * log_d, np.full_like(log_n, e)])
    pred = logsumexp(terms, axis=0)
    val, g = _huber(pred - log_l, delta)
    w = np.exp(terms - pred) * g
    grad = np.array([w[0].sum(), w[1].sum(), w[2].sum(), -(w[0] * log_n).sum(), -(w[1] * log_d).sum()])
    return float(val.sum()), grad


def _grid_values(starts: np.ndarray, log_n, log_d, log_l, delta: float) -> np.ndarray:
    """Objective at every start at once: (starts, points) arrays, no Python loop."""
    a, b, e, al, be = (starts[:, i:i + 1] for i in range(5))
    t1, t2 = a - al * log_n, b - be * log_d
    m = np.maximum(np.maximum(t1, t2), e)
    pred = m + np.log(np.exp(t1 - m) + np.exp(t2 - m) + np.exp(e - m))
    return _huber(pred - log_l, delta)[0].sum(axis=1)


def _polish(starts, log_n, log_d, log_l, delta):
    best, nfev = None, 0
    for x0 in starts:
        res = minimize(huber_objective, x0, args=(log_n, log_d, log_l, delta), jac=True, method="L-BFGS-B",
                       options=_OPTIONS)
        nfev += int(res.nfev)
        if best is None or res.fun < best.fun:
            best = res
    return best, nfev


def _to_params(x: np.ndarray) -> np.ndarray:
    return np.array([np.exp(x[0]), np.exp(x[1]), np.exp(x[2]), x[3], x[4]])


def _prepare(n, d, loss):
    n, d, loss = (np.asarray(x, dtype=float) for x in (n, d, loss))
    if not n.shape == d.shape == loss.shape:
        raise ValueError(f"fit loss: n, d and loss differ in shape ({n.shape}, {d.shape}, {loss.shape})")
    ok = _positive(n, d, loss)
    if ok.sum() < 6:
        raise ValueError(f"fit loss: {int(ok.sum())} usable points (finite and > 0); need at least 6")
    return np.log(n[ok]), np.log(d[ok]), np.log(loss[ok])


def fit_loss(n, d, loss, *, bootstrap: int = 0, delta: float = 1e-3, keep: int = 8, seed: int = 0,
             level: float = 0.8) -> FitResult:
    """Fit L = E + A / N^alpha + B / D^beta (Huber on log L, 4,500 starts, the best ``keep`` polished).

    Args:
        n: parameters per run.
        d: training tokens per run.
        loss: final loss per run (nats).
        bootstrap: resample the runs this many times and refit, for percentile intervals.
        delta: Huber threshold on log L.
        keep: grid starts polished by L-BFGS-B.
        seed: seed of the resampling.
        level: coverage of the intervals.

    Returns:
        FitResult with params A, B, E, alpha, beta; extra: objective, rmse_log, and with bootstrap the
        standard deviation of each parameter (``std``, comparable with Besiroglu et al.'s errors).

    Raises:
        ValueError: fewer than 6 usable points or mismatched shapes.
    """
    log_n, log_d, log_l = _prepare(n, d, loss)
    grid = loss_grid()
    order = np.argsort(_grid_values(grid, log_n, log_d, log_l, delta))
    best, nfev = _polish(grid[order[:keep]], log_n, log_d, log_l, delta)
    params = dict(zip(_NAMES, map(float, _to_params(best.x))))
    ci, extra = {}, {"objective": float(best.fun), "theta": [float(v) for v in best.x]}
    pred = logsumexp(np.stack([best.x[0] - best.x[3] * log_n, best.x[1] - best.x[4] * log_d,
                               np.full_like(log_n, best.x[2])]), axis=0)
    extra["rmse_log"] = float(np.sqrt(np.mean((pred - log_l) ** 2)))
    if bootstrap:
        samples, f = _bootstrap(best.x, grid[order[:2]], log_n, log_d, log_l, delta, bootstrap, seed)
        nfev += f
        ci = percentile_ci(samples, _NAMES, level)
        extra["std"] = dict(zip(_NAMES, map(float, np.nanstd(samples, axis=0, ddof=1))))
    _check(best, params)
    return FitResult(params=params, ci=ci, ci_level=level, cov=None,
                     success=bool(best.success), message=str(best.message), nfev=nfev, n_points=len(log_l),
                     extra=extra)


def _bootstrap(x_best, grid_starts, log_n, log_d, log_l, delta, k, seed):
    rng = np.random.default_rng(seed)
    m = len(log_l)
    samples = np.empty((k, 5))
    starts = np.vstack([x_best, grid_starts])
    nfev = 0
    for i in range(k):
        idx = rng.integers(0, m, m)
        res, f = _polish(starts, log_n[idx], log_d[idx], log_l[idx], delta)
        nfev += f
        samples[i] = _to_params(res.x)
    return samples, nfev


def _check(best, params: dict[str, float]) -> None:
    if not best.success:
        warnings.warn(f"fit loss did not converge: {best.message}", FitWarning, stacklevel=3)
    for name in ("alpha", "beta"):
        if not 0.0 < params[name] < 3.0:
            warnings.warn(f"fit loss: {name} = {params[name]:.4g} is outside (0, 3); the data do not constrain "
                          "the law", FitWarning, stacklevel=3)


def fit_loss_heldout(n, d, loss, *, quantile: float = 0.9, **kwargs) -> FitResult:
    """Fit on the smaller models, predict the largest: the held-out error of the loss law.

    Runs with N above the ``quantile`` of N are held out; the law is fitted on the rest.

    Returns:
        The fit on the smaller models, with extra ``heldout``: number of held-out runs, N threshold,
        mean and max absolute relative error of the predicted loss, and the mean signed error.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile = {quantile}: must lie in (0, 1)")
    n, d, loss = (np.asarray(x, dtype=float) for x in (n, d, loss))
    cut = float(np.quantile(n[np.isfinite(n)], quantile))
    train = n <= cut
    if (~train).sum() == 0:
        raise ValueError(f"quantile = {quantile}: holds out no run (every N <= {cut:.4g})")
    res = fit_loss(n[train], d[train], loss[train], **kwargs)
    p = res.params
    pred = p["E"] + p["A"] / n[~train] ** p["alpha"] + p["B"] / d[~train] ** p["beta"]
    rel = pred / loss[~train] - 1.0
    held = {"n_heldout": int((~train).sum()), "n_threshold": cut, "mean_abs_rel_error": float(np.mean(np.abs(rel))),
            "max_abs_rel_error": float(np.max(np.abs(rel))), "mean_rel_error": float(np.mean(rel))}
    return FitResult(params=res.params, ci=res.ci, ci_level=res.ci_level, success=res.success, message=res.message,
                     nfev=res.nfev, n_points=res.n_points, extra={**res.extra, "heldout": held})
