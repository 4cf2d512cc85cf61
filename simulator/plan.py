"""The typed plan: a grid is a table of RunSpecs, and this module owns its columns and their codec.

Every consumer of a plan cell (the pricer ``table.predict_table``, the grid's pruning and ranking,
``submit`` through ``spec_from_row``, the readers of logs and plans) reads it through ``decode_column`` /
``decode_cell`` here, so a cell is read the same way wherever it goes (priced == launched == logged),
and every writer writes it through ``encode_cell``, so a plan written and read back is the same plan.

Kinds (derived from the RunSpec dataclasses' type hints, never written by hand):
- ``bool``: true/yes/on/y/1 and false/no/off/n/0 (any case), written ``true``/``false``;
- ``count``: a whole number (``4``, ``4.0``; ``tokens`` also ``250B``), written without a decimal point;
- ``number``: a finite number, written in Python's shortest round-trip form;
- ``choice``: one of the field's ``Literal`` values (case-insensitive), written lower-case;
- ``text``: any string;
- ``ramp``: a ``rampspec.RampSpec`` in any accepted spelling, written in its canonical text.
A blank cell (empty, NaN) is *missing*: the consumer takes the base run's value (``spec_from_row``) or
the RunSpec default (the pricer, whose defaults are the RunSpec's). Anything else is a one-line
``ValueError`` naming the column, the value and what is allowed: a typo never silently means "no".

The plan's base run config travels with it: ``write_plan`` writes ``PLAN.csv`` and the sidecar
``PLAN.resolved.json`` (the grid and the resolved base RunSpec), ``read_plan`` reads both back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np

from batchlaw.simulator import config as _config
from batchlaw.simulator.ramp import parse_count
from batchlaw.simulator.rampspec import RampSpec
from batchlaw.simulator.runconfig import RunSpec, TrainConfig, spec_from_dict
from batchlaw.simulator.spec import ModelShape, Parallelism, SystemSpec

__all__ = ["MISSING", "PLAN_COLUMNS", "COLUMN_KINDS", "decode_bool", "decode_cell", "decode_column", "encode_cell",
           "check_row", "has_token_budget", "read_plan", "spec_from_row", "spec_to_row", "write_plan"]

MISSING = None
"""What a blank cell decodes to: the consumer's default applies."""

_TRUE = frozenset({"true", "yes", "on", "y", "1", "1.0"})
_FALSE = frozenset({"false", "no", "off", "n", "0", "0.0"})
_BLANK = frozenset({"", "nan"})

_PLAN_TRAIN = ("global_batch", "ramp", "tokens", "lr", "precision", "seed")
_SECTIONS = {"model": ModelShape, "parallel": Parallelism, "system": SystemSpec}


def _plan_fields() -> dict[str, tuple[str, str]]:
    """column -> (section, field) for the plan part of a RunSpec."""
    out: dict[str, tuple[str, str]] = {}
    for section, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            col = section if f.name == "name" else f.name
            assert col not in out, f"column {col} is ambiguous"
            out[col] = (section, f.name)
    for name in _PLAN_TRAIN:
        assert name not in out, f"column {name} is ambiguous"
        out[name] = ("train", name)
    return out


PLAN_COLUMNS: dict[str, tuple[str, str]] = _plan_fields()
"""Plan column -> (RunSpec section, field): every field of model, parallel and system, and the plan
fields of train. The other fields (data, log, checkpoint, the LR schedule) come from the base run."""


def _kind_of(tp: Any) -> tuple[str, tuple[str, ...]]:
    if tp is bool:
        return "bool", ()
    if tp is int or tp == (int | str):
        return "count", ()
    if tp is float:
        return "number", ()
    if tp is RampSpec:
        return "ramp", ()
    if typing.get_origin(tp) is Literal:
        return "choice", tuple(str(a) for a in typing.get_args(tp))
    return "text", ()


def _kinds() -> dict[str, tuple[str, tuple[str, ...]]]:
    out = {}
    for col, (sec, name) in PLAN_COLUMNS.items():
        cls = _SECTIONS.get(sec, TrainConfig)
        out[col] = _kind_of(typing.get_type_hints(cls)[name])
    # the planner's own columns: what it decided about each row
    out.update({"survives": ("bool", ()), "feasible": ("bool", ())})
    return out


COLUMN_KINDS: dict[str, tuple[str, tuple[str, ...]]] = _kinds()
"""Column -> (kind, allowed choices) for every typed plan column."""


def _fail(column: str, value: Any, allowed: str, row: int | None = None) -> ValueError:
    where = f"row {row}: " if row is not None else ""
    return ValueError(f"{where}{column} = {_shown(value)}: allowed {allowed}")


def _shown(value: Any) -> str:
    return repr(value.item() if hasattr(value, "item") else value)


def _allowed(kind: str, choices: tuple[str, ...]) -> str:
    return {"bool": "are yes/no, true/false, on/off, y/n, 1/0, or blank (the default)",
            "count": "is a whole number (blank: the base run's value)",
            "number": "is a finite number (blank: the base run's value)",
            "ramp": "is '' (constant), 'start,incr,ramp_samples', '0:8 1K:16' or {shape = ...}",
            "choice": "are " + ", ".join(choices) + " (blank: the base run's value)"}.get(kind, "is any text")


