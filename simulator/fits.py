"""Fits of scaling laws, independent of where the points come from (CSV, HDF5 logs, arrays).

This module holds the result type, the warning and the power-law fit; the other fits live in
``fit_loss`` and ``fit_batch`` and are re-exported here, so ``fits.fit_loss`` etc. all work:

- ``fit_loss`` / ``fit_loss_heldout``: Chinchilla L(N, D) by Huber on log L (``fit_loss.py``).
- ``fit_optimal_batch``: B_opt and lr_opt laws from sweeps, Step Law recipe (``fit_batch.py``).
- ``fit_critical_batch`` / ``fit_critical_batch_law``: S(B) = S_min (1 + B_noise / B) per model,
  then a power law across sizes (``fit_batch.py``).
- ``fit_power_law``: y = c * prod x_i^a_i by OLS in log space, bootstrap intervals (here).

Every fit returns a ``FitResult`` and warns (``FitWarning``) when it did not converge, hit a bound or
had too few points (the scipy ``OptimizeResult`` / ``OptimizeWarning`` pattern).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FitResult", "FitWarning", "fit_critical_batch", "fit_critical_batch_law", "fit_loss",  # noqa: F822
           "fit_loss_heldout", "fit_optimal_batch", "fit_power_law", "percentile_ci"]  # (lazy, PEP 562)

_LAZY = {"fit_loss": "fit_loss", "fit_loss_heldout": "fit_loss", "huber_objective": "fit_loss",
         "loss_grid": "fit_loss", "fit_optimal_batch": "fit_batch", "fit_critical_batch": "fit_batch",
         "fit_critical_batch_law": "fit_batch", "near_optimal_runs": "fit_batch"}


def __getattr__(name: str):  # PEP 562: re-export the fits of the sibling modules without a cycle
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"batchlaw.simulator.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class FitWarning(UserWarning):
    """A fit did not converge, hit a bound, or had too few points."""


@dataclass(frozen=True, kw_only=True)
class FitResult:
    """Parameters, intervals and diagnostics of one fit."""

    params: dict[str, float]
    """Point estimates by name."""
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Bootstrap percentile interval per parameter at ``ci_level`` (empty without bootstrap)."""
    ci_level: float = 0.8
    """Coverage of ``ci`` (0.8 = 10th to 90th percentile)."""
    cov: Any = None
    """Covariance of the fitted (internal) parameters, or None."""
    success: bool = True
    """Whether the optimiser reported convergence (always True for closed-form fits)."""
    message: str = ""
    """The optimiser's message, or what went wrong."""
    nfev: int = 0
    """Objective evaluations, bootstrap included."""
    n_points: int = 0
    """Points used by the fit (after dropping non-finite or non-positive ones)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Fit-specific diagnostics (objective, residual RMSE, per-cell optima ...)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``batchlaw fit --json``)."""
        out = {"params": dict(self.params), "ci": {k: [float(a), float(b)] for k, (a, b) in self.ci.items()},
               "ci_level": self.ci_level, "success": self.success, "message": self.message, "nfev": self.nfev,
               "n_points": self.n_points}
        if self.extra:
            out["extra"] = _jsonable(self.extra)
        return out


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return x


def percentile_ci(samples: np.ndarray, names: Sequence[str], level: float = 0.8) -> dict[str, tuple[float, float]]:
    """Percentile intervals of bootstrap draws (rows = draws, columns = parameters)."""
    lo, hi = 50 * (1 - level), 50 * (1 + level)
    return {n: (float(np.nanpercentile(samples[:, i], lo)), float(np.nanpercentile(samples[:, i], hi)))
            for i, n in enumerate(names)}


def _positive(*arrays) -> np.ndarray:
    ok = np.ones(np.shape(arrays[0]), dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a) & (a > 0)
    return ok


