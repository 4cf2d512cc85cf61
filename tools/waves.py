"""Predicted against measured, wave by wave: what ``batchlaw design`` said a wave would buy, beside what the
analysis of the runs up to that wave says.

A wave is a plan CSV written by ``batchlaw design --out`` (its sidecar holds the prediction). The runs of a
wave are the logs whose configuration (model, global batch, learning rate, seed) is a row of its plan; the
measurement after wave k analyses the runs of waves 1..k with the same estimator the design predicted
with. The table and the picture show, per size and wave, the predicted chance to bracket and the predicted
median factor of the 80% interval against the measured bracket and factor, and the exponent of B_opt(N).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["compare_waves", "waves_section"]


def _key(model: str, batch: float, lr: float, seed: float) -> tuple:
    return (str(model), int(round(float(batch))), float(f"{float(lr):.3g}"), int(round(float(seed))))


def compare_waves(runs, plans: Sequence[str | Path], analyse_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per plan: its predicted figures and the measured ones after its runs.

    Raises:
        ValueError: a plan without a design prediction in its sidecar (naming it).
    """
    from batchlaw.simulator.plan import read_plan
    from batchlaw.tools.analysis import _lr, analyse

    keys: set = set()
    out = []
    for k, path in enumerate(plans, 1):
        table, doc = read_plan(path)
        if "predicted" not in doc:
            raise ValueError(f"--plans {str(path)!r}: no design prediction in its sidecar (plans written by"
                             " batchlaw design --out carry one)")
        keys |= {_key(*(table[c][i] for c in ("model", "global_batch", "lr", "seed"))) for i in range(len(table["model"]))}
        mine = [r for r in runs if r.status == "completed" and _key(r.model_name, r.global_batch, _lr(r),
                                                                   (r.config or {}).get("train", {}).get("seed", -1)) in keys]
        measured: dict[str, Any] = {"runs": len(mine), "sizes": {}}
        if mine:
            res = analyse(mine, **analyse_kwargs)
            for o in res.optima:
                measured["sizes"][o.model_name] = {
                    "bracketed": o.bracketed, "b_opt": o.b_opt, "text": o.b_opt_text,
                    "factor": math.sqrt(o.b_opt_hi / o.b_opt_lo) if o.bracketed else math.nan}
            law = res.b_opt_vs_n
            measured["exponent"] = law.exponent if law.fitted else math.nan
            measured["half_width"] = law.half_width if law.fitted else math.nan
        out.append({"wave": k, "plan": str(path), "planned_runs": len(table["model"]),
                    "predicted": doc["predicted"], "measured": measured})
    return out


def waves_section(waves: list[dict[str, Any]]) -> list[str]:
    """The report's section: one table row per size and wave, then the exponent per wave."""
    if not waves:
        return []
    lines = ["", "## Design: predicted against measured, wave by wave", "",
             "Each wave's plan (`batchlaw design`) predicted, by simulating the analysis on worlds drawn from what was"
             " believed before the wave, the chance that each size's optimum is bracketed and the median factor of its"
             " 80% interval; the measured columns are the analysis of the runs of that wave and the ones before it.", "",
             "| wave | size | P(bracket) predicted | bracketed | interval predicted | interval measured | B_opt measured |",
             "|---|---|---|---|---|---|---|"]
    for w in waves:
        pred, meas = w["predicted"].get("sizes", {}), w["measured"].get("sizes", {})
        for size in sorted(set(pred) | set(meas)):
            p, m = pred.get(size, {}), meas.get(size, {})
            lines.append(f"| {w['wave']} | {size} | {_f(p.get('p_bracketed'), '{:.0%}')} | "
                         f"{'yes' if m.get('bracketed') else 'no' if m else '-'} | x/{_f(p.get('factor_median'))} |"
                         f" x/{_f(m.get('factor'))} | {m.get('text', '-')} |")
    lines += ["", "| wave | runs so far | exponent half-width predicted | exponent measured | half-width measured |",
              "|---|---|---|---|---|"]
    for w in waves:
        e, m = w["predicted"].get("exponent", {}), w["measured"]
        lines.append(f"| {w['wave']} | {m['runs']} | +-{_f(e.get('half_width_median'), '{:.3f}')} |"
                     f" {_f(m.get('exponent'), '{:.3f}')} | +-{_f(m.get('half_width'), '{:.3f}')} |")
    return lines


def _f(x, fmt: str = "{:.2f}") -> str:
    return "-" if x is None or not np.isfinite(float(x)) else fmt.format(float(x))