def decode_cell(column: str, value: Any, row: int | None = None) -> Any:
    """One plan cell as the Python value of its field (``MISSING`` for a blank cell).

    Raises:
        ValueError: naming the column, the value (and the row) and what is allowed.
    """
    kind, choices = COLUMN_KINDS.get(column, ("text", ()))
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if kind == "ramp":
        try:
            return RampSpec.from_config("" if _is_blank(value) else value, column)
        except ValueError as exc:
            raise ValueError((f"row {row}: " if row is not None else "") + str(exc)) from None
    if _is_blank(value):
        return MISSING
    if kind == "text":
        return str(value)
    if kind == "bool":
        return decode_bool(value, column, row)
    if kind == "choice":
        text = str(value).strip().lower()
        if text in choices:
            return text
        raise _fail(column, value, _allowed(kind, choices), row)
    return _decode_number(column, value, kind, row)


def decode_bool(value: Any, column: str, row: int | None = None) -> bool | None:
    """A yes/no cell of any column (``MISSING`` when blank); the one reading of yes/no in batchlaw.

    Raises:
        ValueError: naming the column and the value, for anything that is not a yes/no spelling.
    """
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, bool):
        return value
    if _is_blank(value):
        return MISSING
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise _fail(column, value, _allowed("bool", ()), row)


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in _BLANK


def _decode_number(column: str, value: Any, kind: str, row: int | None) -> Any:
    if isinstance(value, bool):
        raise _fail(column, value, _allowed(kind, ()), row)
    if kind == "count" and isinstance(value, str) and column == "tokens":
        try:
            return parse_count(value, column)
        except ValueError:
            raise _fail(column, value, "is a whole count such as 9000000000 or 9B", row) from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(column, value, _allowed(kind, ()), row) from None
    if not math.isfinite(number):
        raise _fail(column, value, _allowed(kind, ()), row)
    if kind == "count":
        if not number.is_integer() or abs(number) >= 2**63:
            raise _fail(column, value, _allowed(kind, ()), row)
        return int(number)
    return number


def decode_column(column: str, values: Any) -> np.ndarray:
    """A whole column decoded (each distinct value once): bool, float (NaN = missing), or object.

    bool columns come back as an object array of True/False/None when any cell is blank, else bool;
    count and number columns as float64 with NaN for blanks; the others as object arrays.
    """
    kind, _ = COLUMN_KINDS.get(column, ("text", ()))
    if kind == "ramp":
        return np.array([decode_cell(column, v, i) for i, v in enumerate(values)], dtype=object)
    arr = np.asarray(values)
    if kind in ("count", "number") and arr.dtype.kind in "iu":
        return arr.astype(np.float64)
    if kind in ("count", "number") and arr.dtype.kind == "f":
        bad = np.flatnonzero(np.isinf(arr) | ((arr != np.round(arr)) & np.isfinite(arr) if kind == "count" else
                                               np.isinf(arr)))
        if len(bad):
            raise _fail(column, arr[bad[0]], _allowed(kind, ()), int(bad[0]))
        return arr
    if kind == "bool" and arr.dtype.kind == "b":
        return arr
    flat = arr.reshape(-1)
    keys = flat.astype(str) if flat.dtype.kind not in "US" else flat
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    decoded = [decode_cell(column, flat[j], int(j)) for j in first]
    if kind in ("count", "number"):
        return np.array([np.nan if d is MISSING else float(d) for d in decoded], dtype=np.float64)[inverse]
    out = np.empty(len(decoded), dtype=object)
    out[:] = decoded
    if kind == "bool" and all(d is not MISSING for d in decoded):
        return out.astype(bool)[inverse]
    return out[inverse]


def encode_cell(column: str, value: Any) -> str:
    """A plan cell's canonical text (what ``write_plan`` writes; ``decode_cell`` reads it back equal)."""
    decoded = decode_cell(column, value)
    kind, _ = COLUMN_KINDS.get(column, ("text", ()))
    if decoded is MISSING:
        return ""
    if kind == "ramp":
        return decoded.text
    if kind == "bool":
        return "true" if decoded else "false"
    if kind == "count":
        return str(int(decoded))
    if kind == "number":
        return repr(float(decoded))
    return str(decoded)


# -- RunSpec <-> row ----------------------------------------------------------------------------------

def spec_to_row(spec: RunSpec) -> dict[str, Any]:
    """The plan columns of one RunSpec (the ramp as its ``RampSpec``)."""
    return {col: getattr(getattr(spec, sec), name) for col, (sec, name) in PLAN_COLUMNS.items()}


