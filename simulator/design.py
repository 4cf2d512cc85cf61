"""``batchlaw design``: choose the runs of a batch-size study, predict how sure its answer will be before
anything is launched, and, wave after wave, propose the runs that buy the most precision per GPU-hour.

The model the planner optimises against is the one the analysis uses (``simulator.optimum``): per size,
final loss is a basin over ln B (and ln lr) with the shape of the basin prior (``basin``), observed with
the within-run error and the between-seed noise of ``noisemodel``. For a sweep of batches ``x_j = ln B_j``
with ``r_j`` runs each along the LR rule, the variance of the fitted ln B_opt is the inverse Fisher
information of the curve ``L = L* + a g(x - x0)`` (``_fisher_var``; Pukelsheim 1993, *Optimal Design of
Experiments*, ch. 3: the design's information matrix); a sweep brackets its optimum when its ends lie
beyond the distance at which the loss rises above the noise (``_bracket_prob``). The exponent of
B_opt(N) is a weighted least-squares slope in ln N, whose variance is ``1 / sum w_s (x_s - xbar)^2``.

Wave 1 centres each size's sweep on the prior B_opt law, spans the prior's uncertainty, and gives each
point its LR from the rule (``lr_for``). Then, greedily, it adds what lowers the predicted variance of the
answer most per GPU-hour (seeds near the optimum, batches between, or edges), and for an exponent target
it also weighs leaving a size out: a size whose runs cost more than the precision they add. Later waves
(``next_wave``) start from what the logs say (bracketed or a bound, the posterior of each B_opt, the
learned noise): an unbracketed side is extended, a flat basin gets seeds, a bracketed size gets an LR
sweep once (a 2-D basin tests the LR rule), and the greedy step runs again. Runs already done are never
planned again. The printed prediction is a simulation of the analysis on worlds drawn from the belief
(``predict``), the same estimator on the same points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

from batchlaw.simulator.noisemodel import NoiseModel
from batchlaw.simulator.optimum import Z80, Shape
from batchlaw.simulator.study import StudyConfig

__all__ = ["Model", "Point", "SizeState", "Wave", "design_wave", "fisher_var", "lattice", "lr_for", "plan_wave",
           "rule_slope", "target_met"]


@dataclass(frozen=True, kw_only=True)
class Point:
    """One planned run."""

    model: str
    batch: int
    lr: float
    seed: int
    why: str = ""
    """What the run is for (initial sweep, extend below, seed near the optimum, LR sweep, ...)."""


@dataclass(frozen=True, kw_only=True)
class SizeState:
    """What is believed about one size's optimum."""

    model: str
    num_params: int
    non_embedding: float
    tokens: float
    seq_len: int
    ln_b: float
    """Centre of ln B_opt (sequences)."""
    ln_b_sd: float
    """Its uncertainty (prior sd, or the posterior's)."""
    status: str = "prior"
    """'prior' (no runs), 'bracketed', '<=', '>=', '~' (flat), '=' (one batch)."""
    lr_ref: float = float("nan")
    """The law's lr_opt(N, D) of this size."""
    lr_scale: float = 1.0
    """Correction of the rule's LR at this size learned from an LR sweep."""
    lr_tested: bool = False
    """Whether a batch of this size ran at several LRs."""
    done: tuple[tuple[int, float, int], ...] = ()
    """(batch, lr, seed) of the runs already done or planned."""
    a: float = 0.01
    """Curvature of this size's loss in ln B below the optimum along the LR rule's path (the basin at its N and
    D, ``Shape.along``), nats per ln^2."""
    path_ratio: float = 1.0
    """Curvature above the optimum over below it, along the LR rule's path."""
    c: float = 0.01
    """Curvature in ln lr below the LR ridge."""
    shape: Shape = field(default_factory=Shape)
    """Asymmetry and LR ridge of this size's basin, with their uncertainty."""


@dataclass(frozen=True, kw_only=True)
class Wave:
    """A planned wave and what it is predicted to buy."""

    points: list[Point]
    sizes: list[SizeState]
    cost_gpu_hours: float
    predicted: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    target_met: bool = False


# -- the design's model -----------------------------------------------------------------------------

def _g(u, ratio):
    return np.where(u < 0, u * u, ratio * u * u)


