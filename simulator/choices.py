"""Settings a row leaves unknown, priced over their choices instead of one silent value.

A blank ``micro_batch``, a blank ``vpp`` (pp > 1 under a framework that interleaves) and a blank
``recompute`` (under a framework that does not fix it; ``frameworks.fill``) are priced at every choice:
micro batch ``MICRO``, virtual pipeline size ``VPP`` (the valid divisors; 1 is the plain 1F1B schedule),
recompute none / selective / full. The point prediction is the fastest choice that is valid
(``rules.RULES``) and fits in memory, as a tuned recipe would run it; ``pred_iter_time_min_s`` and
``pred_iter_time_max_s`` are the fastest and the slowest such choice, and ``unknowns`` names the blank
settings of rows whose range spans more than ``SPAN``. Memory is a range too (``perf_mem.memory_range``): a
row is infeasible only when even its floor exceeds the capacity, and ``unknowns`` names the rows whose
ceiling does (they may not fit). A row none of whose choices fits is reported at
the valid choice that needs the least memory (its reason names the overflow).
"""

from __future__ import annotations

from itertools import product

import numpy as np

from batchlaw.simulator.perf import iteration
from batchlaw.simulator.perf_mem import memory_range
from batchlaw.simulator.system import SystemProfile

__all__ = ["MICRO", "RECOMPUTE", "SPAN", "VPP", "price", "resolve"]

MICRO = (1, 2, 4, 8, 16, 32)
"""Micro-batch sizes tried for a blank ``micro_batch``."""
VPP = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24)
"""Virtual pipeline sizes tried for a blank ``vpp``; those that do not divide the layers are invalid."""
RECOMPUTE = ("none", "selective", "full")
"""Recompute modes tried for a blank ``recompute``."""
SPAN = 0.05
"""Relative spread (slowest / fastest - 1) above which a row's blank settings are named in ``unknowns``."""

_NAMES = ("micro_batch", "vpp", "recompute")


def price(c: dict[str, np.ndarray], system: SystemProfile, *, messages: bool = True) -> dict[str, np.ndarray]:
    """Step time, memory and feasibility of fully specified rows (every setting known); ``messages`` False
    leaves ``reason`` empty (``feasible`` stays exact)."""
    from batchlaw.simulator.table import _split_view, feasibility

    ok, reason = feasibility(_split_view(c), messages=messages)
    it = iteration(c, system)
    low, mem, high = memory_range(c, system, it["stage_params"])
    cap = system.memory_gib
    over = ok & (low > cap)  # even the floor does not fit
    for i in np.flatnonzero(over) if messages else ():
        reason[i] = f"memory {mem[i]:.1f} GiB (at least {low[i]:.1f}) over capacity {cap:g} GiB"
    t = it["iter_time_s"]
    return {"pred_iter_time_s": t, "pred_tflops_per_gpu": it["tflops_per_gpu"], "pred_mfu": it["mfu"],
            "pred_mem_gib": mem, "feasible": ok & ~over, "reason": reason, "valid": ok,
            "pred_iter_time_min_s": t, "pred_iter_time_max_s": t, "pred_mem_min_gib": low, "pred_mem_max_gib": high}


def _set_choice(sub: dict[str, np.ndarray], rows: slice, mb, vpp, rec) -> None:
    if mb is not None:
        sub["micro_batch"][rows] = mb
    if vpp is not None:
        sub["vpp"][rows] = vpp
    if rec is not None:
        sub["recompute"][rows] = rec
        sub["rec_full"][rows] = rec == "full"
        sub["rec_selective"][rows] = rec == "selective"


def _expand(c: dict[str, np.ndarray], idx: np.ndarray, pattern: int) -> tuple[dict[str, np.ndarray], int]:
    """Rows ``idx`` repeated once per choice of the blank settings in ``pattern`` (bit 0 micro batch, 1 vpp,
    2 recompute), choice-major: rows ``j m .. (j + 1) m - 1`` hold choice j."""
    from batchlaw.simulator.table import split_rule

    grid = list(product(MICRO if pattern & 1 else [None], VPP if pattern & 2 else [None],
                        RECOMPUTE if pattern & 4 else [None]))
    m = len(idx)
    sub = {k: np.tile(v[idx], len(grid)) for k, v in c.items()}
    for key in ("micro_batch", "vpp"):
        sub[key] = sub[key].astype(np.float64)
    sub["recompute"] = sub["recompute"].astype(object)
    for j, choice in enumerate(grid):
        _set_choice(sub, slice(j * m, (j + 1) * m), *choice)
    if pattern & 2:
        auto = sub["split_auto"]
        sub["pipeline_split_extra_layers"] = np.where(auto, split_rule(sub), sub["pipeline_split_extra_layers"])
    return sub, len(grid)


