"""Grids of training runs: expand, predict, prune, rank (``batchlaw simulate GRID.toml``).

A grid is the Cartesian product of its list-valued keys. Every point gets the simulator's
prediction (time, memory, feasibility), its whole-run time and GPU-hours for the token budget
(with the ramp when one is given) and, when a loss law is named, its predicted final loss. Points
are then pruned, each with the reason in ``pruned_by``: infeasible; dominated (slower than another
layout of the same point, ``POINT_COLUMNS``, by more than ``dominance_margin``); over a budget;
predicted loss more than ``max_loss_excess`` above the model's best; not on the model's (loss,
GPU-hours) Pareto front (only with ``pareto = true``). The loss rules compare a model's points at one
ramp, learning rate, precision and seed: the law sees only size, tokens and batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from batchlaw.simulator import checks
from batchlaw.simulator import config as _config
from batchlaw.simulator import resources
from batchlaw.simulator.params import num_params
from batchlaw.simulator.ramp import segments
from batchlaw.simulator.plan import PLAN_COLUMNS, decode_column, spec_to_row
from batchlaw.simulator.rampspec import RampSpec
from batchlaw.simulator.runconfig import RunSpec, TrainConfig, load_run_config
from batchlaw.simulator.spec import ModelShape, load_model, resolve_precision
from batchlaw.simulator.system import load_system
from batchlaw.simulator.table import feasibility, normalise, predict_table

__all__ = ["GridConfig", "POINT_COLUMNS", "PruneConfig", "base_spec", "load_grid", "lr_warnings", "plan_line",
           "plan_rows", "run_grid", "summary"]

_AXES = ("global_batch", "lr", "nodes", "tp", "pp", "vpp", "micro_batch", "recompute", "sequence_parallel",
         "distributed_optimizer", "overlap_grad_reduce", "precision", "ramp", "seed")


@dataclass(frozen=True, kw_only=True, slots=True)
class GridAxes:
    """The axes of the grid. Lists are crossed; a single value is a one-value axis. An axis left out
    takes the value of the grid's ``base`` run (or the RunSpec default): every axis is the RunSpec
    field of the same name (``models`` is the column ``model``)."""

    models: tuple[str, ...]
    """Model names (configs/models or ``$BATCHLAW_CONFIG_PATH``)."""
    global_batch: tuple[int, ...]
    """Global batch sizes, sequences."""
    tokens_per_param: float = 50.0
    """Token budget per parameter (Chinchilla-style D = k N)."""
    lr: tuple[float, ...] = ()
    """Peak learning rates."""
    nodes: tuple[int, ...] = ()
    """Node counts."""
    tp: tuple[int, ...] = ()
    """Tensor-parallel sizes."""
    pp: tuple[int, ...] = ()
    """Pipeline-parallel sizes."""
    vpp: tuple[int, ...] = ()
    """Virtual pipeline stages per rank (> 1 only where rules.TRAINER_SUPPORTS_VPP)."""
    micro_batch: tuple[int, ...] = ()
    """Micro batches; empty = the fastest that fits (and suits the ramp)."""
    recompute: tuple[Literal["none", "selective", "full"], ...] = ()
    """Recompute modes."""
    sequence_parallel: tuple[bool, ...] = ()
    """Sequence parallel on/off."""
    distributed_optimizer: tuple[bool, ...] = ()
    """Distributed optimizer on/off."""
    overlap_grad_reduce: tuple[bool, ...] = ()
    """Overlap the DP gradient reduction with the backward pass."""
    precision: tuple[Literal["auto", "fp32", "bf16", "fp16"], ...] = ()
    """Training precision ('auto' = bf16 on GPUs, fp32 on CPU systems)."""
    ramp: tuple[RampSpec, ...] = ()
    """Batch ramps ('' = constant; 'start,incr,ramp_samples', a step schedule, or a table): each parsed
    once into a ``RampSpec`` and carried in the table as its canonical text."""
    seed: tuple[int, ...] = ()
    """Seeds."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PruneConfig:
    """Pruning rules."""

    dominance_margin: float = 0.05
    """A layout slower than the best layout of its point (model, batch, ramp, lr, tokens, precision, seed:
    ``POINT_COLUMNS``) by more than this fraction is pruned."""
    max_gpu_hours_per_run: float = 0.0
    """Budget per run (0 = none)."""
    max_wall_hours_per_run: float = 0.0
    """Wall-clock budget per run (0 = none)."""
    loss_law: str = ""
    """Name or path of a loss law L(N, D, B) for pred_loss ('' = none)."""
    max_loss_excess: float = 0.0
    """Prune points whose pred_loss exceeds the model's best (at the same ramp, lr, precision and seed) by
    more than this (0 = keep all)."""
    pareto: bool = False
    """Prune points off their model's (pred_loss, GPU-hours) Pareto front (at the same ramp, lr, precision
    and seed; exact ties are kept)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GridConfig:
    """A grid file: ``[grid]`` axes, ``system``, ``gpus_per_node`` and ``[prune]`` rules."""

    name: str = "grid"
    """Grid name."""
    system: str = "h100-sxm"
    """System profile (``batchlaw simulate --system`` replaces it)."""
    gpus_per_node: int = 8
    """GPUs per node."""
    base: str = ""
    """Run config (name in configs/runs or a TOML path) whose values fill the axes left out; '' =
    the RunSpec defaults. ``batchlaw submit`` starts every run from it unless --base-config is given."""
    framework: str = ""
    """Framework preset the points are priced with (``configs/frameworks``; ``batchlaw simulate --framework``
    replaces it); '' = the base run's ``system.framework`` (default ``batchlaw``: this project's trainer,
    with the kernels it will use). The plan records the resolved preset in its ``framework`` column."""
    grid: GridAxes
    """Axes."""
    prune: PruneConfig = field(default_factory=PruneConfig)
    """Pruning rules."""
    lr_law: str = "steplaw-lr"
    """The lr_opt(N, D) law a fixed learning rate is compared with ('' = no comparison): an LR more than 2x
    from it biases the measured B_opt (``lr_warnings``)."""
    lr_basin: str = "steplaw-basin"
    """The basin preset that sizes that bias."""
    lr_fixed_on_purpose: bool = False
    """The grid's LR is fixed on purpose: no bias warning."""

    def __post_init__(self) -> None:
        checks.check_grid(self)