def _dg(u, ratio):
    return np.where(u < 0, 2 * u, 2 * ratio * u)


def fisher_var(x, weights, x0: float, a: float, ratio: float) -> float:
    """Variance of the fitted vertex ln B_opt of a sweep at ``x`` (ln batches) with ``weights`` = runs /
    variance of one run's loss, when the true vertex is ``x0`` and the curvature ``a`` (the inverse of the
    information matrix of (L*, a, x0), entry x0). Infinite when the sweep cannot locate it."""
    x, w = np.asarray(x, float), np.asarray(weights, float)
    if len(np.unique(x)) < 3:
        return math.inf
    u = x - x0
    J = np.column_stack([np.ones_like(u), _g(u, ratio), -a * _dg(u, ratio)])
    info = J.T @ (J * w[:, None])
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        return math.inf
    v = float(cov[2, 2])
    return v if v > 0 and math.isfinite(v) else math.inf


def _reach(noise_var: float, a: float) -> float:
    """How far from the optimum (in ln B) the loss rises by Z80 sd of a difference of two points."""
    return math.sqrt(Z80 * math.sqrt(2 * noise_var) / a)


def _bracket_prob(x, mu: float, sd: float, noise_var: float, a: float, ratio: float = 1.0) -> float:
    """Probability that a sweep at ``x`` brackets an optimum ~ N(mu, sd^2): the vertex lies more than the
    noise's reach inside both ends (the reach above the optimum is longer where the basin is flatter there)."""
    if len(x) < 3:
        return 0.0
    lo, hi = min(x) + _reach(noise_var, a), max(x) - _reach(noise_var, a * ratio)
    if hi <= lo:
        return 0.0
    sd = max(sd, 1e-6)
    return float(norm.cdf((hi - mu) / sd) - norm.cdf((lo - mu) / sd))


def lattice(center: float, spacing: float, lo: float, hi: float, *, multiple: int = 1, minimum: int = 1) -> list[int]:
    """Whole batches on the lattice ``round(exp(center) * spacing^k)`` covering [exp(lo), exp(hi)]: from the last
    lattice point at or below exp(lo) to the first at or above exp(hi); each a multiple of ``multiple`` and at
    least ``minimum``."""
    step = math.log(spacing)
    k_lo, k_hi = math.floor((lo - center) / step + 1e-9), math.ceil((hi - center) / step - 1e-9)
    out = {_nice(math.exp(center + k * step), multiple) for k in range(k_lo, k_hi + 1)}
    return sorted(b for b in out if b >= minimum)


def _nice(b: float, multiple: int = 1) -> int:
    """A batch rounded to one of 2^i or 3 x 2^(i-1) that is a multiple of ``multiple`` (products of small factors
    split into any layout)."""
    cands = [c for c in [2**i for i in range(0, 40)] + [3 * 2**i for i in range(0, 40)] if c % multiple == 0]
    return int(min(cands, key=lambda c: abs(math.log(c / max(b, 0.5)))))


def _lattice(study: StudyConfig, center: float, spacing: float, lo: float, hi: float) -> list[int]:
    """``lattice`` with the study's limits: multiples of its smallest micro batch, at least ``min_batch``."""
    return lattice(center, spacing, lo, hi, multiple=min(study.design.micro_batch or (1,)),
                   minimum=study.design.min_batch)


# -- the size's belief and its LR ---------------------------------------------------------------------

def lr_for(study: StudyConfig, size: SizeState, batch: float) -> float:
    """The rule's LR for ``batch`` at ``size``: the law's lr_opt(N, D) (one LR for the size's whole sweep: at
    the optimum batch that LR leaves B_opt unbiased, ``basin.Basin.b_opt_ratio(0) = 1``, whatever the ridge),
    times the study's ``lr.scale`` and the size's correction learned from an LR sweep; or the scaled rule
    (a reference point moved by sqrt or linear in the batch) or a fixed value."""
    r = study.lr
    if r.rule == "fixed":
        return r.value
    if r.rule == "scaled":
        return r.reference_lr * (batch / r.reference_batch) ** rule_slope(study)
    return size.lr_ref * r.scale * size.lr_scale


