"""A table's raw columns read once each: text columns factorized once, yes/no cells through the plan's
codec (``plan.decode_bool``), and the framework presets filled into blank settings (``frameworks``).

``Cells`` wraps the columns of one ``table.normalise`` call: every text column is factorized at most once
(its distinct stripped, lower-cased values and each row's index into them), so a column that both the
preset filling and the pricer read costs one pass. ``fill`` resolves each row's framework preset and fills
every setting the row leaves blank (or every row, for a setting the table lacks).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchlaw.simulator import frameworks
from batchlaw.simulator.plan import decode_bool

__all__ = ["BLANK", "Cells", "factorize", "fill", "mix"]

BLANK = ("", "nan", "unknown")
"""Cells that state nothing (published tables print "unknown")."""


def _row_keys(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit key per string, the string bytes as uint64 words) of a 'U'/'S' array."""
    n, width = len(arr), arr.dtype.itemsize
    words = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    words[:, :width] = np.ascontiguousarray(arr).view(np.uint8).reshape(n, width)
    words = words.view(np.uint64)
    key = np.zeros(n, dtype=np.uint64)
    for j in range(words.shape[1]):
        key = mix(key, words[:, j])
    return key, words


def mix(key: np.ndarray, word: np.ndarray) -> np.ndarray:
    """Fold a 64-bit word into a running key (xor-shift-multiply, so high and low bits both matter)."""
    key = (key ^ word ^ (word >> np.uint64(32))) * np.uint64(0x9E3779B97F4A7C15)
    return key ^ (key >> np.uint64(29))


