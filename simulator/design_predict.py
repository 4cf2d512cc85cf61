"""What a wave will say, before it is launched: the analysis run on simulated studies.

Each simulated study draws a world from the planner's belief (per size: the optimum from its prior or
posterior, the LR rule's error at that size unless an LR sweep measured it, the basin's shape within its
uncertainty, the between-seed noise from its posterior), gives every run (done and planned) a final loss
from the basin plus noise, and runs the analysis' own estimator (``optimum.locate``, ``sizelaw``) on them.
The figures are the fraction of simulated studies in which each size is bracketed, the median factor of
its 80% interval, and for the B_opt(N) exponent the fraction determined, the median half-width of its 80%
interval and the fraction that meet the target.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from batchlaw.simulator.design import Model, Point, SizeState, lr_for
from batchlaw.simulator.optimum import locate
from batchlaw.simulator.sizelaw import fit_size_law
from batchlaw.simulator.study import StudyConfig

__all__ = ["predict"]


def _g(u, ratio):
    return np.where(u < 0, u * u, ratio * u * u)


def _runs(s: SizeState, points: list[Point]) -> tuple[np.ndarray, np.ndarray]:
    b = [float(x) for x, _, _ in s.done] + [float(p.batch) for p in points if p.model == s.model]
    lr = [float(y) for _, y, _ in s.done] + [float(p.lr) for p in points if p.model == s.model]
    return np.array(b), np.array(lr)


def _optima(study: StudyConfig, states: list[SizeState], rng: np.random.Generator, x_mean: float) -> dict[str, float]:
    """One world's ln B_opt per size: a size with data from its posterior; the others from the prior law, all
    moved together (a common offset and a common error of the exponent) plus each size's own scatter."""
    p = study.prior
    shift, tilt = rng.normal(0.0, p.b_opt_sd), rng.normal(0.0, p.exponent_sd)
    out = {}
    for s in states:
        if s.status == "prior":
            out[s.model] = s.ln_b + shift + tilt * (math.log(s.num_params) - x_mean) + rng.normal(0.0, p.scatter_sd)
        else:
            out[s.model] = rng.normal(s.ln_b, s.ln_b_sd)
    return out


def predict(study: StudyConfig, states: list[SizeState], points: list[Point], m: Model, *, sims: int | None = None,
            seed: int | None = None, bootstrap: int = 60) -> dict[str, Any]:
    """Simulated figures of the analysis after ``points`` are run (see the module docstring)."""
    sims = sims or study.design.simulations
    rng = np.random.default_rng(study.design.seed if seed is None else seed)
    used = [s for s in states if len(_runs(s, points)[0])]
    per = {s.model: {"bracketed": 0, "factors": []} for s in used}
    widths, determined, met = [], 0, 0
    x_mean = float(np.mean([math.log(s.num_params) for s in states]))
    for _ in range(sims):
        var = float(m.noise.draw_var(rng))
        x0s = _optima(study, states, rng, x_mean)
        z = rng.normal(size=3)  # one basin for the whole study: every size's shape moves together
        lr_shift = rng.normal(0.0, study.prior.lr_sd)  # the LR rule's error, shared by the sizes
        ns, bs, lo, hi, draws = [], [], [], [], []
        for s in used:
            b, lr = _runs(s, points)
            x0 = x0s[s.model]
            w0 = 0.0 if s.lr_tested else lr_shift + rng.normal(0.0, study.prior.lr_scatter_sd)
            shape = s.shape.draw(rng, z)
            y0 = math.log(lr_for(study, s, math.exp(x0))) + w0
            u = np.log(b) - x0
            v = np.log(lr) - y0 - shape.ridge_at(u)
            loss = 3.0 + s.a * _g(u, shape.ratio) + s.c * _g(v, shape.lr_ratio)
            loss = loss + rng.normal(0.0, math.sqrt(var + m.step_se**2), len(loss))
            o = locate(b, loss, lrs=lr, loss_se=np.full(len(b), m.step_se), noise=m.noise, shape=s.shape,
                       bootstrap=bootstrap, seed=int(rng.integers(2**31)))
            if o.bracketed:
                per[s.model]["bracketed"] += 1
                per[s.model]["factors"].append(math.sqrt(o.hi / o.lo))
                ns.append(s.num_params)
                bs.append(o.b)
                lo.append(o.lo)
                hi.append(o.hi)
                draws.append(o.draws)
        law = fit_size_law("B_opt(N)", "N", ns, bs, lo, hi, point_draws=draws, draws=400,
                           seed=int(rng.integers(2**31)))
        if law.fitted:
            widths.append(law.half_width)
            determined += law.determined
            met += bool(study.target.exponent_half_width and law.half_width <= study.target.exponent_half_width)
    sizes = {k: {"p_bracketed": v["bracketed"] / sims,
                 "factor_median": float(np.median(v["factors"])) if v["factors"] else math.nan} for k, v in per.items()}
    return {"sims": sims, "sizes": sizes,
            "exponent": {"p_fitted": len(widths) / sims, "p_determined": determined / sims,
                         "half_width_median": float(np.median(widths)) if widths else math.nan,
                         "p_target": met / sims if study.target.exponent_half_width else math.nan}}


def fixed_lr_bias(s: SizeState, w: float) -> float:
    """B_opt measured at an LR ``e^w`` times the optimum's (held fixed across the sweep) over the true B_opt:
    the batch that minimises the basin's excess at that LR (Li et al. 2025: the LR and batch optima interact
    along the ridge)."""
    u = np.linspace(-6.0, 6.0, 12001)
    v = w - s.shape.ridge_at(u)
    excess = s.a * _g(u, s.shape.ratio) + s.c * _g(v, s.shape.lr_ratio)
    return float(np.exp(u[int(np.argmin(excess))]))


def compare(study: StudyConfig, basin, m: Model) -> dict[str, Any]:
    """The study's ``compare_grid`` as the same planner sees it: its runs and GPU-hours, the bias its LRs
    imply at each size (``fixed_lr_bias`` against the LR rule at the prior's optimum), and the predicted
    figures of its analysis."""
    from batchlaw.simulator.belief import prior_states
    from batchlaw.simulator.grid import load_grid, plan_rows, run_grid

    g = load_grid(study.compare_grid)
    t = run_grid(g)
    rows = plan_rows(t)
    states = {s.model: s for s in prior_states(study, basin)}
    points, bias = [], {}
    for i in rows:
        model = str(t["model"][i])
        if model not in states:
            continue
        lr = float(t["lr"][i])
        points.append(Point(model=model, batch=int(t["global_batch"][i]), lr=lr, seed=int(t["seed"][i])))
        s = states[model]
        bias.setdefault(model, set()).add(round(fixed_lr_bias(s, math.log(lr / lr_for(study, s, math.exp(s.ln_b)))), 3))
    used = [s for s in states.values() if any(p.model == s.model for p in points)]
    return {"grid": g.name, "runs": len(points), "gpu_hours": float(np.nansum(t["gpu_hours"][rows])),
            "bias": {k: sorted(v) for k, v in bias.items()},
            "predicted": predict(study, used, points, m)}
