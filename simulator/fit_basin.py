"""The joint fit of a loss basin (``batchlaw.simulator.basin``) to the runs of LR x batch sweeps.

Every (N, D) cell gets its own optimum (L_opt, ln B_opt, ln lr_opt); the shape is shared, or
log-linear in ln(D / N) and/or ln N (curvatures fitted in log, ridge slopes linear). Least squares on
the loss of the runs within ``max_excess`` nats of their cell's best (scipy ``least_squares``,
Levenberg-Marquardt, analytic Jacobian); intervals by refitting on resampled cells or runs. What the
fit found on Step Law's sweep is in docs/design.md ("The basin model") and docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from batchlaw.simulator.basin import SCALES, SHAPE, Basin
from batchlaw.simulator.fits import FitWarning

__all__ = ["BasinFit", "fit_basin"]

_NC = 4  # the first four shape parameters are curvatures (fitted in log)


@dataclass(frozen=True, kw_only=True, slots=True)
class BasinFit:
    """The joint fit of a basin to the runs of one or more (N, D) cells."""

    basin: Basin
    """The fitted shape (``noise_sd`` = ``residual_sd``); scale fields not fitted are 0."""
    cells: dict[str, np.ndarray]
    """One row per cell: ``N``, ``D``, ``L_opt`` (nats), ``B_opt_tokens``, ``lr_opt``, ``n_points``."""
    residual_sd: float
    """sqrt(sum of squared residuals / dof): the sd of one run's loss around the fitted basin (nats)."""
    residual_sd_near: float
    """The rms residual of the runs whose fitted excess is below ``near_excess``, scaled by sqrt(n / dof)."""
    n_points: int
    """Runs used (after the ``max_excess`` cut and dropping cells that cannot be fitted)."""
    dof: int
    """n_points minus the fitted parameters (3 per cell plus the shape coefficients)."""
    message: str
    """The optimiser's message and any cells dropped."""
    success: bool = True
    """Whether least_squares reported convergence."""
    used: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    """Indices (into the inputs) of the runs used."""
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Fitted minus measured loss of each used run (nats), aligned with ``used``."""
    excess: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Fitted excess of each used run (nats), aligned with ``used``."""
    cell_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    """Row of ``cells`` of each used run, aligned with ``used``."""
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    """10-90% bootstrap interval of every fitted ``Basin`` field (empty without bootstrap)."""
    boot: dict[str, np.ndarray] = field(default_factory=dict)
    """The bootstrap refits of every fitted ``Basin`` field, one value per refit."""


@dataclass(frozen=True, slots=True)
class _Data:
    """The runs of a fit: cell row, ln batch, ln lr and loss of each; covariates of each cell; the form."""

    cell: np.ndarray
    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    z: np.ndarray
    kink: bool

    @property
    def ncell(self) -> int:
        return self.z.shape[0]

    def take(self, idx: np.ndarray, cell: np.ndarray, cells: np.ndarray) -> _Data:
        """Runs ``idx`` with new cell rows ``cell``, the covariates of old cells ``cells``."""
        return _Data(cell, self.x[idx], self.y[idx], self.loss[idx], self.z[cells], self.kink)


def _nshape(kink: bool) -> int:
    return len(SHAPE) if kink else len(SHAPE) - 1


def _cell_shape(coef: np.ndarray, z: np.ndarray, kink: bool) -> np.ndarray:
    """Per cell (rows) the six shape values of ``SHAPE`` (columns) from the coefficients (one row each)."""
    lin = z @ coef.T
    ridge_above = lin[:, 5:6] if kink else lin[:, 4:5]
    return np.concatenate([np.exp(lin[:, :_NC]), lin[:, 4:5], ridge_above], axis=1)


