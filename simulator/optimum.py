"""The optimal batch of one sweep, with an interval that carries every noise the data have.

One estimator for ``batchlaw analyze``, ``batchlaw design`` (which predicts, before launch, what this
estimator will say) and the benchmarks. A *sweep* is the runs of one model size at one token budget and
sequence length: batches, learning rates, seeds, final losses and their within-run standard errors.

The curve: the basin of Li et al. 2025 (Step Law, sec. 3: loss is convex in ln B and ln lr near the
optimum, with a ridge along which the optimal LR grows with the batch), written as
``L = L* + a * g(u) [+ c * h(v)]`` with ``u = ln B - x0``, ``v = ln lr - y0 - ridge(u) * u`` (kinked at the optimum), ``g(u) = u^2``
below the optimum and ``ratio * u^2`` above it (the basin's asymmetry ``a_above / a_below``), and ``h``
likewise with the LR curvatures. The shape (ratios, ridge) comes from the basin prior; ``L*``, ``a``,
``c``, ``x0`` (and ``y0`` when the sweep varies the LR at a batch) are fitted by weighted least squares,
each run weighted by ``1 / (se^2 + seed_sd^2)`` (``noisemodel``). A sweep whose LR follows a rule of the
batch (one LR per batch) is fitted along that path: its optimum is the optimum *given the LR rule*.

Bracketed or a bound: the optimum is bracketed when the best batch has a batch on each side whose best
mean loss is higher by more than ``Z80`` standard deviations of the difference, counting both noises;
only then is B_opt a number. Its 80% interval is a parametric bootstrap: each replicate draws
``seed_sd^2`` from its posterior, redraws every run's loss about the fitted curve with that variance plus
its own ``se^2``, and refits; the vertex is kept between the separably worse neighbours.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from batchlaw.simulator.noisemodel import NoiseModel

__all__ = ["Z80", "Optimum", "Shape", "curve_at", "learn_noise", "locate"]

Z80 = 1.2816  # standard normal quantile of 0.9: an 80% two-sided interval is +-Z80 sigma


@dataclass(frozen=True, kw_only=True, slots=True)
class Shape:
    """The basin's shape as the estimator uses it (the curvatures' ratios and the LR ridge)."""

    ratio: float = 1.0
    """a_above / a_below: curvature above the optimum batch over curvature below it."""
    lr_ratio: float = 1.0
    """c_above / c_below for the learning rate."""
    ridge: float = 0.0
    """d ln lr_opt(B) / d ln B below the optimum batch."""
    ridge_above: float | None = None
    """The same above it (None: the ridge is straight). Step Law's data show a kink: below B_opt the best LR
    grows fast with the batch, above it barely (the Adam "surge", Li, S. et al. 2024, arXiv 2405.14578)."""
    c_over_a: float = 1.0
    """c_below / a_below: how the LR curvature compares with the batch curvature (for ``along``)."""
    ratio_sd: float = 0.0
    """Uncertainty of ln(ratio) (and of ln(lr_ratio)): each bootstrap block draws its own shape."""
    ridge_sd: float = 0.0
    """Uncertainty of the ridge slope."""
    fit_window: float = 0.05
    """Nats above the floor within which the basin is quadratic and the curve is fitted (``locate``)."""

    @classmethod
    def of(cls, basin: Any, *, ratio_sd: float = 0.0, ridge_sd: float = 0.0, fit_window: float = 0.05) -> "Shape":
        """The shape of a ``basin.Basin`` (or anything with its curvature and ridge fields); None: symmetric."""
        if basin is None:
            return cls(ratio_sd=ratio_sd, ridge_sd=ridge_sd, fit_window=fit_window)
        return cls(ratio=basin.a_above / basin.a_below, lr_ratio=basin.c_above / basin.c_below, ridge=basin.ridge,
                   ridge_above=getattr(basin, "ridge_above", None), c_over_a=basin.c_below / basin.a_below,
                   ratio_sd=ratio_sd, ridge_sd=ridge_sd, fit_window=fit_window)

    def draw(self, rng: np.random.Generator, z=None) -> "Shape":
        """A shape drawn from this one's uncertainty (itself when it has none); ``z`` (three standard normals)
        gives the draw, so that several sizes' shapes can move together (one basin for a study)."""
        if not (self.ratio_sd or self.ridge_sd):
            return self
        z = rng.normal(size=3) if z is None else z
        return Shape(ratio=self.ratio * float(np.exp(z[0] * self.ratio_sd)),
                     lr_ratio=self.lr_ratio * float(np.exp(z[1] * self.ratio_sd)),
                     ridge=self.ridge + float(z[2] * self.ridge_sd),
                     ridge_above=None if self.ridge_above is None else self.ridge_above + float(z[2] * self.ridge_sd),
                     c_over_a=self.c_over_a, fit_window=self.fit_window)

    def along(self, slope: float) -> tuple["Shape", float]:
        """The 1-D basin seen along an LR path ``ln lr = const + slope * ln B`` through the optimum: (its shape,
        its curvature below the optimum over ``a_below``). A fixed LR (slope 0) at the optimum's best LR leaves
        the optimum where it is but steepens the small-batch side, where the best LR would be lower (the
        ridge); a path along the ridge sees the batch curvature alone."""
        def excess(u: float) -> float:
            v = (slope - float(self.ridge_at(u)) / u) * u
            return float(_g(np.array(u), self.ratio)) + self.c_over_a * float(_g(np.array(v), self.lr_ratio))

        below, above = excess(-1.0), excess(1.0)
        return Shape(ratio=above / below, ratio_sd=self.ratio_sd, fit_window=self.fit_window), below

    def ridge_at(self, u):
        """ln lr_opt(B) - ln lr_opt(B_opt) at u = ln(B / B_opt): the ridge, kinked at the optimum."""
        u = np.asarray(u, float)
        above = self.ridge if self.ridge_above is None else self.ridge_above
        return np.where(u < 0, self.ridge * u, above * u)


