"""The study planner (``batchlaw design``, issue 19) against known truth and against public runs.

    python benchmarks/bench_design.py [--quick] [--studies 200] [--waves 4] [--simulations 16] [--part 1|2]

1. **Synthetic worlds with known truth.** Each world has the shipped study's six sizes
   (configs/studies/batch-sweep-180m-4b.toml), a true B_opt(N, D) law (the study's prior law times a
   factor and with a tilted exponent), a true lr_opt per size (the study's LR law times a shared factor
   and a per-size scatter), the loss basin of configs/laws/steplaw-basin.toml at each (N, D) with its
   shape drawn within the fit's bootstrap intervals (listed in that file), and per-run noise (a
   between-seed part, one sd per world drawn log-uniformly over ``SEED_SD``, plus a within-run
   standard error per run, drawn log-uniformly over ``STEP_SE``, that the planner is told as the logs
   would). Worlds where the prior law is off by a factor 2 in B_opt or in lr_opt (both directions)
   are scenarios of their own. Per world, the sequential design runs: wave 1 from the prior, the
   points are "run" in the world, the estimator and ``target_met`` read them, the next wave is planned
   with what was spent, up to ``--waves`` waves or the study's budget. Beside it, the seed grid
   (configs/grids/batch-sweep-180m-4b.toml: 42 runs at lr 3e-4) in the same world through the same
   estimator. Prints GPU-hours and runs to the target, the per-size 80% interval coverage, the
   exponent's error, interval and coverage, and the same for the seed grid.
2. **Replay of Step Law's dense runs** (Li et al. 2025, arXiv 2503.04715; data/steplaw/dense_lr_bs_loss.csv,
   17 (N, D) cells, 1,911 runs, ``smooth loss``, batch in sequences of 2048 tokens) as an oracle: a
   planned run snaps to the nearest batch and LR the cell has (within a factor sqrt 2) and returns its
   published loss; one the cell lacks, or already bought, cannot be bought. Per cell the design's
   sequential procedure runs with priors independent of Step Law's fits (DeepSeek's B_opt(C) and
   lr_opt(C)) and a basin refitted without the cell (``fit_basin`` on the other 16). Prints the runs
   and GPU-hours (6 N D FLOPs on H800s at ``MFU``) until the design's B_opt lies inside the full grid's
   near-optimal band, and whether it does when the design itself says its target is met.

The planner runs with ``design.simulations`` = ``--simulations`` (16 by default, the study's own is
48) to keep hundreds of studies tractable: its printed predictions are noisier, its choices the same
kind. Figures: docs/benchmarks.md, "Study design (issue 19)".
"""

from __future__ import annotations

import os

# One BLAS thread (small matrices; threads only contend on a shared 2-core machine). Set before numpy loads.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from batchlaw.simulator import resources  # noqa: E402
from batchlaw.simulator.basin import SHAPE, Basin, load_basin  # noqa: E402
from batchlaw.simulator.belief import model_of, observed_states, prior_states  # noqa: E402
from batchlaw.simulator.design import design_wave, target_met  # noqa: E402
from batchlaw.simulator.design_price import price  # noqa: E402
from batchlaw.simulator.sizelaw import fit_size_law  # noqa: E402
from batchlaw.simulator.study import load_study  # noqa: E402

STUDY = "batch-sweep-180m-4b"
SEED_SD = (0.001, 0.004)
"""Between-seed sd of a final loss, nats: log-uniform over this range per world. Step Law's model-free
run-to-run scatter along LR at a fixed batch is 0.0013-0.0017 (docs/benchmarks.md, Basin model) and the
basin fit's whole residual sd 0.0038 (mostly misfit of the quadratic shape) bounds it from above."""
STEP_SE = (0.0002, 0.001)
"""Within-run standard error of a final loss (mean of the last steps), nats: log-uniform per run."""
B_SD, TILT_SD, LR_SD, LR_SCATTER_SD = 0.35, 0.05, 0.25, 0.1
"""Drawn worlds: sd of ln of the B_opt law's factor, of its exponent's tilt, of ln of the LR law's shared
factor, and of each size's own ln lr_opt scatter about it."""
SCENARIOS = ("drawn", "B_opt x2", "B_opt /2", "lr_opt x2", "lr_opt /2")
QUICK_SIZES = ("sizes.models=['gpt-180m', 'gpt-360m', 'gpt-830m', 'gpt-1.4b']", "target.exponent_half_width=0.1")


