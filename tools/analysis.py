"""From run summaries to the answer: optimal and critical batch per model, laws across sizes,
extrapolation, published overlays, and never a claim the data do not carry.

- Optimal batch of a model at its token budget: the basin of final loss over ln(batch) (and ln(lr) when a
  batch was run at several learning rates) through its constant-batch runs, by the one estimator of
  ``simulator.optimum`` (the basin of Li et al. 2025, sec. 3, its shape from the basin prior). A sweep is
  one model size at one token budget and sequence length; its runs may differ in learning rate (a rule of
  the batch, or an LR sweep) and seed. The optimum is *bracketed* when the best batch has a batch on each
  side worse by more than the noise of the difference (``Z80`` standard deviations counting each run's
  within-run error and the between-seed noise); only then is B_opt a number, with an 80% interval from a
  parametric bootstrap that draws the seed noise from its posterior. An optimum at the edge of the sweep,
  or on a side no batch is separably worse, is a bound (``<= 4``, ``>= 32``, ``~ 16`` when flat), marked,
  and kept out of the laws (edge bounds enter them with ``include_bounds``).
- The noise: between-seed spread of final losses is learned from the study (repeated seeds, and the
  residuals of each sweep's basin fit) on top of a stated prior (``simulator.noisemodel``); every interval
  carries it.
- Laws across sizes: B_opt(N), B_opt(D), B_crit(N) by ``simulator.sizelaw`` (OLS in log space, exponent
  interval from each point's bootstrap draws plus any lack of fit).
- The critical batch per model is the noise scale B_simple = tr(Sigma) / |G|^2 near the end of
  training (McCandlish et al. 2018, eq. 2.8 / sec. 2.2), in sequences, over the constant-batch runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchlaw.simulator import laws
from batchlaw.simulator.noisemodel import NoiseModel
from batchlaw.simulator.optimum import Z80, Optimum, Shape, locate
from batchlaw.simulator.optimum import learn_noise as learn_study_noise
from batchlaw.simulator.sizelaw import Law, fit_size_law
from batchlaw.tools.logs import RunSummary

__all__ = ["Law", "ModelOptimum", "StudyResult", "Z80", "analyse", "fit_size_law", "locate", "learn_noise", "priors"]


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
    curve: tuple[float, ...] | None = None
    """The fitted basin (``simulator.optimum.curve_at`` evaluates it)."""
    fit_batches: tuple[float, float] | None = None
    """The batch range the basin was fitted on (``optimum.Optimum.fit_batches``): where the curve holds."""
    seq_len: int = 0
    """Sequence length of the sweep's runs (a sweep never mixes two)."""
    budget: float = float("nan")
    """The sweep's token budget (``train.tokens``; for logs without one, the reached tokens its runs share
    within one step's overshoot: ``_budgets``)."""
    lr: float = float("nan")
    """The learning rate of the best run; with ``lr_varied``, the fitted optimal LR at the vertex."""
    lrs: list[float] = field(default_factory=list)
    """Peak learning rate of each run in ``batches`` (NaN where the log does not say)."""
    lr_varied: bool = False
    """True when some batch ran at two or more LRs (the optimum is then over LR too); else B_opt is the
    optimum along the sweep's LR rule."""
    draws: Any = None
    """Bootstrap draws of ln B_opt (the laws redraw each size from them)."""
    loss_sd: list[float] = field(default_factory=list)
    """Each run's final-loss standard deviation about the basin: within-run and between-seed noise."""

    @property
    def b_opt_text(self) -> str:
        """'12.3', '<= 4', '>= 32', '~ 16 (flat: ...)' or '4 (one batch)'."""
        if self.bound == "=":
            return f"{self.b_opt:.3g} (one batch)"
        if self.bound == "~":
            return f"~ {self.b_opt:.3g} (flat: no batch separably worse)"
        return f"{self.bound} {self.b_opt:.3g}" if self.bound else f"{self.b_opt:.3g}"


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


def priors(study: str | None = None, basin: str | None = None, seed_sd: float | None = None):
    """(basin, noise prior, shape_sd, ridge_sd, fit_window) for an analysis: a study's priors, or the basin preset's with
    its fitted noise_sd; ``basin`` and ``seed_sd`` override."""
    from batchlaw.simulator.basin import load_basin
    from batchlaw.simulator.noisemodel import NoiseModel
    from batchlaw.simulator.study import PriorConfig, load_study

    p = load_study(study).prior if study else PriorConfig()
    b = load_basin(basin or p.basin)
    if seed_sd is not None and not (seed_sd > 0 and seed_sd < float("inf")):
        raise ValueError(f"--seed-sd = {seed_sd}: a between-seed sd in nats, a finite number > 0")
    sd = seed_sd or p.seed_sd or b.noise_sd
    source = ("--seed-sd" if seed_sd else f"study {study!r} prior.seed_sd" if study and p.seed_sd
              else f"noise_sd of basin {basin or p.basin!r}")
    if not sd > 0:
        raise ValueError(f"basin {basin or p.basin!r} has no noise_sd: give --seed-sd (the between-seed sd prior, nats)")
    return b, NoiseModel(seed_sd=sd, prior_dof=p.prior_dof, source=source), p.shape_sd, p.ridge_sd, p.fit_window


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