@dataclass(frozen=True, kw_only=True)
class Optimum:
    """What one sweep says about its optimal batch."""

    b: float
    """The vertex if bracketed, else the best batch (a bound, see ``bound``)."""
    lo: float
    """80% interval, low end (NaN for a bound)."""
    hi: float
    """80% interval, high end."""
    bracketed: bool
    """True when a batch on each side of the best is separably worse."""
    bound: str
    """'<=', '>=', '~' (flat) or '=' (one batch) for a bound; '' when bracketed."""
    method: str
    """How the interval was made."""
    lr: float = float("nan")
    """The optimal LR at the vertex when the sweep varied the LR at a batch (NaN otherwise)."""
    lr_varied: bool = False
    """Whether some batch was run at two or more LRs (else the optimum is along the LR rule's path)."""
    curve: tuple[float, ...] | None = None
    """(L*, a, x0, ratio[, c, y0, lr_ratio, ridge, ridge_above]) of the fitted basin, for pictures."""
    fit_batches: tuple[float, float] | None = None
    """The smallest and largest batch the curve was fitted on (the runs within the fit window of the floor):
    the curve describes the basin there and nowhere else."""
    draws: np.ndarray | None = None
    """Bootstrap draws of ln B_opt (for the laws across sizes)."""
    resid_ss: float = 0.0
    """Sum of squared residuals less the within-run part, nats^2 (for learning the seed noise)."""
    resid_dof: float = 0.0
    """Its degrees of freedom."""
    best_loss: float = float("nan")
    """The lowest mean loss of a configuration in the sweep."""


def _g(u: np.ndarray, ratio: float) -> np.ndarray:
    return np.where(u < 0, u * u, ratio * u * u)


def _grid(box, two_d: bool) -> np.ndarray:
    (x_lo, x_hi), (y_lo, y_hi) = box
    if not two_d:
        return np.column_stack([np.linspace(x_lo, x_hi, 161), np.zeros(161)])
    gx, gy = np.meshgrid(np.linspace(x_lo, x_hi, 41), np.linspace(y_lo, y_hi, 25), indexing="ij")
    return np.column_stack([gx.ravel(), gy.ravel()])


def _columns(x, y, cand, shape: Shape, two_d: bool) -> np.ndarray:
    """The basin's columns at every candidate (x0, y0): shape (candidates, runs, K)."""
    u = x[None, :] - cand[:, :1]
    cols = [np.ones_like(u), _g(u, shape.ratio)]
    if two_d:
        cols.append(_g(y[None, :] - cand[:, 1:] - shape.ridge_at(u), shape.lr_ratio))
    return np.stack(cols, axis=-1)


