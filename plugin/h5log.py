"""The HDF5 run log writer: one file per run, written by one rank. h5py + numpy only (no torch).

Rows are buffered in memory and appended to resizable chunked 1-D datasets under ``/steps`` every
``flush_every`` steps, followed by ``h5py.File.flush()``, so a run killed with SIGKILL leaves a
readable file up to the last flush. The file is created under a temporary name and renamed, so a
reader never sees a file without its attributes. On resume (``resume_step=k``), rows with
``step > k`` are dropped (each step appears exactly once) and ``restart_count`` is incremented.

Readable while written (HDF5 SWMR, single writer / multiple readers): the file uses
``libver="latest"``; every ``/steps`` column of ``logschema.STEP_COLUMNS`` and every event group of
``logschema.EVENT_COLUMNS`` is created before ``swmr_mode`` is switched on (SWMR cannot create
objects), so a row or event with a name outside the schema is a ``ValueError``. A concurrent reader
opens ``h5py.File(path, "r", locking=False, swmr=True)`` and calls ``Dataset.refresh()`` to see new
rows; the writer itself opens with ``locking=False`` so a reader in the same process is allowed.
The file is complete (attributes, every column) before it is renamed into place and reopened
directly in SWMR-write mode, so a kill at any moment leaves a file SWMR readers accept.
The trainer flushes the log up to step k before it publishes a checkpoint of step k, so the log
never lags a checkpoint (``plugin/loop.py``).
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


def _open_swmr_write(path: Path) -> h5py.File:
    """Open an existing log directly in SWMR-write mode (h5py's ``File`` cannot: it opens for plain
    writing and switches afterwards, and a kill in between leaves a file that SWMR readers refuse)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    fapl.set_file_locking(False, False)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE, fapl=fapl)
    return h5py.File(fid)


def _check_names(grp: h5py.Group, names, where: str) -> None:
    unknown = [n for n in names if n not in grp]
    if unknown:
        raise ValueError(f"{where}: column {unknown[0]!r} is not in plugin/logschema.py (the log is written in"
                         f" SWMR mode, which cannot add columns); known: {', '.join(sorted(grp))}")