def _sweeps(runs: list[RunSummary]) -> dict[tuple, list[RunSummary]]:
    """Completed constant-batch runs grouped into sweeps: one size at one budget and sequence length (runs at
    other learning rates or seeds of a sweep are part of it: its basin spans ln B x ln lr)."""
    groups: dict[tuple, list[RunSummary]] = {}
    done = [r for r in runs if r.status == "completed"]
    budgets = _budgets(done)
    for r in done:
        groups.setdefault((r.num_params, budgets[id(r)], r.seq_len), []).append(r)
    return groups


def _locate(rs: list[RunSummary], noise: NoiseModel, shape: Shape, bootstrap: int) -> Optimum:
    b, loss, lr, se = _arrays(rs)  # ramps are reported, not fitted
    return locate(b, loss, lrs=lr, loss_se=se, noise=noise, shape=shape, bootstrap=bootstrap)


def sweep_shape(rs: list[RunSummary], budget: float, basin: Any, shape_sd: float, ridge_sd: float,
                fit_window: float = 0.05) -> Shape:
    """The basin's shape at this sweep's size and budget (``basin.Basin.at`` with Step Law's N, the
    non-embedding parameters), with the shape uncertainty; a symmetric parabola without a basin."""
    if basin is None:
        return Shape(ratio_sd=shape_sd, ridge_sd=ridge_sd, fit_window=fit_window)
    from batchlaw.simulator.belief import non_embedding_params

    try:
        n = non_embedding_params(rs[0].spec().model)
    except ValueError:
        n = float(rs[0].num_params)
    cell = basin.at(max(n, 1.0), max(budget, 1.0) if budget > 0 else float(max(rs[0].tokens, 1)))
    return Shape.of(cell, ratio_sd=shape_sd, ridge_sd=ridge_sd, fit_window=fit_window)


def _arrays(rs: list[RunSummary]) -> tuple[list, list, list, list]:
    const = [r for r in rs if not r.is_ramp]
    return ([r.global_batch for r in const], [r.final_loss for r in const], [_lr(r) for r in const],
            [r.final_loss_se for r in const])


def learn_noise(sweeps: dict[tuple, list[RunSummary]], prior: NoiseModel, shapes: dict[tuple, Shape]) -> NoiseModel:
    """The between-seed noise learned from a study's sweeps on top of ``prior`` (``optimum.learn_noise``, each
    sweep with the basin shape at its size)."""
    ss, dof = 0.0, 0.0
    for key, rs in sweeps.items():
        one = learn_study_noise([_arrays(rs)], prior, shapes[key])
        ss, dof = ss + one.data_ss, dof + one.data_dof
    return prior.updated(ss, dof, f"{dof:g} dof from the study's runs (fit residuals and repeated seeds)") if dof else prior


def _per_model(sweeps: dict[tuple, list[RunSummary]], noise: NoiseModel, shapes: dict[tuple, Shape],
               bootstrap: int) -> list[ModelOptimum]:
    out = []
    for (n, budget, seq_len), rs in sorted(sweeps.items()):
        const = [r for r in rs if not r.is_ramp]
        if not const:
            continue
        o = _locate(rs, noise, shapes[(n, budget, seq_len)], bootstrap)
        best = min(const, key=lambda r: r.final_loss)
        out.append(ModelOptimum(
            model_name=rs[0].model_name, num_params=n, tokens=int(np.median([r.tokens for r in rs])), b_opt=o.b,
            b_opt_lo=o.lo, b_opt_hi=o.hi, b_crit=_median(r.b_simple for r in const),
            b_crit_lo=_median(r.b_simple_lo for r in const), b_crit_hi=_median(r.b_simple_hi for r in const),
            best_loss=float(best.final_loss), n_runs=len(rs), bracketed=o.bracketed,
            bound=o.bound if not o.bracketed else "", interval_method=o.method,
            batches=[float(r.global_batch) for r in const], losses=[float(r.final_loss) for r in const],
            lrs=[_lr(r) for r in const], curve=o.curve, fit_batches=o.fit_batches, seq_len=int(seq_len),
            lr=o.lr if o.lr_varied and o.bracketed else _lr(best), lr_varied=o.lr_varied, budget=float(budget),
            draws=o.draws, loss_sd=[float(v) for v in noise.run_sd([r.final_loss_se for r in const])]))
    return out


