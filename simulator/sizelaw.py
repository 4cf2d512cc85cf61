"""Power laws across model sizes (B_opt(N), B_opt(D), B_crit(N)) with intervals the points carry.

``y = c x^a`` by OLS in log space (Kaplan et al. 2020, eq. 1.4 form; Li et al. 2025 fit B_opt(D) the same
way). A law needs ``min_sizes`` distinct x with usable points, else it says why there is none. Its 80%
exponent interval is a bootstrap that redraws every point from what is known about it:
- from its own bootstrap draws of ln y when the estimator kept them (``simulator.optimum``: these carry
  the seed noise, the within-run noise and the basin-shape uncertainty of that size), or
- from its 80% interval read as +-1.2816 sigma of a normal in log space,
plus, when the points scatter about the line more than their own uncertainty explains, that excess
scatter (lack of fit: the law's form is then part of the uncertainty), drawn from its posterior given the
residual degrees of freedom (few sizes: wide). A law whose exponent interval is
wider than ``max_exponent_width`` is "not determined"; one whose interval includes 0 shows no dependence
on x. Every law carries its number of points and R^2 in log space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.stats import chi2

__all__ = ["Law", "fit_size_law"]

Z80 = 1.2816


@dataclass(frozen=True, kw_only=True)
class Law:
    """A power law y = c x^a across model sizes, or the reason there is none."""

    name: str
    """e.g. 'B_opt(N)'."""
    variable: str
    """'N' or 'D'."""
    c: float = float("nan")
    exponent: float = float("nan")
    exponent_ci: tuple[float, float] = (float("nan"), float("nan"))
    c_ci: tuple[float, float] = (float("nan"), float("nan"))
    n_points: int = 0
    r2: float = float("nan")
    """Coefficient of determination of the fit in log space."""
    rmse_log: float = float("nan")
    determined: bool = False
    """True when fitted and the exponent interval is no wider than the limit."""
    reason: str = ""
    """Why there is no law, or why it is not determined."""
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    """The points it was fitted on."""
    draws: Any = None
    """Bootstrap draws (ln c, a), shape (draws, 2), for prediction bands."""

    @property
    def fitted(self) -> bool:
        return bool(np.isfinite(self.exponent))

    @property
    def half_width(self) -> float:
        """Half the width of the exponent's 80% interval (NaN when not fitted)."""
        return float((self.exponent_ci[1] - self.exponent_ci[0]) / 2)

    @property
    def includes_zero(self) -> bool:
        """The exponent interval includes 0: the data show no dependence on the variable."""
        return bool(self.fitted and self.exponent_ci[0] <= 0 <= self.exponent_ci[1])

    def predict(self, x: float) -> float:
        return float(self.c * x**self.exponent)

    def predict_range(self, x) -> tuple[np.ndarray, np.ndarray]:
        """80% band of c x^a at ``x`` from the bootstrap draws (c and a are correlated, so the corners of
        their separate intervals would overstate it)."""
        x = np.atleast_1d(np.asarray(x, float))
        pred = self.draws[:, :1] + self.draws[:, 1:] * np.log(x)[None, :]
        lo, hi = np.percentile(pred, [10, 90], axis=0)
        return np.exp(lo), np.exp(hi)