def _pick(res: dict[str, np.ndarray], k: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat index of each row's chosen choice, fastest and slowest time over its choices that fit)."""
    t = res["pred_iter_time_s"].reshape(k, m)
    good = res["feasible"].reshape(k, m)
    fastest = np.where(good, t, np.inf)
    best = np.argmin(fastest, axis=0)
    # no choice fits: the valid one that needs the least memory (its reason says by how much)
    mem = np.where(res["valid"].reshape(k, m), res["pred_mem_gib"].reshape(k, m), np.inf)
    fallback = np.argmin(mem, axis=0)
    any_good = good.any(axis=0)
    chosen = np.where(any_good, best, fallback)
    lo = np.where(any_good, fastest.min(axis=0), np.nan)
    hi = np.where(any_good, np.where(good, t, -np.inf).max(axis=0), np.nan)
    return chosen * m + np.arange(m), lo, hi


def _memory_notes(out: dict[str, np.ndarray], cap: float) -> None:
    """Name, in ``unknowns``, the feasible rows whose memory ceiling (allocator slack, dropout masks of an
    unknown dropout) exceeds the capacity: they may run out of memory; the floor fits."""
    for i in np.flatnonzero(out["feasible"] & (out["pred_mem_max_gib"] > cap)):
        note = (f"memory may not fit: {out['pred_mem_min_gib'][i]:.1f}..{out['pred_mem_max_gib'][i]:.1f} GiB"
                f" on {cap:g} GiB")
        out["unknowns"][i] = f"{out['unknowns'][i]}; {note}" if out["unknowns"][i] else note


def resolve(c: dict[str, np.ndarray], system: SystemProfile) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(columns with every blank setting chosen, predictions with their ranges and ``unknowns``).

    The chosen columns replace ``micro_batch``, ``vpp``, ``recompute`` (and the recompute flags and the
    pipeline split that follow from them) for the rows that left them blank."""
    n = len(c["layers"])
    pattern = (np.isnan(c["micro_batch"]).astype(int) + 2 * c["vpp_unknown"].astype(int)
               + 4 * c["recompute_unknown"].astype(int))
    known = np.flatnonzero(pattern == 0)
    if len(known) == n:
        out = price(c, system)
        out["unknowns"] = np.full(n, "", dtype=object)
        _memory_notes(out, system.memory_gib)
        return c, out
    chosen = {k: np.array(c[k], dtype=object if k == "recompute" else None) for k in
              ("micro_batch", "vpp", "recompute", "rec_full", "rec_selective", "pipeline_split_extra_layers")}
    out: dict[str, np.ndarray] = {}

    def put(idx: np.ndarray, part: dict[str, np.ndarray], take=None) -> None:
        for key, v in part.items():
            v = v if take is None else v[take]
            if key not in out:
                out[key] = np.empty(n, dtype=object if v.dtype.kind in "OUS" else v.dtype)
            out[key][idx] = v

    if len(known):
        put(known, price({k: v[known] for k, v in c.items()}, system))
    for pat in np.unique(pattern[pattern > 0]):
        idx = np.flatnonzero(pattern == pat)
        sub, k = _expand(c, idx, int(pat))
        take, lo, hi = _pick(price(sub, system, messages=False), k, len(idx))
        pick = {key: v[take] for key, v in sub.items()}
        res = price(pick, system)  # the chosen rows again, with their reasons
        res["pred_iter_time_min_s"], res["pred_iter_time_max_s"] = lo, hi
        put(idx, res)
        for key in chosen:
            chosen[key][idx] = pick[key]
        names = " ".join(name for bit, name in enumerate(_NAMES) if int(pat) >> bit & 1)
        wide = hi > lo * (1 + SPAN)
        out.setdefault("unknowns", np.full(n, "", dtype=object))
        out["unknowns"][idx[wide]] = f"blank {names}: priced fastest of the range"
    out.setdefault("unknowns", np.full(n, "", dtype=object))
    _memory_notes(out, system.memory_gib)
    c = {**c, **{k: (v.astype(bool) if k.startswith("rec_") else v.astype(np.float64) if k != "recompute" else v)
                 for k, v in chosen.items()}}
    return c, out