def rule_slope(study: StudyConfig) -> float:
    """d ln lr / d ln B of the LR rule's path: 0 for a law or a fixed LR, 0.5 sqrt, 1 linear."""
    if study.lr.rule != "scaled":
        return 0.0
    return 0.5 if study.lr.scaling == "sqrt" else 1.0


# -- wave planning -------------------------------------------------------------------------------------

@dataclass
class _Sweep:
    """A size's runs (done and planned) as the design model sees them."""

    state: SizeState
    x: list[float]
    r: list[float]
    cost: dict[int, float]
    new: list[Point]


def _var_of(sw: _Sweep, noise_var: float) -> tuple[float, float]:
    """(variance of ln B_opt, bracketing probability) of a sweep under the current belief."""
    a, ratio = sw.state.a, sw.state.path_ratio
    xs = np.array(sw.x)
    if not len(xs):
        return math.inf, 0.0
    ux = np.unique(xs)
    r = np.array([sum(rr for xx, rr in zip(sw.x, sw.r) if xx == u) for u in ux])
    p = 1.0 if sw.state.status == "bracketed" else _bracket_prob(ux, sw.state.ln_b, sw.state.ln_b_sd, noise_var, a,
                                                                  ratio)
    # only runs near the floor are fitted (``optimum.locate``'s fit window): the others bracket but inform nothing
    u = ux - sw.state.ln_b
    near = a * np.where(u < 0, 1.0, ratio) * u * u <= sw.state.shape.fit_window
    v = fisher_var(ux[near], r[near] / noise_var, sw.state.ln_b, a, ratio)
    # fewer than three batches near the floor: nothing to fit yet, the belief's own uncertainty stands
    return (v if math.isfinite(v) else max(sw.state.ln_b_sd, 0.1) ** 2 * 4), p


def _exponent_var(sweeps: list[_Sweep], noise_var: float, scatter_sd: float = 0.0) -> float:
    """Variance of the B_opt(N) exponent: the weighted least-squares slope over the sizes, each weighted by
    its chance to be bracketed over its variance (its own and a size's deviation from a power law)."""
    xs, ws = [], []
    for sw in sweeps:
        v, p = _var_of(sw, noise_var)
        if math.isfinite(v) and p > 0.05:
            xs.append(math.log(sw.state.num_params))
            ws.append(p / (v + scatter_sd**2))
    if len(xs) < 3:
        return math.inf
    x, w = np.array(xs), np.array(ws)
    xbar = (w * x).sum() / w.sum()
    s = float((w * (x - xbar) ** 2).sum())
    # the law's scatter is estimated from len(x) - 2 residual dof: Student's t, not the normal, sets the width
    t = float(student_t.ppf(0.9, len(x) - 2)) / Z80
    return t * t / s if s > 0 else math.inf


# -- the world the planner believes in ------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Model:
    """The planner's noise numbers (each size carries its own basin shape: ``SizeState``)."""

    noise: NoiseModel
    """Between-seed noise (prior or learned)."""
    step_se: float = 0.0
    """Within-run standard error of a final loss."""
    inflation: float = 1.0
    """How much wider the analysis' intervals come out than the information-matrix variance (the
    estimator's bootstrap carries the basin-shape and noise uncertainty, the law its lack of fit): set by
    ``design_wave`` from the simulated analysis of the plan itself."""

    @property
    def run_var(self) -> float:
        return self.noise.seed_sd**2 + self.step_se**2


def _objective(study: StudyConfig, sweeps: list[_Sweep], m: Model) -> float:
    """What the target asks to shrink: the exponent's variance, or the worst size's variance relative to
    the per-size target (each <= 1 meets it)."""
    if study.target.exponent_half_width:
        var = _exponent_var(sweeps, m.run_var, study.prior.scatter_sd)
        return m.inflation * var / (study.target.exponent_half_width / Z80) ** 2
    return m.inflation * max(_per_size(study, sweeps, m), default=0.0)


def _per_size(study: StudyConfig, sweeps: list[_Sweep], m: Model) -> list[float]:
    """Each size's variance over its bracketing chance, relative to the per-size target (<= 1 meets it)."""
    limit = (math.log(study.target.b_opt_factor) / Z80) ** 2
    return [(v / max(p, 1e-3)) / limit for v, p in (_var_of(sw, m.run_var) for sw in sweeps)]