def _point_draws(ly, lo, hi, point_draws, rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(draws of each point's ln y, shape (n, points), centred on the point; each point's sd). Points whose
    draws have one length are paired: replicate r takes draw r of each (the estimator drew what the sizes
    share, such as the basin's shape and the noise level, in the same order for all: ``optimum.locate``)."""
    out = np.empty((n, len(ly)))
    sd = np.zeros(len(ly))
    lengths = {len(d) for d in (point_draws or []) if d is not None and len(d) >= 2}
    pick = rng.integers(0, lengths.pop(), n) if len(lengths) == 1 else None
    for j in range(len(ly)):
        d = None if point_draws is None else point_draws[j]
        if d is not None and len(d) >= 2:
            d = np.asarray(d, float)
            idx = pick if pick is not None and len(d) > pick.max() else rng.integers(0, len(d), n)
            out[:, j] = d[idx] - np.median(d) + ly[j]
            sd[j] = float(np.std(d))
            continue
        if np.isfinite(lo[j]) and np.isfinite(hi[j]) and lo[j] > 0:
            sd[j] = (np.log(hi[j]) - np.log(lo[j])) / (2 * Z80)
        out[:, j] = ly[j] + rng.normal(0.0, 1.0, n) * sd[j]
    return out, sd


def fit_size_law(name: str, variable: str, x, y, lo=None, hi=None, *, point_draws: Sequence | None = None,
                 min_sizes: int = 3, max_exponent_width: float = 1.0, draws: int = 2000, seed: int = 0,
                 why_missing: str = "", what: str = "size") -> Law:
    """Fit y = c x^a with the rules of the module docstring; never raises on too few points.

    Args:
        x, y: the points (y > 0).
        lo, hi: each point's 80% interval (NaN: exact), used where ``point_draws`` has none.
        point_draws: per point, bootstrap draws of ln y (or None).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    lo = np.full_like(y, np.nan) if lo is None else np.asarray(lo, float)
    hi = np.full_like(y, np.nan) if hi is None else np.asarray(hi, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    pd = None if point_draws is None else [d for d, k in zip(point_draws, ok) if k]
    x, y, lo, hi = x[ok], y[ok], lo[ok], hi[ok]
    n_sizes = len(np.unique(x))
    if n_sizes < min_sizes:
        reason = f"{n_sizes} {what}{'s' if n_sizes != 1 else ''} with a usable point, a law needs {min_sizes}"
        return Law(name=name, variable=variable, n_points=len(x), reason=reason + (f"; {why_missing}" if why_missing else ""),
                   x=tuple(x), y=tuple(y))
    lx, ly = np.log(x), np.log(y)
    X = np.column_stack([np.ones_like(lx), lx])
    coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
    resid = ly - X @ coef
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1 - float(resid @ resid) / ss_tot if ss_tot > 0 else np.nan
    rng = np.random.default_rng(seed)
    sim, sd = _point_draws(ly, lo, hi, pd, rng, draws)
    dof = len(ly) - 2
    # lack of fit: residual variance beyond what the points' own uncertainty explains, drawn per replicate from
    # its scaled inverse chi-square (BDA3 sec. 3.2: the variance of a regression with few residual dof), so a law
    # through three points is as unsure of its scatter as one residual degree of freedom allows
    extra = 0.0
    # only when the residuals are larger than the points' own uncertainty explains (a chi-square test of the
    # fit at the 80% level; without point uncertainty, always)
    misfit = dof > 0 and (not (sd > 0).all() or chi2.cdf(float((resid**2 / sd**2).sum()), dof) > 0.8)
    if misfit:
        s2 = float(resid @ resid) / dof
        var_r = dof * s2 / rng.chisquare(dof, size=draws)
        extra_r = np.maximum(var_r - float(np.mean(sd**2)), 0.0)
        extra = float(np.median(extra_r))
        sim = sim + rng.normal(0.0, 1.0, sim.shape) * np.sqrt(extra_r)[:, None]
    sim = sim - ly[None, :] + (X @ coef)[None, :]
    est = np.linalg.lstsq(X, sim.T, rcond=None)[0]  # (2, draws)
    a_lo, a_hi = np.percentile(est[1], [10, 90])
    c_lo, c_hi = np.exp(np.percentile(est[0], [10, 90]))
    width = a_hi - a_lo
    spread = bool((sd > 0).any() or extra > 0)
    determined = bool(np.isfinite(width) and width <= max_exponent_width and spread)
    reason = "" if determined else (
        f"exponent interval {a_lo:.2f} .. {a_hi:.2f} is wider than {max_exponent_width:g}" if spread
        else "no interval: every point is exact and the fit has no residual")
    return Law(name=name, variable=variable, c=float(np.exp(coef[0])), exponent=float(coef[1]),
               exponent_ci=(float(a_lo), float(a_hi)), c_ci=(float(c_lo), float(c_hi)), n_points=len(x),
               r2=float(r2), rmse_log=float(np.sqrt(np.mean(resid**2))), determined=determined, reason=reason,
               x=tuple(float(v) for v in x), y=tuple(float(v) for v in y), draws=est.T.copy())
