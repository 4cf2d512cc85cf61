"""``RampSpec``: the batch ramp of a run as one frozen value, parsed once at the config boundary.

A ramp spec says the *shape* of the batch schedule without the numbers a launch decides (the final
global batch, the granularity micro_batch x dp, the sequence length); ``bind`` adds them and returns the
pure function ``consumed_samples -> global batch`` of ``simulator.ramp`` that the simulator prices and
the trainer runs. The spec has one canonical text form, ``RampSpec.text``: '' for a constant batch, else
an inline TOML table with ``shape`` first and only the keys that differ from their defaults, e.g.
``{shape = "staircase", start = 32, incr = 32, ramp_samples = 100000}``. The same characters appear in a
grid's ``ramp`` column, a plan CSV, ``run.toml`` (``ramp = {...}``) and the HDF5 ``ramp`` attribute, and
``RampSpec.parse`` reads each of them back to an equal spec.

Input spellings accepted by ``parse`` (all normalised to the canonical form):
- '' / 'constant' / None: constant;
- ``"start,incr,ramp_samples"`` or a list of three counts: Megatron's linear staircase
  (``--rampup-batch-size``);
- ``"0:768 250B:1536"``: megatron-core 0.18+ step schedule in samples (``--step-batch-size-schedule``);
- a table (TOML inline table text, or a mapping) with ``shape`` and that shape's keys.

A ``probe`` ramp (the batch follows a measured B_crit(tokens) curve of ``batchlaw probe-cbs``) reads its
``probe.json`` once, when parsed, and keeps the curve in the spec (keys ``tokens`` and ``b_crit``), so a
bound ramp never opens a file and a logged spec reproduces the schedule without the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from batchlaw.simulator import config as _config
from batchlaw.simulator import ramp as R

__all__ = ["RampSpec", "SHAPES", "probe_curve"]

SHAPES = ("constant", "staircase", "steps", "linear_tokens", "doubling", "adaptive", "probe")
"""The ramp shapes, in the order the docs list them."""

_SHAPE_KEYS: dict[str, tuple[str, ...]] = {
    "constant": (), "staircase": ("start", "incr", "ramp_samples"), "steps": ("schedule", "unit"),
    "linear_tokens": ("start", "ramp_tokens"), "doubling": ("start", "every_tokens"),
    "adaptive": ("start", "factor", "hysteresis", "min_steps"),
    "probe": ("start", "fraction", "probe", "tokens", "b_crit"),
}
_COUNT_KEYS = ("start", "incr", "ramp_samples", "ramp_tokens", "every_tokens", "min_steps")


@dataclass(frozen=True, kw_only=True, slots=True)
class RampSpec:
    """A batch ramp's shape and parameters (sequences and counts), without the final batch.

    Only the keys of ``shape`` may differ from their defaults (``_SHAPE_KEYS``).
    """

    shape: Literal["constant", "staircase", "steps", "linear_tokens", "doubling", "adaptive", "probe"] = "constant"
    """Ramp shape."""
    start: int = 0
    """Initial global batch, sequences (0 = the final batch; probe: the granularity)."""
    incr: int = 0
    """Staircase increment, sequences (0 = the granularity)."""
    ramp_samples: int = 0
    """Staircase ramp length, samples."""
    ramp_tokens: int = 0
    """linear_tokens: tokens over which the batch grows."""
    every_tokens: int = 0
    """doubling: tokens between doublings."""
    schedule: tuple[tuple[int, int], ...] = ()
    """steps: (threshold, batch) pairs; thresholds start at 0 and increase."""
    unit: Literal["samples", "tokens"] = "samples"
    """steps: what the thresholds count."""
    factor: float = 2.0
    """adaptive: growth factor per decision."""
    hysteresis: float = 0.25
    """adaptive: relative margin the noise scale must exceed the batch by."""
    min_steps: int = 50
    """adaptive: minimum steps between decisions."""
    fraction: float = 1.0
    """probe: use at most this fraction of the measured B_crit (0 < fraction <= 1)."""
    probe: str = ""
    """probe: the probe.json the curve was read from (provenance; not read again once ``tokens`` is set)."""
    tokens: tuple[float, ...] = ()
    """probe: tokens of the measured B_crit points, increasing."""
    b_crit: tuple[float, ...] = ()
    """probe: measured B_crit at each of ``tokens``, sequences."""

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"train.ramp.shape = {self.shape!r}: allowed are {', '.join(SHAPES)}")
        allowed = _SHAPE_KEYS[self.shape]
        for f in dataclasses.fields(self):
            if f.name != "shape" and f.name not in allowed and getattr(self, f.name) != f.default:
                raise ValueError(f"train.ramp.{f.name} = {_shown(getattr(self, f.name))}: not used by shape"
                                 f" {self.shape!r}; its keys are " + ", ".join(("shape",) + allowed))
        for name in _COUNT_KEYS:
            if getattr(self, name) < 0:
                raise ValueError(f"train.ramp.{name} = {getattr(self, name)}: must be >= 0")
        if self.shape == "steps":
            _check_schedule(self.schedule)
        if self.shape == "probe":
            _check_curve(self.tokens, self.b_crit, self.probe)
            if not 0 < self.fraction <= 1:
                raise ValueError(f"train.ramp.fraction = {self.fraction}: must be in (0, 1]")

    # -- the one text form ------------------------------------------------------------------------

    @property
    def is_constant(self) -> bool:
        """Whether the batch never changes (shape constant)."""
        return self.shape == "constant"

    def to_config(self) -> str | dict[str, Any]:
        """The value as a config file holds it: '' for constant, else the table of non-default keys."""
        if self.is_constant:
            return ""
        out: dict[str, Any] = {"shape": self.shape}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "shape" or value == f.default:
                continue
            if f.name == "schedule":
                value = " ".join(f"{t}:{b}" for t, b in value)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def text(self) -> str:
        """The canonical text: '' for constant, else the inline TOML table of ``to_config``."""
        value = self.to_config()
        return value if isinstance(value, str) else _config.toml_value(value, "train.ramp")

    def __str__(self) -> str:
        return self.text or "constant"

    # -- parsing ----------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, value: Any, where: str = "train.ramp") -> "RampSpec":
        """Parse any accepted spelling (see the module docstring) into a spec.

        Raises:
            ValueError: naming ``where``, the value and what is allowed.
        """
        if isinstance(value, RampSpec):
            return value
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()  # numpy scalar from a table
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return cls()
        if isinstance(value, (list, tuple)):
            return _staircase_from(list(value), where)
        if isinstance(value, Mapping):
            return _from_table(value, where)
        if not isinstance(value, str):
            raise ValueError(f"{where} = {value!r}: expected '' (constant), 'start,incr,ramp_samples',"
                             " a step schedule such as '0:768 250B:1536', or a table {shape = ...}")
        text = value.strip()
        if text in ("", "constant"):
            return cls()
        if text.startswith("{"):
            table = _config._loads(f"v = {text}", f"{where} = {text!r}")["v"]  # the loader's guards
            return _from_table(table, where)
        if "," in text:
            return _staircase_from(text.split(","), where)
        return cls(shape="steps", schedule=_parse_schedule(text, where))

    parse = from_config

    # -- binding ----------------------------------------------------------------------------------

    def bind(self, *, global_batch: int, granularity: int = 1, seq_len: int = 1) -> R.BatchRamp:
        """The ramp function of one run: this shape ending at ``global_batch``.

        Args:
            global_batch: final global batch, sequences (``train.global_batch``).
            granularity: micro_batch x dp; every batch is a multiple of it.
            seq_len: tokens per sequence (token-based shapes).

        Raises:
            ValueError: when the numbers do not fit the shape (naming the key and what is allowed).
        """
        start = self.start or global_batch
        kw = {"granularity": granularity}
        if self.shape == "constant":
            return R.ConstantRamp(final=global_batch, **kw)
        if self.shape == "staircase":
            return R.StaircaseRamp(start=start, incr=self.incr or granularity, ramp_samples=self.ramp_samples,
                                   final=global_batch, **kw)
        if self.shape == "steps":
            if self.schedule[-1][1] != global_batch:
                raise ValueError(f"train.ramp = {self.text!r}: the schedule ends at batch {self.schedule[-1][1]},"
                                 f" train.global_batch is {global_batch}; they must agree")
            return R.StepScheduleRamp(thresholds=tuple(t for t, _ in self.schedule),
                                      batches=tuple(b for _, b in self.schedule), unit=self.unit,
                                      seq_len=seq_len, **kw)
        if self.shape == "linear_tokens":
            return R.LinearTokensRamp(start=start, final=global_batch, ramp_tokens=self.ramp_tokens,
                                      seq_len=seq_len, **kw)
        if self.shape == "doubling":
            if self.every_tokens < 1:
                raise ValueError(f"train.ramp.every_tokens = {self.every_tokens}: must be >= 1")
            return R.DoublingRamp(start=start, final=global_batch, every_tokens=self.every_tokens,
                                  seq_len=seq_len, **kw)
        if self.shape == "probe":
            thresholds, batches = R.probe_schedule(self.tokens, self.b_crit, start=self.start or granularity,
                                                   final=global_batch, fraction=self.fraction)
            return R.StepScheduleRamp(thresholds=thresholds, batches=batches, unit="tokens", seq_len=seq_len, **kw)
        return R.AdaptiveRamp(start=start, final=global_batch, factor=self.factor, hysteresis=self.hysteresis,
                              min_steps=self.min_steps, **kw)


def _shown(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{where} = {value!r}: expected a count such as 768, 1.5M or 250B")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise ValueError(f"{where} = {value!r}: expected a whole count")
        return int(value)
    return R.parse_count(str(value), where)


def _staircase_from(items: list, where: str) -> RampSpec:
    if len(items) != 3:
        raise ValueError(f"{where} = {items!r}: a Megatron ramp is 'start,incr,ramp_samples' (three counts)")
    start, incr, ramp_samples = (_count(v if not isinstance(v, str) else v.strip(), where) for v in items)
    return RampSpec(shape="staircase", start=start, incr=incr, ramp_samples=ramp_samples)


def _parse_schedule(text: str, where: str) -> tuple[tuple[int, int], ...]:
    pairs = []
    for part in str(text).split():
        t, sep, b = part.partition(":")
        if not sep:
            raise ValueError(f"{where} = {text!r}: each item must be THRESHOLD:BATCH, e.g. '0:768 250B:1536'")
        pairs.append((R.parse_count(t, where), R.parse_count(b, where)))
    _check_schedule(tuple(pairs))
    return tuple(pairs)


def _check_schedule(schedule: tuple[tuple[int, int], ...]) -> None:
    if not schedule or schedule[0][0] != 0:
        raise ValueError("train.ramp.schedule: a step schedule must start at threshold 0, e.g. '0:768 250B:1536'")
    thresholds = [t for t, _ in schedule]
    batches = [b for _, b in schedule]
    if any(b <= a for a, b in zip(thresholds, thresholds[1:])):
        raise ValueError(f"train.ramp.schedule: thresholds {thresholds} must increase")
    if any(b < 1 for b in batches) or any(b < a for a, b in zip(batches, batches[1:])):
        raise ValueError(f"train.ramp.schedule: batches {batches} must never decrease (and be >= 1)")


def _check_curve(tokens: tuple[float, ...], b_crit: tuple[float, ...], probe: str) -> None:
    where = f"train.ramp (probe {probe!r})" if probe else "train.ramp"
    if not tokens or len(tokens) != len(b_crit):
        raise ValueError(f"{where}: a probe ramp needs tokens and b_crit of equal, non-zero length (or a"
                         " probe = 'probe.json' written by batchlaw probe-cbs)")
    if not all(math.isfinite(t) and t >= 0 for t in tokens) or any(b < a for a, b in zip(tokens, tokens[1:])):
        raise ValueError(f"{where}: tokens {list(tokens)} must be finite, >= 0 and non-decreasing")
    if not all(math.isfinite(b) and b > 0 for b in b_crit):
        raise ValueError(f"{where}: b_crit {list(b_crit)} must be finite and > 0")


def _from_table(table: Mapping[str, Any], where: str) -> RampSpec:
    """A spec from a ``{shape = ..., ...}`` table; a probe table naming only its file reads the curve."""
    data = dict(table)
    if "shape" not in data:
        raise ValueError(f"{where}: a ramp table needs shape = one of {', '.join(SHAPES)}")
    valid = [f.name for f in dataclasses.fields(RampSpec)]
    for key in data:
        if key not in valid:
            raise ValueError(f"{where}.{key}: unknown key; valid keys are {', '.join(valid)}")
    for key in _COUNT_KEYS:
        if key in data:
            data[key] = _count(data[key], f"{where}.{key}")
    if "schedule" in data:
        data["schedule"] = _parse_schedule(str(data["schedule"]), f"{where}.schedule")
    for key in ("tokens", "b_crit"):
        if key in data:
            if not isinstance(data[key], (list, tuple)):
                raise ValueError(f"{where}.{key} = {data[key]!r}: expected a list of numbers")
            data[key] = tuple(float(v) for v in data[key])
    if data.get("shape") == "probe" and "tokens" not in data and data.get("probe"):
        data["tokens"], data["b_crit"] = (tuple(v) for v in probe_curve(str(data["probe"])))
    lists = {k: data.pop(k) for k in ("schedule", "tokens", "b_crit") if k in data}
    scalars = _config.to_dict(_config.build(_TableTypes, data, where))
    return RampSpec(**{k: v for k, v in scalars.items() if k in data}, **lists)


@dataclass(frozen=True, kw_only=True, slots=True)
class _TableTypes:
    """The scalar keys of a ramp table, typed for the strict loader (``config.build``)."""

    shape: Literal["constant", "staircase", "steps", "linear_tokens", "doubling", "adaptive", "probe"]
    """Ramp shape."""
    start: int = 0
    """See RampSpec."""
    incr: int = 0
    """See RampSpec."""
    ramp_samples: int = 0
    """See RampSpec."""
    ramp_tokens: int = 0
    """See RampSpec."""
    every_tokens: int = 0
    """See RampSpec."""
    unit: Literal["samples", "tokens"] = "samples"
    """See RampSpec."""
    factor: float = 2.0
    """See RampSpec."""
    hysteresis: float = 0.25
    """See RampSpec."""
    min_steps: int = 50
    """See RampSpec."""
    fraction: float = 1.0
    """See RampSpec."""
    probe: str = ""
    """See RampSpec."""


def probe_curve(path: str) -> tuple[list[float], list[float]]:
    """(tokens, B_crit in sequences) of a ``probe.json`` written by ``batchlaw probe-cbs``, by tokens.

    An estimate that is a bound (``">="``: no tested batch left the tolerance) enters with its lower
    value, the reading that never puts the batch above the critical batch; an estimate that is not
    determined (no number) is left out.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            rows = json.load(fh)["estimates"]
        points = sorted((float(r["tokens"]), float(r["b_crit"])) for r in rows
                        if r.get("b_crit") is not None and str(r.get("b_crit")) != "nan")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"train.ramp.probe = {path!r}: not a readable probe-cbs result ({exc})") from None
    if not points or not all(math.isfinite(t) and t >= 0 and math.isfinite(b) and b > 0 for t, b in points):
        raise ValueError(f"train.ramp.probe = {path!r}: needs estimates with tokens >= 0 and B_crit > 0")
    return [t for t, _ in points], [b for _, b in points]