def _progress(study: StudyConfig, sweeps: list[_Sweep], m: Model) -> float:
    """What the greedy step lowers: the objective, except for a per-size target the sum over the sizes still
    short of it (the worst size alone would not move when another size improves)."""
    if study.target.exponent_half_width:
        return _objective(study, sweeps, m)
    return m.inflation * sum(max(r, 1.0) for r in _per_size(study, sweeps, m))


def _add(sw: _Sweep, study: StudyConfig, batch: int, why: str, m: Model, lr_factor: float = 1.0) -> None:
    if batch < study.design.min_batch:
        return  # below what the study may run: the size stays a bound there
    lr = float(f"{lr_for(study, sw.state, batch) * lr_factor:.3g}")  # 3 significant digits, as written in the plan
    seeds = [s for b, l, s in sw.state.done if b == batch and math.isclose(l, lr, rel_tol=1e-9)]
    seeds += [p.seed for p in sw.new if p.batch == batch and math.isclose(p.lr, lr, rel_tol=1e-9)]
    seed = max(seeds) + 1 if seeds else study_seed(study)
    sw.new.append(Point(model=sw.state.model, batch=int(batch), lr=lr, seed=seed, why=why))
    if lr_factor == 1.0:  # an off-rule LR point tests the rule; it adds no information along the path
        sw.x.append(math.log(batch))
        sw.r.append(1.0)


def study_seed(study: StudyConfig) -> int:
    """The first seed of every configuration: ``design.first_seed``, else the base run's (runs.toml
    ``train.seed``), else 1234."""
    if study.design.first_seed:
        return study.design.first_seed
    if study.base:
        from batchlaw.simulator.runconfig import load_run_config

        return load_run_config(study.base).train.seed
    return 1234


def _runs_at(sw: _Sweep, batch: int) -> int:
    return sum(1 for x in sw.x if math.isclose(x, math.log(batch)))


def _mandatory(sw: _Sweep, study: StudyConfig, m: Model) -> None:
    """The runs a size's state calls for before any trade-off: an initial sweep, an unbracketed side
    extended, a flat basin widened, an LR sweep at a newly bracketed size."""
    st, step = sw.state, math.log(study.design.spacing)
    done = sorted({b for b, _, _ in st.done})
    if st.status == "prior":  # the prior's 1-sigma range, plus the noise's reach on each side
        lo = st.ln_b - st.ln_b_sd - _reach(m.run_var, st.a)
        hi = st.ln_b + st.ln_b_sd + _reach(m.run_var, st.a * st.path_ratio)
        for b in _lattice(study, st.ln_b, study.design.spacing, lo, hi):
            _add(sw, study, b, "initial sweep", m)
    elif st.status in ("<=", "=", "~"):
        # two new batches beyond the edge, half a step apart: the nearest may be the optimum, the next brackets it
        below = [b for b in _lattice(study, math.log(done[0]), math.sqrt(study.design.spacing),
                                     math.log(done[0]) - step, math.log(done[0])) if b < done[0]]
        for b in below[-2:]:
            _add(sw, study, b, "extend below: the optimum was at the low edge", m)
    if st.status in (">=", "=", "~"):
        above = [b for b in _lattice(study, math.log(done[-1]), math.sqrt(study.design.spacing), math.log(done[-1]),
                                     math.log(done[-1]) + step) if b > done[-1]]
        for b in above[:2]:
            _add(sw, study, b, "extend above: the optimum was at the high edge", m)
    if st.status == "bracketed" and study.lr.rule != "fixed" and not st.lr_tested and study.lr.sweep_factors:
        near = min(done, key=lambda b: abs(math.log(b) - st.ln_b))
        for f in study.lr.sweep_factors:
            _add(sw, study, near, f"LR sweep x{f:g} at the batch nearest the optimum (tests the LR rule)", m, f)


