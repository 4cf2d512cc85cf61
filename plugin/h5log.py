"""The HDF5 run log writer: one file per run, written by one rank. h5py + numpy only (no torch).

Rows are buffered in memory and appended to resizable chunked 1-D datasets under ``/steps`` every
``flush_every`` steps, followed by ``h5py.File.flush()``, so a run killed with SIGKILL leaves a
readable file up to the last flush. The file is created under a temporary name and renamed, so a
reader never sees a file without its attributes. On resume (``resume_step=k``), rows with
``step > k`` are dropped (each step appears exactly once) and ``restart_count`` is incremented.
The schema is in ``plugin/logschema.py`` and ``docs/hdf5_schema.md``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from batchlaw.plugin import logschema as S

__all__ = ["RunLogWriter"]


def _dtype(name: str, value: Any) -> str:
    if name in S.STEP_COLUMNS:
        return S.STEP_COLUMNS[name][0]
    return "i8" if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else "f8"


class RunLogWriter:
    """Append per-step rows and sparse events to one HDF5 run log.

    Args:
        path: the ``.h5`` file.
        attrs: file attributes (``config`` and other dict values are stored as JSON).
        flush_every: rows buffered before they are written and flushed.
        resume_step: None for a new run (an existing file is an error unless ``overwrite``);
            an integer k to continue an existing file after a restart from step k.
        overwrite: replace an existing file for a new run.
    """

    def __init__(self, path: str | Path, *, attrs: Mapping[str, Any] | None = None, flush_every: int = 10,
                 resume_step: int | None = None, overwrite: bool = False):
        if flush_every < 1:
            raise ValueError(f"log.flush_every = {flush_every}: must be >= 1")
        self.path = Path(path)
        self.flush_every = flush_every
        self._rows: list[dict[str, float]] = []
        self._events: list[tuple[str, dict[str, float]]] = []
        if resume_step is not None and self.path.exists():
            self._file = h5py.File(self.path, "a")
            S.check_version(self._file.attrs.get("schema_version", 0))
            self._truncate(resume_step)
            self._file.attrs["restart_count"] = int(self._file.attrs.get("restart_count", 0)) + 1
            self._file.attrs["status"] = "running"
            self._set_attrs(attrs or {}, keep=("config",))
        else:
            if self.path.exists() and not overwrite and resume_step is None:
                raise ValueError(f"log.path = {str(self.path)!r}: file exists; resume the run or remove it")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with h5py.File(tmp, "w") as f:
                f.attrs["schema_version"] = S.SCHEMA_VERSION
                f.attrs["restart_count"] = 0
                f.attrs["status"] = "running"
                f.create_group(S.STEPS_GROUP)
                f.create_group(S.EVENTS_GROUP)
            os.replace(tmp, self.path)
            self._file = h5py.File(self.path, "a")
            self._set_attrs(attrs or {})
        self._file.flush()

    def _set_attrs(self, attrs: Mapping[str, Any], keep: tuple[str, ...] = ()) -> None:
        for key, value in attrs.items():
            if key in keep and key in self._file.attrs:
                continue
            if isinstance(value, (dict, list, tuple)):
                value = json.dumps(value, sort_keys=True, default=str)
            self._file.attrs[key] = value

    def _truncate(self, resume_step: int) -> None:
        steps = self._file.get(f"{S.STEPS_GROUP}/step")
        if steps is not None and steps.shape[0]:
            keep = int(np.searchsorted(steps[:], resume_step, side="right"))
            for ds in self._file[S.STEPS_GROUP].values():
                ds.resize((keep,))
        for group in self._file[S.EVENTS_GROUP].values():
            ev_steps = group["step"][:]
            keep = int(np.count_nonzero(ev_steps <= resume_step))
            for ds in group.values():
                ds.resize((keep,))

    def append(self, row: Mapping[str, float]) -> None:
        """Buffer one step's row (must contain ``step``); writes every ``flush_every`` rows."""
        assert "step" in row, "a step row needs its step"
        self._rows.append(dict(row))
        if len(self._rows) >= self.flush_every:
            self.flush()

    def append_columns(self, columns: Mapping[str, np.ndarray]) -> None:
        """Append many rows at once from equal-length column arrays (bulk import, benchmarks)."""
        self.flush()
        n = len(columns["step"])
        assert all(len(v) == n for v in columns.values()), "columns must have equal lengths"
        grp = self._file[S.STEPS_GROUP]
        n_old = grp["step"].shape[0] if "step" in grp else 0
        for name, values in columns.items():
            values = np.asarray(values, dtype=_dtype(name, values[0] if n else 0.0))
            if name not in grp:
                grp.create_dataset(name, shape=(n_old,), maxshape=(None,), dtype=values.dtype, chunks=(S.CHUNK_ROWS,))
            ds = grp[name]
            ds.resize((n_old + n,))
            ds[n_old:] = values
        for name in set(grp) - set(columns):
            grp[name].resize((n_old + n,))
        self._file.flush()

    def event(self, group: str, row: Mapping[str, float]) -> None:
        """Buffer one sparse event under ``/events/<group>`` (must contain ``step``)."""
        assert "step" in row, "an event needs its step"
        self._events.append((group, dict(row)))

    @staticmethod
    def _append_columns(grp: h5py.Group, rows: list[dict[str, float]]) -> None:
        names = list(dict.fromkeys(k for r in rows for k in r))
        n_old = grp["step"].shape[0] if "step" in grp else 0
        for name in names:
            values = np.array([r.get(name, np.nan) for r in rows], dtype=_dtype(name, rows[0].get(name)))
            if name not in grp:
                ds = grp.create_dataset(name, shape=(n_old,), maxshape=(None,), dtype=values.dtype,
                                        chunks=(S.CHUNK_ROWS,), fillvalue=np.nan if values.dtype.kind == "f" else 0)
                if name in S.STEP_COLUMNS:
                    ds.attrs["description"] = S.STEP_COLUMNS[name][1]
            ds = grp[name]
            ds.resize((n_old + len(rows),))
            ds[n_old:] = values
        for name in set(grp) - set(names):  # columns absent from these rows stay aligned
            grp[name].resize((n_old + len(rows),))

    def flush(self) -> None:
        """Write buffered rows and events and flush the file to disk."""
        if self._rows:
            self._append_columns(self._file[S.STEPS_GROUP], self._rows)
            self._rows = []
        for group in dict.fromkeys(g for g, _ in self._events):
            rows = [r for g, r in self._events if g == group]
            self._append_columns(self._file[S.EVENTS_GROUP].require_group(group), rows)
        self._events = []
        self._file.flush()

    def set_attrs(self, **attrs: Any) -> None:
        """Set or replace file attributes."""
        self._set_attrs(attrs)

    def close(self, status: str = "completed") -> None:
        """Flush, record the final ``status`` and close. Safe to call twice."""
        if self._file is None:
            return
        self.flush()
        self._file.attrs["status"] = status
        self._file.close()
        self._file = None