def _residuals(theta: np.ndarray, data: _Data, fixed: np.ndarray | None):
    """Fitted minus measured loss, and its Jacobian.

    theta = L_opt, ln B_opt, ln lr_opt of every cell, then (unless ``fixed`` holds the per-cell shape)
    the shape coefficients, one row per fitted shape parameter and one column per covariate.
    """
    nc, cell, q = data.ncell, data.cell, data.z.shape[1]
    shape = fixed if fixed is not None else _cell_shape(theta[3 * nc:].reshape(-1, q), data.z, data.kink)
    ab, aa, cb, ca, rb, ra = shape[cell].T
    u = data.x - theta[nc:2 * nc][cell]
    bu = u < 0
    r = np.where(bu, rb, ra)
    v = data.y - theta[2 * nc:3 * nc][cell] - r * u
    bv = v < 0
    a, c = np.where(bu, ab, aa), np.where(bv, cb, ca)
    res = theta[:nc][cell] + a * u * u + c * v * v - data.loss
    jac = np.zeros((u.size, theta.size))
    rows = np.arange(u.size)
    jac[rows, cell] = 1.0
    jac[rows, nc + cell] = -2 * a * u + 2 * c * v * r
    jac[rows, 2 * nc + cell] = -2 * c * v
    if fixed is None:
        dr = -2 * c * v * u
        d_shape = [np.where(bu, u * u, 0.0) * ab, np.where(bu, 0.0, u * u) * aa,  # d / d ln(curvature)
                   np.where(bv, v * v, 0.0) * cb, np.where(bv, 0.0, v * v) * ca]
        d_shape += [np.where(bu, dr, 0.0), np.where(bu, 0.0, dr)] if data.kink else [dr]
        zc = data.z[cell]
        for j, dj in enumerate(d_shape):
            jac[:, 3 * nc + j * q:3 * nc + (j + 1) * q] = dj[:, None] * zc
    return res, jac


def _solve(data: _Data, start: np.ndarray, fixed: np.ndarray | None):
    """scipy least_squares from ``start``: Levenberg-Marquardt (MINPACK) with the analytic Jacobian.

    MINPACK's own QR keeps one fit at ~0.1 s; the trust-region methods take a LAPACK SVD of the dense
    Jacobian every step, which a multi-threaded BLAS on a loaded 2-core machine made 300x slower (measured).
    """
    from scipy.optimize import least_squares

    return least_squares(lambda t: _residuals(t, data, fixed)[0], start, jac=lambda t: _residuals(t, data, fixed)[1],
                         method="lm", x_scale="jac", ftol=1e-10, xtol=1e-10)


def _start(data: _Data, fixed: np.ndarray | None) -> np.ndarray:
    """Each cell's best run as its optimum; curvature 0.012 and ridge 0.45 everywhere, no slopes."""
    best = np.array([np.flatnonzero(data.cell == k)[np.argmin(data.loss[data.cell == k])] for k in range(data.ncell)])
    start = [data.loss[best], data.x[best], data.y[best]]
    if fixed is None:
        coef = np.zeros((_nshape(data.kink), data.z.shape[1]))
        coef[:_NC, 0], coef[_NC:, 0] = math.log(0.012), 0.45
        start.append(coef.ravel())
    return np.concatenate(start)


def _basin_fields(coef: np.ndarray, scale: tuple[str, ...]) -> dict[str, float]:
    """Basin fields from the coefficients (column 0 = the reference value, then one column per scale)."""
    out = {}
    for j, k in enumerate(SHAPE[:coef.shape[0]]):
        out[k] = float(math.exp(coef[j, 0]) if j < _NC else coef[j, 0])
        for i, s in enumerate(scale):
            out[f"{k}_{s}"] = float(coef[j, i + 1])
    return out