class RunLogWriter:
    """Append per-step rows and sparse events to one HDF5 run log.

    Args:
        path: the ``.h5`` file.
        attrs: file attributes (``config`` and other dict values are stored as JSON).
        flush_every: rows buffered before they are written and flushed (>= 1; the user's value is
            checked once, where ``log.flush_every`` is read: ``LogConfig``).
        resume_step: None for a new run (an existing file is an error unless ``overwrite``);
            an integer k to continue an existing file after a restart from step k.
        overwrite: replace an existing file for a new run.
    """

    def __init__(self, path: str | Path, *, attrs: Mapping[str, Any] | None = None, flush_every: int = 10,
                 resume_step: int | None = None, overwrite: bool = False):
        assert flush_every >= 1, flush_every  # LogConfig refuses log.flush_every < 1 (simulator/checks.py check_log)
        self.path = Path(path)
        self.flush_every = flush_every
        self._rows: list[dict[str, float]] = []
        self._events: list[tuple[str, dict[str, float]]] = []
        if resume_step is not None and self.path.exists():
            self._rewrite_truncated(resume_step, attrs or {})
        else:
            if self.path.exists() and not overwrite and resume_step is None:
                raise ValueError(f"log.path = {str(self.path)!r}: file exists; resume the run or remove it")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with h5py.File(tmp, "w", libver="latest", locking=False) as f:
                f.attrs["schema_version"] = S.SCHEMA_VERSION
                f.attrs["restart_count"] = 0
                f.attrs["status"] = "running"
                self._file = f
                self._set_attrs(attrs or {})
                self._create_schema_objects()
            os.replace(tmp, self.path)
        self._file = _open_swmr_write(self.path)

    def _create_schema_objects(self) -> None:
        """Every schema column and event group (SWMR allows no new objects once it is on)."""
        steps = self._file.require_group(S.STEPS_GROUP)
        n = steps["step"].shape[0] if "step" in steps else 0
        for name, (dtype, description) in S.STEP_COLUMNS.items():
            self._require_column(steps, name, dtype, n, description)
        events = self._file.require_group(S.EVENTS_GROUP)
        for group, columns in S.EVENT_COLUMNS.items():
            grp = events.require_group(group)
            n = grp["step"].shape[0] if "step" in grp else 0
            for name, (dtype, description) in columns.items():
                self._require_column(grp, name, dtype, n, description)

    @staticmethod
    def _require_column(grp: h5py.Group, name: str, dtype: str, n: int, description: str) -> None:
        if name in grp:
            return
        ds = grp.create_dataset(name, shape=(n,), maxshape=(None,), dtype=dtype, chunks=(S.CHUNK_ROWS,),
                                fillvalue=np.nan if np.dtype(dtype).kind == "f" else 0)
        ds.attrs["description"] = description

    def _set_attrs(self, attrs: Mapping[str, Any], keep: tuple[str, ...] = ()) -> None:
        for key, value in attrs.items():
            if key in keep and key in self._file.attrs:
                continue
            if isinstance(value, (dict, list, tuple)):
                value = json.dumps(value, sort_keys=True, default=str)
            self._file.attrs[key] = value

    def _rewrite_truncated(self, resume_step: int, attrs: Mapping[str, Any]) -> None:
        """Copy the log with rows ``step <= resume_step`` into a new file and rename it over the old.

        A writer killed in SWMR mode leaves the superblock marked "open for write", which HDF5 refuses
        to reopen for writing (only ``h5clear`` resets it) but serves to SWMR readers; copying through
        a SWMR reader also makes the truncation atomic (the old file stays intact until the rename).
        """
        tmp = self.path.with_name(self.path.name + ".tmp")
        with h5py.File(self.path, "r", locking=False, swmr=True) as src, \
                h5py.File(tmp, "w", libver="latest", locking=False) as dst:
            S.check_version(src.attrs.get("schema_version", 0))
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            groups = [(S.STEPS_GROUP, src[S.STEPS_GROUP])] if S.STEPS_GROUP in src else []
            if S.EVENTS_GROUP in src:
                groups += [(f"{S.EVENTS_GROUP}/{g}", grp) for g, grp in src[S.EVENTS_GROUP].items()]
            for name, grp in groups:
                out = dst.require_group(name)
                steps = grp["step"][:] if "step" in grp else np.zeros(0, dtype="i8")
                keep = int(np.count_nonzero(steps <= resume_step))
                for col, ds in grp.items():
                    new = out.create_dataset(col, data=ds[:keep], maxshape=(None,), chunks=(S.CHUNK_ROWS,),
                                             fillvalue=ds.fillvalue)
                    for key, value in ds.attrs.items():
                        new.attrs[key] = value
            self._file = dst
            self._create_schema_objects()
            dst.attrs["restart_count"] = int(dst.attrs.get("restart_count", 0)) + 1
            dst.attrs["status"] = "running"
            self._relaunch_config(dst, attrs.get("config"), resume_step)
            self._set_attrs(attrs)
        os.replace(tmp, self.path)

    @staticmethod
    def _relaunch_config(dst: h5py.File, config: Any, resume_step: int) -> None:
        """``config`` is what the latest launch ran; when a resume changes it (another batch, lr or step
        count), the one before goes to ``config_history`` with the last step it ran, so the log records
        every configuration its rows were trained with."""
        old = dst.attrs.get("config")
        if config is None or old is None:
            return
        new = json.dumps(config, sort_keys=True, default=str) if isinstance(config, (dict, list, tuple)) else config
        old = old.decode() if isinstance(old, bytes) else str(old)
        if old == new:
            return
        hist = dst.attrs.get("config_history", "[]")
        try:
            history = json.loads(hist.decode() if isinstance(hist, bytes) else hist)
            previous = json.loads(old)
        except ValueError:
            history, previous = [], old
        # a resume from an older checkpoint cut the rows past it: earlier stretches end there at the latest,
        # and one that no longer ran a surviving row is dropped
        kept = []
        for h in history + [{"until_step": int(resume_step), "config": previous}]:
            h = {**h, "until_step": min(int(h.get("until_step", resume_step)), int(resume_step))}
            if kept and kept[-1]["until_step"] >= h["until_step"]:
                continue
            kept.append(h)
        history = kept
        dst.attrs["config_history"] = json.dumps(history, sort_keys=True)

    def append(self, row: Mapping[str, float]) -> None:
        """Buffer one step's row (must contain ``step``); writes every ``flush_every`` rows."""
        assert "step" in row, "a step row needs its step"
        _check_names(self._file[S.STEPS_GROUP], row, S.STEPS_GROUP)
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
        _check_names(grp, columns, S.STEPS_GROUP)
        for name, values in columns.items():
            values = np.asarray(values, dtype=_dtype(name, values[0] if n else 0.0))
            ds = grp[name]
            ds.resize((n_old + n,))
            ds[n_old:] = values
        for name in set(grp) - set(columns):
            grp[name].resize((n_old + n,))
        self._file.flush()

    def event(self, group: str, row: Mapping[str, float]) -> None:
        """Buffer one sparse event under ``/events/<group>`` (must contain ``step``)."""
        assert "step" in row, "an event needs its step"
        if group not in S.EVENT_COLUMNS:
            raise ValueError(f"event group {group!r} is not in plugin/logschema.py EVENT_COLUMNS"
                             f" ({', '.join(S.EVENT_COLUMNS)})")
        _check_names(self._file[S.EVENTS_GROUP][group], row, f"{S.EVENTS_GROUP}/{group}")
        self._events.append((group, dict(row)))

    @staticmethod
    def _append_columns(grp: h5py.Group, rows: list[dict[str, float]]) -> None:
        names = list(dict.fromkeys(k for r in rows for k in r))
        n_old = grp["step"].shape[0] if "step" in grp else 0
        _check_names(grp, names, grp.name)
        for name in names:
            ds = grp[name]
            values = np.array([r.get(name, np.nan) for r in rows], dtype=ds.dtype)
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
            self._append_columns(self._file[S.EVENTS_GROUP][group], rows)
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
