"""``batchlaw design STUDY``: plan a batch-size study against a precision target and a GPU-hour budget.

Prints, before anything is launched, for each size the belief about its optimal batch, the runs planned
(batches, learning rates, seeds, node counts), the predicted chance that the wave brackets its optimum and
the predicted width of its interval, the predicted interval of the B_opt(N) exponent, and the GPU-hours,
beside the same figures for the study's naive full grid. ``--out PLAN.csv`` writes the plan that
``batchlaw submit PLAN.csv`` launches exactly (with its sidecar ``PLAN.resolved.json``).

``--next LOGDIR`` plans the next wave from the logs of the waves so far: it refits each size's basin and the
noise, says when the target is met (then no more runs are needed and no plan is written), and otherwise
proposes the runs that buy the most precision per GPU-hour. Runs already done are never planned again.
"""

from __future__ import annotations

import argparse
import math
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="study name (configs/studies) or TOML")
    parser.add_argument("--next", dest="logdir", metavar="LOGDIR",
                        help="folder of the run logs of the waves so far: plan the next wave from them")
    parser.add_argument("--out", help="plan CSV to write (submit launches it); default: print only")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a study key, e.g. --set target.exponent_half_width=0.08")


def _runs(logdir: str, study, sizes) -> tuple[list[dict], float, list[str]]:
    """(observations of the study's completed runs, GPU-hours they used, notes on runs left out)."""
    from batchlaw.tools.analysis import _budget, _lr
    from batchlaw.tools.logs import find_logs, load_runs

    planned = {s.model: s.tokens for s in sizes}
    obs, spent, notes, other = [], 0.0, [], 0
    if not find_logs(logdir):
        return obs, spent, [f"{logdir} holds no run logs yet: this is the first wave"]
    for r in load_runs(logdir):
        if r.status != "completed":
            continue
        gpus = float(r.layout.get("world_size", 1) or 1)
        if math.isfinite(r.step_time_s):
            spent += r.step_time_s * r.steps * gpus / 3600.0
        budget = _budget(r)
        if r.model_name not in planned or r.is_ramp or abs(budget - planned[r.model_name]) > 0.01 * planned[r.model_name]:
            other += 1
            continue
        seed = int((r.config or {}).get("train", {}).get("seed", 0))
        obs.append({"model": r.model_name, "batch": r.global_batch, "lr": _lr(r), "seed": seed, "loss": r.final_loss,
                    "se": r.final_loss_se})
    if other:
        notes.append(f"{other} completed run(s) in {logdir} are not of this study's sizes and token budgets"
                     " (or are ramps) and were left out")
    return obs, spent, notes


def _belief(s) -> str:
    import math

    lo, hi = math.exp(s.ln_b - 1.2816 * s.ln_b_sd), math.exp(s.ln_b + 1.2816 * s.ln_b_sd)
    return f"{math.exp(s.ln_b):.0f} [{lo:.0f}, {hi:.0f}]"


def _hours(h: float) -> str:
    """GPU-hours as a person reads them: 1,234 / 12.3 / 0.0123."""
    return f"{h:,.0f}" if h >= 100 else f"{h:.3g}"