# -- part 1: synthetic worlds --------------------------------------------------------------------------

def shape_intervals(path) -> dict[str, tuple[float, float]]:
    """The 10-90% bootstrap intervals of the basin's shape fields, from the comments of its preset."""
    text = path.read_text()
    found = dict((k, (float(a), float(b))) for k, a, b in re.findall(
        r"([a-z_]+) (-?\d+(?:\.\d+)?(?:e-?\d+)?)\.\.(-?\d+(?:\.\d+)?(?:e-?\d+)?)", text))
    want = [k for k in SHAPE] + [f"{k}_tpp" for k in SHAPE]
    missing = [k for k in want if k not in found]
    if missing:
        raise SystemExit(f"{path}: no bootstrap interval for {missing} in its comments")
    return {k: found[k] for k in want}


@dataclass(frozen=True)
class World:
    """One synthetic world: the truth the study is run against."""

    scenario: str
    ln_b: dict[str, float]
    """True ln B_opt (sequences) per size."""
    ln_lr: dict[str, float]
    """True ln lr_opt (at B_opt) per size."""
    basin: dict[str, Basin]
    """True basin shape per size (already ``at`` its N and D)."""
    seed_sd: float
    exponent: float
    """True exponent of B_opt in total parameters (OLS over the six sizes: exact, the law is a power law)."""


def draw_world(scenario: str, states, intervals, rng: np.random.Generator) -> World:
    """A world around the prior states (``prior_states``: the prior law's B_opt and the LR law's lr_opt)."""
    ln_f = {"B_opt x2": math.log(2), "B_opt /2": -math.log(2)}.get(scenario, rng.normal(0.0, B_SD))
    ln_g = {"lr_opt x2": math.log(2), "lr_opt /2": -math.log(2)}.get(scenario, rng.normal(0.0, LR_SD))
    tilt = rng.normal(0.0, TILT_SD)
    x = np.array([math.log(s.num_params) for s in states])
    shape = Basin(**{k: rng.uniform(*v) for k, v in intervals.items()}, tpp_ref=50.0, n_ref=5e8)
    ln_b = {s.model: s.ln_b + ln_f + tilt * (xi - x.mean()) for s, xi in zip(states, x)}
    ln_lr = {s.model: math.log(s.lr_ref) + ln_g + rng.normal(0.0, LR_SCATTER_SD) for s in states}
    basin = {s.model: shape.at(s.non_embedding, s.tokens) for s in states}
    y = np.array([ln_b[s.model] for s in states])
    return World(scenario=scenario, ln_b=ln_b, ln_lr=ln_lr, basin=basin,
                 seed_sd=float(math.exp(rng.uniform(*np.log(SEED_SD)))), exponent=float(np.polyfit(x, y, 1)[0]))


