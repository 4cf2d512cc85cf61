"""Grids of training runs: expand, predict, prune, rank (``batchlaw simulate GRID.toml``).

A grid is the Cartesian product of its list-valued keys. Every point gets the simulator's
prediction (time, memory, feasibility), its whole-run time and GPU-hours for the token budget
(with the ramp when one is given) and, when a loss law is named, its predicted final loss. Points
are then pruned, each with the reason in ``pruned_by``: infeasible; dominated (slower than another
layout of the same model, batch and learning rate by more than ``dominance_margin``); over a
budget; predicted loss more than ``max_loss_excess`` above the model's best; not on the model's
(loss, GPU-hours) Pareto front (only with ``pareto = true``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from batchlaw.simulator import checks
from batchlaw.simulator import config as _config
from batchlaw.simulator.params import num_params
from batchlaw.simulator.perf import run_time
from batchlaw.simulator.ramp import parse_ramp
from batchlaw.simulator.spec import load_model
from batchlaw.simulator.system import load_system
from batchlaw.simulator.table import predict_table

__all__ = ["GridConfig", "PruneConfig", "load_grid", "run_grid"]


@dataclass(frozen=True, kw_only=True, slots=True)
class GridAxes:
    """The axes of the grid (lists are crossed)."""

    models: tuple[str, ...]
    """Model names from configs/models."""
    global_batch: tuple[int, ...]
    """Global batch sizes, sequences."""
    tokens_per_param: float = 50.0
    """Token budget per parameter (Chinchilla-style D = k N)."""
    lr: tuple[float, ...] = (3e-4,)
    """Learning rates (carried to the runs)."""
    nodes: tuple[int, ...] = (1,)
    """Node counts."""
    tp: tuple[int, ...] = (1,)
    """Tensor-parallel sizes."""
    pp: tuple[int, ...] = (1,)
    """Pipeline-parallel sizes."""
    vpp: tuple[int, ...] = (1,)
    """Virtual pipeline stages per rank."""
    micro_batch: tuple[int, ...] = ()
    """Micro batches; empty = the fastest that fits."""
    recompute: tuple[str, ...] = ("none",)
    """Recompute modes."""
    sequence_parallel: tuple[bool, ...] = (False,)
    """Sequence parallel on/off."""
    distributed_optimizer: tuple[bool, ...] = (True,)
    """Distributed optimizer on/off."""
    ramp: str = ""
    """Batch ramp applied to every point ('' = constant)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PruneConfig:
    """Pruning rules."""

    dominance_margin: float = 0.05
    """A layout slower than the best of its (model, batch, lr) by more than this fraction is pruned."""
    max_gpu_hours_per_run: float = 0.0
    """Budget per run (0 = none)."""
    max_wall_hours_per_run: float = 0.0
    """Wall-clock budget per run (0 = none)."""
    loss_law: str = ""
    """Name or path of a loss law L(N, D, B) for pred_loss ('' = none)."""
    max_loss_excess: float = 0.0
    """Prune points whose pred_loss exceeds the model's best by more than this (0 = keep all)."""
    pareto: bool = False
    """Prune points off their model's (pred_loss, GPU-hours) Pareto front."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GridConfig:
    """A grid file: ``[grid]`` axes, ``system``, ``gpus_per_node`` and ``[prune]`` rules."""

    name: str = "grid"
    """Grid name."""
    system: str = "h100-sxm"
    """System profile."""
    gpus_per_node: int = 8
    """GPUs per node."""
    grid: GridAxes
    """Axes."""
    prune: PruneConfig = field(default_factory=PruneConfig)
    """Pruning rules."""

    def __post_init__(self) -> None:
        checks.check_grid(self)


def load_grid(path: str | Path, overrides: Sequence[str] = ()) -> GridConfig:
    """Load a grid TOML strictly (unknown keys are rejected with the valid list)."""
    return _config.load(path, GridConfig, overrides)


def _expand(g: GridConfig) -> dict[str, np.ndarray]:
    a = g.grid
    models = {name: load_model(name) for name in a.models}
    axes = [list(a.models), list(a.global_batch), list(a.lr), list(a.nodes), list(a.tp), list(a.pp), list(a.vpp),
            list(a.micro_batch) or [np.nan], list(a.recompute), list(a.sequence_parallel),
            list(a.distributed_optimizer)]
    names = ["model", "global_batch", "lr", "nodes", "tp", "pp", "vpp", "micro_batch", "recompute",
             "sequence_parallel", "distributed_optimizer"]
    shape = [len(x) for x in axes]
    checks.check_grid_size(int(np.prod(shape, dtype=object)), axes=dict(zip(names, shape)))
    idx = np.indices(shape).reshape(len(shape), -1)
    cols = {n: np.asarray(ax, dtype=object if n in ("model", "recompute") else None)[i]
            for n, ax, i in zip(names, axes, idx)}
    m = cols["model"]
    for key, attr in (("layers", "layers"), ("hidden", "hidden"), ("heads", "heads"), ("seq_len", "seq_len"),
                      ("vocab", "vocab"), ("ffn_hidden", "ffn"), ("query_groups", "num_query_groups")):
        cols[key] = np.array([getattr(models[x], attr) for x in m])
    cols["activation"] = np.array([models[x].activation for x in m])
    cols["tied_embeddings"] = np.array([models[x].tied_embeddings for x in m])
    cols["num_params"] = np.array([num_params(models[x]) for x in m], dtype=np.float64)
    cols["gpus"] = cols["nodes"] * g.gpus_per_node
    cols["dp"] = cols["gpus"] / (cols["tp"] * cols["pp"])
    cols["gpu"] = np.full(len(m), g.system)
    cols["precision"] = np.full(len(m), "bf16")
    cols["overlap_grad_reduce"] = np.ones(len(m), dtype=bool)
    cols["tokens"] = np.round(cols["num_params"] * a.tokens_per_param)
    return cols


def _step_time_at(t: dict[str, np.ndarray], i: int, profile):
    """Step time of row i's layout at another global batch (fewer micro-batches: relatively more
    bubble and DP communication per sample), from the same performance model."""
    row = {k: np.asarray(v)[i:i + 1] for k, v in t.items() if k not in ("pred_iter_time_s", "reason")}
    cache: dict[int, float] = {}

    def at(batch: int) -> float:
        if batch not in cache:
            cache[batch] = float(predict_table({**row, "global_batch": np.array([batch])}, profile)["pred_iter_time_s"][0])
        return cache[batch]

    return at


def _whole_run(t: dict[str, np.ndarray], g: GridConfig) -> None:
    profile = load_system(g.system)
    samples = np.ceil(t["tokens"] / t["seq_len"])
    steps = np.ceil(samples / t["global_batch"])
    seconds = steps * t["pred_iter_time_s"]
    if g.grid.ramp:
        for i in np.flatnonzero(t["feasible"]):
            gran = int(t["micro_batch"][i] * t["dp"][i])
            try:
                ramp = parse_ramp(g.grid.ramp, global_batch=int(t["global_batch"][i]), granularity=gran,
                                  seq_len=int(t["seq_len"][i]))
            except ValueError as exc:
                t["feasible"][i], t["reason"][i] = False, f"ramp: {exc}"
                continue
            seconds[i], steps[i] = run_time(float(t["pred_iter_time_s"][i]), total_samples=int(samples[i]),
                                            global_batch=int(t["global_batch"][i]), ramp=ramp,
                                            time_at_batch=_step_time_at(t, i, profile))
    t["steps"] = steps
    t["run_hours"] = seconds / 3600.0
    t["gpu_hours"] = t["run_hours"] * t["gpus"]


def _pareto(loss: np.ndarray, cost: np.ndarray) -> np.ndarray:
    order = np.lexsort((loss, cost))
    keep = np.zeros(len(loss), dtype=bool)
    best = np.inf
    for i in order:
        if loss[i] < best:
            keep[i], best = True, loss[i]
    return keep


def _prune(t: dict[str, np.ndarray], p: PruneConfig) -> None:
    n = len(t["model"])
    why = np.where(t["feasible"], "", np.char.add("infeasible: ", t["reason"].astype(str))).astype(object)
    groups: dict[Any, list[int]] = {}
    for i in np.flatnonzero(why == ""):
        groups.setdefault((t["model"][i], t["global_batch"][i], t["lr"][i]), []).append(i)
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
        for model in dict.fromkeys(t["model"]):
            idx = np.flatnonzero((t["model"] == model) & (why == ""))
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
    """Expand, predict, prune and rank a grid; returns the table (survivors first)."""
    t = predict_table(_expand(g), load_system(g.system))
    t["reason"] = t["reason"].astype(object)
    _whole_run(t, g)
    if g.prune.loss_law:
        from batchlaw.simulator.laws import load_loss_law

        law = load_loss_law(g.prune.loss_law)
        t["pred_loss"] = law.predict(t["num_params"], t["tokens"], t["global_batch"] * t["seq_len"])
    _prune(t, g.prune)
    order = np.lexsort((t["pred_iter_time_s"], t["global_batch"], t["num_params"], ~t["survives"]))
    return {k: np.asarray(v)[order] for k, v in t.items()}


def summary(t: dict[str, np.ndarray], g: GridConfig) -> str:
    """A readable summary of a ranked grid table."""
    s = t["survives"]
    lines = [f"grid {g.name!r} on {g.system}: {len(s)} points, {int(t['feasible'].sum())} feasible,"
             f" {int(s.sum())} survive; total GPU-hours of survivors {t['gpu_hours'][s].sum():,.0f}"]
    lines.append(f"{'model':10s} {'batch':>6s} {'layout (tp,pp,mb,nodes)':>24s} {'step_s':>8s} {'MFU':>5s}"
                 f" {'mem_GiB':>8s} {'hours':>7s} {'GPU-h':>8s}" + (" pred_loss" if "pred_loss" in t else ""))
    seen = set()
    for i in np.flatnonzero(s):
        key = (t["model"][i], t["global_batch"][i])
        if key in seen:
            continue
        seen.add(key)
        lay = f"{int(t['tp'][i])},{int(t['pp'][i])},{int(t['micro_batch'][i])},{int(t['nodes'][i])}"
        line = (f"{t['model'][i]:10s} {int(t['global_batch'][i]):6d} {lay:>24s} {t['pred_iter_time_s'][i]:8.3f}"
                f" {t['pred_mfu'][i]:5.2f} {t['pred_mem_gib'][i]:8.1f} {t['run_hours'][i]:7.1f} {t['gpu_hours'][i]:8.0f}")
        if "pred_loss" in t:
            line += f" {t['pred_loss'][i]:9.4f}"
        lines.append(line)
    reasons: dict[str, int] = {}
    for r in t["pruned_by"][~s]:
        key = str(r).split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    if reasons:
        lines.append("pruned: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    return "\n".join(lines)