def print_wave(study, wave, m, *, spent: float, done: int, naive, cost, table) -> None:
    """What the wave is, what it costs and what it is predicted to buy, beside the naive grid."""
    from collections import Counter

    pred = wave.predicted
    what = "the first wave: no runs yet" if not done else f"the next wave: {done} runs and {spent:,.0f} GPU-hours so far"
    print(f"study {study.name!r} on {study.system}: {what}")
    rule = {"law": f"{study.lr.law}'s lr_opt(N, D) x {study.lr.scale:g} at every batch of a size",
            "scaled": f"{study.lr.reference_lr:g} at batch {study.lr.reference_batch}, {study.lr.scaling} in the batch",
            "fixed": f"fixed {study.lr.value:g}"}[study.lr.rule]
    print(f"assumes: {m.noise.describe()}; basin {study.prior.basin!r}; LR rule: {rule}")
    print(f"{'size':10s} {'params':>14s} {'tokens':>10s} {'B_opt belief [80%]':>20s} {'status':>9s} {'new':>4s}"
          f" {'P(bracket)':>10s} {'interval':>9s} {'GPU-h':>9s}  batches (seeds) @ LR")
    per_model = Counter(p.model for p in wave.points)
    for s in wave.sizes:
        pts = [p for p in wave.points if p.model == s.model]
        ps = pred.get("sizes", {}).get(s.model, {})
        gpu_h = sum(cost(p.model, p.batch) for p in pts)
        batches = Counter((p.batch, f"{p.lr:.3g}") for p in pts)
        shown = ", ".join(f"{b}{'x' + str(n) if n > 1 else ''}@{lr}" for (b, lr), n in sorted(batches.items()))
        print(f"{s.model:10s} {s.num_params:14,d} {s.tokens:10.3g} {_belief(s):>20s} {s.status:>9s}"
              f" {per_model.get(s.model, 0):4d} {ps.get('p_bracketed', float('nan')):10.2f}"
              f" {'x/' + format(ps.get('factor_median', float('nan')), '.2f'):>9s} {_hours(gpu_h):>9s}  {shown}")
    e = pred.get("exponent", {})
    target = study.target
    goal = (f"exponent of B_opt(N) to +-{target.exponent_half_width:g}" if target.exponent_half_width
            else f"each B_opt within x/{target.b_opt_factor:g}")
    from batchlaw.simulator.grid import plan_line, plan_rows

    if table:  # the line submit --dry-run prints for the same plan
        print(plan_line(table, plan_rows(table)))
    if study.budget_gpu_hours:
        print(f"budget: {study.budget_gpu_hours:,.0f} GPU-hours, {_hours(spent)} spent before this wave")
    print(f"predicted ({pred.get('sims', 0)} simulated analyses): B_opt(N) exponent +-{e.get('half_width_median', float('nan')):.3f}"
          f" (median half-width of its 80% interval), determined in {e.get('p_determined', 0):.0%}; target: {goal}")
    if naive:
        ne = naive["predicted"]["exponent"]
        bias = ", ".join(f"{k} x{'..'.join(f'{b:.2g}' for b in v)}" for k, v in naive["bias"].items())
        print(f"naive full grid {naive['grid']!r}: {naive['runs']} runs, {naive['gpu_hours']:,.0f} GPU-hours; exponent"
              f" +-{ne['half_width_median']:.3f} predicted; its LRs bias B_opt by {bias}")
    for note in wave.notes:
        print(f"note: {note}")


def _plan_table(study, wave, priced):
    import numpy as np

    rows = []
    for p in wave.points:
        row = dict(priced[(p.model, p.batch)])
        row.update({"lr": p.lr, "seed": p.seed, "why": p.why})
        rows.append(row)
    cols = list(rows[0]) if rows else []
    table = {}
    for c in cols:
        arr = np.empty(len(rows), dtype=object)
        arr[:] = [r[c] for r in rows]
        table[c] = arr
    return table


def design(study_name: str, overrides=(), *, logdir: str | None = None, out: str | None = None):
    """Plan (and print) the first wave of a study, or with ``logdir`` the next one; write the plan to ``out``.
    Returns the wave, or None when the runs in ``logdir`` already meet the target."""
    from dataclasses import replace

    from batchlaw.simulator import config as _config
    from batchlaw.simulator.belief import model_of, observed_states, prior_states
    from batchlaw.simulator.design import design_wave, target_met
    from batchlaw.simulator.design_predict import compare
    from batchlaw.simulator.design_price import price
    from batchlaw.simulator.plan import write_plan
    from batchlaw.simulator.runconfig import load_run_config
    from batchlaw.simulator.study import load_study

    study = load_study(study_name, overrides)
    basin, m = model_of(study)
    states = prior_states(study, basin)
    spent, notes, optima, done = 0.0, [], {}, 0
    if logdir:
        obs, spent, notes = _runs(logdir, study, states)
        states, noise, optima = observed_states(study, basin, m, obs)
        m, done = replace(m, noise=noise), len(obs)
        met, why = target_met(study, states, optima)
        if met:
            print(f"target met: {why}; no more runs are needed")
            return None
    cache: dict = {}

    def cost(model: str, batch: int) -> float:
        if (model, batch) not in cache:
            cache.update(price(study, [(model, batch)]))
        return float(cache[(model, batch)]["gpu_hours"])

    wave = design_wave(study, states, m, cost, spent=spent)
    wave = replace(wave, notes=notes + wave.notes)
    naive = compare(study, basin, m) if study.compare_grid and not logdir else None
    table = _plan_table(study, wave, {k: cache[k] for k in {(p.model, p.batch) for p in wave.points}})
    print_wave(study, wave, m, spent=spent, done=done, naive=naive, cost=cost, table=table)
    if not wave.points:
        print("no runs planned: no addition lowers the predicted uncertainty within the study's limits")
    if out and wave.points:
        base = load_run_config(study.base) if study.base else None
        predicted = {k: v for k, v in wave.predicted.items() if k in ("sizes", "exponent", "sims")}
        write_plan(out, table, base=base, meta={"study": _config.to_dict(study), "runs_before": done,
                                                "predicted": predicted, "gpu_hours": wave.cost_gpu_hours})
        print(f"wrote {out} ({len(wave.points)} runs) and {str(out).rsplit('.', 1)[0]}.resolved.json;"
              f" launch it with: batchlaw submit {out} --time HH:MM:SS")
    return wave


def run(args: argparse.Namespace) -> int:
    design(args.study, args.overrides, logdir=args.logdir, out=args.out)
    return 0