def fit_power_law(xs, y, *, names: Sequence[str] | None = None, bootstrap: int = 1000, seed: int = 0,
                  groups=None, level: float = 0.8, estimate: str = "ols") -> FitResult:
    """y = c * prod_i x_i^a_i by ordinary least squares of log y on log x_i.

    Args:
        xs: one array, or a list of arrays (one per variable).
        y: the values (must be positive; non-positive or non-finite points are dropped).
        names: parameter names of the exponents (default a1, a2, ...); the prefactor is ``c``.
        bootstrap: resampling refits for ``ci`` (0 = none).
        seed: seed of the resampling.
        groups: resample whole groups (e.g. (N, D) cells) instead of single points.
        level: coverage of the percentile intervals.
        estimate: "ols" (the fit on all points) or "bootstrap-mean" (the mean of the bootstrap
            coefficients in log space, as Step Law reports its laws; Li et al. 2025, fit_tool.py).

    Raises:
        ValueError: fewer usable points than parameters + 1, or an unknown ``estimate``.
    """
    if estimate not in ("ols", "bootstrap-mean"):
        raise ValueError(f"estimate = {estimate!r}: allowed are 'ols', 'bootstrap-mean'")
    xs = [np.asarray(xs, float)] if np.ndim(xs[0]) == 0 else [np.asarray(x, float) for x in xs]
    y = np.asarray(y, dtype=float)
    names = list(names or [f"a{i + 1}" for i in range(len(xs))])
    ok = _positive(y, *xs)
    if ok.sum() < len(xs) + 1:
        raise ValueError(f"power-law fit: {int(ok.sum())} usable points for {len(xs) + 1} parameters")
    X = np.column_stack([np.ones(ok.sum())] + [np.log(x[ok]) for x in xs])
    ly = np.log(y[ok])
    for name, col in zip(names, X.T[1:]):
        if np.ptp(col) < 1e-3:  # within 0.1%: one value measured with overshoot (reached tokens) is still one
            raise ValueError(f"power-law fit: {name} takes one value ({np.exp(col[0]):.4g}, spread"
                             f" {np.expm1(np.ptp(col)):.2%}) in the usable points, so its exponent is not identified;"
                             " fit without it or add points at other values")
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError(f"power-law fit: the variables {', '.join(names)} move together in the usable points"
                         " (log-linearly dependent), so their exponents are not identified separately")
    coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
    resid = ly - X @ coef
    dof = len(ly) - X.shape[1]
    cov = np.linalg.pinv(X.T @ X) * (resid @ resid) / max(1, dof)
    ci: dict[str, tuple[float, float]] = {}
    if bootstrap:
        draws = _bootstrap_ols(X, ly, np.asarray(groups)[ok] if groups is not None else None, bootstrap, seed)
        if estimate == "bootstrap-mean":
            coef = draws.mean(axis=0)
        draws[:, 0] = np.exp(draws[:, 0])
        ci = percentile_ci(draws, ["c", *names], level)
    elif estimate == "bootstrap-mean":
        raise ValueError("estimate = 'bootstrap-mean' needs bootstrap > 0")
    if dof <= 0:
        warnings.warn(f"power-law fit with {len(ly)} points for {X.shape[1]} parameters: exact, no residual",
                      FitWarning, stacklevel=2)
    params = {"c": float(np.exp(coef[0])), **{n: float(c) for n, c in zip(names, coef[1:])}}
    return FitResult(params=params, ci=ci, ci_level=level, cov=cov, n_points=int(ok.sum()),
                     extra={"rmse_log": float(np.sqrt(np.mean((ly - X @ coef) ** 2)))})


def _bootstrap_ols(X: np.ndarray, ly: np.ndarray, groups, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    draws = np.empty((k, X.shape[1]))
    if groups is None:
        idx = rng.integers(0, len(ly), (k, len(ly)))
        for i in range(k):
            draws[i], *_ = np.linalg.lstsq(X[idx[i]], ly[idx[i]], rcond=None)
        return draws
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == j) for j in range(len(uniq))]
    for i in range(k):
        idx = np.concatenate([members[j] for j in rng.integers(0, len(uniq), len(uniq))])
        draws[i], *_ = np.linalg.lstsq(X[idx], ly[idx], rcond=None)
    return draws