def spec_from_row(row: Mapping[str, Any], base: RunSpec | Mapping[str, Any] | None = None,
                  index: int | None = None) -> RunSpec:
    """The RunSpec of one plan row: ``base`` (a RunSpec or dict; defaults if None) with every plan column
    present and not blank in ``row`` set (each cell through ``decode_cell``); other columns are ignored.
    A row with a token budget is bounded by it (``train.steps`` of the base is dropped)."""
    data = _config.to_dict(base) if isinstance(base, RunSpec) else json.loads(json.dumps(base or {}))
    data.setdefault("train", {}).setdefault("global_batch", 1)
    if "model" in row and decode_cell("model", row["model"], index) is not MISSING:
        data["model"] = {"name": str(row["model"])}  # a named shape replaces the base's; its columns apply next
    for col, (sec, name) in PLAN_COLUMNS.items():
        if col not in row or col == "model":
            continue
        value = decode_cell(col, row[col], index)
        if value is MISSING:
            continue
        data.setdefault(sec, {})[name] = value.to_config() if isinstance(value, RampSpec) else value
    if has_token_budget(row.get("tokens")):
        data["train"]["steps"] = 0  # the planned token budget bounds the run
    return spec_from_dict(data)


# cells the pricer cannot price blank; a plan written by ``simulate`` or ``design`` fills them all (a blank
# micro batch is the pricer's choice of the fastest: price the plan first)
_REQUIRED = tuple(c for c, (sec, _) in PLAN_COLUMNS.items() if sec == "model" and c != "model") + \
    ("global_batch", "tp", "pp", "micro_batch")
_POSITIVE = ("global_batch", "tp", "pp", "nodes", "vpp", "micro_batch", "gpus_per_node", "lr")


def check_row(row: Mapping[str, Any], index: int) -> None:
    """A plan row about to become a run (``batchlaw submit``): every plan cell decodes, the layout columns
    are present, and counts and ``lr`` are positive; a blank optional cell means "the base run's value".

    Raises:
        ValueError: one line naming the row, the column, the value and what is allowed.
    """
    for col in _REQUIRED:
        if col in row and decode_cell(col, row[col], index) is MISSING:
            raise ValueError(f"row {index}: {col} = '': required (a blank shape or layout cell is priced with the"
                             f" pricer's default, launched with the base's); allowed {_allowed(*COLUMN_KINDS[col])}")
    for col in PLAN_COLUMNS:
        if col not in row:
            continue
        value = decode_cell(col, row[col], index)
        if col in _POSITIVE and value is not MISSING and value <= 0:
            raise _fail(col, row[col], "is a positive " + ("number" if col == "lr" else "whole number")
                        + ("" if col in _REQUIRED else " or blank"), index)


def has_token_budget(value: Any) -> bool:
    """Whether a plan's ``tokens`` cell sets a budget (blank and 0 do not); submit and ``spec_from_row``
    ask this one question the same way. A cell that is not a count is a ``ValueError``."""
    decoded = decode_cell("tokens", value)
    return decoded is not MISSING and decoded > 0


# -- the plan on disk ---------------------------------------------------------------------------------

def sidecar(path: str | Path) -> Path:
    """The ``PLAN.resolved.json`` that travels with ``PLAN.csv``."""
    return Path(path).with_suffix(".resolved.json")


def encode_table(table: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every typed plan column in its canonical text (other columns unchanged), ready for ``write_csv``."""
    out = {}
    for col, values in table.items():
        if col in COLUMN_KINDS and COLUMN_KINDS[col][0] in ("bool", "ramp", "choice") or col == "tokens":
            cache: dict[str, str] = {}
            cells = [cache.setdefault(repr(v), encode_cell(col, v)) if repr(v) not in cache else cache[repr(v)]
                     for v in values]
            out[col] = np.array(cells, dtype=object)
        else:
            out[col] = np.asarray(values)
    return out


def write_plan(path: str | Path, table: Mapping[str, Any], *, base: RunSpec | None,
               meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``PLAN.csv`` (cells in canonical text) and its sidecar ``PLAN.resolved.json`` holding the
    resolved base RunSpec (``base_config``) and ``meta`` (the grid or study it came from). Both are
    written to temporary names and renamed, the sidecar first."""
    from batchlaw.simulator.csvio import write_csv

    doc = {**(dict(meta) if meta else {}), "base_config": _config.to_dict(base) if base is not None else None}
    _config.write_text_atomic(sidecar(path), json.dumps(doc, sort_keys=True) + "\n")
    write_csv(path, encode_table(table))
    return Path(path)


def read_plan(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(table, sidecar) of a plan CSV; the sidecar is ``{}`` when the CSV travels alone.

    Raises:
        ValueError: an unreadable CSV or a sidecar that is not JSON (naming the file).
    """
    from batchlaw.simulator.csvio import read_csv

    table = read_csv(path)
    side = sidecar(path)
    if not side.is_file():
        return table, {}
    try:
        doc = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{side}: not a readable plan sidecar ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{side}: not a readable plan sidecar (expected a JSON object)")
    return table, doc


def base_of(doc: Mapping[str, Any]) -> RunSpec | None:
    """The resolved base RunSpec a plan's sidecar carries (None when it has none)."""
    data = doc.get("base_config")
    return spec_from_dict(data) if data else None
