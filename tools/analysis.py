"""From run summaries to the answer: optimal and critical batch per model, laws across sizes,
extrapolation, published overlays, and never a claim the data do not carry.

- Optimal batch of a model at its token budget: a parabola of final loss in ln(batch) through its
  constant-batch runs (the basin shape of Li et al. 2025, sec. 3). The optimum is *bracketed* when
  the best run has a run with a higher loss on each side, higher by more than their noise (1.28
  combined standard errors of the final losses, when known); only then is B_opt a number: the
  parabola's vertex (kept between the nearest such runs), with an 80% interval from a parametric
  bootstrap over each run's final-loss standard error (``locate_optimum``; a residual bootstrap or
  the bracket when that error is unknown). An optimum at the edge of the sweep, or on a side no run
  is separably worse, is a bound (``<= 4`` or ``>= 32``; ``~ 16`` when the sweep is flat within its
  noise), marked, and kept out of the laws (bounds at the sweep's edge enter them with ``include_bounds``).
  A size swept at several learning rates gives the laws the sweep with the lowest loss.
- Laws across sizes: B_opt(N), B_opt(D), B_crit(N) as power laws ``y = c x^a`` by OLS in log space
  (Kaplan et al. 2020, eq. 1.4 form; Li et al. 2025 fit B_opt(D) the same way). A law needs
  ``min_sizes`` (3) sizes with usable points, else the report says why there is none. Its exponent
  interval (80%) is a parametric bootstrap: each point redrawn in log space from its own interval
  (an 80% interval read as +-1.2816 sigma of a normal) plus the residual scatter of the fit. A law
  whose exponent interval is wider than ``max_exponent_width`` is printed as "not determined" and
  is not extrapolated. Every law carries its number of points and R^2 in log space.
- The critical batch per model is the noise scale B_simple = tr(Sigma) / |G|^2 near the end of
  training (McCandlish et al. 2018, eq. 2.8 / sec. 2.2), in sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchlaw.simulator import laws
from batchlaw.tools.logs import RunSummary

__all__ = ["Law", "ModelOptimum", "StudyResult", "analyse", "fit_size_law", "locate_optimum", "optimal_batch"]

Z80 = 1.2816  # standard normal quantile of 0.9: an 80% two-sided interval is +-Z80 sigma


@dataclass(frozen=True, kw_only=True)
class ModelOptimum:
    """Optimal and critical batch of one model size at one token budget (sequences)."""

    model_name: str
    num_params: int
    tokens: int
    b_opt: float
    """The optimum if bracketed, else the best run's batch (then a bound, see ``bound``)."""
    b_opt_lo: float
    b_opt_hi: float
    b_crit: float
    b_crit_lo: float
    b_crit_hi: float
    best_loss: float
    n_runs: int
    bracketed: bool = False
    """True when the best run has a worse run on both sides (the optimum lies inside the sweep)."""
    bound: str = ""
    """'<=' (no batch below the best separably worse: at or below the sweep's low side), '>=' (likewise
    above), '~' (flat: none on either side), '=' (one batch), '' when bracketed."""
    interval_method: str = ""
    """How [b_opt_lo, b_opt_hi] was made: 'bootstrap 80%', 'bracket' or '' (none)."""
    batches: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    curve: tuple[float, float, float] | None = None
    seq_len: int = 0
    """Sequence length of the sweep's runs (a sweep never mixes two)."""
    budget: float = float("nan")
    """The sweep's token budget (``train.tokens``; for logs without one, the reached tokens its runs share
    within one step's overshoot: ``_budgets``)."""
    lr: float = float("nan")
    """Peak learning rate of the sweep's runs (a sweep never mixes two; NaN when the logs do not say)."""

    @property
    def b_opt_text(self) -> str:
        """'12.3', '<= 4', '>= 32', '~ 16 (flat: ...)' or '4 (one batch)'."""
        if self.bound == "=":
            return f"{self.b_opt:.3g} (one batch)"
        if self.bound == "~":
            return f"~ {self.b_opt:.3g} (flat: no batch separably worse)"
        return f"{self.bound} {self.b_opt:.3g}" if self.bound else f"{self.b_opt:.3g}"


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
        return np.isfinite(self.exponent)

    def predict(self, x: float) -> float:
        return float(self.c * x**self.exponent)

    def predict_range(self, x) -> tuple[np.ndarray, np.ndarray]:
        """80% band of c x^a at ``x`` from the bootstrap draws (c and a are correlated, so the
        corners of their separate intervals would overstate it)."""
        x = np.atleast_1d(np.asarray(x, float))
        pred = self.draws[:, :1] + self.draws[:, 1:] * np.log(x)[None, :]
        lo, hi = np.percentile(pred, [10, 90], axis=0)
        return np.exp(lo), np.exp(hi)