def _factorize_by_sample(arr: np.ndarray) -> tuple[list[str], np.ndarray] | None:
    """Factorize a text column of a few distinct values: the candidates from a sample of rows, then one
    vectorised equality per candidate; None when a row matches no candidate (or a cell is not text), so the
    caller falls back to a full pass."""
    sample = set(arr[:: max(len(arr) // 4096, 1)].tolist())
    if len(sample) > 16 or not all(type(v) is str for v in sample):
        return None
    first = sorted(sample)
    if arr.dtype.kind == "O" and len(first) > 2:  # one dict lookup per cell beats a comparison per value
        index = {v: j for j, v in enumerate(first)}
        try:
            return first, np.fromiter(map(index.__getitem__, arr.tolist()), dtype=np.intp, count=len(arr))
        except (KeyError, TypeError):  # a value outside the sample (or not hashable): the full pass
            return None
    codes = np.full(len(arr), -1, dtype=np.intp)
    for j, v in enumerate(first):
        codes[arr == v] = j
    return (first, codes) if (codes >= 0).all() else None


def factorize(values) -> tuple[list[str], np.ndarray]:
    """Distinct values (as str) and integer codes of a 1-D array.

    Categorical columns hold a handful of distinct strings, so each distinct value costs one vectorised
    pass over a 64-bit key of the string's bytes (no sort); more than 16 distinct values fall back to
    ``np.unique``. A column whose distinct values all appear in a sample of its rows (the common case) costs
    one vectorised equality per value instead.
    Exact: rows are matched on their full value, not on a key alone.
    """
    arr = np.asarray(values)
    n = len(arr)
    if n == 0:
        return [], np.zeros(0, dtype=np.intp)
    if arr.dtype.kind in "OU":
        quick = _factorize_by_sample(arr)
        if quick is not None:
            return quick
    if arr.dtype.kind not in "US":
        arr = arr.astype(str)
    key, words = _row_keys(arr)
    codes = np.full(n, -1, dtype=np.intp)
    first: list[int] = []
    j = 0
    while len(first) < 16:
        codes[key == key[j]] = len(first)
        first.append(j)
        j = int(np.argmax(codes < 0))
        if codes[j] >= 0:
            if (words == words[np.asarray(first)][codes]).all():  # no two strings shared a key
                return [str(arr[i]) for i in first], codes
            break
    uniq, codes = np.unique(arr, return_inverse=True)
    return [str(u) for u in uniq], codes.reshape(-1)


class Cells:
    """The raw columns of one table, each text column factorized at most once."""

    def __init__(self, cols: Mapping[str, Any], n: int):
        self.cols = cols
        self.n = n
        self._cats: dict[str, tuple[list[str], np.ndarray]] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.cols

    def raw(self, name: str) -> np.ndarray:
        return np.asarray(self.cols[name])

    def factors(self, name: str) -> tuple[list[str], np.ndarray]:
        """The column's distinct values as written and each row's index (memoized)."""
        key = "\x00raw:" + name
        if key not in self._cats:
            self._cats[key] = factorize(self.cols[name])
        return self._cats[key]

    def category(self, name: str, default: str) -> tuple[list[str], np.ndarray]:
        """Distinct stripped, lower-cased values of a text column and each row's index into them (the
        one-value ``[default]`` for a missing column); a value set by ``set_category`` wins."""
        if name in self._cats:
            return self._cats[name]
        if name not in self.cols:
            return [default], np.zeros(self.n, dtype=np.intp)
        uniq, codes = self.factors(name)
        norm = [u.strip().lower() for u in uniq]
        merged = list(dict.fromkeys(norm))
        if len(merged) < len(norm):
            codes = np.array([merged.index(u) for u in norm], dtype=np.intp)[codes]
        self._cats[name] = (merged, codes)
        return merged, codes

    def set_category(self, name: str, uniq: list[str], codes: np.ndarray) -> None:
        self._cats[name] = (uniq, codes)

    def blank(self, name: str) -> np.ndarray:
        """Rows whose cell states nothing: NaN, or text '', 'nan', 'unknown' (all rows of a missing column)."""
        if name not in self.cols:
            return np.ones(self.n, dtype=bool)
        v = self.raw(name)
        if v.dtype.kind in "iub":
            return np.zeros(self.n, dtype=bool)
        if v.dtype.kind == "f":
            return np.isnan(v)
        uniq, codes = self.category(name, "")
        return np.array([u in BLANK for u in uniq], dtype=bool)[codes]

    def boolean(self, name: str, default) -> np.ndarray:
        """A yes/no column through the plan's codec; blank cells (and a missing column) take ``default``
        (a bool or a per-row array); a typo is a one-line error."""
        if name not in self.cols:
            return np.broadcast_to(np.asarray(default, dtype=bool), (self.n,)).copy()
        v = self.raw(name)
        if v.dtype.kind == "b":
            return v
        if v.dtype.kind in "iuf":
            f = v.astype(float)
            return np.where(np.isnan(f), default, f != 0)
        uniq, codes = self.category(name, "")
        parsed = [None if u in BLANK else decode_bool(u, name) for u in uniq]
        blank = np.array([p is None for p in parsed], dtype=bool)[codes]
        value = np.array([bool(p) for p in parsed], dtype=bool)[codes]
        return np.where(blank, default, value) if blank.any() else value


def _choice(cells: Cells, name: str, per_kind: list[str], codes: np.ndarray) -> np.ndarray:
    """A text setting with blank cells taken from each row's preset value (``per_kind[codes]``), stored as the
    column's category; returns the rows that were blank."""
    blank = cells.blank(name)
    if name in cells and not blank.all():
        uniq, ucodes = cells.category(name, "")
        kept = [u for u in uniq if u not in BLANK]
        merged = list(dict.fromkeys(kept + per_kind))
        own = np.array([merged.index(u) if u not in BLANK else -1 for u in uniq], dtype=np.intp)[ucodes]
        preset = np.array([merged.index(v) for v in per_kind], dtype=np.intp)[codes]
        cells.set_category(name, merged, np.where(own < 0, preset, own))
    else:
        merged = list(dict.fromkeys(per_kind))
        cells.set_category(name, merged, np.array([merged.index(v) for v in per_kind], dtype=np.intp)[codes])
    return blank


def _kinds(cells: Cells, default: str, system: str) -> tuple[list[str], np.ndarray]:
    """(concrete preset names, each row's index into them)."""
    n = cells.n
    fw = cells.raw("framework") if "framework" in cells else None
    if fw is None or (fw.dtype.kind == "f" and np.isnan(fw).all()):
        names, ncodes = [""], np.zeros(n, dtype=np.intp)
    else:
        names, ncodes = cells.category("framework", "")
    names = [default if u in BLANK else u for u in names]
    where = "gpu" if "gpu" in cells or "system" not in cells else "system"
    if where in cells and any(frameworks.resolve_name(u) == frameworks.DEFAULT for u in names):
        systems, scodes = cells.category(where, system)
    else:
        systems, scodes = [system], np.zeros(n, dtype=np.intp)
    concrete = [frameworks.resolve_name(u, s) for u in names for s in systems]
    kinds = list(dict.fromkeys(concrete))
    pair = np.array([kinds.index(k) for k in concrete], dtype=np.intp)
    return kinds, pair[ncodes * len(systems) + scodes] if len(concrete) > 1 else np.zeros(n, dtype=np.intp)


def fill(cells: Cells, default: str = frameworks.DEFAULT, system: str = "") -> dict[str, np.ndarray]:
    """Every blank setting of the table taken from each row's framework preset (``frameworks``).

    Returns:
        ``framework`` (the concrete preset per row, object), the yes/no settings (``frameworks.BOOL_SETTINGS``
        and ``sequence_parallel``) as bool arrays, ``vpp_unknown`` (blank vpp, pp > 1, a framework whose
        blank vpp may interleave), ``recompute_unknown`` (blank recompute the framework does not fix),
        ``split_auto`` (blank ``pipeline_split_extra_layers`` under a framework that splits by the rule) and
        ``dropout`` (NaN = unknown). The text settings (``cross_entropy_fusion, fp8_recipe, recompute``) are
        set as the categories of ``cells``.

    Raises:
        ValueError: an unknown framework name (one line listing the presets), a bad yes/no cell.
    """
    kinds, codes = _kinds(cells, default, system)
    presets = [frameworks.load_framework(k) for k in kinds]

    def per_row(field: str) -> np.ndarray:
        vals = np.array([getattr(p, field) for p in presets])
        return np.full(cells.n, vals[0]) if len(vals) == 1 else vals[codes]

    out = {"framework": np.asarray(kinds, dtype=object)[codes]}
    for name in (*frameworks.BOOL_SETTINGS, "sequence_parallel"):
        out[name] = cells.boolean(name, per_row(name))
    for name in ("cross_entropy_fusion", "fp8_recipe"):
        _choice(cells, name, [getattr(p, name) for p in presets], codes)
    rec = [p.recompute or "none" for p in presets]
    rec_blank = _choice(cells, "recompute", rec, codes)
    out["recompute_unknown"] = rec_blank & (per_row("recompute") == "")
    pp = cells.raw("pp").astype(float) if "pp" in cells and cells.raw("pp").dtype.kind in "iuf" else None
    out["vpp_unknown"] = cells.blank("vpp") & per_row("interleaving") & (pp > 1 if pp is not None else True)
    out["split_auto"] = cells.blank("pipeline_split_extra_layers") & per_row("split_embedding_loss")
    drop = per_row("dropout").astype(float)
    if "dropout" in cells:
        given = cells.raw("dropout")
        given = given.astype(float) if given.dtype.kind in "iuf" else \
            np.where(cells.blank("dropout"), "nan", given).astype(float)
        drop = np.where(np.isnan(given), drop, given)
    out["dropout"] = drop
    return out
