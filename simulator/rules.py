"""The one table of cross-field validity rules of a run (layout, batch, ramp, trainer support).

Both paths read this table: ``spec.validate_run`` (the trainer's pre-launch check, ``batchlaw
train`` and ``batchlaw submit``) evaluates it on a one-row table, and ``table.feasibility`` (the
vectorised pruner behind ``predict_table`` and grids) on many rows. The rules are written once, as
numpy expressions over columns, so both paths give the same verdict and the same message.

Columns (float arrays unless noted): ``tp, pp, vpp, dp, micro_batch (NaN = not chosen yet),
global_batch, heads, query_groups (effective), layers, seq_len, sequence_parallel (bool)`` and,
optionally, ``ramp`` (object: a ``train.ramp`` value per row).

Rules of scope ``"layout"`` hold for any Megatron-style trainer (published throughput rows are
checked with them); rules of scope ``"trainer"`` describe what batchlaw's own trainer accepts
today and are applied to plans (grids, submit) and before a launch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Mapping

import numpy as np

__all__ = ["RULES", "TRAINER_SUPPORTS_VPP", "Rule", "first_violation", "violations"]

TRAINER_SUPPORTS_VPP = True
"""Whether batchlaw's trainer runs interleaved pipelines (vpp > 1). Flip here, in one place, when
``plugin/model.py`` accepts it; grids then propose vpp > 1 and the pre-launch check lets it pass."""

Cols = Mapping[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class Rule:
    """One validity rule: where it is violated (vectorised) and the one-line message for row i."""

    name: str
    """Short identifier."""
    violated: Callable[[Cols], np.ndarray]
    """Boolean array, True where the row breaks the rule."""
    message: Callable[[Cols, int], str]
    """The reason for row i (names the values and what is allowed)."""
    scope: Literal["layout", "trainer"] = "layout"
    """layout: any Megatron-style trainer; trainer: what batchlaw's trainer accepts today."""


def _world(c: Cols) -> np.ndarray:
    return c["dp"] * c["tp"] * c["pp"]


def _per_step(c: Cols) -> np.ndarray:
    ps = c["micro_batch"] * c["dp"]
    return np.where(ps > 0, ps, 1.0)


def _indivisible(a, b) -> np.ndarray:
    """Where ``a`` is not a whole multiple of ``b`` (both whole numbers held as floats; NaN and inf count as
    not divisible). ``a % b != 0`` without numpy's slow floating-point remainder: the quotient of whole
    numbers below 2**26 is exact when it is whole and at least 1/b away from one when it is not."""
    q = np.asarray(a, dtype=np.float64) / b
    return ~(np.isfinite(q) & (q == np.floor(q)))


def _has_mb(c: Cols) -> np.ndarray:
    return ~np.isnan(c["micro_batch"])


def _ramp_errors(c: Cols) -> np.ndarray:
    """The ramp's own error per row ('' = fine): each row's ``RampSpec`` bound to its batch, granularity
    and sequence length, once per distinct combination. The column holds RampSpec values or their text
    (``plan.decode_cell``); nothing here reads a file."""
    from batchlaw.simulator.rampspec import RampSpec

    n = len(c["tp"])
    out = np.full(n, "", dtype=object)
    if "ramp" not in c:
        return out
    ramps = np.asarray(c["ramp"], dtype=object)
    cache: dict[tuple, str] = {}
    # the element-wise != "" runs in C; only rows that carry a ramp reach the Python loop
    for i in np.flatnonzero((ramps != "") & _has_mb(c) & (c["dp"] >= 1)):
        if ramps[i] is None or (isinstance(ramps[i], float) and ramps[i] != ramps[i]):
            continue
        gran = c["micro_batch"][i] * c["dp"][i]
        key = (str(ramps[i]), c["global_batch"][i], gran, c["seq_len"][i])
        if key not in cache:
            try:
                RampSpec.from_config(ramps[i]).bind(global_batch=int(c["global_batch"][i]), granularity=int(gran),
                                                    seq_len=int(c["seq_len"][i]))
                cache[key] = ""
            except (ValueError, OverflowError) as exc:  # OverflowError: an inf batch from a CSV
                cache[key] = str(exc)
        out[i] = cache[key]
    return out


def _ramp_violated(c: Cols) -> np.ndarray:
    return _ramp_errors(c) != ""


def _ramp_message(c: Cols, i: int) -> str:
    return "ramp: " + _ramp_errors({k: np.asarray(v)[i:i + 1] for k, v in c.items()})[0]


def _whole(x: float) -> bool:
    return bool(np.isfinite(x)) and x >= 1 and x == int(x)


def _divisors(n: float, limit: int = 64) -> str:
    """'1, 2, 4' : the divisors of ``n`` up to ``limit`` (the values of a parallel size that would work);
    '?' when ``n`` is not a positive whole number (a bad size has its own message)."""
    if not _whole(n):
        return "?"
    n = int(n)
    found = [d for d in range(1, min(n, limit) + 1) if n % d == 0]
    return ", ".join(map(str, found)) + (", ..." if n > limit and any(n % d == 0 for d in range(limit + 1, n + 1))
                                           else "")