def _fit_many(x, y, loss, w, shape: Shape, two_d: bool, box) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of each row of ``loss`` (replicates x runs, weights ``w`` alike) on the basin at
    every grid candidate of (x0, y0) in ``box`` at once; a candidate whose fitted curvature is negative is
    no basin and is skipped. Returns ((x0, y0) per replicate, linear coefficients per replicate); the best
    grid point is refined by a parabola through its neighbours on each axis."""
    cand = _grid(box, two_d)
    A = _columns(x, y, cand, shape, two_d)  # (G, n, K)
    M = np.einsum("rn,gnk,gnl->rgkl", w, A, A)
    rhs = np.einsum("rn,gnk->rgk", w * loss, A)
    M = M + 1e-12 * np.eye(A.shape[-1])  # a column of zeros (all runs at one side) stays solvable
    coef = np.linalg.solve(M, rhs[..., None])[..., 0]  # (R, G, K)
    pred = np.einsum("gnk,rgk->rgn", A, coef)
    ssr = np.einsum("rn,rgn->rg", w, (loss[:, None, :] - pred) ** 2)
    ssr = np.where((coef[..., 1:] < 0).any(-1), np.inf, ssr)
    k = np.argmin(ssr, axis=1)
    p = cand[k].copy()
    nx = 161 if not two_d else 41
    ny = 1 if not two_d else 25
    ix, iy = k // ny, k % ny
    steps = [(box[0][1] - box[0][0]) / (nx - 1), (box[1][1] - box[1][0]) / max(ny - 1, 1)]
    rows = np.arange(len(k))
    for axis, (i, n, stride) in enumerate(((ix, nx, ny), (iy, ny, 1))):  # inf - inf: a skipped neighbour
        inner = (i > 0) & (i < n - 1)
        if n < 3 or not inner.any():
            continue
        s0 = ssr[rows, np.where(inner, k - stride, k)]
        s1 = ssr[rows, k]
        s2 = ssr[rows, np.where(inner, k + stride, k)]
        with np.errstate(invalid="ignore"):
            den = s0 - 2 * s1 + s2
            good = inner & np.isfinite(den) & (den > 0)
            shift = np.where(good, 0.5 * (s0 - s2) / np.where(good, den, 1.0), 0.0)
        p[:, axis] += np.clip(shift, -0.5, 0.5) * steps[axis]
    return p, coef[rows, k]


def _per_config(x, y, loss, var):
    """Mean loss and its variance per (batch, lr) configuration; per batch the best configuration."""
    keys = sorted(set(zip(x.tolist(), y.tolist())))
    mean = np.array([loss[(x == a) & (y == b)].mean() for a, b in keys])
    mvar = np.array([var[(x == a) & (y == b)].sum() / ((x == a) & (y == b)).sum() ** 2 for a, b in keys])
    kx = np.array([k[0] for k in keys])
    ub = np.unique(kx)
    best = [np.flatnonzero(kx == v)[np.argmin(mean[kx == v])] for v in ub]
    return ub, mean[best], mvar[best], float(mean.min())


def _near_floor(x, loss, limit: float) -> np.ndarray | None:
    """The runs the curve is fitted on: those within the window of the floor (None when fewer than three batches
    are: the basin cannot be fitted without leaning on runs up the rim)."""
    near = loss <= limit
    return near if len(np.unique(x[near])) >= 3 else None


def _bracket(ub, best, bvar) -> tuple[int, int | None, int | None]:
    i = int(np.argmin(best))
    worse = best - best[i] > Z80 * np.sqrt(bvar + bvar[i])
    left, right = np.flatnonzero(worse[:i]), i + 1 + np.flatnonzero(worse[i + 1:])
    return i, (int(left[-1]) if len(left) else None), (int(right[0]) if len(right) else None)


def locate(batches, losses, *, lrs=None, loss_se=None, noise: NoiseModel, shape: Shape | None = None,
           bootstrap: int = 400, seed: int = 0, common_seed: int = 0, fit_window: float | None = None) -> Optimum:
    """The optimum of one sweep (see the module docstring).

    Args:
        batches: global batch of each run (any unit; the answer is in the same unit).
        losses: final loss of each run.
        lrs: peak LR of each run (None, or none known: one LR for all; a run without one among runs with one
            is left out).
        loss_se: within-run standard error of each final loss (None or NaN: 0).
        noise: the between-seed noise (its posterior draws enter the interval).
        shape: the basin's shape (None: a symmetric parabola, no ridge).
        bootstrap: replicates of the interval.
        seed: of the bootstrap's per-run noise (mixed with the sweep's own batches, LRs and losses, so that
            sweeps located with one seed draw independent per-run noise).
        fit_window: (None: the shape's) the basin is quadratic only near its floor (within about 0.05 nats at Step Law's scale:
            docs/design.md), so the curve is fitted on the runs within this many nats of the best configuration's
            mean loss (at least three batches); a run far up the rim (a step-starved large batch, 1-2 nats worse)
            still brackets the optimum but never bends the fit or inflates the noise.
        common_seed: of what every sweep of a study shares (the seed noise's level, the basin's shape): sweeps
            located with the same ``common_seed`` draw the same values in replicate ``r``, so the laws across
            sizes can pair draw ``r`` of every size (``sizelaw``) and a shape error shared by all sizes moves
            their intercept, not their exponent.
    """
    shape = shape or Shape()
    b = np.asarray(batches, float)
    loss = np.asarray(losses, float)
    lr = np.ones_like(b) if lrs is None else np.asarray(lrs, float)
    if not (np.isfinite(lr) & (lr > 0)).any():  # no run says its LR: one (unknown) LR for the sweep
        lr = np.ones_like(b)
    se = np.zeros_like(b) if loss_se is None else np.nan_to_num(np.asarray(loss_se, float), nan=0.0)
    ok = np.isfinite(b) & (b > 0) & np.isfinite(loss) & np.isfinite(lr) & (lr > 0)
    b, loss, lr, se = b[ok], loss[ok], lr[ok], se[ok]
    if not len(b):
        return Optimum(b=np.nan, lo=np.nan, hi=np.nan, bracketed=False, bound="", method="")
    x, y = np.log(b), np.log(lr)
    var = se**2 + noise.seed_sd**2
    ub, best, bvar, best_loss = _per_config(x, y, loss, var)
    i, jl, jr = _bracket(ub, best, bvar)
    two_d = any(len(np.unique(y[x == v])) > 1 for v in ub)
    if jl is None or jr is None:
        bound = "=" if len(ub) == 1 else "~" if jl is None and jr is None else "<=" if jl is None else ">="
        return Optimum(b=float(np.exp(ub[i])), lo=np.nan, hi=np.nan, bracketed=False, bound=bound, method="",
                       lr_varied=two_d, best_loss=best_loss)
    box = ((ub[jl], ub[jr]), (y.min() - 1.0, y.max() + 1.0))
    near = _near_floor(x, loss, best_loss + (shape.fit_window if fit_window is None else fit_window))
    if near is None:  # bracketed, but too few runs near the floor to fit: the bracket is all the data say
        return Optimum(b=float(np.exp(ub[i])), lo=float(np.exp(ub[jl])), hi=float(np.exp(ub[jr])), bracketed=True,
                       bound="", method="bracket (fewer than 3 batches within the fit window of the floor)",
                       lr_varied=two_d, best_loss=best_loss)
    x, y, loss, se, var = x[near], y[near], loss[near], se[near], var[near]
    two_d = any(len(np.unique(y[x == v])) > 1 for v in np.unique(x))
    slope = 0.0 if two_d or np.ptp(y) == 0 else float(np.polyfit(x, y, 1)[0])  # the LR rule's path in ln B
    if not two_d:
        shape = replace(shape, ratio=shape.along(slope)[0].ratio)
    p, coef = (v[0] for v in _fit_many(x, y, loss[None, :], 1.0 / var[None, :], shape, two_d, box))
    fitted = _columns(x, y, p[None, :], shape, two_d)[0] @ coef
    n_par = 5 if two_d else 3
    dof = max(len(loss) - n_par, 0)
    resid_ss = max(float(((loss - fitted) ** 2).sum()) - float((se**2).sum()) * dof / max(len(loss), 1), 0.0)
    curve = (float(coef[0]), float(coef[1]), float(p[0]), shape.ratio) + (
        (float(coef[2]), float(p[1]), shape.lr_ratio, shape.ridge,
         shape.ridge if shape.ridge_above is None else shape.ridge_above) if two_d else ())
    span = (float(np.exp(x.min())), float(np.exp(x.max())))
    if bootstrap <= 0:  # the point estimate and its residuals only (learning the noise)
        return Optimum(b=float(np.exp(p[0])), lo=np.nan, hi=np.nan, bracketed=True, bound="", method="",
                       lr=float(np.exp(p[1])) if two_d else np.nan, lr_varied=two_d, curve=curve, fit_batches=span,
                       resid_ss=resid_ss, resid_dof=float(dof), best_loss=best_loss)
    # the per-run noise of one sweep is its own: mixing the sweep's data into the seed keeps two sweeps located
    # with one seed (every size of a study) from drawing the same noise, which would move their vertices together
    rng = np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(np.stack([x, y, loss])).tobytes())])
    common = np.random.default_rng(common_seed)
    v = se[None, :] ** 2 + noise.draw_var(common, size=bootstrap)[:, None]
    draws = np.empty(bootstrap)
    block = 25 if (shape.ratio_sd or shape.ridge_sd) else 100
    for start in range(0, bootstrap, block):  # blocks keep the arrays small; each draws its own basin shape
        part = slice(start, start + block)
        sim = fitted[None, :] + rng.normal(0.0, 1.0, size=v[part].shape) * np.sqrt(v[part])
        draws[part] = _fit_many(x, y, sim, 1.0 / v[part], shape.draw(common), two_d, box)[0][:, 0]
    lo, hi = np.exp(np.percentile(draws, [10, 90]))
    return Optimum(b=float(np.exp(p[0])), lo=float(lo), hi=float(hi), bracketed=True, bound="",
                   method=f"parametric bootstrap 80% ({noise.describe()})", lr=float(np.exp(p[1])) if two_d else np.nan,
                   lr_varied=two_d, curve=curve, fit_batches=span, draws=draws, resid_ss=resid_ss, resid_dof=float(dof),
                   best_loss=best_loss)


def curve_at(curve: tuple[float, ...], batches, lr=None) -> np.ndarray:
    """The fitted basin's loss at ``batches`` (along its optimal LR, or at ``lr`` for a 2-D fit)."""
    x = np.log(np.asarray(batches, float))
    l_opt, a, x0, ratio = curve[:4]
    out = l_opt + a * _g(x - x0, ratio)
    if len(curve) > 4 and lr is not None:
        c, y0, lr_ratio, ridge, ridge_above = curve[4:]
        u = x - x0
        out = out + c * _g(np.log(lr) - y0 - np.where(u < 0, ridge, ridge_above) * u, lr_ratio)
    return out