def load_grid(path: str | Path, overrides: Sequence[str] = ()) -> GridConfig:
    """Load a grid TOML (a path, or a name in configs/grids) strictly: unknown keys are rejected with
    the valid list; a single value of an axis is a one-value axis."""
    path = resources.resolve("grids", path, field="grid")
    data = _config.apply_overrides(_config.load_toml(path), overrides)
    axes = data.get("grid")
    if isinstance(axes, dict):
        data["grid"] = {k: (v if isinstance(v, list) or k == "tokens_per_param" else [v]) for k, v in axes.items()}
    return _config.build(GridConfig, data)


def base_spec(g: GridConfig) -> RunSpec:
    """The run every point starts from: the grid's ``base`` run config, or the RunSpec defaults."""
    if g.base:
        return load_run_config(g.base)
    return RunSpec(model=ModelShape(layers=1, hidden=1, heads=1), train=TrainConfig(global_batch=1, steps=1))


def _expand(g: GridConfig) -> dict[str, np.ndarray]:
    """The Cartesian product of the axes as RunSpec columns (``PLAN_COLUMNS``) plus derived ones."""
    a = g.grid
    models = {name: load_model(name) for name in a.models}
    base = spec_to_row(base_spec(g))
    model_cols = [c for c, (sec, _) in PLAN_COLUMNS.items() if sec == "model"]
    axes: dict[str, list] = {"model": list(a.models)}
    for col, values in ((c, getattr(a, c)) for c in _AXES):
        axes[col] = list(values) or ([np.nan] if col == "micro_batch" else [base[col]])
        if col == "ramp":
            axes[col] = [RampSpec.from_config(v).text for v in axes[col]]
    shape = [len(v) for v in axes.values()]
    checks.check_grid_size(int(np.prod(shape, dtype=object)), axes=dict(zip(axes, shape)))
    idx = np.indices(shape).reshape(len(shape), -1)
    cols = {}
    for (name, values), i in zip(axes.items(), idx):
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        cols[name] = arr[i] if name in ("model", "ramp", "recompute", "precision") else np.array(values)[i]
    m = cols["model"]
    for col in model_cols[1:]:
        cols[col] = np.array([getattr(models[x], PLAN_COLUMNS[col][1]) for x in m])
    cols["num_params"] = np.array([num_params(models[x]) for x in m], dtype=np.float64)
    cols["tokens"] = np.round(cols["num_params"] * a.tokens_per_param)
    cols["system"] = np.full(len(m), g.system, dtype=object)
    cols["framework"] = np.full(len(m), g.framework or base["framework"], dtype=object)
    cols["gpus_per_node"] = np.full(len(m), g.gpus_per_node)
    cols["gpus"] = cols["nodes"] * g.gpus_per_node
    cols["dp"] = cols["gpus"] / (cols["tp"] * cols["pp"])
    cols["gpu"] = cols["system"]
    return cols


