"""``predict_table``: step time, TFLOP/s, MFU, memory and feasibility for a table of runs.

Input columns are those of ``published_throughput.csv`` / ``throughput_megatron.csv`` (``model,
layers, hidden, heads, seq_len, vocab, gpu, gpus, tp, pp, dp, vpp, micro_batch, global_batch,
recompute, sequence_parallel, precision``) plus optional ``query_groups, ffn_hidden, activation``
(gelu, swiglu, geglu, squared-relu, relu) or ``gated_mlp`` (yes/no), ``tied_embeddings, cp, fp8,
distributed_optimizer, overlap_grad_reduce, grad_reduce_in_fp32, tp_comm_overlap, flash_attention,
fsdp, activation_offload_layers, pipeline_split_extra_layers`` (2 with Megatron's
``account_for_embedding/loss_in_pipeline_split``: the divisibility rule then applies to layers + 2). ``precision`` may be bf16, fp16, half, fp32 or fp8 (fp8 = bf16 with FP8
GEMMs). ``unknown`` for sequence_parallel means on when tp > 1 (the Megatron-Core recipe default); for
recompute it means none. Other columns pass through. A blank (NaN) micro_batch means: choose the
fastest micro batch that fits in memory.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchlaw.simulator.perf import iteration, memory_gib
from batchlaw.simulator.system import SystemProfile, load_system

__all__ = ["OUTPUT_COLUMNS", "feasibility", "normalise", "predict_table"]

OUTPUT_COLUMNS = ("pred_iter_time_s", "pred_tflops_per_gpu", "pred_mfu", "pred_mem_gib", "feasible", "reason")
_MICRO_CANDIDATES = (1, 2, 4, 8, 16, 32)
_TRUE = {"yes", "true", "1", "y", "on"}


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


_ACTIVATIONS = {"gelu": False, "relu": False, "squared-relu": False, "squared_relu": False, "swiglu": True,
                "geglu": True, "silu-glu": True, "reglu": True}


def _strings(cols, name: str, n: int, default: str) -> np.ndarray:
    return np.char.strip(_lower(_column(cols, name, n, default)))


def _flag(cols, name: str, n: int, default: bool) -> np.ndarray:
    if name not in cols:
        return np.full(n, default)
    return _boolean(np.asarray(cols[name]))


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
    c["cp"] = np.nan_to_num(_number(_column(cols, "cp", n, 1), "cp"), nan=1.0)
    heads = c["heads"]
    c["query_groups"] = _number(_column(cols, "query_groups", n, np.nan), "query_groups")
    c["query_groups"] = np.where(np.isnan(c["query_groups"]) | (c["query_groups"] == 0), heads, c["query_groups"])
    if "activation" in cols or "gated_mlp" not in cols:
        act = _strings(cols, "activation", n, "gelu")
        bad = ~np.isin(act, list(_ACTIVATIONS))
        if bad.any():
            raise ValueError(f"activation = {act[bad][0]!r}: allowed are {', '.join(_ACTIVATIONS)}")
        c["gated"] = np.isin(act, [k for k, v in _ACTIVATIONS.items() if v])
    else:
        c["gated"] = _boolean(np.asarray(cols["gated_mlp"]))
    ffn = _number(_column(cols, "ffn_hidden", n, np.nan), "ffn_hidden")
    c["ffn_hidden"] = np.where(np.isnan(ffn) | (ffn == 0), 4 * c["hidden"], ffn)
    c["tied"] = _flag(cols, "tied_embeddings", n, False)
    gpus = _number(_column(cols, "gpus", n, np.nan), "gpus")
    dp = _number(_column(cols, "dp", n, np.nan), "dp")
    c["dp"] = np.where(np.isnan(dp), gpus / (c["tp"] * c["pp"] * c["cp"]), dp)
    rec = _strings(cols, "recompute", n, "none")
    rec = np.where(np.isin(rec, ("unknown", "", "nan", "no")), "none", rec)
    if not np.all(np.isin(rec, ("none", "selective", "full"))):
        raise ValueError(f"recompute = {rec[~np.isin(rec, ('none', 'selective', 'full'))][0]!r}: allowed are none,"
                         " selective, full")
    c["recompute"] = rec
    # Megatron-LM turns sequence parallelism off when tp = 1 (arguments.py), so it is a no-op there.
    sp = _strings(cols, "sequence_parallel", n, "no")
    c["sequence_parallel"] = (np.isin(sp, list(_TRUE)) | (sp == "unknown")) & (c["tp"] > 1)
    c["flash_attention"] = _flag(cols, "flash_attention", n, True)
    c["distributed_optimizer"] = _flag(cols, "distributed_optimizer", n, False)
    c["fsdp"] = _flag(cols, "fsdp", n, False)
    c["overlap_grad_reduce"] = _flag(cols, "overlap_grad_reduce", n, True)
    c["grad_reduce_in_fp32"] = _flag(cols, "grad_reduce_in_fp32", n, True)
    # Megatron's account_for_embedding/loss_in_pipeline_split: the split counts 2 more layer slots
    c["pipeline_split_extra_layers"] = np.nan_to_num(_number(_column(cols, "pipeline_split_extra_layers", n, 0.0),
                                                             "pipeline_split_extra_layers"))
    c["tp_comm_overlap"] = _flag(cols, "tp_comm_overlap", n, False) & c["sequence_parallel"]
    off = _number(_column(cols, "activation_offload_layers", n, 0.0), "activation_offload_layers")
    c["activation_offload_layers"] = np.nan_to_num(off)
    prec = _strings(cols, "precision", n, "bf16")
    prec = np.where(prec == "half", "fp16", prec)
    allowed = ("bf16", "fp16", "fp32", "fp8")
    if not np.all(np.isin(prec, allowed)):
        raise ValueError(f"precision = {prec[~np.isin(prec, allowed)][0]!r}: allowed are {', '.join(allowed)}, half")
    c["fp8"] = (prec == "fp8") | _flag(cols, "fp8", n, False)
    c["precision"] = np.where(prec == "fp8", "bf16", prec)
    c["gpu"] = np.asarray(_column(cols, "gpu", n, "h100-sxm")).astype(str)
    return c


def feasibility(c: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised twin of ``spec.validate_run`` (same rules, same messages): (ok, reason)."""
    n = len(c["layers"])
    reason = np.full(n, "", dtype=object)
    assigned = np.zeros(n, dtype=bool)

    def rule(bad, text):
        hit = bad & ~assigned
        for i in np.flatnonzero(hit):
            reason[i] = text(i)
        assigned[:] |= hit

    tp, pp, vpp, dp, mb, gb = c["tp"], c["pp"], c["vpp"], c["dp"], c["micro_batch"], c["global_batch"]
    rule((dp < 1) | (dp != np.floor(dp)), lambda i: f"world size {c['tp'][i] * c['pp'][i] * dp[i]:g} is not"
         f" divisible by tp x pp = {tp[i] * pp[i]:g}")
    rule(c["heads"] % tp != 0, lambda i: f"heads {c['heads'][i]:g} not divisible by tp {tp[i]:g}")
    rule(c["query_groups"] % tp != 0, lambda i: f"query groups {c['query_groups'][i]:g} not divisible by tp {tp[i]:g}")
    rule(c["layers"] % (pp * vpp) != 0, lambda i: f"layers {c['layers'][i]:g} not divisible by pp x vpp = {pp[i] * vpp[i]:g}")
    rule((vpp > 1) & (pp < 2), lambda i: f"vpp {vpp[i]:g} needs pp >= 2")
    per_step = mb * dp
    rule(~np.isnan(mb) & (gb % np.where(per_step > 0, per_step, 1) != 0),
         lambda i: f"global batch {gb[i]:g} not divisible by micro_batch x dp = {per_step[i]:g}")
    rule(~np.isnan(mb) & (vpp > 1) & ((gb / np.where(per_step > 0, per_step, 1)) % pp != 0),
         lambda i: f"interleaved schedule needs micro-batches {gb[i] / per_step[i]:g} divisible by pp {pp[i]:g}")
    return ~assigned, reason


