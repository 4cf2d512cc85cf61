"""Tables as dicts of numpy arrays <-> CSV (stdlib csv; atomic writes)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["read_csv", "write_csv"]


def read_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a CSV file as arrays (numbers where every value parses, else strings)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{str(p)!r}: no such CSV file")
    with p.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{str(p)!r}: the CSV file has no rows")
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        try:
            out[key] = np.array([float(v) if v.strip() else np.nan for v in values])
        except ValueError:
            out[key] = np.array(values, dtype=object)
    return out


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if np.isnan(v) else (str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.6g}")
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    return str(v)


def write_csv(path: str | Path, table: Mapping[str, np.ndarray], columns: list[str] | None = None) -> None:
    """Write ``table`` to ``path`` atomically (temporary file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    cols = columns or list(table)
    n = len(np.asarray(table[cols[0]])) if cols else 0
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        arrays = [np.asarray(table[c]) for c in cols]
        for i in range(n):
            w.writerow([_fmt(a[i]) for a in arrays])
    os.replace(tmp, p)