def run_points(world: World, points, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Final losses of planned points in the world: L* + basin excess + seed noise + within-run noise."""
    out = []
    for p in points:
        bas = world.basin[p.model]
        u, w = math.log(p.batch) - world.ln_b[p.model], math.log(p.lr) - world.ln_lr[p.model]
        se = float(math.exp(rng.uniform(*np.log(STEP_SE))))
        loss = 2.5 + float(bas.excess(u, w)) + rng.normal(0.0, world.seed_sd) + rng.normal(0.0, se)
        out.append({"model": p.model, "batch": p.batch, "lr": p.lr, "seed": p.seed, "loss": loss, "se": se})
    return out


def exponent_law(states, optima, seed: int = 0):
    """The B_opt(N) law over the bracketed sizes, as ``design.target_met`` fits it."""
    br = [s for s in states if s.status == "bracketed"]
    return fit_size_law("B_opt(N)", "N", [s.num_params for s in br], [optima[s.model].b for s in br],
                        [optima[s.model].lo for s in br], [optima[s.model].hi for s in br],
                        point_draws=[optima[s.model].draws for s in br], seed=seed)


def judge(world: World, states, optima) -> dict[str, Any]:
    """What the analysis says against the truth: per size covered / log error; the exponent."""
    sizes = {}
    for s in states:
        o = optima.get(s.model)
        if o is None or not o.bracketed:
            continue
        true = math.exp(world.ln_b[s.model])
        sizes[s.model] = {"covered": bool(o.lo <= true <= o.hi), "err": math.log(o.b) - world.ln_b[s.model],
                          "factor": math.sqrt(o.hi / o.lo)}
    law = exponent_law(states, optima)
    out = {"sizes": sizes, "fitted": law.fitted}
    if law.fitted:
        out.update(exponent=law.exponent, err=law.exponent - world.exponent, half=law.half_width,
                   covered=bool(law.exponent_ci[0] <= world.exponent <= law.exponent_ci[1]))
    return out


class Prices:
    """GPU-hours of one run of (model, batch) from ``design_price.price``, computed once per point."""

    def __init__(self, study):
        self.study, self.cache = study, {}

    def __call__(self, model: str, batch: int) -> float:
        if (model, batch) not in self.cache:
            self.cache.update({k: float(v["gpu_hours"]) for k, v in price(self.study, [(model, batch)]).items()})
        return self.cache[(model, batch)]


def run_study(study, basin, m0, world: World, cost, rng, *, waves: int, bootstrap: int) -> dict[str, Any]:
    """The sequential design in one world; returns the spend, the waves and the final analysis' verdict."""
    states = prior_states(study, basin)
    runs, spent, met, why, history = [], 0.0, False, "", []
    optima: dict = {}
    for wave_no in range(1, waves + 1):
        m = m0
        if runs:
            states, noise, optima = observed_states(study, basin, m0, runs, bootstrap=bootstrap)
            m = replace(m0, noise=noise)
            met, why = target_met(study, states, optima)
            history.append({"wave": wave_no - 1, "spent": spent, "runs": len(runs), "met": met,
                            **judge(world, states, optima)})
            if met:
                break
        try:
            wave = design_wave(study, states, m, cost, spent=spent)
        except ValueError as e:  # the first wave's target cannot be bought within the budget
            why = str(e)
            break
        if not wave.points:
            why = "the planner proposed no runs"
            break
        if study.budget_gpu_hours and spent + wave.cost_gpu_hours > study.budget_gpu_hours * 1.0001:
            why = f"wave {wave_no} ({wave.cost_gpu_hours:,.0f} GPU-h) would overrun the budget"
            break
        runs += run_points(world, wave.points, rng)
        spent += wave.cost_gpu_hours
    else:
        states, noise, optima = observed_states(study, basin, m0, runs, bootstrap=bootstrap)
        met, why = target_met(study, states, optima)
        history.append({"wave": waves, "spent": spent, "runs": len(runs), "met": met,
                        **judge(world, states, optima)})
    final = history[-1] if history else {"sizes": {}, "fitted": False, "spent": 0.0, "runs": 0, "met": False}
    return {"met": met, "why": why, "spent": spent, "runs": len(runs), "waves": len(history), "final": final,
            "history": history}


def seed_grid(study, basin, m0, world: World, grid_points, rng, *, bootstrap: int) -> dict[str, Any]:
    """The seed grid's runs in the world, through the same estimator and law."""
    runs = run_points(world, grid_points, rng)
    states, _, optima = observed_states(study, basin, m0, runs, bootstrap=bootstrap)
    return judge(world, states, optima)


def grid_points(study):
    """The seed grid's runs (one per point, as ``batchlaw simulate`` plans them) and their GPU-hours."""
    from batchlaw.simulator.design import Point
    from batchlaw.simulator.grid import load_grid, plan_rows, run_grid

    t = run_grid(load_grid(study.compare_grid))
    rows = [i for i in plan_rows(t) if str(t["model"][i]) in study.sizes.models]  # the study's sizes only
    points = [Point(model=str(t["model"][i]), batch=int(t["global_batch"][i]), lr=float(t["lr"][i]),
                    seed=int(t["seed"][i])) for i in rows]
    return points, float(np.nansum(t["gpu_hours"][rows]))


def synthetic_study(args, *extra: str):
    """The shipped study with the planner's simulation count and the ``--set`` overrides."""
    return load_study(STUDY, [f"design.simulations={args.simulations}", *args.overrides, *extra])


def one_world(args, k: int, scenario: str) -> dict[str, Any]:
    """Study ``k`` of a scenario: its world, the designed study in it and the seed grid in it."""
    study = synthetic_study(args)
    basin, m0 = model_of(study)
    states = prior_states(study, basin)
    rng = np.random.default_rng([args.seed, SCENARIOS.index(scenario), k])
    world = draw_world(scenario, states, shape_intervals(resources.resolve("laws", study.prior.basin, field="basin")),
                       rng)
    cost = Prices(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design = run_study(study, basin, m0, world, cost, rng, waves=args.waves, bootstrap=args.bootstrap)
        grid = seed_grid(study, basin, m0, world, grid_points(study)[0], rng, bootstrap=args.bootstrap)
    return {"scenario": scenario, "k": k, "world": world, "design": design, "grid": grid}


def _q(values, fmt="{:.3f}") -> str:
    """median [10%, 90%] of ``values`` ('-' when empty)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if not len(v):
        return "-"
    lo, mid, hi = np.percentile(v, [10, 50, 90])
    return f"{fmt.format(mid)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def _frac(flags) -> str:
    flags = list(flags)
    return f"{np.mean(flags):.0%} of {len(flags)}" if flags else "-"


def summarise(label: str, results: list[dict[str, Any]], grid_hours: float, goal: float, n_sizes: int) -> None:
    """One block of figures for ``results`` (a scenario, or all)."""
    d = [r["design"] for r in results]
    print(f"  {label} ({len(results)} studies)")
    cheap = _frac(x["met"] and x["spent"] <= goal * grid_hours for x in d)
    print(f"    design: target met in {_frac(x['met'] for x in d)}; met at <= {goal:.0%} of the seed grid's GPU-h in"
          f" {cheap}; GPU-h {_q([x['spent'] for x in d], '{:,.0f}')} ="
          f" {_q([x['spent'] / grid_hours for x in d], '{:.0%}')} of the seed grid; runs"
          f" {_q([x['runs'] for x in d], '{:.0f}')}; waves {_q([x['waves'] for x in d], '{:.0f}')}")
    for name, rows in (("design", [x["final"] for x in d]), ("seed grid", [r["grid"] for r in results])):
        fitted = [f for f in rows if f["fitted"]]
        sizes = [s for f in rows for s in f["sizes"].values()]
        err = [f["err"] for f in fitted]
        print(f"    {name:9s}: exponent fitted in {_frac(f['fitted'] for f in rows)}; error {_q(err)}"
              f" (mean {np.mean(err) if err else math.nan:+.3f}); 80% half-width {_q([f['half'] for f in fitted])};"
              f" interval covers the truth in {_frac(f['covered'] for f in fitted)}; |error| <= 0.05 in"
              f" {_frac(abs(e) <= 0.05 for e in err)}")
        e = [s["err"] for s in sizes]
        print(f"    {'':9s}  sizes bracketed {len(sizes)} of {n_sizes * len(rows)}; 80% B_opt interval covers the true"
              f" B_opt in {_frac(s['covered'] for s in sizes)}; ln(B/B_true) {_q(e)} (mean"
              f" {np.mean(e) if e else math.nan:+.3f}); interval x/{_q([s['factor'] for s in sizes])}")


def synthetic(args) -> list[dict[str, Any]]:
    """Part 1 (module docstring): prints per-scenario and overall figures; returns the per-study results."""
    study = synthetic_study(args)
    points, grid_hours = grid_points(study)
    cost = Prices(study)
    cheapest = sum(cost(p.model, p.batch) for p in points)
    per = max(1, args.studies // len(SCENARIOS))
    scen = SCENARIOS if not args.quick else SCENARIOS[:1]
    print(f"1. SYNTHETIC WORLDS: study {STUDY!r} (target exponent +-{study.target.exponent_half_width:g}, budget"
          f" {study.budget_gpu_hours:,.0f} GPU-h), up to {args.waves} waves, planner design.simulations ="
          f" {args.simulations} (study: 48), estimator bootstrap {args.bootstrap}; {per} studies per scenario"
          + (f"; study overrides {list(args.overrides)}" if args.overrides else ""))
    print(f"  worlds: B_opt law = prior x F with its exponent tilted (ln F ~ N(0, {B_SD}), tilt ~ N(0, {TILT_SD}));"
          f" lr_opt = LR law x G x size scatter (ln G ~ N(0, {LR_SD}), scatter sd {LR_SCATTER_SD}); F or G = 2 or"
          f" 1/2 in their scenarios; basin shape uniform within its 10-90% bootstrap intervals; seed sd log-uniform"
          f" {SEED_SD} nats, within-run se log-uniform {STEP_SE}")
    print(f"  seed grid {study.compare_grid!r}: {len(points)} runs at lr {sorted({p.lr for p in points})},"
          f" {grid_hours:,.0f} GPU-h as planned (8 nodes); {cheapest:,.0f} GPU-h at the design's cheapest node counts")
    stability(args)
    jobs = [(k, s) for s in scen for k in range(per)]
    t0 = time.perf_counter()
    results = _map(args, jobs)
    for s in scen:
        summarise(s, [r for r in results if r["scenario"] == s], grid_hours, args.goal, len(study.sizes.models))
    summarise("all scenarios", results, grid_hours, args.goal, len(study.sizes.models))
    print(f"  ({len(results)} studies in {time.perf_counter() - t0:.0f} s wall)")
    return results


def stability(args) -> None:
    """The first wave (the same in every world: it depends on the prior only) planned with other seeds and
    simulation counts of the planner's own simulated analysis (``design.seed``, ``design.simulations``)."""
    if not args.stability:
        return
    rows = []
    for sims in sorted({args.simulations, 48}):
        for seed in range(args.stability):
            study = synthetic_study(args, f"design.simulations={sims}", f"design.seed={seed}")
            basin, m0 = model_of(study)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    w = design_wave(study, prior_states(study, basin), m0, Prices(study))
                used = [m.removeprefix("gpt-") for m in study.sizes.models if any(p.model == m for p in w.points)]
                rows.append(f"sims {sims} seed {seed}: {len(w.points)} runs, {w.cost_gpu_hours:,.0f} GPU-h"
                            f" ({'+'.join(used)})")
            except ValueError as e:
                rows.append(f"sims {sims} seed {seed}: refused ({str(e)[:90]}...)")
    print("  first wave over planner seeds: " + "; ".join(rows))


def _map(args, jobs):
    """Every study, one line each as it finishes (``--jobs`` processes)."""
    if args.jobs <= 1:
        results = (one_world(args, k, s) for k, s in jobs)
    else:
        from concurrent.futures import ProcessPoolExecutor

        ex = ProcessPoolExecutor(args.jobs)
        results = ex.map(one_world, [args] * len(jobs), [k for k, _ in jobs], [s for _, s in jobs])
    out = []
    for r in results:
        out.append(r)
        if args.verbose:
            print(_line(r), flush=True)
    return out


def _line(r) -> str:
    """One study: its world, the design's spend and answer, the seed grid's answer."""
    w, d, g = r["world"], r["design"], r["grid"]
    f = d["final"]
    ans = (f"exp {f['exponent']:.3f} +-{f['half']:.3f} ({'covers' if f['covered'] else 'misses'})" if f["fitted"]
           else "no law")
    gans = f"exp {g['exponent']:.3f} +-{g['half']:.3f}" if g["fitted"] else "no law"
    cov = sum(s["covered"] for s in f["sizes"].values())
    return (f"    {r['scenario']:9s} #{r['k']:<3d} true exp {w.exponent:.3f} seed sd {w.seed_sd:.4f}: design"
            f" {'met' if d['met'] else 'not met'} after {d['waves']} wave(s), {d['runs']} runs,"
            f" {d['spent']:,.0f} GPU-h,"
            f" {ans}, {len(f['sizes'])} sizes bracketed ({cov} covered); seed grid {gans},"
            f" {len(g['sizes'])} bracketed ({sum(s['covered'] for s in g['sizes'].values())} covered)"
            + ("" if d["met"] else f"; stop: {d['why'][:110]}"))


# -- part 2: replay of Step Law's dense runs ---------------------------------------------------------------

SEQ = 2048  # tokens per sequence in the Step Law runs (data/PROVENANCE.md)
PEAK_FLOPS = 989.4e12  # H800 SXM dense BF16, FLOP/s (NVIDIA H800 datasheet; Step Law trained on H800s)
MFU = 0.40  # model FLOPs utilisation assumed for every run
BAND = 0.0025  # near-optimal: best loss over LR within 0.25% of the cell's minimum (Li et al. 2025, sec. 3)
SNAP = math.log(math.sqrt(2)) + 1e-9  # a planned batch or LR buys the cell's nearest within a factor sqrt 2


def load_cells(data) -> dict[tuple[float, float], dict[tuple[float, float], float]]:
    """Step Law's dense runs: (N, D) -> {(batch in sequences, lr): smooth loss}."""
    from batchlaw.simulator.csvio import read_csv

    t = read_csv(data / "steplaw" / "dense_lr_bs_loss.csv")
    cells: dict = {}
    for n, d, b, lr, loss in zip(t["N"], t["D"], t["bs"], t["lr"], t["smooth loss"]):
        if math.isfinite(loss):
            cells.setdefault((float(n), float(d)), {})[(float(b), float(lr))] = float(loss)
    return cells


def band_of(runs: dict[tuple[float, float], float]) -> tuple[float, float]:
    """The near-optimal band of a cell: lowest and highest batch whose best loss over LR is within BAND."""
    best: dict[float, float] = {}
    for (b, _), loss in runs.items():
        best[b] = min(best.get(b, math.inf), loss)
    floor = min(best.values())
    near = [b for b, v in best.items() if v <= floor * (1 + BAND)]
    return min(near), max(near)


def gpu_hours(n: float, d: float) -> float:
    """One run's GPU-hours: 6 N D FLOPs (Kaplan et al. 2020, eq. 2.1) at MFU of PEAK_FLOPS."""
    return 6.0 * n * d / (MFU * PEAK_FLOPS) / 3600.0


def snap(runs, batch: float, lr: float) -> tuple[float, float] | None:
    """The cell's configuration nearest a planned (batch, lr): nearest batch, then nearest LR at it."""
    batches = sorted({b for b, _ in runs})
    b = min(batches, key=lambda x: abs(math.log(x / batch)))
    if abs(math.log(b / batch)) > SNAP:
        return None
    lrs = [y for x, y in runs if x == b]
    y = min(lrs, key=lambda v: abs(math.log(v / lr)))
    return (b, y) if abs(math.log(y / lr)) <= SNAP else None


def cell_basin(cells, key, loo: bool) -> Basin:
    """The basin prior for one cell: refitted on the other cells (``loo``), else the shipped preset."""
    if not loo:
        return load_basin("steplaw-basin")
    from batchlaw.simulator.basin import fit_basin

    n, d, b, lr, loss = [], [], [], [], []
    for k, runs in cells.items():
        if k == key:
            continue
        for (bb, y), v in runs.items():
            n.append(k[0]), d.append(k[1]), b.append(bb * SEQ), lr.append(y), loss.append(v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_basin(n, d, b, lr, loss, max_excess=0.05, scale=("tpp",),
                         citation="steplaw-basin refitted without the replayed cell").basin


def cell_state(study, key, runs, basin: Basin):
    """The belief about one cell before any run: DeepSeek's B_opt(C) and lr_opt(C) (C = 6 N D), the LR snapped
    to the cell's nearest LR (the rule's LR as a user of this grid would set it), the basin at (N, D)."""
    from batchlaw.simulator.belief import law_inputs
    from batchlaw.simulator.design import SizeState, rule_slope
    from batchlaw.simulator.laws import load_law
    from batchlaw.simulator.optimum import Shape

    n, d = key
    b_law, lr_law = load_law(study.prior.b_opt_law), load_law(study.lr.law)
    b = float(b_law.predict(*law_inputs(b_law, n, d))) / SEQ
    lr = float(lr_law.predict(*law_inputs(lr_law, n, d)))
    lr = min({y for _, y in runs}, key=lambda v: abs(math.log(v / lr)))
    cell = basin.at(n, d)
    full = Shape.of(cell, ratio_sd=study.prior.shape_sd, ridge_sd=study.prior.ridge_sd)
    path, factor = full.along(rule_slope(study))
    return SizeState(model=f"N{n / 1e6:.0f}M-D{d / 1e9:g}B", num_params=int(n), non_embedding=n, tokens=d,
                     seq_len=SEQ, ln_b=math.log(b), ln_b_sd=study.prior.b_opt_sd, lr_ref=lr, a=cell.a_below * factor,
                     path_ratio=path.ratio, c=cell.c_below, shape=full)


def replay_study(args):
    """The study the replay plans each cell with: a per-cell target, priors independent of Step Law, one seed
    per configuration (the oracle has one run of each)."""
    return load_study(STUDY, ["target.exponent_half_width=0", f"target.b_opt_factor={args.factor}",
                              f"prior.b_opt_law='{args.b_law}'", f"lr.law='{args.lr_law}'", "budget_gpu_hours=0",
                              "base=''", "compare_grid=''", "design.max_seeds=1",
                              f"design.simulations={args.simulations}"])


def replay_cell(args, study, key, runs, basin: Basin) -> dict[str, Any]:
    """The design's waves on one cell of the oracle; what it spent until its B_opt was in the band, and at stop."""
    from batchlaw.simulator.design import Model
    from batchlaw.simulator.noisemodel import NoiseModel

    m0 = Model(noise=NoiseModel(seed_sd=basin.noise_sd, prior_dof=study.prior.prior_dof,
                                source="noise_sd of the basin refit"))
    s0 = cell_state(study, key, runs, basin)
    lo, hi = band_of(runs)
    one = gpu_hours(*key)
    states, bought, obs, dropped, first, met, why, est = [s0], set(), [], 0, None, False, "", None
    for wave_no in range(1, args.replay_waves + 2):
        m = m0
        if obs:
            states, noise, optima = observed_states(study, basin, m0, obs, bootstrap=args.bootstrap, prior=[s0])
            m = replace(m0, noise=noise)
            o = optima.get(s0.model)
            est = (o.b, o.lo, o.hi) if o is not None and o.bracketed else None
            if est and lo <= est[0] <= hi and first is None:
                first = len(obs)
            met, why = target_met(study, states, optima)
            if met or wave_no > args.replay_waves:
                break
        wave = design_wave(study, states, m, lambda model, batch: one)
        new = 0
        for p in wave.points:
            c = snap(runs, p.batch, p.lr)
            if c is None or c in bought:
                dropped += 1
                continue
            bought.add(c)
            obs.append({"model": s0.model, "batch": c[0], "lr": c[1], "seed": p.seed, "loss": runs[c], "se": 0.0})
            new += 1
        if not new:
            why = "no planned run is in the grid"
            break
    return {"key": key, "name": s0.model, "full": len(runs), "band": (lo, hi), "prior": math.exp(s0.ln_b),
            "lr_rule": s0.lr_ref, "runs": len(obs), "first": first, "met": met, "why": why, "est": est,
            "inside": bool(est and lo <= est[0] <= hi), "dropped": dropped, "gpu_h": one,
            "waves": wave_no - 1 if obs else 0}


def replay(args) -> list[dict[str, Any]]:
    """Part 2 (module docstring): per-cell lines and totals."""
    cells = load_cells(args.data)
    study = replay_study(args)
    keys = sorted(cells)[: 2 if args.quick else None]
    basin = "refitted without the cell" if args.loo else "steplaw-basin (fitted on these very cells: circular)"
    print(f"2. REPLAY of Step Law's dense runs ({sum(len(v) for v in cells.values())} runs, {len(cells)} cells;"
          f" {len(keys)} replayed): target each B_opt x/{args.factor:g}, priors {study.prior.b_opt_law} and"
          f" {study.lr.law} (C = 6ND), basin {basin}, up to {args.replay_waves} waves, one seed per configuration;"
          f" GPU-h = 6ND / ({MFU:.0%} x H800 {PEAK_FLOPS / 1e12:.0f} TFLOP/s); band: batches within {BAND:.2%} of the"
          f" cell's best loss")
    print(f"  {'cell':14s} {'full':>4s} {'band (seqs)':>11s} {'best LR':>8s} {'prior':>5s} {'LR rule':>8s}"
          f" {'to band':>7s} {'at stop':>7s} {'met':>3s} {'B_opt [80%] at stop':>19s} {'in band':>7s} {'dropped':>7s}")
    out = []
    for key in keys:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = replay_cell(args, study, key, cells[key], cell_basin(cells, key, args.loo))
        out.append(r)
        est = f"{r['est'][0]:.0f} [{r['est'][1]:.0f}, {r['est'][2]:.0f}]" if r["est"] else "not bracketed"
        best_lr = min(cells[key], key=cells[key].get)[1]
        print(f"  {r['name']:14s} {r['full']:4d} {r['band'][0]:5.0f}..{r['band'][1]:<4.0f} {best_lr:8.2g}"
              f" {r['prior']:5.0f} {r['lr_rule']:8.2g} {'-' if r['first'] is None else r['first']:>7} {r['runs']:7d}"
              f" {'yes' if r['met'] else 'no':>3s} {est:>19s} {'yes' if r['inside'] else 'no':>7s} {r['dropped']:7d}")
    _replay_totals(out)
    return out


def _replay_totals(out: list[dict[str, Any]]) -> None:
    full = sum(r["full"] for r in out)
    full_h = sum(r["full"] * r["gpu_h"] for r in out)
    stop, stop_h = sum(r["runs"] for r in out), sum(r["runs"] * r["gpu_h"] for r in out)
    found = [r for r in out if r["first"] is not None]
    first, first_h = sum(r["first"] for r in found), sum(r["first"] * r["gpu_h"] for r in found)
    print(f"  full grid: {full} runs, {full_h:,.0f} GPU-h")
    print(f"  design at its own stop: {stop} runs ({stop / full:.1%}), {stop_h:,.0f} GPU-h ({stop_h / full_h:.1%});"
          f" target met in {sum(r['met'] for r in out)} of {len(out)} cells; B_opt inside the band in"
          f" {sum(r['inside'] for r in out)} of {len(out)}")
    print(f"  design until its B_opt first lay inside the band (an oracle stop): {len(found)} of {len(out)} cells,"
          f" {first} runs ({first / max(sum(r['full'] for r in found), 1):.1%} of those cells' runs),"
          f" {first_h:,.0f} GPU-h ({first_h / max(sum(r['full'] * r['gpu_h'] for r in found), 1e-9):.1%})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one small study and two cells (seconds; CI)")
    ap.add_argument("--part", type=int, choices=(1, 2), help="only part 1 (synthetic) or 2 (replay)")
    ap.add_argument("--studies", type=int, default=200, help="synthetic studies, split over the scenarios")
    ap.add_argument("--waves", type=int, default=4, help="most waves per synthetic study")
    ap.add_argument("--replay-waves", type=int, default=4, help="most waves per replayed cell")
    ap.add_argument("--simulations", type=int, default=16, help="design.simulations inside the planner")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates of the estimator")
    ap.add_argument("--goal", type=float, default=0.40, help="GPU-hours goal as a fraction of the seed grid's")
    ap.add_argument("--factor", type=float, default=1.25, help="replay: each cell's B_opt target (x/factor)")
    ap.add_argument("--b-law", default="deepseek-batch", help="replay: prior B_opt law (independent of Step Law)")
    ap.add_argument("--lr-law", default="deepseek-lr", help="replay: LR law (steplaw-lr is circular: a diagnosis)")
    ap.add_argument("--no-loo", dest="loo", action="store_false", help="replay with the shipped basin (circular)")
    ap.add_argument("--jobs", type=int, default=1, help="synthetic studies run in parallel processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="part 1: override a key of the study, e.g. prior.lr_scatter_sd=0.1")
    ap.add_argument("--stability", type=int, default=5, help="part 1: planner seeds the first wave is planned with")
    ap.add_argument("--verbose", action="store_true", help="one line per synthetic study")
    ap.add_argument("--data", type=Path, default=resources.data_root(), help="folder holding steplaw/")
    a = ap.parse_args(argv)
    if a.quick:  # one study of four sizes (a looser target: four small sizes cannot buy +-0.05), two waves
        a.studies, a.waves, a.simulations, a.bootstrap, a.stability = 1, 2, 8, 60, 0
        a.overrides = [*QUICK_SIZES, *a.overrides]
    if not (a.data / "steplaw" / "dense_lr_bs_loss.csv").is_file():
        raise SystemExit(f"--data {str(a.data)!r}: no steplaw/dense_lr_bs_loss.csv; pass a folder that holds it")
    return a


def run(a: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Both parts (or the one ``--part`` names); returns their per-study and per-cell results."""
    t0 = time.perf_counter()
    out = {}
    if a.part in (None, 1):
        out["synthetic"] = synthetic(a)
    if a.part in (None, 2):
        out["replay"] = replay(a)
    print(f"total {time.perf_counter() - t0:.0f} s wall")
    return out


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