def _candidates(sw: _Sweep, study: StudyConfig) -> list[tuple[str, list[int]]]:
    """Optional additions to one size: more seeds near the optimum, batches between, one more edge."""
    st, step = sw.state, math.log(study.design.spacing)
    have = sorted({int(round(math.exp(x))) for x in sw.x})
    out = []
    near = sorted(have, key=lambda b: abs(math.log(b) - st.ln_b))[:3]
    if near and all(_runs_at(sw, b) < study.design.max_seeds for b in near):
        out.append(("another seed at the batches nearest the optimum", near))
    if len(have) < study.design.max_batches_per_size:
        between = [b for b in _lattice(study, st.ln_b, math.exp(step / 2), st.ln_b - step, st.ln_b + step) if b not in have]
        below = [b for b in between if b < math.exp(st.ln_b)]
        above = [b for b in between if b > math.exp(st.ln_b)]
        pick = below[-1:] + above[:1]  # the nearest new batch on each side of the optimum
        if pick:
            out.append(("batches between the sweep's points near the optimum", pick))
        if have:
            below = _lattice(study, math.log(have[0]), study.design.spacing, math.log(have[0]) - step * 1.5,
                            math.log(have[0]) - step * 0.5)
            above = _lattice(study, math.log(have[-1]), study.design.spacing, math.log(have[-1]) + step * 0.5,
                            math.log(have[-1]) + step * 1.5)
            if below and below[-1] not in have:
                out.append(("one more batch below", [below[-1]]))
            if above and above[0] not in have:
                out.append(("one more batch above", [above[0]]))
    return out


def _greedy(study: StudyConfig, sweeps: list[_Sweep], m: Model, price, budget: float) -> float:
    """Add the candidate that lowers the objective most per GPU-hour until the target is met (objective
    <= 1) or the budget is spent; returns the cost of the points added."""
    spent = 0.0
    for _ in range(400):
        if _objective(study, sweeps, m) <= 1.0:
            break
        now = _progress(study, sweeps, m)
        best = None
        for sw in sweeps:
            for why, batches in _candidates(sw, study):
                cost = sum(price(sw.state.model, b) for b in batches)
                if spent + cost > budget:
                    continue
                trial = _Sweep(state=sw.state, x=sw.x + [math.log(b) for b in batches], r=sw.r + [1.0] * len(batches),
                               cost=sw.cost, new=sw.new)
                after = _progress(study, [trial if s is sw else s for s in sweeps], m)
                gain = (now - after) / max(cost, 1e-12) if math.isfinite(now) else (math.inf if math.isfinite(after) else 0)
                if gain > 0 and (best is None or gain > best[0]):
                    best = (gain, sw, why, batches, cost)
        if best is None:
            break
        _, sw, why, batches, cost = best
        for b in batches:
            _add(sw, study, b, why, m)
        spent += cost
    return spent


def _sweeps_of(study: StudyConfig, states: list[SizeState], m: Model) -> list[_Sweep]:
    """Each size's done runs as the design model sees them: the runs at the rule's LR lie on the path (an
    LR-sweep run tests the rule and adds nothing along it)."""
    out = []
    for s in states:
        on = [b for b, lr, _ in s.done if math.isclose(lr, lr_for(study, s, b), rel_tol=0.05)]
        out.append(_Sweep(state=s, x=[math.log(b) for b in on], r=[1.0] * len(on), cost={}, new=[]))
    return out


def _try(study, states, m, price, budget) -> tuple[float, float, list[_Sweep]]:
    """(objective, cost, sweeps) of the mandatory runs plus the greedy additions for ``states``."""
    sweeps = _sweeps_of(study, states, m)
    for sw in sweeps:
        _mandatory(sw, study, m)
    cost = sum(price(p.model, p.batch) for sw in sweeps for p in sw.new)
    if cost > budget:
        return math.inf, cost, sweeps
    cost += _greedy(study, sweeps, m, price, budget - cost)
    return _objective(study, sweeps, m), cost, sweeps