@dataclass(frozen=True, kw_only=True)
class StudyResult:
    """Everything ``batchlaw analyze`` reports."""

    optima: list[ModelOptimum]
    b_opt_vs_n: Law
    b_opt_vs_d: Law
    b_crit_vs_n: Law
    extrapolation: dict[str, Any]
    published: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class _Optimum:
    b: float
    lo: float
    hi: float
    curve: tuple[float, float, float] | None
    bracketed: bool
    bound: str
    method: str


def _bracket(b, y, se, ub) -> tuple[int, int | None, int | None]:
    """(index in ``ub`` of the best batch, of the nearest batch below it that is separably worse, of the
    nearest above; None where there is none). Separably worse: its best loss is higher than the best by more
    than the two runs' noise explains (``Z80`` combined standard errors); without standard errors, any
    higher loss counts."""
    best_at = [np.flatnonzero(b == v)[np.argmin(y[b == v])] for v in ub]  # the best run of each batch
    best_per, se_per = y[best_at], se[best_at]
    i = int(np.argmin(best_per))
    if np.isfinite(se_per).all() and (se_per > 0).all():
        worse = best_per - best_per[i] > Z80 * np.sqrt(se_per**2 + se_per[i] ** 2)
    else:
        worse = best_per > best_per[i]
    left, right = np.flatnonzero(worse[:i]), i + 1 + np.flatnonzero(worse[i + 1:])
    return i, (int(left[-1]) if len(left) else None), (int(right[0]) if len(right) else None)


