"""Pricing a study's points: each (model, batch) at the node count and layout that cost the fewest
GPU-hours within the study's wall-clock limit per run (the grid's performance model, ``grid.run_grid``).

The seed grid fixed 8 nodes for every point, so its smallest runs spent their GPU-hours on communication
and bubbles: here every node count the study allows is priced, and the cheapest that finishes in time wins
(ties: the shorter run).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from batchlaw.simulator.grid import GridAxes, GridConfig, PruneConfig, run_grid
from batchlaw.simulator.study import StudyConfig

__all__ = ["Priced", "price"]

Priced = dict[tuple[str, int], dict[str, Any]]
"""(model, batch) -> the chosen row of the priced grid (its columns, plus ``over_wall`` when no layout
finished within the limit and the fastest was taken)."""


def _grid(study: StudyConfig, models: list[str], batches: list[int]) -> GridConfig:
    d = study.design
    nodes = tuple(n for n in d.nodes if n <= study.max_nodes) or (1,)
    axes = GridAxes(models=tuple(models), global_batch=tuple(batches), tokens_per_param=study.sizes.tokens_per_param,
                    nodes=nodes, tp=d.tp, pp=d.pp, micro_batch=d.micro_batch)
    # every layout and node count is kept (dominance off): the choice below is by GPU-hours, not by time
    return GridConfig(name=f"{study.name}-pricing", system=study.system, gpus_per_node=study.gpus_per_node,
                      base=study.base, grid=axes, prune=PruneConfig(dominance_margin=1e9), framework=study.framework)


def price(study: StudyConfig, points: Iterable[tuple[str, int]]) -> Priced:
    """The cheapest feasible row of every (model, batch) (one ``run_grid`` per model, all batches at once).

    Raises:
        ValueError: a point no layout can run (naming the model, the batch and the first reason).
    """
    want: dict[str, set[int]] = {}
    for model, batch in points:
        want.setdefault(model, set()).add(int(batch))
    out: Priced = {}
    for model, batches in want.items():
        t = run_grid(_grid(study, [model], sorted(batches)))
        for b in sorted(batches):
            rows = np.flatnonzero((t["global_batch"] == b) & np.asarray(t["feasible"], bool))
            if not len(rows):
                why = t["reason"][np.flatnonzero(t["global_batch"] == b)[0]]
                raise ValueError(f"design: {model} at batch {b} has no feasible layout on {study.system} within"
                                 f" {study.max_nodes} nodes ({why})")
            hours = t["run_hours"][rows]
            fits = rows[hours <= study.max_wall_hours]
            pool = fits if len(fits) else rows[[int(np.argmin(hours))]]
            best = pool[np.lexsort((t["run_hours"][pool], t["gpu_hours"][pool]))[0]]
            row = {k: v[best] for k, v in t.items()}
            row["over_wall"] = not len(fits)
            out[(model, b)] = row
    return out