def _bootstrap(data: _Data, theta: np.ndarray, times: int, over: str, scale, rng) -> dict[str, np.ndarray]:
    """Refits on resampled data: whole cells with replacement (``over="cells"``) or runs within each cell."""
    nc = data.ncell
    by_cell = [np.flatnonzero(data.cell == k) for k in range(nc)]
    rows = []
    for _ in range(times):
        pick = rng.integers(0, nc, nc) if over == "cells" else np.arange(nc)
        parts = [by_cell[k] if over == "cells" else rng.choice(by_cell[k], by_cell[k].size) for k in pick]
        cell = np.concatenate([np.full(p.size, j) for j, p in enumerate(parts)])
        d2 = data.take(np.concatenate(parts), cell, pick)
        start = np.concatenate([theta[pick], theta[nc + pick], theta[2 * nc + pick], theta[3 * nc:]])
        t = _solve(d2, start, None).x
        rows.append(_basin_fields(t[3 * nc:].reshape(_nshape(data.kink), -1), scale))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def _select(n, d, b, lr, loss, max_excess):
    """Finite positive runs within ``max_excess`` of their cell's best; cells that cannot fix an optimum dropped.

    Returns (used indices, cell row of each used run, the (N, D) of each kept cell, notes on dropped cells).
    """
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(n + d + b + lr + loss) & (n > 0) & (d > 0) & (b > 0) & (lr > 0)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        raise ValueError("fit_basin: no run with finite, positive N, D, batch and lr and a finite loss")
    keys, inv = np.unique(np.stack([n[idx], d[idx]], axis=1), axis=0, return_inverse=True)
    inv = inv.ravel()
    best = np.full(len(keys), np.inf)
    np.minimum.at(best, inv, loss[idx])
    near = loss[idx] - best[inv] <= max_excess
    idx, inv = idx[near], inv[near]
    kept, notes = [], []
    for k, (cn, cd) in enumerate(keys):
        rows = idx[inv == k]
        if np.unique(b[rows]).size >= 3 and np.unique(lr[rows]).size >= 3 and rows.size >= 6:
            kept.append(k)
        else:
            notes.append(f"N={cn:.4g} D={cd:.4g} ({rows.size} runs within {max_excess} nats)")
    if not kept:
        raise ValueError(f"fit_basin: no (N, D) cell has 6 runs over 3 batches and 3 learning rates within "
                         f"max_excess = {max_excess} nats of its best loss")
    remap = np.full(len(keys), -1)
    remap[kept] = np.arange(len(kept))
    sel = remap[inv] >= 0
    return idx[sel], remap[inv][sel], keys[kept], notes


def _covariates(keys: np.ndarray, scale: tuple[str, ...], tpp_ref: float, n_ref: float) -> np.ndarray:
    """Per cell: 1, then ln(D / N / tpp_ref) and/or ln(N / n_ref) as ``scale`` names them."""
    cols = {"tpp": np.log(keys[:, 1] / keys[:, 0] / tpp_ref), "n": np.log(keys[:, 0] / n_ref)}
    for s in scale:
        if np.ptp(cols[s]) == 0:
            what = "D / N" if s == "tpp" else "N"
            raise ValueError(f"scale = {list(scale)}: every cell has the same {what}; the shape's dependence on "
                             f"it cannot be fitted (leave {s!r} out)")
    return np.stack([np.ones(len(keys))] + [cols[s] for s in scale], axis=1)