def _multiples(value: float, step: float) -> str:
    """'96 or 104': the multiples of ``step`` next to ``value`` (the batch sizes that would work)."""
    if not (_whole(step) and np.isfinite(value)):
        return "?"
    below = int(value // step * step)
    return " or ".join(f"{v:g}" for v in (below, below + step) if v > 0)


def _tp_hint(c: Cols, i: int) -> str:
    if not (_whole(c["heads"][i]) and _whole(c["query_groups"][i])):
        return ""
    g = np.gcd(int(c["heads"][i]), int(c["query_groups"][i]))
    return f"; tp can be {_divisors(g)} (the common divisors of the head and query-group counts)"


RULES: tuple[Rule, ...] = (
    Rule("world_size", lambda c: (c["dp"] < 1) | (c["dp"] != np.floor(c["dp"])),
         lambda c, i: f"world size {_world(c)[i]:g} is not divisible by tp x pp = {c['tp'][i] * c['pp'][i]:g};"
                      f" tp x pp can be {_divisors(_world(c)[i])} (its divisors)"),
    Rule("heads_tp", lambda c: _indivisible(c["heads"], c["tp"]),
         lambda c, i: f"heads {c['heads'][i]:g} not divisible by tp {c['tp'][i]:g}" + _tp_hint(c, i)),
    Rule("groups_tp", lambda c: _indivisible(c["query_groups"], c["tp"]),
         lambda c, i: f"query groups {c['query_groups'][i]:g} not divisible by tp {c['tp'][i]:g}" + _tp_hint(c, i)),
    Rule("layers_pp", lambda c: _indivisible(c["layers"], c["pp"] * c["vpp"]),
         lambda c, i: f"layers {c['layers'][i]:g} not divisible by pp x vpp = {c['pp'][i] * c['vpp'][i]:g};"
                      f" pp x vpp can be {_divisors(c['layers'][i])} (divisors of layers)"),
    Rule("vpp_pp", lambda c: (c["vpp"] > 1) & (c["pp"] < 2),
         lambda c, i: f"vpp {c['vpp'][i]:g} needs pp >= 2"),
    # Megatron-LM splits the sequence over the TP ranks under sequence parallelism
    # (Korthikanti et al. 2022, sec. 4.2.2), so s must divide by t.
    Rule("sp_seq_len", lambda c: np.asarray(c["sequence_parallel"], dtype=bool) & (c["tp"] > 1)
         & _indivisible(c["seq_len"], c["tp"]),
         lambda c, i: f"seq_len {c['seq_len'][i]:g} not divisible by tp {c['tp'][i]:g} (sequence parallel);"
                      f" tp can be {_divisors(c['seq_len'][i])} (divisors of seq_len)"),
    Rule("batch_granularity", lambda c: _has_mb(c) & _indivisible(c["global_batch"], _per_step(c)),
         lambda c, i: f"global batch {c['global_batch'][i]:g} not divisible by micro_batch x dp ="
                      f" {c['micro_batch'][i] * c['dp'][i]:g}; global batch can be"
                      f" {_multiples(c['global_batch'][i], _per_step(c)[i])}"
                      + (f", or micro_batch {_divisors(c['global_batch'][i] / c['dp'][i])} (divisors of the"
                         f" {c['global_batch'][i] / c['dp'][i]:g} sequences per DP rank)"
                         if c["global_batch"][i] % c["dp"][i] == 0 else "")),
    Rule("interleave_micro", lambda c: _has_mb(c) & (c["vpp"] > 1) & _indivisible(c["global_batch"] / _per_step(c), c["pp"]),
         lambda c, i: f"interleaved schedule needs micro-batches {c['global_batch'][i] / _per_step(c)[i]:g}"
                      f" divisible by pp {c['pp'][i]:g}; a batch size of"
                      f" {_multiples(c['global_batch'][i], _per_step(c)[i] * c['pp'][i])} would do"),
    Rule("ramp", _ramp_violated, _ramp_message),
    Rule("trainer_vpp", lambda c: np.full(len(c["vpp"]), not TRAINER_SUPPORTS_VPP) & (c["vpp"] > 1),
         lambda c, i: f"vpp {c['vpp'][i]:g}: the batchlaw trainer runs vpp = 1 for now (rules.TRAINER_SUPPORTS_VPP)",
         scope="trainer"),
)


def violations(c: Cols, *, trainer: bool = True, messages: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate the table on columns ``c``; returns ``(ok, reason)`` with the first rule broken per row.

    Args:
        c: the columns listed in the module docstring.
        trainer: also apply the rules of scope ``"trainer"``.
        messages: write each broken row's message (False: ``reason`` stays '', for callers that only need
            ``ok``, such as the pricing of a blank setting's choices).
    """
    n = len(c["tp"])
    reason = np.full(n, "", dtype=object)
    assigned = np.zeros(n, dtype=bool)
    for rule in RULES:
        if rule.scope == "trainer" and not trainer:
            continue
        hit = np.asarray(rule.violated(c), dtype=bool) & ~assigned
        for i in np.flatnonzero(hit) if messages else ():
            reason[i] = rule.message({k: np.asarray(v)[i:i + 1] for k, v in c.items()}, 0)  # one row: O(1) each
        assigned |= hit
    return ~assigned, reason


def first_violation(values: Mapping[str, object], *, trainer: bool = True) -> str:
    """The message of the first rule one run breaks ('' when none): the scalar path of the table."""
    c = {k: (np.array([v], dtype=object) if k == "ramp" else np.array([v], dtype=float if k != "sequence_parallel"
                                                                      else bool)) for k, v in values.items()}
    return str(violations(c, trainer=trainer)[1][0])