def locate_optimum(batches, losses, *, loss_se=None, bootstrap: int = 500, seed: int = 0) -> _Optimum:
    """The optimum of one sweep: bracketed (a number with an interval) or a bound at an edge.

    Bracketed means: on each side of the best batch there is a batch whose best loss is higher by more
    than ``Z80`` combined standard errors (``loss_se``; without them any higher loss counts). The vertex
    and its draws are kept between the nearest such batches. Otherwise a bound: ``<=`` (no batch below
    the best is separably worse), ``>=`` (none above), ``~`` (none on either side: the sweep is flat
    within its noise), ``=`` (one batch).

    The interval of a bracketed optimum: a parametric bootstrap when ``loss_se`` (each final loss's
    standard error from its per-step scatter) is given, each loss redrawn from N(fit, sigma_i^2) with
    sigma_i = max(se_i, residual RMS when the parabola has 2 or more residual degrees of freedom);
    else a residual bootstrap with 5 or more batches; else the bracket (the neighbouring batches).
    """
    b, y = np.asarray(batches, float), np.asarray(losses, float)
    se = np.full_like(y, np.nan) if loss_se is None else np.asarray(loss_se, float)
    ok = np.isfinite(b) & np.isfinite(y) & (b > 0)
    b, y, se = b[ok], y[ok], se[ok]
    if not len(b):
        return _Optimum(b=np.nan, lo=np.nan, hi=np.nan, curve=None, bracketed=False, bound="", method="")
    ub = np.unique(b)
    i, jl, jr = _bracket(b, y, se, ub)
    if jl is None or jr is None:
        bound = "=" if len(ub) == 1 else "~" if jl is None and jr is None else "<=" if jl is None else ">="
        return _Optimum(b=float(ub[i]), lo=np.nan, hi=np.nan, curve=None, bracketed=False, bound=bound, method="")
    x = np.log(b)
    lo_x, hi_x = np.log(ub[jl]), np.log(ub[jr])
    coef = np.polyfit(x, y, 2)
    vertex = -coef[1] / (2 * coef[0]) if coef[0] > 0 else np.log(ub[i])
    vertex = float(np.clip(vertex, lo_x, hi_x))
    fit = np.polyval(coef, x)
    resid = y - fit
    dof = len(y) - 3
    rms = float(np.sqrt(resid @ resid / dof)) if dof >= 2 else 0.0
    if np.isfinite(se).all() and (se > 0).all():
        noise, method = (lambda rng: rng.normal(0.0, np.maximum(se, rms))), "parametric bootstrap 80%"
    elif len(ub) >= 5:
        noise, method = (lambda rng: rng.choice(resid, len(resid))), "residual bootstrap 80%"
    else:  # too few points to resample: the bracket is the interval
        return _Optimum(b=float(np.exp(vertex)), lo=float(ub[jl]), hi=float(ub[jr]), curve=tuple(coef),
                        bracketed=True, bound="", method="bracket")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        c = np.polyfit(x, fit + noise(rng), 2)
        draws.append(np.clip(-c[1] / (2 * c[0]) if c[0] > 0 else vertex, lo_x, hi_x))
    lo, hi = np.exp(np.percentile(draws, [10, 90]))
    return _Optimum(b=float(np.exp(vertex)), lo=float(lo), hi=float(hi), curve=tuple(coef), bracketed=True, bound="",
                    method=method)


def optimal_batch(batches, losses, *, bootstrap: int = 500, seed: int = 0):
    """(B_opt, lo, hi, parabola coefficients); lo = hi = NaN when the optimum is not bracketed."""
    o = locate_optimum(batches, losses, bootstrap=bootstrap, seed=seed)
    return o.b, o.lo, o.hi, o.curve