def plan_wave(study: StudyConfig, states: list[SizeState], m: Model, price, *, spent: float = 0.0) -> Wave:
    """The next wave: mandatory runs, then the greedy trade-off, within what is left of the budget.

    For an exponent target, every subset of three or more sizes that keeps the sizes with runs is weighed and
    the cheapest that meets the target is taken (a size whose runs cost more than the precision they add is left
    out; a size left out of an earlier wave stays out unless it is needed).

    Args:
        price: ``price(model, batch) -> GPU-hours`` of one run.
        spent: GPU-hours the earlier waves cost.

    Raises:
        ValueError: the first wave's target cannot be bought within the budget (saying what it can buy).
    """
    budget = study.budget_gpu_hours - spent if study.budget_gpu_hours else math.inf
    first = all(s.status == "prior" for s in states)
    subsets = [states]
    fresh = [s for s in states if s.status == "prior" and not s.done]  # sizes without runs may be left out
    if fresh and study.target.exponent_half_width and len(states) > 3:
        kept = len(states) - len(fresh)
        subsets = [[s for s in states if s not in fresh or s in c]
                   for k in range(max(3 - kept, 0), len(fresh) + 1) for c in combinations(fresh, k)]
    tried = [(_try(study, sub, m, price, budget), sub) for sub in subsets]
    met = [t for t in tried if t[0][0] <= 1.0]
    (obj, cost, sweeps), sub = min(met, key=lambda t: t[0][1]) if met else min(tried, key=lambda t: t[0][0])
    notes = []
    left = [s.model for s in states if s not in sub]
    if left:
        notes.append(f"left out: {', '.join(left)} (the target is met more cheaply without; their runs cost more"
                     " than the precision they add)")
    if not met:
        free = [_try(study, sub, m, price, math.inf)[:2] for sub in subsets]
        reach = [t for t in free if t[0] <= 1.0]
        needs = (f"the target needs about {min(c for _, c in reach):,.0f} GPU-hours" if reach else
                 f"the target is out of reach of design.max_seeds = {study.design.max_seeds} and"
                 f" design.max_batches_per_size = {study.design.max_batches_per_size} at any budget (they buy"
                 f" {_what(study, min(o for o, _ in free))})")
        what = _what(study, obj)
        if first and study.budget_gpu_hours:  # a stated budget that cannot buy the target: refused before any run
            raise ValueError(f"{_target_field(study)}: the budget of {study.budget_gpu_hours:,.0f} GPU-hours buys {what}"
                             f" at best (predicted); {needs} (raise budget_gpu_hours, design.max_seeds or"
                             " design.max_batches_per_size, or loosen the target)")
        left_text = f"the remaining budget ({budget:,.0f} GPU-hours) buys" if math.isfinite(budget) else "any budget buys"
        notes.append(f"{left_text} {what} at best; {needs}")
    points = [p for sw in sweeps for p in sw.new]
    return Wave(points=points, sizes=[sw.state for sw in sweeps], cost_gpu_hours=cost, notes=notes,
                target_met=False, predicted={"objective": obj})


def _target_field(study: StudyConfig) -> str:
    t = study.target
    return (f"target.exponent_half_width = {t.exponent_half_width:g}" if t.exponent_half_width
            else f"target.b_opt_factor = {t.b_opt_factor:g}")


def _what(study: StudyConfig, objective: float) -> str:
    """The precision an objective value means, in the target's own terms."""
    if not math.isfinite(objective):
        return "no answer (too few sizes can be bracketed)"
    if study.target.exponent_half_width:
        hw = study.target.exponent_half_width * math.sqrt(objective)
        return f"an exponent to +-{hw:.3f}" if hw < 10 else "no exponent (its sizes are unlikely to be bracketed)"
    factor = math.log(study.target.b_opt_factor) * math.sqrt(objective)
    return f"each B_opt within a factor {math.exp(factor):.2f}" if factor < math.log(100) else \
        "no B_opt of every size (some are unlikely to be bracketed)"


def _mc_objective(study: StudyConfig, pred: dict[str, Any]) -> float:
    """The objective as the simulated analysis measured it: its median interval against the target, divided by
    the chance of getting an answer at all (a size bracketed; the exponent fitted)."""
    if study.target.exponent_half_width:
        hw, p = pred["exponent"]["half_width_median"], pred["exponent"]["p_fitted"]
        return (hw / study.target.exponent_half_width) ** 2 / max(p, 1e-3) if math.isfinite(hw) else math.inf
    worst = 0.0
    for v in pred["sizes"].values():
        f, p = v["factor_median"], v["p_bracketed"]
        if not math.isfinite(f):
            return math.inf
        worst = max(worst, (math.log(f) / math.log(study.target.b_opt_factor)) ** 2 / max(p, 1e-3))
    return worst