def _check_args(max_excess, scale, bootstrap, bootstrap_over, shape) -> tuple[str, ...]:
    if isinstance(max_excess, bool) or not isinstance(max_excess, (int, float)) or not 0 < max_excess < math.inf:
        raise ValueError(f"max_excess = {max_excess!r}: must be a positive number of nats")
    scale = (scale,) if isinstance(scale, str) else tuple(scale)
    bad = [s for s in scale if s not in SCALES] + [s for i, s in enumerate(scale) if s in scale[:i]]
    if bad:
        raise ValueError(f"scale = {list(scale)}: {bad[0]!r} is unknown or repeated; allowed are {', '.join(SCALES)}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError(f"bootstrap = {bootstrap!r}: must be a whole number >= 0")
    if bootstrap_over not in ("cells", "runs"):
        raise ValueError(f"bootstrap_over = {bootstrap_over!r}: allowed are cells, runs")
    if shape is not None and not isinstance(shape, Basin):
        raise ValueError(f"shape = {shape!r}: must be a Basin or None")
    return scale


def fit_basin(n, d, batch_tokens, lr, loss, *, max_excess: float = 0.05, ridge_kink: bool = True, scale=(),
              tpp_ref: float = 50.0, n_ref: float = 5e8, shape: Basin | None = None, near_excess: float = 0.01,
              bootstrap: int = 0, bootstrap_over: str = "cells", seed: int = 0, citation: str = "") -> BasinFit:
    """Fit every (N, D) cell's optimum and one basin shape to the runs of an LR x batch sweep.

    loss = L_opt[cell] + excess(ln B - ln B_opt[cell], ln lr - ln lr_opt[cell]) by least squares
    (Levenberg-Marquardt with the analytic Jacobian; curvatures fitted in log, so they stay positive).

    Args:
        n, d: parameters and training tokens of each run; one cell per distinct (N, D).
        batch_tokens: global batch of each run in tokens.
        lr: peak learning rate of each run.
        loss: final loss of each run (nats; Step Law's ``smooth loss``).
        max_excess: runs more than this many nats above their cell's best loss are left out: the
            basin is quadratic only near its floor and steepens towards divergence far out.
        ridge_kink: fit ``ridge_above`` (the ridge slope above B_opt) apart from ``ridge``.
        scale: what the shape depends on: () (one shape), ("tpp",), ("n",) or ("tpp", "n").
        tpp_ref, n_ref: the D / N and N at which the fitted shape fields hold.
        shape: fit only the cells' optima, with this shape (``at`` each cell) held fixed.
        near_excess: ``residual_sd_near`` covers the runs whose fitted excess is below this (nats).
        bootstrap: refits for the 10-90% intervals (0 = none).
        bootstrap_over: ``"cells"`` (resample whole cells: the spread between cells) or ``"runs"``
            (resample runs within each cell: the precision given these cells).
        seed: seed of the bootstrap.
        citation: stored in the fitted ``Basin``.

    Raises:
        ValueError: a bad argument, a scale that does not vary over the cells, no cell with 6 runs over
            3 batches and 3 learning rates in the cut, or no more runs than parameters.
    """
    scale = _check_args(max_excess, scale, bootstrap, bootstrap_over, shape)
    n, d, b, lr, loss = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (n, d, batch_tokens, lr, loss)))
    used, cell, keys, notes = _select(n, d, b, lr, loss, max_excess)
    if shape is not None:
        scale, tpp_ref, n_ref = (), shape.tpp_ref, shape.n_ref
    data = _Data(cell, np.log(b[used]), np.log(lr[used]), loss[used], _covariates(keys, scale, tpp_ref, n_ref),
                 bool(ridge_kink))
    nparam = 3 * len(keys) + (0 if shape is not None else _nshape(bool(ridge_kink)) * data.z.shape[1])
    if used.size <= nparam:
        raise ValueError(f"fit_basin: {used.size} runs in the cut for {nparam} parameters ({len(keys)} cells); "
                         f"need more runs than parameters")
    fixed = None
    if shape is not None:
        fixed = np.array([[getattr(s, k) if getattr(s, k) is not None else s.ridge for k in SHAPE]
                          for s in (shape.at(float(cn), float(cd)) for cn, cd in keys)])
    opt = _solve(data, _start(data, fixed), fixed)
    theta, res, nc = opt.x, opt.fun, data.ncell
    dof = used.size - theta.size
    sd = float(np.sqrt(res @ res / max(dof, 1)))
    if shape is None:
        coef = theta[3 * nc:].reshape(_nshape(data.kink), -1)
        fitted = Basin(**_basin_fields(coef, scale), noise_sd=sd, tpp_ref=tpp_ref, n_ref=n_ref, citation=citation)
        fixed = _cell_shape(coef, data.z, data.kink)
    else:
        fitted = dataclasses.replace(shape, noise_sd=sd, citation=citation or shape.citation)
    excess = _residuals(np.concatenate([np.zeros(nc), theta[nc:3 * nc]]), data, fixed)[0] + data.loss
    near = excess < near_excess
    sd_near = float(np.sqrt(np.mean(res[near] ** 2) * used.size / max(dof, 1))) if near.any() else math.nan
    cells = {"N": keys[:, 0], "D": keys[:, 1], "L_opt": theta[:nc], "B_opt_tokens": np.exp(theta[nc:2 * nc]),
             "lr_opt": np.exp(theta[2 * nc:3 * nc]), "n_points": np.bincount(cell, minlength=nc)}
    boot = {}
    if bootstrap and shape is None:
        boot = _bootstrap(data, theta, bootstrap, bootstrap_over, scale, np.random.default_rng(seed))
    ci = {k: (float(np.percentile(v, 10)), float(np.percentile(v, 90))) for k, v in boot.items()}
    message = opt.message + (f"; dropped cells: {'; '.join(notes)}" if notes else "")
    if notes or not opt.success:
        warnings.warn(f"fit_basin: {message}", FitWarning, stacklevel=2)
    return BasinFit(basin=fitted, cells=cells, residual_sd=sd, residual_sd_near=sd_near, n_points=int(used.size),
                    dof=int(dof), message=message, success=bool(opt.success), used=used, residuals=res,
                    excess=excess, cell_of=cell, ci=ci, boot=boot)