def _ramp_batches(t: dict[str, np.ndarray], rows: np.ndarray, samples: np.ndarray) -> dict[int, list]:
    """Each ramp row's constant-batch segments ``(batch, steps, start)`` from its bound ``RampSpec``."""
    out = {}
    for i in rows:
        ramp = RampSpec.from_config(t["ramp"][i]).bind(global_batch=int(t["global_batch"][i]),
                                                        granularity=int(t["micro_batch"][i] * t["dp"][i]),
                                                        seq_len=int(t["seq_len"][i]))
        out[int(i)] = segments(ramp, int(samples[i]))
    return out


def _whole_run(t: dict[str, np.ndarray], profile) -> None:
    """Steps, wall-clock hours and GPU-hours of every row for its token budget. A ramp row spends each
    segment at that segment's batch, priced at that batch (fewer micro-batches: relatively more bubble
    and DP communication per sample) by one ``predict_table`` call over every (row, batch) pair."""
    samples = np.ceil(t["tokens"] / t["seq_len"])
    steps = np.ceil(samples / t["global_batch"])
    seconds = steps * t["pred_iter_time_s"]
    rows = np.flatnonzero(t["feasible"] & (t["ramp"] != ""))
    if len(rows):
        segs = _ramp_batches(t, rows, samples)
        pairs = [(i, b) for i in segs for b in sorted({b for b, _, _ in segs[i]})]
        idx = np.array([i for i, _ in pairs])
        cols = {k: np.asarray(v)[idx] for k, v in t.items() if k not in ("pred_iter_time_s", "reason")}
        cols["global_batch"] = np.array([b for _, b in pairs], dtype=float)
        priced = predict_table(cols, profile)["pred_iter_time_s"]
        at = {pair: float(x) for pair, x in zip(pairs, priced)}
        for i, parts in segs.items():
            seconds[i] = sum(n * at[(i, b)] for b, n, _ in parts)
            steps[i] = sum(n for _, n, _ in parts)
    t["steps"] = steps
    t["run_hours"] = seconds / 3600.0
    t["gpu_hours"] = t["run_hours"] * t["gpus"]