def design_wave(study: StudyConfig, states: list[SizeState], m: Model, price, *, spent: float = 0.0,
                rounds: int = 3) -> Wave:
    """``plan_wave`` checked by its own simulated analysis. The information-matrix variance leaves out what the
    analysis adds (the basin shape's and the noise level's uncertainty, the LR rule's error, a law's scatter), so
    each round scales it by the ratio of the simulated objective to it (``Model.inflation``) and plans again.
    Of the rounds' plans, the cheapest whose simulated analysis meets the target is taken, else the most
    precise; the wave carries that plan's simulation as its prediction."""
    from batchlaw.simulator.design_predict import predict

    tried = []
    for _ in range(rounds):
        wave = plan_wave(study, states, m, price, spent=spent)
        pred = predict(study, wave.sizes, wave.points, m)
        analytic, simulated = wave.predicted["objective"], _mc_objective(study, pred)
        tried.append((simulated, wave, pred, m.inflation))
        if not (math.isfinite(analytic) and math.isfinite(simulated) and analytic > 0):
            break
        ratio = simulated / analytic
        if abs(math.log(ratio)) < math.log(1.25):
            break
        m = replace(m, inflation=m.inflation * ratio)
    met = [t for t in tried if t[0] <= 1.0]
    simulated, wave, pred, inflation = (min(met, key=lambda t: t[1].cost_gpu_hours) if met
                                        else min(tried, key=lambda t: t[0]))
    notes = list(wave.notes)
    if not met:
        notes.append(f"the simulated analysis of this plan gives {_what(study, simulated)}, short of the target: a"
                     " later wave can add runs where the data show they are needed")
    return replace(wave, notes=notes, predicted={**pred, "objective": wave.predicted["objective"],
                                                 "simulated_objective": simulated, "inflation": inflation})


def target_met(study: StudyConfig, states: list[SizeState], optima: dict[str, Any]) -> tuple[bool, str]:
    """Whether the runs so far already answer the study to its target (then no more runs are needed), and
    why (or why not), from the same estimator and law fit the report uses."""
    from batchlaw.simulator.sizelaw import fit_size_law

    bracketed = [s for s in states if s.status == "bracketed"]
    t = study.target
    if t.exponent_half_width:
        law = fit_size_law("B_opt(N)", "N", [s.num_params for s in bracketed],
                           [optima[s.model].b for s in bracketed], [optima[s.model].lo for s in bracketed],
                           [optima[s.model].hi for s in bracketed],
                           point_draws=[optima[s.model].draws for s in bracketed])
        if not law.fitted:
            return False, law.reason
        ok = law.half_width <= t.exponent_half_width
        why = (f"B_opt(N) exponent {law.exponent:.3f}, 80% interval {law.exponent_ci[0]:.3f} .. "
               f"{law.exponent_ci[1]:.3f} (+-{law.half_width:.3f}, target +-{t.exponent_half_width:g})")
        return _lr_checked(study, bracketed, ok, why)
    if len(bracketed) < len(states):
        return False, f"{len(states) - len(bracketed)} size(s) not bracketed yet"
    worst = max(math.sqrt(optima[s.model].hi / optima[s.model].lo) for s in bracketed)
    why = f"the widest B_opt interval is x/{worst:.3f} (target x/{t.b_opt_factor:g})"
    return _lr_checked(study, bracketed, worst <= t.b_opt_factor, why)


def _lr_checked(study: StudyConfig, bracketed: list[SizeState], ok: bool, why: str) -> tuple[bool, str]:
    """A target met along an LR rule the data never tested is not met: a sweep at one LR per size locates the
    optimum *given that LR*, and its interval says nothing of the rule's error (an LR 2x off moves B_opt by
    ``basin.Basin.b_opt_ratio(ln 2)``, a factor 1.3 at Step Law's shape). The LR sweep that tests the rule at
    each bracketed size (``lr.sweep_factors``; ``_mandatory``) comes first, unless the LR is fixed."""
    untested = [s.model for s in bracketed if not s.lr_tested]
    if not ok or study.lr.rule == "fixed" or not study.lr.sweep_factors or not untested:
        return ok, why
    return False, (f"{why}, but along an LR rule not yet tested at {', '.join(untested)}: an LR sweep there comes"
                   " first (the optimum along an untested rule is biased by the rule's error)")