def learn_noise(sweeps, prior: NoiseModel, shape: Shape | None = None, *, fit_window: float | None = None) -> NoiseModel:
    """The between-seed noise learned from a study on top of ``prior`` (``noisemodel``): the residuals of
    every bracketed sweep's basin fit, and the repeated seeds of the sweeps that could not be fitted.

    Args:
        sweeps: per sweep, arrays (batches, losses, lrs, ses[, ...]) of its constant-batch runs.
    """
    from batchlaw.simulator.noisemodel import pooled_repeats

    ss, dof, keys, losses, ses = 0.0, 0.0, [], [], []
    for j, sweep in enumerate(sweeps):
        b, loss, lr, se = (np.asarray(v, float) for v in sweep[:4])
        o = locate(b, loss, lrs=lr, loss_se=se, noise=prior, shape=shape, bootstrap=0, fit_window=fit_window)
        if o.bracketed and o.resid_dof > 0:
            ss, dof = ss + o.resid_ss, dof + o.resid_dof
            continue
        keys += [(j, x, y) for x, y in zip(b.tolist(), lr.tolist())]
        losses += loss.tolist()
        ses += se.tolist()
    r_ss, r_dof = pooled_repeats(keys, losses, ses)
    if not dof + r_dof:
        return prior
    return prior.updated(ss + r_ss, dof + r_dof, f"{dof:g} dof from basin-fit residuals, {r_dof:g} from repeated seeds")