def _split_view(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns as the layout rules see them: the pipeline split counts the extra embedding/loss slots."""
    extra = c.get("pipeline_split_extra_layers")
    if extra is None or not extra.any():
        return c
    return {**c, "layers": c["layers"] + extra}


def _predict_group(c: dict[str, np.ndarray], system: SystemProfile) -> dict[str, np.ndarray]:
    """Predictions for rows of one system; NaN micro batches are chosen as the fastest that fits."""
    blank = np.isnan(c["micro_batch"])
    best_t = np.full(len(blank), np.inf)
    best_mb = np.where(blank, np.nan, c["micro_batch"])
    if blank.any():
        for mb in _MICRO_CANDIDATES:
            trial = {**c, "micro_batch": np.where(blank, float(mb), c["micro_batch"])}
            ok, _ = feasibility(_split_view(trial))
            t = iteration(trial, system)["iter_time_s"]
            fits = memory_gib(trial, system) <= system.memory_gib
            better = blank & ok & fits & (t < best_t)
            best_t = np.where(better, t, best_t)
            best_mb = np.where(better, mb, best_mb)
        best_mb = np.where(blank & np.isnan(best_mb), 1.0, best_mb)
    c = {**c, "micro_batch": best_mb}
    ok, reason = feasibility(_split_view(c))
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
