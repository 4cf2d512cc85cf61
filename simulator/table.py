"""``predict_table``: step time, TFLOP/s, MFU, memory and feasibility for a table of runs.

Input columns are those of ``published_throughput.csv`` / ``throughput_megatron.csv`` (``model, layers,
hidden, heads, seq_len, vocab, gpu, gpus, tp, pp, dp, vpp, micro_batch, global_batch, recompute,
sequence_parallel, precision``) plus optional ``query_groups, ffn_hidden, activation`` (gelu, swiglu,
geglu, squared-relu, relu) or ``gated_mlp`` (yes/no), ``tied_embeddings, cp, fp8, fsdp,
activation_offload_layers, network_gbps`` (the cluster's network bandwidth per GPU in GB/s where it is not
the profile's), ``framework`` and the settings a framework preset fills where a row leaves them blank
(``frameworks``: ``flash_attention, distributed_optimizer, overlap_grad_reduce, grad_reduce_in_fp32,
tp_comm_overlap, overlap_p2p_comm, cross_entropy_fusion, sequence_parallel, fp8_recipe, dropout,
pipeline_split_extra_layers`` (2 with Megatron's ``account_for_embedding/loss_in_pipeline_split``: the
divisibility rule then applies to layers + 2, and the last stage runs a layer fewer beside the output
layer)). ``precision`` may be bf16, fp16, half, fp32 or fp8 (fp8 = bf16 with FP8 GEMMs); ``fp8_recipe``
tensorwise, delayed, current (per-tensor scaling), mxfp8 or blockwise; ``cross_entropy_fusion`` none (the
megatron-core default), native or te (yes/true: native). A blank (or ``unknown``) setting takes the row's
framework preset; a blank micro_batch, vpp (pp > 1) or recompute the preset does not fix is priced over
its choices (``choices``: the fastest that fits, with the range). Other columns pass through.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from batchlaw.simulator import checks, choices, frameworks, rules
from batchlaw.simulator.perf_ops import block_scaled_of, ce_bytes_of
from batchlaw.simulator.columns import Cells, factorize, fill, mix as _mix
from batchlaw.simulator.plan import decode_column
from batchlaw.simulator.spec import ModelShape, Parallelism, default_ffn, resolve_precision
from batchlaw.simulator.system import GPU_ALIASES, SystemProfile, gpu_profile_name, load_system, system_names

__all__ = ["CHOSEN", "OUTPUT_COLUMNS", "RESOLVED", "feasibility", "normalise", "predict_table", "settings_lines"]

OUTPUT_COLUMNS = ("pred_iter_time_s", "pred_tflops_per_gpu", "pred_mfu", "pred_mem_gib", "feasible", "reason",
                  "pred_iter_time_min_s", "pred_iter_time_max_s", "pred_mem_min_gib", "pred_mem_max_gib", "unknowns")
CHOSEN = ("micro_batch", "vpp", "recompute", "pipeline_split_extra_layers")
"""Settings a blank cell leaves to ``choices`` (the fastest valid choice that fits), written to the output."""
RESOLVED = ("framework", *frameworks.BOOL_SETTINGS, "sequence_parallel", "cross_entropy_fusion", "fp8_recipe")
"""Settings a blank cell takes from the row's framework preset, written to the output."""
_MODEL, _PAR = ModelShape(layers=1, hidden=1, heads=1), Parallelism()  # the one source of default values


def _column(cols: Mapping[str, Any], name: str, n: int, default) -> np.ndarray:
    if name in cols:
        return np.asarray(cols[name])
    return np.full(n, default)


_factorize = factorize  # the name other modules of the project and older callers use


