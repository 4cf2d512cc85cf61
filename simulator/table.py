"""``predict_table``: step time, TFLOP/s, MFU, memory and feasibility for a table of runs.

Input columns are those of ``published_throughput.csv`` (``model, layers, hidden, heads, seq_len,
vocab, gpu, gpus, tp, pp, dp, vpp, micro_batch, global_batch, recompute, sequence_parallel,
precision``) plus optional ``query_groups, ffn_hidden, activation, tied_embeddings,
distributed_optimizer, overlap_grad_reduce``. Other columns pass through. A blank (NaN) micro_batch
means: choose the fastest micro batch that fits in memory.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchlaw.simulator import rules
from batchlaw.simulator import checks
from batchlaw.simulator.perf import iteration, memory_gib
from batchlaw.simulator.spec import ModelShape, Parallelism, default_ffn
from batchlaw.simulator.system import SystemProfile, load_system

__all__ = ["OUTPUT_COLUMNS", "feasibility", "normalise", "predict_table"]

OUTPUT_COLUMNS = ("pred_iter_time_s", "pred_tflops_per_gpu", "pred_mfu", "pred_mem_gib", "feasible", "reason")
_MICRO_CANDIDATES = (1, 2, 4, 8, 16, 32)
_TRUE = {"yes", "true", "1", "y", "on"}
_MODEL, _PAR = ModelShape(layers=1, hidden=1, heads=1), Parallelism()  # the one source of default values


def _column(cols: Mapping[str, Any], name: str, n: int, default) -> np.ndarray:
    if name in cols:
        return np.asarray(cols[name])
    return np.full(n, default)


def _lower(values) -> np.ndarray:
    """Lower-case strings, vectorised (a per-row Python loop dominated predict_table's time)."""
    arr = np.asarray(values)
    arr = arr if arr.dtype.kind == "U" else arr.astype(str)
    for value in set(arr.tolist()):  # a handful of distinct values in practice
        if value != value.lower():
            arr = np.where(arr == value, value.lower(), arr)
    return arr


def _boolean(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "b":
        return values
    if values.dtype.kind in "iuf":
        return np.nan_to_num(values.astype(float)) != 0
    return np.isin(np.char.strip(_lower(values)), list(_TRUE))


def _number(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "iufb":
        return arr.astype(np.float64)
    out = np.empty(len(arr))
    for i, v in enumerate(arr):
        text = str(v).strip()
        try:
            out[i] = float(text) if text not in ("", "nan", "None") else np.nan
        except ValueError:
            raise ValueError(f"{name} = {text!r} (row {i}): expected a number") from None
    return out


def normalise(cols: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Typed numpy columns with defaults filled in (strings -> numbers and booleans)."""
    if hasattr(cols, "to_dict") and hasattr(cols, "columns"):  # pandas DataFrame
        cols = {k: cols[k].to_numpy() for k in cols.columns}
    required = ("layers", "hidden", "heads", "seq_len", "vocab", "tp", "pp", "global_batch")
    missing = [k for k in required if k not in cols]
    if missing:
        raise ValueError(f"column {missing[0]!r} is missing; required columns are {', '.join(required)}")
    n = len(np.asarray(cols["layers"]))
    c: dict[str, np.ndarray] = {}
    for k in required + ("micro_batch",):
        c[k] = _number(_column(cols, k, n, np.nan), k)
    c["vpp"] = np.nan_to_num(_number(_column(cols, "vpp", n, 1), "vpp"), nan=1.0)
    heads = c["heads"]
    c["query_groups"] = _number(_column(cols, "query_groups", n, np.nan), "query_groups")
    c["query_groups"] = np.where(np.isnan(c["query_groups"]) | (c["query_groups"] == 0), heads, c["query_groups"])
    act = _lower(_column(cols, "activation", n, _MODEL.activation))
    if not np.all(np.isin(act, ("gelu", "swiglu"))):
        raise ValueError(f"activation = {act[~np.isin(act, ('gelu', 'swiglu'))][0]!r}: allowed are gelu, swiglu")
    c["gated"] = act == "swiglu"
    ffn = _number(_column(cols, "ffn_hidden", n, np.nan), "ffn_hidden")
    c["ffn_hidden"] = np.where(np.isnan(ffn) | (ffn == 0), default_ffn(c["hidden"], c["gated"]), ffn)
    c["tied"] = _boolean(_column(cols, "tied_embeddings", n, _MODEL.tied_embeddings))
    gpus = _number(_column(cols, "gpus", n, np.nan), "gpus")
    dp = _number(_column(cols, "dp", n, np.nan), "dp")
    c["dp"] = np.where(np.isnan(dp), gpus / (c["tp"] * c["pp"]), dp)
    rec = _lower(_column(cols, "recompute", n, _PAR.recompute))
    rec = np.where(np.isin(rec, ("unknown", "", "nan", "no")), "none", rec)
    if not np.all(np.isin(rec, ("none", "selective", "full"))):
        raise ValueError(f"recompute = {rec[~np.isin(rec, ('none', 'selective', 'full'))][0]!r}: allowed are none,"
                         " selective, full")
    c["recompute"] = rec
    # Megatron-LM turns sequence parallelism off when tp = 1 (arguments.py), so it is a no-op there.
    c["sequence_parallel"] = _boolean(_column(cols, "sequence_parallel", n, _PAR.sequence_parallel)) & (c["tp"] > 1)
    c["flash_attention"] = _boolean(_column(cols, "flash_attention", n, True))
    c["distributed_optimizer"] = _boolean(_column(cols, "distributed_optimizer", n, _PAR.distributed_optimizer))
    c["overlap_grad_reduce"] = _boolean(_column(cols, "overlap_grad_reduce", n, _PAR.overlap_grad_reduce))
    # precision "auto" (the run default) is bf16 on a GPU; grids resolve it to fp32 on CPU systems
    prec = _lower(_column(cols, "precision", n, "bf16"))
    prec = np.where(prec == "auto", "bf16", prec)
    c["precision"] = prec
    # a RunSpec table names its system in the ``system`` column (system.name), a published one in ``gpu``
    c["gpu"] = np.asarray(_column(cols, "gpu" if "gpu" in cols or "system" not in cols else "system", n,
                                  "h100-sxm")).astype(str)
    c["ramp"] = np.asarray(_column(cols, "ramp", n, ""), dtype=object)
    return c


def feasibility(c: Mapping[str, np.ndarray], *, trainer: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The rule table ``rules.RULES`` on normalised columns (the vectorised twin of
    ``spec.validate_run``: same rules, same messages): (ok, reason).

    Args:
        c: columns from ``normalise``.
        trainer: also apply the rules of what batchlaw's trainer accepts (grids and submit do).
    """
    cols = dict(c)
    if "ramp" not in cols:
        cols["ramp"] = np.full(len(c["layers"]), "", dtype=object)
    ok, reason = rules.violations(cols, trainer=trainer)
    bad = checks.bad_sizes(c)  # non-positive or non-finite sizes first: nothing else is meaningful then
    for i in np.flatnonzero(bad):
        reason[i] = checks.bad_size_message(c, i)
    return ok & ~bad, reason


def _predict_group(c: dict[str, np.ndarray], system: SystemProfile) -> dict[str, np.ndarray]:
    """Predictions for rows of one system; NaN micro batches are chosen as the fastest that fits."""
    blank = np.isnan(c["micro_batch"])
    best_t = np.full(len(blank), np.inf)
    best_mb = np.where(blank, np.nan, c["micro_batch"])
    if blank.any():
        for mb in _MICRO_CANDIDATES:
            trial = {**c, "micro_batch": np.where(blank, float(mb), c["micro_batch"])}
            ok, _ = feasibility(trial)
            t = iteration(trial, system)["iter_time_s"]
            fits = memory_gib(trial, system) <= system.memory_gib
            better = blank & ok & fits & (t < best_t)
            best_t = np.where(better, t, best_t)
            best_mb = np.where(better, mb, best_mb)
        best_mb = np.where(blank & np.isnan(best_mb), 1.0, best_mb)
    c = {**c, "micro_batch": best_mb}
    ok, reason = feasibility(c)
    it = iteration(c, system)
    mem = memory_gib(c, system)
    over = ok & (mem > system.memory_gib)
    for i in np.flatnonzero(over):
        reason[i] = f"memory {mem[i]:.1f} GiB over capacity {system.memory_gib:g} GiB"
    return {"micro_batch": best_mb, "pred_iter_time_s": it["iter_time_s"], "pred_tflops_per_gpu": it["tflops_per_gpu"],
            "pred_mfu": it["mfu"], "pred_mem_gib": mem, "feasible": reason == "", "reason": reason}


def predict_table(columns: Mapping[str, Any], system: SystemProfile | str | None = None) -> dict[str, np.ndarray]:
    """Predict every row; returns the input columns plus ``OUTPUT_COLUMNS`` (numpy arrays).

    Args:
        columns: mapping column -> array (or a pandas DataFrame).
        system: one profile (or name) for all rows; None uses each row's ``gpu`` column.
    """
    if hasattr(columns, "columns") and hasattr(columns, "to_numpy"):
        columns = {k: columns[k].to_numpy() for k in columns.columns}
    c = normalise(columns)
    n = len(c["layers"])
    out = {k: np.asarray(v) for k, v in columns.items()}
    res = {k: np.full(n, np.nan) for k in OUTPUT_COLUMNS[:4]}
    res["feasible"] = np.zeros(n, dtype=bool)
    res["reason"] = np.full(n, "", dtype=object)
    mb = c["micro_batch"].copy()
    names = np.full(n, system if isinstance(system, str) else "", dtype=object) if system is not None else c["gpu"]
    for name in dict.fromkeys(names):
        idx = np.flatnonzero(names == name)
        prof = system if isinstance(system, SystemProfile) else load_system(name)
        part = _predict_group(c if len(idx) == n else {k: v[idx] for k, v in c.items()}, prof)
        for k in res:
            res[k][idx] = part[k]
        mb[idx] = part["micro_batch"]
    out.update(res)
    out["micro_batch"] = mb
    return out