def fit_size_law(name: str, variable: str, x, y, lo=None, hi=None, *, min_sizes: int = 3,
                 max_exponent_width: float = 1.0, draws: int = 2000, seed: int = 0, why_missing: str = "",
                 what: str = "size") -> Law:
    """Fit y = c x^a with the rules of the module docstring; never raises on too few points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    lo = np.full_like(y, np.nan) if lo is None else np.asarray(lo, float)
    hi = np.full_like(y, np.nan) if hi is None else np.asarray(hi, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
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
    s_resid = np.sqrt(resid @ resid / (len(ly) - 2)) if len(ly) > 2 else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        s_point = np.where(np.isfinite(lo) & np.isfinite(hi) & (lo > 0), (np.log(hi) - np.log(lo)) / (2 * Z80), 0.0)
    sigma = np.sqrt(s_point**2 + s_resid**2)
    rng = np.random.default_rng(seed)
    sim = (X @ coef)[None, :] + rng.normal(size=(draws, len(ly))) * sigma[None, :]
    est = np.linalg.lstsq(X, sim.T, rcond=None)[0]  # (2, draws)
    a_lo, a_hi = np.percentile(est[1], [10, 90])
    c_lo, c_hi = np.exp(np.percentile(est[0], [10, 90]))
    width = a_hi - a_lo
    determined = bool(np.isfinite(width) and width <= max_exponent_width and (sigma > 0).any())
    reason = "" if determined else (
        f"exponent interval {a_lo:.2f} .. {a_hi:.2f} is wider than {max_exponent_width:g}" if (sigma > 0).any()
        else "no interval: every point is exact and the fit has no residual")
    return Law(name=name, variable=variable, c=float(np.exp(coef[0])), exponent=float(coef[1]),
               exponent_ci=(float(a_lo), float(a_hi)), c_ci=(float(c_lo), float(c_hi)), n_points=len(x),
               r2=float(r2), rmse_log=float(np.sqrt(np.mean(resid**2))), determined=determined, reason=reason,
               x=tuple(float(v) for v in x), y=tuple(float(v) for v in y), draws=est.T.copy())


def _budget(r: RunSummary) -> float:
    """The run's token budget: ``train.tokens`` of its logged config (read raw, so a config an older
    batchlaw wrote still gives it), else 0 (the caller groups such runs by the tokens they reached)."""
    from batchlaw.simulator.ramp import parse_count

    try:
        return float(parse_count(str((r.config or {}).get("train", {}).get("tokens", 0) or 0), "train.tokens"))
    except (ValueError, TypeError, AttributeError):
        return 0.0


def _budgets(runs: list[RunSummary]) -> dict[int, float]:
    """Token budget of each run (by ``id``): its planned one, else a shared one for the runs of a size whose
    reached tokens lie within one step's overshoot (their largest batch x sequence length) of each other."""
    out = {id(r): _budget(r) for r in runs}
    loose = sorted((r for r in runs if not out[id(r)]), key=lambda r: (r.num_params, r.tokens))
    group: list[RunSummary] = []
    for r in loose + [None]:
        if group and (r is None or r.num_params != group[0].num_params
                      or r.tokens - group[0].tokens > max(g.global_batch * max(g.seq_len, 1) for g in group + [r])):
            for g in group:
                out[id(g)] = float(group[0].tokens)
            group = []
        if r is not None:
            group.append(r)
    return out


def _median(values) -> float:
    v = np.array([x for x in values if np.isfinite(x)])
    return float(np.median(v)) if len(v) else np.nan


def _lr(r: RunSummary) -> float:
    """The run's peak learning rate from its logged config (NaN when the log has none)."""
    try:
        return float(r.config.get("train", {}).get("lr", np.nan))
    except (TypeError, ValueError, AttributeError):
        return np.nan


def at_edge(o: ModelOptimum) -> bool:
    """A bound because the best run is the smallest (``<=``) or largest (``>=``) batch tried."""
    return bool(o.batches) and ((o.bound == "<=" and o.b_opt == min(o.batches))
                                or (o.bound == ">=" and o.b_opt == max(o.batches)))


def _per_model(runs: list[RunSummary], bootstrap: int) -> list[ModelOptimum]:
    # one batch sweep = one model size at one token budget, sequence length and learning rate: runs that
    # differ in any of these lie on different loss-vs-batch curves (seeds of one point are pooled)
    groups: dict[tuple[int, float, int, float], list[RunSummary]] = {}
    done = [r for r in runs if r.status == "completed"]
    budgets = _budgets(done)
    for r in done:
        lr = _lr(r)
        groups.setdefault((r.num_params, budgets[id(r)], r.seq_len, -1.0 if np.isnan(lr) else lr), []).append(r)
    out = []
    for (n, budget, seq_len, lr), rs in sorted(groups.items()):
        const = [r for r in rs if not r.is_ramp]  # ramps are reported, not fitted
        if not const:
            continue
        bs = [r.global_batch for r in const]
        ls = [r.final_loss for r in const]
        o = locate_optimum(bs, ls, loss_se=[r.final_loss_se for r in const], bootstrap=bootstrap)
        out.append(ModelOptimum(
            model_name=rs[0].model_name, num_params=n, tokens=int(np.median([r.tokens for r in rs])), b_opt=o.b,
            b_opt_lo=o.lo, b_opt_hi=o.hi, b_crit=_median(r.b_simple for r in rs),
            b_crit_lo=_median(r.b_simple_lo for r in rs), b_crit_hi=_median(r.b_simple_hi for r in rs),
            best_loss=float(min(ls)), n_runs=len(rs), bracketed=o.bracketed, bound=o.bound if not o.bracketed else "",
            interval_method=o.method, batches=[float(b) for b in bs], losses=[float(v) for v in ls], curve=o.curve,
            seq_len=int(seq_len), lr=np.nan if lr < 0 else float(lr), budget=float(budget)))
    return out