def analyse(runs: list[RunSummary], *, noise: NoiseModel | None = None, basin: Any = None,
            shape_sd: float = 0.25, ridge_sd: float = 0.1, fit_window: float = 0.05, extrapolate_n: float | None = None, bootstrap: int = 500,
            include_bounds: bool = False, min_sizes: int = 3, max_exponent_width: float = 1.0) -> StudyResult:
    """Optima per model, laws across models (only where the data carry one), extrapolation, overlays.

    Args:
        runs: run summaries (``logs.load_runs``); only completed runs count.
        noise: the prior of the between-seed noise; the study's own runs update it (``learn_noise``). None:
            with ``basin`` also None, the shipped priors (``priors()``: Step Law's basin and its noise_sd).
        basin: the basin prior (``basin.load_basin``): each sweep's shape at its size.
        shape_sd, ridge_sd: uncertainty of the basin's asymmetry (ln) and ridge (the study's ``prior`` defaults).
        extrapolate_n: a parameter count to extrapolate B_opt to (only with a determined law).
        bootstrap: resamples of each optimum's interval.
        include_bounds: also fit the laws on edge optima (bounds), marked as such in the report.
        min_sizes: model sizes a law needs.
        max_exponent_width: a law whose 80% exponent interval is wider is "not determined".
    """
    if noise is None:
        basin, noise, shape_sd, ridge_sd, fit_window = (priors() if basin is None else
                                                         (basin, priors()[1], shape_sd, ridge_sd, fit_window))
    sweeps = _sweeps(runs)
    shapes = {key: sweep_shape(rs, key[1], basin, shape_sd, ridge_sd, fit_window) for key, rs in sweeps.items()}
    noise = learn_noise(sweeps, noise, shapes)
    optima = _per_model(sweeps, noise, shapes, bootstrap)
    best = {(o.num_params, o.budget, o.seq_len): o for o in optima}
    use = [o for o in best.values() if o.bracketed or (include_bounds and at_edge(o))]
    n_edge = sum(1 for o in best.values() if not o.bracketed)
    why = (f"{n_edge} of {len(best)} sizes have no bracketed optimum (at the edge of the batch sweep, or not"
           " separable from their neighbours within the loss noise)"
           + ("" if include_bounds else ", and such bounds are kept out of laws unless --include-bounds")) if n_edge else ""
    kw = {"min_sizes": min_sizes, "max_exponent_width": max_exponent_width}
    pick = (lambda attr: [getattr(o, attr) for o in use])  # noqa: E731
    draws = [o.draws if o.bracketed else None for o in use]
    law_n = fit_size_law("B_opt(N)", "N", pick("num_params"), pick("b_opt"), pick("b_opt_lo"), pick("b_opt_hi"),
                         point_draws=draws, why_missing=why, **kw)
    # B_opt(D) across token budgets as planned (train.tokens), not the tokens each run reached: runs of one
    # budget overshoot it by up to a batch, which must not pass for a spread of budgets
    law_d = fit_size_law("B_opt(D)", "D", pick("budget"), pick("b_opt"), pick("b_opt_lo"), pick("b_opt_hi"),
                         point_draws=draws, why_missing=why, what="token budget", **kw)
    per = list(best.values())
    law_c = fit_size_law("B_crit(N)", "N", [o.num_params for o in per], [o.b_crit for o in per],
                         [o.b_crit_lo for o in per], [o.b_crit_hi for o in per], **kw)
    extra: dict[str, Any] = {}
    if extrapolate_n:
        extra = {"N": float(extrapolate_n)}
        if law_n.determined:
            extra["b_opt"] = law_n.predict(extrapolate_n)
            extra["b_opt_range"] = tuple(float(v[0]) for v in law_n.predict_range([extrapolate_n]))
        if law_c.determined and not law_c.includes_zero:
            extra["b_crit"] = law_c.predict(extrapolate_n)
    seq = (runs[0].seq_len or 1) if runs else 1
    d = [o.tokens for o in optima]
    published = {"steplaw_b_opt_seqs": [float(laws.load_law("steplaw-batch").predict(t) / seq) for t in d]}
    return StudyResult(optima=optima, b_opt_vs_n=law_n, b_opt_vs_d=law_d, b_crit_vs_n=law_c, extrapolation=extra,
                       published=published, settings={"include_bounds": include_bounds, "min_sizes": min_sizes,
                                                      "max_exponent_width": max_exponent_width,
                                                      "noise": noise.describe(), "noise_model": noise})
