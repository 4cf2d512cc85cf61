"""What a study believes about each size before its first wave and after each one.

Before: the prior B_opt law (Step Law's by default, Li et al. 2025: B_opt = 0.58 D^0.571 tokens) gives each
size's centre, ``prior.b_opt_sd`` its uncertainty; the LR law gives lr_opt at that centre. After: each
size's runs go through the analysis' estimator (``optimum.locate``) with the noise learned from the whole
study (``optimum.learn_noise``): a bracketed size gets the posterior of its vertex (centre and sd of the
bootstrap draws), a bound keeps the prior's uncertainty beyond its edge, and an LR sweep that located the
LR optimum corrects the rule at that size (``lr_scale``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from batchlaw.simulator.design import Model, SizeState, lr_for, rule_slope
from batchlaw.simulator.laws import load_law
from batchlaw.simulator.noisemodel import NoiseModel
from batchlaw.simulator.optimum import Shape, learn_noise, locate
from batchlaw.simulator.params import num_params
from batchlaw.simulator.spec import ModelShape, load_model
from batchlaw.simulator.study import StudyConfig

__all__ = ["law_inputs", "non_embedding_params", "observed_states", "prior_states"]


def non_embedding_params(m: ModelShape) -> float:
    """Parameters without the input embedding and the output layer, as Step Law counts N (Li et al. 2025,
    sec. 2: N excludes embeddings; their released N equals layers x (4 h^2 + 3 h ffn) exactly)."""
    return float(num_params(m) - m.vocab * m.hidden * (1 if m.tied_embeddings else 2))


def law_inputs(law: Any, n: float, d: float) -> list[float]:
    """A preset's inputs by name: N (non-embedding parameters), D (tokens), C (6 N D FLOPs, Kaplan et al.
    2020, eq. 2.1)."""
    values = {"N": n, "D": d, "C": 6.0 * n * d}
    missing = [v for v in law.variables if v not in values]
    if missing:
        raise ValueError(f"law {law.citation or law}: variable {missing[0]!r} unknown; allowed are N, D, C")
    return [values[v] for v in law.variables]


def prior_states(study: StudyConfig, basin: Any) -> list[SizeState]:
    """Each size's belief before any run: centred on the prior B_opt law, with the LR law's lr_opt there, and
    the basin's shape at its N and D (``basin.Basin.at``; curvatures times ``prior.curvature_scale``)."""
    b_law = load_law(study.prior.b_opt_law)
    lr_law = load_law(study.lr.law) if study.lr.rule == "law" else None
    out = []
    for name in study.sizes.models:
        shape = load_model(name)
        n_all = num_params(shape)
        n = non_embedding_params(shape)
        d = round(n_all * study.sizes.tokens_per_param)
        b = float(b_law.predict(*law_inputs(b_law, n, d)))
        if getattr(b_law, "unit", "") == "tokens":
            b /= shape.seq_len
        centre = math.log(max(b, 1.0))
        lr_ref = float(lr_law.predict(*law_inputs(lr_law, n, d))) if lr_law is not None else math.nan
        cell = basin.at(n, float(d))
        k = study.prior.curvature_scale
        full = Shape.of(cell, ratio_sd=study.prior.shape_sd, ridge_sd=study.prior.ridge_sd,
                        fit_window=study.prior.fit_window)
        path, factor = full.along(rule_slope(study))
        out.append(SizeState(model=name, num_params=n_all, non_embedding=n, tokens=float(d), seq_len=shape.seq_len,
                             ln_b=centre, ln_b_sd=study.prior.b_opt_sd, lr_ref=lr_ref, a=cell.a_below * k * factor,
                             path_ratio=path.ratio, c=cell.c_below * k, shape=full))
    return out