def analyse(runs: list[RunSummary], *, extrapolate_n: float | None = None, bootstrap: int = 500,
            include_bounds: bool = False, min_sizes: int = 3, max_exponent_width: float = 1.0) -> StudyResult:
    """Optima per model, laws across models (only where the data carry one), extrapolation, overlays.

    Args:
        runs: run summaries (``logs.load_runs``); only completed runs count.
        extrapolate_n: a parameter count to extrapolate B_opt to (only with a determined law).
        bootstrap: resamples of each optimum's interval.
        include_bounds: also fit the laws on edge optima (bounds), marked as such in the report.
        min_sizes: model sizes a law needs.
        max_exponent_width: a law whose 80% exponent interval is wider is "not determined".
    """
    optima = _per_model(runs, bootstrap)
    # the laws take one optimum per (size, budget, sequence length): the sweep at the best learning rate
    best: dict[tuple, ModelOptimum] = {}
    for o in optima:
        key = (o.num_params, o.budget, o.seq_len)
        if key not in best or o.best_loss < best[key].best_loss:
            best[key] = o
    use = [o for o in best.values() if o.bracketed or (include_bounds and at_edge(o))]
    n_edge = sum(1 for o in best.values() if not o.bracketed)
    why = (f"{n_edge} of {len(best)} sizes have no bracketed optimum (at the edge of the batch sweep, or not"
           " separable from their neighbours within the loss noise)"
           + ("" if include_bounds else ", and such bounds are kept out of laws unless --include-bounds")) if n_edge else ""
    kw = {"min_sizes": min_sizes, "max_exponent_width": max_exponent_width}
    pick = (lambda attr: [getattr(o, attr) for o in use])  # noqa: E731
    law_n = fit_size_law("B_opt(N)", "N", pick("num_params"), pick("b_opt"), pick("b_opt_lo"), pick("b_opt_hi"),
                         why_missing=why, **kw)
    # B_opt(D) across token budgets as planned (train.tokens), not the tokens each run reached: runs of one
    # budget overshoot it by up to a batch, which must not pass for a spread of budgets
    law_d = fit_size_law("B_opt(D)", "D", pick("budget"), pick("b_opt"), pick("b_opt_lo"), pick("b_opt_hi"),
                         why_missing=why, what="token budget", **kw)
    per = list(best.values())
    law_c = fit_size_law("B_crit(N)", "N", [o.num_params for o in per], [o.b_crit for o in per],
                         [o.b_crit_lo for o in per], [o.b_crit_hi for o in per], **kw)
    extra: dict[str, Any] = {}
    if extrapolate_n:
        extra = {"N": float(extrapolate_n)}
        if law_n.determined:
            extra["b_opt"] = law_n.predict(extrapolate_n)
            extra["b_opt_range"] = tuple(float(v[0]) for v in law_n.predict_range([extrapolate_n]))
        if law_c.determined:
            extra["b_crit"] = law_c.predict(extrapolate_n)
    seq = (runs[0].seq_len or 1) if runs else 1
    d = [o.tokens for o in optima]
    published = {"steplaw_b_opt_seqs": [float(laws.load_law("steplaw-batch").predict(t) / seq) for t in d]}
    return StudyResult(optima=optima, b_opt_vs_n=law_n, b_opt_vs_d=law_d, b_crit_vs_n=law_c, extrapolation=extra,
                       published=published, settings={"include_bounds": include_bounds, "min_sizes": min_sizes,
                                                      "max_exponent_width": max_exponent_width})