def _number(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "iufb":
        return np.asarray(arr, dtype=np.float64)  # no copy of a float column: nothing writes into it
    text = np.char.strip(arr.astype(str))
    try:
        return np.where(np.isin(text, ("", "None")), "nan", text).astype(np.float64)
    except ValueError:
        pass
    for i, v in enumerate(text):
        try:
            float(v) if v not in ("", "nan", "None") else None
        except ValueError:
            raise ValueError(f"{name} = {str(v)!r} (row {i}): expected a number") from None
    raise AssertionError("unreachable: a value failed to parse but no row did")


def split_rule(c: Mapping[str, np.ndarray]) -> np.ndarray:
    """Megatron's embedding/loss slots in the pipeline split where the layers need them: 2 where layers do not
    divide by pp x vpp but layers + 2 do, else 0 (``account_for_embedding/loss_in_pipeline_split``)."""
    slots = c["pp"] * c["vpp"]
    return np.where((c["layers"] % slots != 0) & ((c["layers"] + 2) % slots == 0), 2.0, 0.0)


_ACTIVATIONS = {"gelu": False, "relu": False, "squared-relu": False, "squared_relu": False, "swiglu": True,
                "geglu": True, "silu-glu": True, "reglu": True}


def normalise(cols: Mapping[str, Any], *, framework: str = frameworks.DEFAULT, system: str = "") -> dict[str, np.ndarray]:
    """Typed numpy columns with defaults filled in (strings -> numbers and booleans), every text column read
    once (``columns.Cells``) and every blank setting taken from the row's framework preset (``columns.fill``).

    Args:
        cols: the table.
        framework: the framework of rows whose ``framework`` cell is blank (or of every row without that
            column).
        system: the profile name of rows without a ``gpu``/``system`` column (resolves ``batchlaw``).
    """
    if hasattr(cols, "to_dict") and hasattr(cols, "columns"):  # pandas DataFrame
        cols = {k: cols[k].to_numpy() for k in cols.columns}
    required = ("layers", "hidden", "heads", "seq_len", "vocab", "tp", "pp", "global_batch")
    missing = [k for k in required if k not in cols]
    if missing:
        raise ValueError(f"column {missing[0]!r} is missing; required columns are {', '.join(required)}")
    n = len(np.asarray(cols["layers"]))
    cells = Cells(cols, n)
    c = _shape_columns(cells, required)
    c.update(fill(cells, framework, system))
    _setting_columns(cells, c)
    return c


def _shape_columns(cells: Cells, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Model shape and layout columns."""
    cols, n = cells.cols, cells.n
    c: dict[str, np.ndarray] = {}
    for k in required + ("micro_batch",):
        c[k] = _number(_column(cols, k, n, np.nan), k)
    for k in ("vpp", "cp"):
        v = _number(_column(cols, k, n, 1.0), k)
        c[k] = np.where(np.isnan(v), 1.0, v) if k in cols and np.isnan(v).any() else v
    c["query_groups"] = _number(_column(cols, "query_groups", n, np.nan), "query_groups")
    c["query_groups"] = np.where(np.isnan(c["query_groups"]) | (c["query_groups"] == 0), c["heads"], c["query_groups"])
    if "activation" in cols or "gated_mlp" not in cols:
        uniq, codes = cells.category("activation", _MODEL.activation)
        bad = [u for u in uniq if u not in _ACTIVATIONS]
        if bad:
            raise ValueError(f"activation = {bad[0]!r}: allowed are {', '.join(_ACTIVATIONS)}")
        c["gated"] = np.array([_ACTIVATIONS[u] for u in uniq], dtype=bool)[codes]
    else:
        c["gated"] = cells.boolean("gated_mlp", False)
    ffn = _number(_column(cols, "ffn_hidden", n, np.nan), "ffn_hidden")
    unset = np.isnan(ffn) | (ffn == 0)
    c["ffn_hidden"] = np.where(unset, default_ffn(c["hidden"], c["gated"]), ffn) if unset.any() else ffn
    c["tied"] = cells.boolean("tied_embeddings", _MODEL.tied_embeddings)
    gpus = _number(_column(cols, "gpus", n, np.nan), "gpus")
    dp = _number(_column(cols, "dp", n, np.nan), "dp")
    c["dp"] = np.where(np.isnan(dp), gpus / (c["tp"] * c["pp"] * c["cp"]), dp)
    c["fsdp"] = cells.boolean("fsdp", False)
    # the cluster's per-GPU network bandwidth (GB/s) where it differs from the profile's (blank: the profile's)
    c["network_gbps"] = _number(_column(cols, "network_gbps", n, np.nan), "network_gbps")
    bad_net = np.flatnonzero(~np.isnan(c["network_gbps"]) & ~(np.isfinite(c["network_gbps"]) & (c["network_gbps"] > 0)))
    if len(bad_net):
        raise ValueError(f"network_gbps = {c['network_gbps'][bad_net[0]]:g} (row {bad_net[0]}): "
                         "allowed is a finite positive per-GPU bandwidth in GB/s, or blank for the profile's")
    off = _number(_column(cols, "activation_offload_layers", n, 0.0), "activation_offload_layers")
    c["activation_offload_layers"] = np.where(np.isnan(off), 0.0, off)
    # a RunSpec table names its system in the ``system`` column (system.name), a published one in ``gpu``
    where = "gpu" if "gpu" in cols or "system" not in cols else "system"
    uniq, codes = cells.factors(where) if where in cols else (["h100-sxm"], np.zeros(n, dtype=np.intp))
    c["gpu"] = np.asarray(uniq, dtype=object)[codes]
    c["gpu_code"] = codes  # the index of each row's system name in the distinct names (``predict_table`` groups by it)
    # each distinct ramp cell parsed once (plan codec); rows carry its canonical text ('' = constant)
    c["ramp"] = _ramp_texts(cols["ramp"]) if "ramp" in cols else np.full(n, "", dtype=object)
    return c


def _setting_columns(cells: Cells, c: dict[str, np.ndarray]) -> None:
    """Recompute, precision and the settings ``columns.fill`` resolved, as the pricer reads them."""
    cols, n = cells.cols, cells.n
    uniq, codes = cells.category("recompute", _PAR.recompute)
    uniq = ["none" if u in ("unknown", "", "nan", "no") else u for u in uniq]
    bad = [u for u in uniq if u not in ("none", "selective", "full")]
    if bad:
        raise ValueError(f"recompute = {bad[0]!r}: allowed are none, selective, full")
    c["recompute"] = np.array(uniq or ["none"], dtype=object)[codes]
    c["rec_full"] = np.array([u == "full" for u in uniq], dtype=bool)[codes]
    c["rec_selective"] = np.array([u == "selective" for u in uniq], dtype=bool)[codes]
    # Megatron-LM turns sequence parallelism off when tp = 1 (arguments.py), so it is a no-op there.
    c["sequence_parallel"] = c["sequence_parallel"] & (c["tp"] > 1)
    c["tp_comm_overlap"] = c["tp_comm_overlap"] & c["sequence_parallel"]
    # Megatron's account_for_embedding/loss_in_pipeline_split: the split counts 2 more layer slots
    extra = _number(_column(cols, "pipeline_split_extra_layers", n, np.nan), "pipeline_split_extra_layers")
    extra = np.where(np.isnan(extra), 0.0, extra)
    c["pipeline_split_extra_layers"] = np.where(c["split_auto"], split_rule(c), extra) if c["split_auto"].any() else extra
    uniq, codes = cells.category("precision", "auto")  # the RunSpec default; a blank cell too
    uniq = ["auto" if u in ("", "nan") else u for u in uniq]
    # "auto" (the run default): bf16 here; ``_predict_group`` makes it fp32 on a cpu-* system
    # (``spec.resolve_precision``, as grids resolve it)
    c["precision_auto"] = np.array([u == "auto" for u in uniq], dtype=bool)[codes]
    uniq = ["fp16" if u == "half" else "bf16" if u == "auto" else u for u in uniq]
    allowed = ("bf16", "fp16", "fp32", "fp8")
    bad = [u for u in uniq if u not in allowed]
    if bad:
        raise ValueError(f"precision = {bad[0]!r}: allowed are {', '.join(allowed)}, half")
    c["fp8"] = np.array([u == "fp8" for u in uniq], dtype=bool)[codes] | cells.boolean("fp8", False)
    c["fp32"] = np.array([u == "fp32" for u in uniq], dtype=bool)[codes]
    c["precision"] = np.array(["bf16" if u == "fp8" else u for u in uniq] or ["bf16"])[codes]
    uniq, codes = cells.category("cross_entropy_fusion", "none")
    c["ce_bytes"] = ce_bytes_of(uniq or ["none"])[codes]
    c["cross_entropy_fusion"] = np.array(uniq or ["none"], dtype=object)[codes]
    uniq, codes = cells.category("fp8_recipe", "tensorwise")
    c["fp8_recipe"] = np.array(uniq or ["tensorwise"], dtype=object)[codes]
    c["mxfp8"] = block_scaled_of(uniq or ["tensorwise"])[codes] & c["fp8"]
    c["needs_mxfp8"] = np.array([u == "mxfp8" for u in uniq], dtype=bool)[codes] & c["fp8"]


def _ramp_texts(values) -> np.ndarray:
    """Each row's ramp in canonical text ('' = constant), each distinct cell parsed once by the plan codec."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    try:
        keys = arr.astype(str)
    except ValueError:  # a cell that is a sequence (a staircase written as [4, 4, 64])
        keys = np.array([repr(v) for v in arr])
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    texts = np.array([decode_column("ramp", arr[j:j + 1])[0].text for j in first], dtype=object)
    return texts[inverse.reshape(-1)]


def feasibility(c: Mapping[str, np.ndarray], *, trainer: bool = False,
                messages: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The rule table ``rules.RULES`` on normalised columns (the vectorised twin of
    ``spec.validate_run``: same rules, same messages): (ok, reason).

    Args:
        c: columns from ``normalise``.
        trainer: also apply the rules of what batchlaw's trainer accepts (grids and submit do).
        messages: write the reason of each infeasible row (False: only ``ok`` is meaningful).
    """
    cols = dict(c)
    if "ramp" not in cols:
        cols["ramp"] = np.full(len(c["layers"]), "", dtype=object)
    ok, reason = rules.violations(cols, trainer=trainer, messages=messages)
    bad = checks.bad_sizes(c)  # non-positive or non-finite sizes first: nothing else is meaningful then
    for i in np.flatnonzero(bad) if messages else ():
        reason[i] = checks.bad_size_message(c, i)
    return ok & ~bad, reason


def _split_view(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns as the layout rules see them: the pipeline split counts the extra embedding/loss slots."""
    extra = c.get("pipeline_split_extra_layers")
    if extra is None or not extra.any():
        return c
    return {**c, "layers": c["layers"] + extra}


def _distinct_rows(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(first row of each distinct configuration, each row's index into them), or None when the rows are
    (nearly) all distinct. A grid repeats few performance-relevant combinations over many rows (lr,
    seed, ramp axes), so each distinct one is computed once. Exact: rows are matched on every column."""
    numeric = [v for v in c.values() if v.dtype.kind in "biuf"]
    n = len(numeric[0])
    step = max(n // 65536, 1)
    sample = np.zeros(len(range(0, n, step)), dtype=np.uint64)
    for v in numeric:  # keys of every step-th row first: a mostly distinct table stops here, cheaply
        sample = _mix(sample, np.ascontiguousarray(v[::step], dtype=np.float64).view(np.uint64))
    if len(np.unique(sample)) > len(sample) // 4:  # mostly distinct: not worth the full sort
        return None
    arrays = [np.ascontiguousarray(v, dtype=np.float64) for v in numeric]
    arrays = [a for a in arrays if not (a == a[0]).all()]  # constant columns cannot tell rows apart
    if not arrays:
        return np.zeros(1, dtype=np.intp), np.zeros(n, dtype=np.intp)
    key = np.zeros(n, dtype=np.uint64)
    for a in arrays:
        key = _mix(key, a.view(np.uint64))
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(first) > n // 4:
        return None
    for a in arrays:  # no two configurations shared a key
        bits = a.view(np.uint64)
        if not np.array_equal(bits[first][inverse], bits):
            return None
    return first, inverse


def _resolve_auto(c: dict[str, np.ndarray], system: SystemProfile) -> dict[str, np.ndarray]:
    """Rows whose precision was "auto" take ``spec.resolve_precision`` on this system (fp32 on cpu-*)."""
    auto = c.get("precision_auto")
    if auto is None or not auto.any() or resolve_precision("auto", system.name) != "fp32":
        return c
    return {**c, "fp32": c["fp32"] | auto, "fp8": c["fp8"] & ~auto, "precision": np.where(auto, "fp32", c["precision"])}


def _predict_parts(c: dict[str, np.ndarray], parts: list[tuple[np.ndarray, SystemProfile]]) -> dict[str, np.ndarray]:
    """``_predict_group`` of each (row indices, profile) part of a partition of the rows, put back in row order."""
    out: dict[str, np.ndarray] = {}
    for idx, prof in parts:
        part = _predict_group({k: v[idx] for k, v in c.items()}, prof)
        for k, v in part.items():
            if k not in out:
                out[k] = np.empty(len(c["layers"]), dtype=object if v.dtype.kind in "US" else v.dtype)
            out[k][idx] = v
    return out


def _by_network(c: dict[str, np.ndarray], system: SystemProfile) -> dict[str, np.ndarray]:
    """Rows with their own ``network_gbps`` predicted on the profile with that NIC bandwidth per GPU."""
    net = c.pop("network_gbps")
    parts = [(np.flatnonzero(np.isnan(net)), system)]
    parts += [(np.flatnonzero(net == v), dataclasses.replace(system, network_gbps=float(v)))
              for v in np.unique(net[np.isfinite(net)])]
    return _predict_parts(c, [(idx, prof) for idx, prof in parts if len(idx)])


def _predict_group(c: dict[str, np.ndarray], system: SystemProfile) -> dict[str, np.ndarray]:
    """Predictions for rows of one system; NaN micro batches are chosen as the fastest that fits."""
    net = c.get("network_gbps")
    if net is not None:
        if np.isfinite(net).any():
            return _by_network(dict(c), system)
        c = {k: v for k, v in c.items() if k != "network_gbps"}
    c = _resolve_auto(c, system)
    if len(c["layers"]) >= 4096:
        distinct = _distinct_rows({k: v for k, v in c.items() if k != "gpu"})
        if distinct is not None:
            first, inverse = distinct
            part = _predict_chunked({k: v[first] for k, v in c.items()}, system)
            return {k: v[inverse] for k, v in part.items()}
    return _predict_chunked(c, system)


_CHUNK = 1 << 15  # rows per pass: ~40 float64 temporaries of 256 KiB stay in the CPU caches


def _predict_chunked(c: dict[str, np.ndarray], system: SystemProfile) -> dict[str, np.ndarray]:
    """``_predict_rows`` over slices of ``_CHUNK`` rows (same values; element-wise numpy on cache-sized
    arrays instead of one memory-bound pass per operation over the whole table)."""
    n = len(c["layers"])
    if n <= 2 * _CHUNK:
        return _predict_rows(c, system)
    parts = [_predict_rows({k: v[i:i + _CHUNK] for k, v in c.items()}, system) for i in range(0, n, _CHUNK)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _predict_rows(c: dict[str, np.ndarray], system: SystemProfile) -> dict[str, np.ndarray]:
    """Predictions of one system's rows, blank settings priced over their choices (``choices.resolve``)."""
    c, out = choices.resolve(c, system)
    del out["valid"]
    out.update({k: c[k] for k in CHOSEN})
    return out


def _row_profile(name: str, idx: np.ndarray, column: str) -> SystemProfile:
    """The profile a row's GPU names; a one-line error naming the column, the first row and what is allowed."""
    if gpu_profile_name(name) not in system_names() and not Path(gpu_profile_name(name)).is_file():
        raise ValueError(f"{column} = {name!r} (row {idx[0]}): unknown; allowed are the profiles "
                         f"{', '.join(system_names())} and GPU names as sources write them "
                         f"({', '.join(sorted(GPU_ALIASES))})")
    return load_system(name)  # a profile that exists but is broken says so itself


def _check_tensor_cores(c: dict[str, np.ndarray], idx: np.ndarray, system: SystemProfile) -> None:
    """A one-line error for rows ``idx`` that ask for number formats the profile's GPU lacks: FP8 without
    FP8 tensor cores (A100, CPU: Transformer Engine refuses FP8 below compute capability 8.9), MXFP8 without
    Blackwell's block-scaled ones (Hopper runs per-tensor and 128-blockwise FP8 only)."""
    fp8 = idx[c["fp8"][idx]]
    if len(fp8) and system.peak_fp8_tflops <= 0:
        raise ValueError(f"precision = 'fp8' (row {fp8[0]}) on {system.name!r}: it has no FP8 tensor cores "
                         "(peak_fp8_tflops = 0); allowed there are bf16, fp16, fp32")
    mx = idx[c["needs_mxfp8"][idx]]
    if len(mx) and not system.mxfp8:
        raise ValueError(f"fp8_recipe = 'mxfp8' (row {mx[0]}) on {system.name!r}: MXFP8 needs Blackwell tensor "
                         "cores (b200, gb200, gb300); allowed there are tensorwise, delayed, current, blockwise")


def predict_table(columns: Mapping[str, Any], system: SystemProfile | str | None = None, *,
                  framework: str = frameworks.DEFAULT) -> dict[str, np.ndarray]:
    """Predict every row; returns the input columns plus ``OUTPUT_COLUMNS`` (numpy arrays), with the settings
    each row ran with written back (``RESOLVED`` from its framework preset, ``CHOSEN`` by ``choices``).

    Args:
        columns: mapping column -> array (or a pandas DataFrame).
        system: one profile (or name) for all rows; None uses each row's ``gpu`` column.
        framework: the framework of rows whose ``framework`` cell is blank, or of all rows without that column
            (``frameworks``; default ``batchlaw``, this project's trainer).

    A row with an impossible value (tp = 0, a negative batch) is priced as NaN and marked infeasible with
    the reason; numpy's division warnings for it are silenced (the reason column says it once).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _predict_table(columns, system, framework)


def _predict_table(columns, system, framework) -> dict[str, np.ndarray]:
    if hasattr(columns, "columns") and hasattr(columns, "to_numpy"):
        columns = {k: columns[k].to_numpy() for k in columns.columns}
    name = system.name if isinstance(system, SystemProfile) else str(system or "")
    c = normalise(columns, framework=framework, system=name)
    out = {k: np.asarray(v) for k, v in columns.items()}
    column = "gpu" if "gpu" in columns or "system" not in columns else "system"  # as normalise reads it
    if system is None:
        codes = c["gpu_code"]
        groups = [(str(c["gpu"][np.argmax(codes == j)]), codes == j) for j in np.unique(codes)]
    else:
        groups = [(system if isinstance(system, str) else "", None)]
    if len(groups) == 1:
        name = groups[0][0]
        if isinstance(system, SystemProfile):
            prof = system
        elif system is None:
            prof = _row_profile(name, np.arange(len(c["layers"])), column)
        else:
            prof = load_system(name)
        _check_tensor_cores(c, np.arange(len(c["layers"])), prof)
        part = _predict_group(c, prof)
        out.update({k: part[k] for k in (*OUTPUT_COLUMNS, *CHOSEN)})
        out.update({k: c[k] for k in RESOLVED})
        return out
    parts = [(np.flatnonzero(mask), _row_profile(name, np.flatnonzero(mask), column)) for name, mask in groups]
    for idx, prof in parts:
        _check_tensor_cores(c, idx, prof)
    res = _predict_parts(c, parts)
    out.update({k: res[k] for k in (*OUTPUT_COLUMNS, *CHOSEN)})
    out.update({k: c[k] for k in RESOLVED})
    return out


def settings_lines(out: Mapping[str, np.ndarray], *, unknowns: bool = True) -> list[str]:
    """What ``predict_table`` assumed, for printing: one line per framework preset its rows took (the values
    of every setting a row left blank), and (``unknowns``) one naming the rows whose blank settings span
    more than ``choices.SPAN``."""
    names, counts = np.unique(np.asarray(out["framework"]).astype(str), return_counts=True)
    lines = [f"{frameworks.describe(str(k), frameworks.load_framework(str(k)))} ({v} row{'s' if v != 1 else ''})"
             for k, v in zip(names, counts)]
    wide = np.flatnonzero(np.asarray(out["unknowns"]).astype(str) != "") if unknowns else []
    if len(wide):
        lines.append(f"{len(wide)} row{'s' if len(wide) != 1 else ''} with blank micro_batch / vpp / recompute"
                     f" that change the step time by more than {choices.SPAN:.0%}: priced at the fastest choice that"
                     " fits; the range is in pred_iter_time_min_s .. pred_iter_time_max_s (first: row"
                     f" {wide[0]}, {out['pred_iter_time_min_s'][wide[0]]:.3g} .. {out['pred_iter_time_max_s'][wide[0]]:.3g} s)")
    return lines