def _pareto(loss: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Non-dominated points: no other point has a loss and a cost no larger and one of them smaller.
    Exact ties are all kept (a point can only be dropped by one that beats it)."""
    order = np.lexsort((loss, cost))
    keep = np.zeros(len(loss), dtype=bool)
    best, best_cost = np.inf, np.nan
    for i in order:
        if loss[i] < best:
            keep[i], best, best_cost = True, loss[i], cost[i]
        elif loss[i] == best and cost[i] == best_cost:
            keep[i] = True
    return keep


def _prune(t: dict[str, np.ndarray], p: PruneConfig) -> None:
    n = len(t["model"])
    why = np.where(t["feasible"], "", np.char.add("infeasible: ", t["reason"].astype(str))).astype(object)
    groups: dict[Any, list[int]] = {}
    for i in np.flatnonzero(why == ""):
        # layouts compete only within one point (the plan's POINT_COLUMNS): another ramp, precision,
        # seed or token budget is another run of the study, never a slower layout of this one
        groups.setdefault(tuple(str(t[c][i]) for c in POINT_COLUMNS if c in t), []).append(i)
    for members in groups.values():
        best = min(t["pred_iter_time_s"][i] for i in members)
        for i in members:
            if t["pred_iter_time_s"][i] > best * (1 + p.dominance_margin):
                why[i] = f"dominated: {t['pred_iter_time_s'][i] / best - 1:.0%} slower than the best layout"
    ok = why == ""
    if p.max_gpu_hours_per_run > 0:
        why[ok & (t["gpu_hours"] > p.max_gpu_hours_per_run)] = "over budget: gpu_hours"
    if p.max_wall_hours_per_run > 0:
        why[(why == "") & (t["run_hours"] > p.max_wall_hours_per_run)] = "over budget: wall-clock hours"
    if "pred_loss" in t:
        # the loss law L(N, D, B) sees size, tokens and batch only: points are compared within one model
        # at one ramp, lr, precision and seed, never across axes the law cannot tell apart
        axes = [c for c in ("model", "ramp", "lr", "precision", "seed") if c in t]
        key = np.array(["\x1f".join(str(t[c][i]) for c in axes) for i in range(n)])
        for group in dict.fromkeys(key):
            idx = np.flatnonzero((key == group) & (why == ""))
            if not len(idx):
                continue
            if p.max_loss_excess > 0:
                best = t["pred_loss"][idx].min()
                why[idx[t["pred_loss"][idx] > best + p.max_loss_excess]] = "loss: too far above the model's best"
            if p.pareto:
                idx = idx[why[idx] == ""]
                front = _pareto(t["pred_loss"][idx], t["gpu_hours"][idx])
                why[idx[~front]] = "loss: off the (loss, GPU-hours) Pareto front"
    t["pruned_by"] = why
    t["survives"] = why == ""
    assert len(why) == n


def run_grid(g: GridConfig) -> dict[str, np.ndarray]:
    """Expand, predict, prune and rank a grid; returns the table (survivors first).

    Columns: the RunSpec plan columns (``PLAN_COLUMNS``, so ``spec_from_row`` turns any row into its
    run), derived ones (``num_params, gpus, dp, gpu``), the predictions, ``steps, run_hours,
    gpu_hours``, ``pred_loss`` with a loss law, ``pruned_by`` and ``survives``.
    """
    profile = load_system(g.system)
    cols = _expand(g)
    priced = {**cols, "precision": np.array([resolve_precision(p, profile.name) for p in cols["precision"]])}
    t = predict_table(priced, profile)
    t["reason"] = t["reason"].astype(object)
    ok, reason = feasibility(normalise(t), trainer=True)  # what batchlaw's trainer accepts (rules.py)
    for i in np.flatnonzero(t["feasible"] & ~ok):
        t["feasible"][i], t["reason"][i] = False, reason[i]
    _whole_run(t, profile)
    if g.prune.loss_law:
        from batchlaw.simulator.laws import load_loss_law

        law = load_loss_law(g.prune.loss_law)
        t["pred_loss"] = law.predict(t["num_params"], t["tokens"], t["global_batch"] * t["seq_len"])
    _prune(t, g.prune)
    t["precision"] = cols["precision"]  # the RunSpec value ('auto' stays 'auto'); priced as resolved above
    order = np.lexsort((t["pred_iter_time_s"], t["global_batch"], t["num_params"], ~t["survives"]))
    return {k: np.asarray(v)[order] for k, v in t.items()}


POINT_COLUMNS = ("model", "global_batch", "ramp", "lr", "tokens", "precision", "seed")
"""A plan point: the columns that change what is learned; the others are the layout."""


def _truthy(column: str, values) -> np.ndarray:
    """A yes/no column of the plan (``survives``, ``feasible``) through the plan codec; blank is no."""
    arr = decode_column(column, values)
    return arr if arr.dtype.kind == "b" else np.array([bool(v) for v in arr], dtype=bool)


def _rank(hours: float, gpu_hours: float) -> tuple[float, float]:
    """Comparison key at the 6 significant digits a CSV keeps, so a table and its CSV plan alike."""
    return float(f"{hours:.6g}"), float(f"{gpu_hours:.6g}")


def plan_rows(t: dict[str, np.ndarray], *, all_layouts: bool = False) -> np.ndarray:
    """Indices of the runs to launch: one per surviving point (``POINT_COLUMNS``), its fastest layout
    (shortest predicted wall-clock, then fewest GPU-hours), or every surviving layout with
    ``all_layouts``. ``batchlaw simulate`` prices and ``batchlaw submit`` launches exactly these."""
    n = len(t["model"])
    keep = _truthy("survives", t["survives"]) if "survives" in t else np.ones(n, dtype=bool)
    idx = np.flatnonzero(keep)
    if all_layouts:
        return idx
    hours = np.asarray(t["run_hours"], dtype=float) if "run_hours" in t else np.zeros(n)
    gpu_h = np.asarray(t["gpu_hours"], dtype=float) if "gpu_hours" in t else np.zeros(n)
    best: dict[tuple, int] = {}
    for i in idx:
        key = tuple(str(t[c][i]) for c in POINT_COLUMNS if c in t)
        j = best.get(key)
        if j is None or _rank(hours[i], gpu_h[i]) < _rank(hours[j], gpu_h[j]):
            best[key] = i
    return np.array(sorted(best.values()), dtype=int)


def plan_line(t: dict[str, np.ndarray], rows: np.ndarray, *, all_layouts: bool = False) -> str:
    """The one line both ``simulate`` and ``submit --dry-run`` print about a plan."""
    hours = float(np.nansum(np.asarray(t["gpu_hours"], dtype=float)[rows])) if "gpu_hours" in t else float("nan")
    what = "every surviving layout" if all_layouts else "fastest layout per point"
    return f"plan: {len(rows)} runs ({what}), {hours:,.{0 if hours >= 10 else 2}f} GPU-hours"


def summary(t: dict[str, np.ndarray], g: GridConfig, *, all_layouts: bool = False) -> str:
    """A readable summary of a ranked grid table: counts, the plan line, one row per planned run."""
    s = _truthy("survives", t["survives"])
    rows = plan_rows(t, all_layouts=all_layouts)
    lines = [f"grid {g.name!r} on {g.system}: {len(s)} points, {int(_truthy('feasible', t['feasible']).sum())} feasible,"
             f" {int(s.sum())} survive", plan_line(t, rows, all_layouts=all_layouts)]
    extra = [c for c in ("ramp", "lr", "precision", "seed") if len(set(map(str, t[c]))) > 1]
    lines.append(f"{'model':10s} {'batch':>6s} {'layout (tp,pp,mb,nodes)':>24s} {'step_s':>8s} {'MFU':>5s}"
                 f" {'mem_GiB':>8s} {'hours':>7s} {'GPU-h':>8s}" + (" pred_loss" if "pred_loss" in t else "")
                 + "".join(f" {c}" for c in extra))
    for i in rows:
        lay = f"{int(t['tp'][i])},{int(t['pp'][i])},{int(t['micro_batch'][i])},{int(t['nodes'][i])}"
        line = (f"{t['model'][i]:10s} {int(t['global_batch'][i]):6d} {lay:>24s} {t['pred_iter_time_s'][i]:8.3f}"
                f" {t['pred_mfu'][i]:5.2f} {t['pred_mem_gib'][i]:8.1f} {t['run_hours'][i]:7.1f} {t['gpu_hours'][i]:8.0f}")
        if "pred_loss" in t:
            line += f" {t['pred_loss'][i]:9.4f}"
        line += "".join(f" {t[c][i]}" for c in extra)
        lines.append(line)
    reasons: dict[str, int] = {}
    for r in t["pruned_by"][~s]:
        key = str(r).split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    if reasons:
        lines.append("pruned: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    return "\n".join(lines)


def lr_warnings(g: GridConfig) -> list[str]:
    """One line per (model, LR) of the grid more than 2x from ``lr_law``'s lr_opt(N, D), with the bias of B_opt
    measured at that fixed LR by the basin model (``basin.Basin.b_opt_ratio``; Li et al. 2025: the batch
    optimum moves with the LR). Empty when the LR is fixed on purpose or no law is named."""
    if g.lr_fixed_on_purpose or not g.lr_law:
        return []
    from batchlaw.simulator.basin import load_basin
    from batchlaw.simulator.belief import law_inputs, non_embedding_params
    from batchlaw.simulator.laws import load_law

    law, basin = load_law(g.lr_law), load_basin(g.lr_basin)
    lrs = g.grid.lr or (base_spec(g).train.lr,)
    out = []
    for name in g.grid.models:
        shape = load_model(name)
        n, d = non_embedding_params(shape), num_params(shape) * g.grid.tokens_per_param
        lr_opt = float(law.predict(*law_inputs(law, n, d)))
        for lr in lrs:
            ratio = lr / lr_opt
            if 0.5 <= ratio <= 2.0:
                continue
            bias = basin.at(n, d).b_opt_ratio(float(np.log(ratio)))
            out.append(f"grid.lr = {lr:g} for {name} is {max(ratio, 1 / ratio):.1f}x {'below' if ratio < 1 else 'above'}"
                       f" {g.lr_law}'s lr_opt {lr_opt:.2g} (N = {n:.3g} non-embedding, D = {d:.3g}): by the basin"
                       f" model ({g.lr_basin}) the B_opt measured at this fixed LR is x{bias:.2f} the optimum's;"
                       " give each point its LR (batchlaw design) or set lr_fixed_on_purpose = true")
    return out
