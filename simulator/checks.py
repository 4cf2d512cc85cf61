"""Per-field checks of every configuration: ranges, finiteness, relations, sizes and paths.

The config dataclasses call these from their ``__post_init__`` (one line each), so no object with a
value the trainer would reject can exist; ``check_grid_size`` runs before a grid is allocated;
``bad_sizes`` makes rows of a runs table with impossible values infeasible, with a reason. What needs
the run's world (the device, the file system, existing logs and checkpoints) is checked before launch
by ``plugin/prelaunch.py``, never here. Each failure is a ``ValueError`` with ONE line naming the
field, the value and what is allowed (issue 13).

Torch-free; imports of other simulator modules are local (the dataclasses import this module).
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any, Mapping

import numpy as np

__all__ = [
    "MAX_GRID_POINTS", "MAX_SEED", "MAX_SEQ_LEN", "MAX_STEPS", "MAX_TOKENS",
    "bad_size_message", "bad_sizes", "check_checkpoint", "check_data", "check_grid", "check_grid_size", "check_log",
    "check_model", "check_model_name", "check_parallel", "check_run", "check_run_data", "check_system",
    "check_system_spec", "check_system_tables", "check_text", "check_train",
]

MAX_SEED = 2**32
"""Seeds must lie in [0, 2^32): numpy's and megatron-core's seeding (which adds offsets) accept them."""
MAX_STEPS = 10_000_000
"""Optimizer steps of one run; the largest published GPT runs take well under 1e6 steps."""
MAX_TOKENS = 10**15
"""Tokens of one run (steps x global batch x seq_len): 100 times the largest published GPT run."""
MAX_SEQ_LEN = 32_768
"""The trainer builds a dense s x s causal mask (4 s^2 bytes while built): 4 GiB at this limit."""
MAX_GRID_POINTS = 1_000_000
"""Grid points expanded at once: about 1 GiB and 2 minutes (docs/benchmarks.md, "Validation")."""
_BYTES_PER_POINT, _SECONDS_PER_POINT = 1024, 1e-4  # run_grid measured 833-887 B and 0.03-0.13 ms per point
_NAME = re.compile(r"[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]*")  # a file name: no separator, no leading dot


def _fail(field: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{field} = {value!r}: {allowed}")


def _finite(field: str, value: float, *, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, hi_open: bool = False) -> None:
    """``value`` must be a finite number in the interval [lo, hi] (ends open when asked)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (lo is None or (value > lo if lo_open else value >= lo))
    ok = ok and (hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        lo_s = "" if lo is None else (f"> {lo:g}" if lo_open else f">= {lo:g}")
        hi_s = "" if hi is None else (f"< {hi:g}" if hi_open else f"<= {hi:g}")
        _fail(field, value, "must be a finite number" + (" " if lo_s or hi_s else "")
              + " and ".join(s for s in (lo_s, hi_s) if s))


def _int_at_least(field: str, value: int, lo: int, extra: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        _fail(field, value, f"must be an integer >= {lo}{extra}")


def _positive(section: str, obj: Any, names: tuple[str, ...]) -> None:
    """Sizes and counts of ``obj``: integers (numpy's too, never bool) >= 1."""
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            _fail(f"{section}.{name}", v, "must be a positive integer")


def check_text(field: str, value: str) -> None:
    """Paths and names: no NUL or other control characters, no lone surrogates (TOML cannot hold them)."""
    if not isinstance(value, str):
        _fail(field, value, "must be a string")
    bad = next((ch for ch in value if ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF), None)
    if bad is not None:
        _fail(field, value, f"contains the character U+{ord(bad):04X}; control characters and lone"
                            " surrogates are not allowed in paths and names")


def check_model_name(name: Any) -> None:
    """A shipped model name is a file name in configs/models, never a path (``../systems/x``)."""
    if not isinstance(name, str) or (name and not _NAME.fullmatch(name)):
        from batchlaw.simulator.spec import model_names

        _fail("model.name", name, "must be a plain name (no '/', '\\', leading '.' or control character);"
              " shipped models are "
              + ", ".join(model_names()))


def check_run_data(data: dict[str, Any]) -> dict[str, Any]:
    """The raw run mapping before ``model.name`` is resolved: ``[model]`` a table, its name safe.
    Returns ``data`` unchanged."""
    model = data.get("model", {})
    if not isinstance(model, Mapping):
        _fail("model", model, "must be a table ([model] with name = ... or the shape keys)")
    if "name" in model:
        check_model_name(model["name"])
    return data


def check_model(m: Any) -> None:
    """ModelShape: positive sizes, heads dividing hidden, query groups dividing heads, ffn >= 0,
    the seq_len limit, a clean name."""
    _positive("model", m, ("layers", "hidden", "heads", "vocab", "seq_len"))
    if m.hidden % m.heads:
        _fail("model.heads", m.heads, f"must divide model.hidden = {m.hidden}")
    if not isinstance(m.query_groups, numbers.Integral) or m.query_groups < 0 or (
            m.query_groups and m.heads % m.query_groups):
        _fail("model.query_groups", m.query_groups, f"must be 0 or divide heads = {m.heads}")
    check_text("model.name", m.name)
    _int_at_least("model.ffn_hidden", m.ffn_hidden, 0, " (0 = derived from hidden)")
    if m.seq_len > MAX_SEQ_LEN:
        _fail("model.seq_len", m.seq_len, f"must be <= {MAX_SEQ_LEN}; the trainer's dense causal mask alone"
              f" would take 4 s^2 bytes = {4 * m.seq_len ** 2 / 2**30:,.0f} GiB per rank")


def check_parallel(p: Any) -> None:
    """Parallelism: tp, pp, vpp and micro_batch are positive integers."""
    _positive("parallel", p, ("tp", "pp", "vpp", "micro_batch"))


def check_system_spec(s: Any) -> None:
    """SystemSpec (where a run is planned): a clean profile name, positive GPU and node counts, a framework
    preset."""
    check_text("system.name", s.name)
    _positive("system", s, ("gpus_per_node", "nodes"))
    check_framework("system.framework", s.framework)


def check_framework(field: str, name: str) -> None:
    """A framework preset name (stripped, any case) or a preset TOML path."""
    from batchlaw.simulator.frameworks import framework_names

    if str(name).strip().lower() not in framework_names() and not str(name).endswith(".toml"):
        _fail(field, name, "the framework presets " + ", ".join(framework_names()))


def check_train(t: Any) -> None:
    """TrainConfig: finite, positive learning rates with min_lr <= lr, AdamW ranges, counts >= 0, and
    one bound on the run's length (steps or tokens, not both)."""
    _int_at_least("train.global_batch", t.global_batch, 1)
    _int_at_least("train.steps", t.steps, 0, " (0 = derive from train.tokens)")
    if t.steps > 0:
        from batchlaw.simulator.ramp import parse_count

        if parse_count(str(t.tokens), "train.tokens"):  # issue 21: steps won silently over the token budget
            _fail("train.steps", t.steps, f"train.tokens = {t.tokens!r} bounds the run too; give one of them"
                  " (--set train.tokens=0 to count steps, or train.steps=0 to train on the token budget)")
    if not isinstance(t.seed, int) or not 0 <= t.seed < MAX_SEED:
        _fail("train.seed", t.seed, "must be an integer in [0, 2^32)")
    _finite("train.lr", t.lr, lo=0.0, lo_open=True)
    _finite("train.min_lr", t.min_lr, lo=0.0)
    if t.min_lr > t.lr:
        _fail("train.min_lr", t.min_lr, f"must be <= train.lr = {t.lr!r} (the LR would rise during the decay)")
    _int_at_least("train.warmup_samples", t.warmup_samples, 0)
    _finite("train.weight_decay", t.weight_decay, lo=0.0)
    _finite("train.adam_beta2", t.adam_beta2, lo=0.0, hi=1.0, hi_open=True)
    _finite("train.clip_grad", t.clip_grad, lo=0.0)
    _finite("train.loss_scale_init", t.loss_scale_init, lo=0.0, lo_open=True)
    _int_at_least("train.eval_every", t.eval_every, 0, " (0 = no validation)")
    if t.eval_every > 0:
        _int_at_least("train.eval_batches", t.eval_batches, 1, f" when train.eval_every = {t.eval_every}")
    _int_at_least("train.exit_after_steps", t.exit_after_steps, 0, " (0 = never)")


def check_data(d: Any) -> None:
    """DataConfig: a clean path, a held-out fraction in [0, 1)."""
    check_text("data.path", d.path)
    _finite("data.valid_fraction", d.valid_fraction, lo=0.0, hi=1.0, hi_open=True)


def check_log(lg: Any) -> None:
    """LogConfig: flush at least every step, clean paths."""
    _int_at_least("log.flush_every", lg.flush_every, 1)
    _int_at_least("log.stdout_every", lg.stdout_every, 0, " (0 = never)")
    for name in ("path", "tensorboard", "done_marker"):
        check_text(f"log.{name}", getattr(lg, name))


def check_checkpoint(c: Any) -> None:
    """CheckpointConfig: every >= 0 (0 = on signal and at the end), keep >= 1, clean paths."""
    _int_at_least("checkpoint.every", c.every, 0, " (0 = only on a signal and at the end)")
    _int_at_least("checkpoint.keep", c.keep, 1)
    check_text("checkpoint.dir", c.dir)
    check_text("checkpoint.stop_file", c.stop_file)


def check_run(cfg: Any) -> None:
    """RunSpec: the step count, given or derived from the token budget, with its cost stated."""
    from batchlaw.simulator.params import num_params

    t, s = cfg.train, cfg.model.seq_len
    steps = t.steps if t.steps > 0 else -(-cfg.total_samples() // t.global_batch)
    tokens = steps * t.global_batch * s
    if steps > MAX_STEPS or tokens > MAX_TOKENS:
        flops = 6.0 * num_params(cfg.model) * float(min(tokens, 10**300))  # C = 6 N D (Kaplan et al. 2020, eq. 2.1)
        field, value = ("train.steps", t.steps) if t.steps > 0 else ("train.tokens", t.tokens)
        _fail(field, value, f"means {steps:,} steps and {tokens:.3g} tokens (global_batch {t.global_batch} x seq_len"
              f" {s}), over the limit of {MAX_STEPS:,} steps or {MAX_TOKENS:.0e} tokens: about 6 N D = {flops:.3g}"
              f" FLOPs ({flops / 400e12 / 3600:.3g} GPU-hours at 400 TFLOP/s)")


def check_system_tables(data: Mapping[str, Any], path: Any) -> None:
    """A system TOML holds a [system] table and optionally [efficiency]."""
    if not isinstance(data.get("system"), Mapping):
        raise ValueError(f"{path}: no [system] table; a system file holds [system] (and optionally [efficiency])")


def check_system(p: Any) -> None:
    """SystemProfile: finite positive hardware numbers (a NaN memory would skip the memory check)."""
    check_text("system.name", p.name)
    for name in ("peak_tflops", "hbm_gbps", "memory_gib", "nvlink_gbps", "network_gbps", "host_gbps"):
        _finite(f"system.{name}", getattr(p, name), lo=0.0, lo_open=True)
    for name in ("latency_us", "hop_nvlink_us", "hop_net_us", "memory_overhead_gib"):
        _finite(f"system.{name}", getattr(p, name), lo=0.0)
    _int_at_least("system.gpus_per_node", p.gpus_per_node, 1)
    e = p.efficiency
    _finite("system.peak_fp8_tflops", p.peak_fp8_tflops, lo=0.0)  # 0 = no FP8 tensor cores
    _finite("system.peak_fp32_tflops", p.peak_fp32_tflops, lo=0.0)  # 0 = peak_tflops (CPU profiles)
    for name in ("matmul_max", "fp8_matmul_max", "attention_eff", "cp_attention_eff", "hbm_eff", "network_eff"):
        _finite(f"efficiency.{name}", getattr(e, name), lo=0.0, hi=1.0, lo_open=True)
    _finite("efficiency.mxfp8_eff", e.mxfp8_eff, lo=0.0, hi=1.5, lo_open=True)
    for name in ("dp_exposed", "tp_exposed"):
        _finite(f"efficiency.{name}", getattr(e, name), lo=0.0, hi=1.0)
    for name in ("width_half", "tokens_half", "overhead_s", "overhead_mb_s", "overhead_layer_s"):
        _finite(f"efficiency.{name}", getattr(e, name), lo=0.0)


def check_grid(g: Any) -> None:
    """GridConfig: every axis value in range (a 0 batch or a NaN token budget never reaches a row)."""
    a, p = g.grid, g.prune
    _int_at_least("gpus_per_node", g.gpus_per_node, 1)
    check_text("system", g.system)
    if g.framework:
        check_framework("framework", g.framework)
    if not a.models or not a.global_batch:
        _fail("grid.models" if not a.models else "grid.global_batch", (), "must list at least one value")
    for name in ("global_batch", "nodes", "tp", "pp", "vpp", "micro_batch"):
        for v in getattr(a, name):
            _int_at_least(f"grid.{name}", v, 1)
    for v in a.lr:
        _finite("grid.lr", v, lo=0.0, lo_open=True)
    _finite("grid.tokens_per_param", a.tokens_per_param, lo=0.0, lo_open=True)
    for name in ("dominance_margin", "max_gpu_hours_per_run", "max_wall_hours_per_run", "max_loss_excess"):
        _finite(f"prune.{name}", getattr(p, name), lo=0.0)


def check_grid_size(n_points: int, limit: int = MAX_GRID_POINTS, *, axes: Mapping[str, int] | None = None) -> None:
    """Refuse a grid of more than ``limit`` points before anything is allocated."""
    if n_points > limit:
        shape = " x ".join(f"{k} {v}" for k, v in (axes or {}).items() if v != 1)
        gib, minutes = n_points * _BYTES_PER_POINT / 2**30, n_points * _SECONDS_PER_POINT / 60
        raise ValueError(f"grid has {n_points:,} points ({shape}), over the limit of {limit:,}; it would take about"
                         f" {gib:,.1f} GiB and {minutes:,.1f} min (about 1 KiB and 0.1 ms per point): split it"
                         " into smaller grids")


_POSITIVE_COLUMNS = ("layers", "hidden", "heads", "seq_len", "vocab", "tp", "pp", "vpp", "global_batch",
                     "query_groups", "ffn_hidden")


def _bad_size(c: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    v = np.asarray(c[name], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        # a positive whole number: v >= 1 is False for NaN and -inf, v - floor(v) is NaN for +inf
        bad = ~((v >= 1) & (v - np.floor(v) == 0))
    return bad & ~np.isnan(v) if name == "micro_batch" else bad


def bad_sizes(c: Mapping[str, np.ndarray]) -> np.ndarray:
    """Rows of a (normalised) runs table with a size no run can have: not a positive integer.

    A blank (NaN) micro_batch means "choose one" and is allowed; absent columns are skipped. The
    first rule of ``table.feasibility`` (message: ``bad_size_message``), so such rows are infeasible
    with a reason instead of being priced.
    """
    n = len(next(iter(c.values())))
    bad = np.zeros(n, dtype=bool)
    for name in _POSITIVE_COLUMNS + ("micro_batch",):
        if name in c:
            bad |= _bad_size(c, name)
    return bad


def bad_size_message(c: Mapping[str, np.ndarray], i: int) -> str:
    """The reason for row ``i`` flagged by ``bad_sizes``: the first column at fault and its value."""
    for name in _POSITIVE_COLUMNS + ("micro_batch",):
        v = float(c[name][i]) if name in c else 1.0
        if not (math.isfinite(v) and v >= 1 and v == math.floor(v)) and not (name == "micro_batch" and math.isnan(v)):
            return f"{name} = {v:g}: must be a positive integer"
    return ""