def observed_states(study: StudyConfig, basin: Any, m: Model, runs: Sequence[Mapping[str, Any]],
                    *, bootstrap: int = 200, prior: Sequence[SizeState] | None = None
                    ) -> tuple[list[SizeState], NoiseModel, dict[str, Any]]:
    """(states, learned noise, each size's ``optimum.Optimum``) after the runs so far.

    Args:
        runs: completed runs, each with ``model``, ``batch``, ``lr``, ``seed``, ``loss``, ``se``.
        prior: the states before any run (default ``prior_states(study, basin)``: the study's models); given,
            any sizes can be studied (e.g. the (N, D) cells of published runs, which have no model config).
    """
    states = list(prior) if prior is not None else prior_states(study, basin)
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        by_model.setdefault(str(r["model"]), []).append(r)
    sweeps = {s.model: _sweep(by_model.get(s.model, [])) for s in states}
    shapes = {s.model: s.shape for s in states}
    noise = _learn(sweeps, shapes, m.noise)
    out, optima = [], {}
    for s in states:
        b, loss, lr, se, seeds = sweeps[s.model]
        if not len(b):
            out.append(s)
            continue
        o = locate(b, loss, lrs=lr, loss_se=se, noise=noise, shape=s.shape, bootstrap=bootstrap)
        optima[s.model] = o
        done = tuple((int(x), float(y), int(z)) for x, y, z in zip(b, lr, seeds))
        out.append(_update(study, s, o, done, m))
    return out, noise, optima


def _learn(sweeps, shapes, prior: NoiseModel) -> NoiseModel:
    """The noise learned over every size's sweep, each with its own basin shape: one update per size."""
    noise, ss, dof, notes = prior, 0.0, 0.0, []
    for model, sweep in sweeps.items():
        if len(sweep[0]):
            one = learn_noise([sweep], prior, shapes[model])
            ss, dof = ss + one.data_ss, dof + one.data_dof
    return prior.updated(ss, dof, f"{dof:g} dof from the study's sweeps") if dof else noise


def _sweep(runs):
    cols = [np.array([float(r[k]) for r in runs]) for k in ("batch", "loss", "lr", "se", "seed")]
    return cols[0], cols[1], cols[2], cols[3], cols[4]


def _update(study: StudyConfig, s: SizeState, o, done, m: Model) -> SizeState:
    step = math.log(study.design.spacing)
    batches = sorted({b for b, _, _ in done})
    if o.bracketed and o.draws is not None:
        centre, sd, status = float(np.median(o.draws)), float(np.std(o.draws)), "bracketed"
    elif o.bracketed:  # the bracket alone (too few runs near the floor to fit): its 80% range
        centre, sd, status = math.log(o.b), (math.log(o.hi) - math.log(o.lo)) / (2 * 1.2816), "bracketed"
    elif o.bound == "<=":  # at or below the best batch (no batch below it separably worse)
        centre, sd, status = math.log(o.b) - step / 2, s.ln_b_sd, "<="
    elif o.bound == ">=":
        centre, sd, status = math.log(o.b) + step / 2, s.ln_b_sd, ">="
    else:
        centre, sd, status = math.log(o.b), max(s.ln_b_sd, (math.log(batches[-1]) - math.log(batches[0])) / 2), o.bound
    lr_scale = s.lr_scale
    if o.lr_varied and o.bracketed and math.isfinite(o.lr) and math.isfinite(s.lr_ref):
        rule = lr_for(study, replace(s, lr_scale=1.0), o.b)
        lr_scale = o.lr / rule  # the fitted LR optimum at the vertex against the rule's LR there
    return replace(s, ln_b=centre, ln_b_sd=max(sd, 1e-3), status=status, lr_scale=lr_scale, lr_tested=o.lr_varied,
                   done=done)


def model_of(study: StudyConfig) -> tuple[Any, Model]:
    """(the study's basin preset, the planner's noise model): the noise prior is ``prior.seed_sd`` or, when 0,
    the basin's ``noise_sd`` (run-to-run scatter about the basin fitted on Step Law's public runs)."""
    from batchlaw.simulator.basin import load_basin

    basin = load_basin(study.prior.basin)
    p = study.prior
    if p.seed_sd:
        sd, source = p.seed_sd, f"prior.seed_sd of study {study.name!r}"
    else:
        sd, source = basin.noise_sd, f"noise_sd of basin {p.basin!r} ({basin.citation or 'no citation'})"
    if not sd > 0:
        raise ValueError(f"prior.seed_sd = 0 and basin {p.basin!r} has no noise_sd: state the between-seed noise"
                         " prior (prior.seed_sd, nats)")
    return basin, Model(noise=NoiseModel(seed_sd=sd, prior_dof=p.prior_dof, source=source), step_se=p.step_se)
