"""Read HDF5 run logs lazily (h5py only) and summarise each run.

Only the columns a summary needs are read, each with one read per dataset. Logs are opened without
the HDF5 file lock and in SWMR read mode (``open_log``), so a run still being written can be read
(its writer is SWMR, see ``plugin/h5log.py``); a log written without SWMR falls back to a plain
lock-free read. Columns of a live log may differ in length by the rows of one flush: every read is
cut to the shortest column. Every read error names the file. The noise scale is
B_simple from separately smoothed |G|^2 and tr(Sigma) (``simulator.noise``); its interval comes
from a block bootstrap over the last ``tail`` fraction of the run of the ratio of means.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from batchlaw.plugin import logschema as S
from batchlaw.simulator.noise import ema_series

__all__ = ["EXIT_SKIPPED", "LogError", "RunSummary", "find_logs", "load_runs", "open_log", "print_skipped",
           "read_columns", "skipped_status", "summarise_run", "summaries_table"]

EXIT_SKIPPED = 1
"""Exit status of a command (analyze, calibrate) that wrote its output but skipped unreadable logs."""


class LogError(ValueError):
    """A log that cannot be read; the message names the file."""


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """One run in numbers."""

    path: str
    model_name: str
    num_params: int
    seq_len: int
    status: str
    restart_count: int
    steps: int
    tokens: int
    global_batch: int
    ramp: str
    """The run's batch ramp in its canonical text (``rampspec.RampSpec.text``; '' = constant batch)."""
    final_loss: float
    final_loss_se: float
    smoothed_loss: float
    val_loss: float
    b_simple: float
    b_simple_lo: float
    b_simple_hi: float
    step_time_s: float
    tokens_per_s: float
    layout: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    kernels: dict[str, Any] = field(default_factory=dict)

    @property
    def is_ramp(self) -> bool:
        """Whether the run's batch changed under a ramp (from its logged spec, not from its batches)."""
        return self.ramp != ""

    @property
    def ramp_label(self) -> str:
        """'' for a constant batch, else the ramp's shape and final batch, e.g. 'staircase -> 16'."""
        return "" if not self.is_ramp else f"{self.ramp.split(chr(34))[1]} -> {self.global_batch}"

    def spec(self):
        """The run's ``RunSpec``, read back from the ``config`` attribute by the strict loader.

        Raises:
            ValueError: the logged config is not a valid RunSpec (naming the file).
        """
        from batchlaw.simulator.runconfig import spec_from_dict

        try:  # "_device": written by the trainer before the RunSpec (now layout["device"])
            return spec_from_dict({k: v for k, v in self.config.items() if k != "_device"})
        except ValueError as exc:
            raise ValueError(f"{self.path}: config attribute: {exc}") from None


PROBE_MARKER = ".batchlaw-probe-branches"
"""File ``batchlaw probe-cbs`` puts in its branches folder: those logs are probe branches, not runs."""


def find_logs(logdir: str | Path) -> list[Path]:
    """All ``*.h5`` run logs under ``logdir`` (sorted), without the branch logs of ``probe-cbs``."""
    root = Path(logdir)
    if not root.exists():
        raise ValueError(f"LOGDIR {str(root)!r} does not exist")
    if not root.is_dir():
        return [root]
    skip = [m.parent for m in root.rglob(PROBE_MARKER)]
    return sorted(p for p in root.rglob("*.h5") if not any(s in p.parents for s in skip))


def open_log(path: str | Path) -> h5py.File:
    """Open a run log for reading while it may still be written: no file lock, SWMR when the file
    was written for it (libver 'latest' + ``swmr_mode``), a plain read otherwise.

    Raises:
        LogError: naming the file, when it is not a readable HDF5 file.
    """
    if not Path(path).is_file():
        raise LogError(f"{path}: no such file")
    error: OSError | None = None
    # A plain read first: an SWMR read retries every failed metadata checksum with back-off sleeps, so
    # on a damaged file it can take minutes. SWMR only for a file a writer holds (or left) open in
    # SWMR mode, which a plain read refuses with "already open for write". The last form serves a
    # reader in the writer's own process, where HDF5 wants equal lock flags.
    for kwargs in ({"locking": False}, {"locking": False, "swmr": True}, {}):
        if kwargs.get("swmr") and "already open for write" not in str(error):
            continue
        try:
            return h5py.File(path, "r", **kwargs)
        except OSError as exc:
            error = error or exc
    raise LogError(f"{path}: not a readable HDF5 file ({first_line(error)})")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def steps_group(f: h5py.File, path) -> h5py.Group:
    S.check_version(f.attrs.get("schema_version", 0))
    if S.STEPS_GROUP not in f or not isinstance(f[S.STEPS_GROUP], h5py.Group):
        raise LogError(f"{path}: no /{S.STEPS_GROUP} group; not a batchlaw run log")
    return f[S.STEPS_GROUP]


def _read(grp: h5py.Group, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Columns cut to the shortest present one (a live SWMR log may be one flush ahead in some)."""
    names = list(names)
    present = [k for k in names if k in grp]
    n = min([grp[k].shape[0] for k in present] + ([grp["step"].shape[0]] if "step" in grp else [0]))
    return {k: np.asarray(grp[k][:n], float) if k in grp else np.full(n, np.nan) for k in names}


def read_columns(path: str | Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The requested ``/steps`` columns (missing ones as NaN arrays) of one log.

    Raises:
        LogError: naming the file when it cannot be read.
    """
    try:
        with open_log(path) as f:
            return _read(steps_group(f, path), names)
    except LogError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, OverflowError) as exc:
        raise LogError(f"{path}: not a readable batchlaw run log ({first_line(exc)})") from None


def _tail_ratio_ci(g2: np.ndarray, trace: np.ndarray, rng: np.random.Generator, blocks: int = 20,
                   draws: int = 200) -> tuple[float, float, float]:
    ok = np.isfinite(g2) & np.isfinite(trace)
    g2, trace = g2[ok], trace[ok]
    if len(g2) < 4 or g2.mean() <= 0:
        return np.nan, np.nan, np.nan
    point = trace.mean() / g2.mean()
    k = max(1, min(blocks, len(g2) // 2))
    gb = np.array([c.mean() for c in np.array_split(g2, k)])
    tb = np.array([c.mean() for c in np.array_split(trace, k)])
    idx = rng.integers(0, k, size=(draws, k))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = tb[idx].mean(axis=1) / gb[idx].mean(axis=1)
    r = r[np.isfinite(r) & (r > 0)]
    if not len(r):
        return point, np.nan, np.nan
    return point, float(np.percentile(r, 10)), float(np.percentile(r, 90))


def summarise_run(path: str | Path, *, tail: float = 0.2, seed: int = 0) -> RunSummary:
    """Summarise one run log (final loss = mean over the last ``tail`` of steps, at least 1)."""
    try:
        return _summarise(path, tail, seed)
    except LogError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, OverflowError) as exc:
        raise LogError(f"{path}: not a readable batchlaw run log ({first_line(exc)})") from None


def _summarise(path, tail: float, seed: int) -> RunSummary:
    cols = ("step", "tokens", "global_batch_size", "loss", "gns_g2", "gns_trace", "step_time_s", "tokens_per_s")
    with open_log(path) as f:
        grp = steps_group(f, path)
        a = dict(f.attrs)
        c = _read(grp, cols)
        ev = f.get(f"{S.EVENTS_GROUP}/eval/val_loss")
        val = float(ev[-1]) if ev is not None and ev.shape[0] else np.nan
    n = len(c["step"])
    if n == 0:
        raise LogError(f"{path}: the log has no steps yet")
    k = max(1, int(round(n * tail)))
    loss = c["loss"]
    smooth = ema_series(loss, beta=0.9)
    b_point, lo, hi = _tail_ratio_ci(c["gns_g2"][-k:], c["gns_trace"][-k:], np.random.default_rng(seed))
    cfg = json.loads(a.get("config", "{}"))
    return RunSummary(
        path=str(path), model_name=str(a.get("model_name", "")), num_params=int(a.get("num_params", 0)),
        seq_len=int(a.get("seq_len", 0)), status=str(a.get("status", "")), restart_count=int(a.get("restart_count", 0)),
        steps=int(c["step"][-1]), tokens=int(c["tokens"][-1]), global_batch=int(c["global_batch_size"][-1]),
        ramp=_ramp_text(cfg, a),
        final_loss=float(np.nanmean(loss[-k:])), final_loss_se=_tail_se(loss[-k:]), smoothed_loss=float(smooth[-1]), val_loss=val,
        b_simple=b_point, b_simple_lo=lo, b_simple_hi=hi,
        step_time_s=_nanmedian(c["step_time_s"][1:] if n > 1 else c["step_time_s"]),
        tokens_per_s=_nanmedian(c["tokens_per_s"]), layout=json.loads(a.get("layout", "{}")), config=cfg,
        kernels=json.loads(a.get("kernels", "{}")))


def _ramp_text(cfg: dict, attrs: dict) -> str:
    """The run's ramp in canonical text: from the logged config (``train.ramp``), which every schema
    version holds; the ``ramp`` attribute of older writers was prose and is not read."""
    from batchlaw.simulator.rampspec import RampSpec

    try:
        return RampSpec.from_config(cfg.get("train", {}).get("ramp", "")).text
    except (ValueError, AttributeError) as exc:
        raise LogError(f"config attribute: train.ramp: {first_line(exc)}") from None


def _tail_se(loss: np.ndarray) -> float:
    """Standard error of a tail mean from its per-step scatter (NaN with fewer than 3 steps)."""
    loss = loss[np.isfinite(loss)]
    return float(np.std(loss, ddof=1) / np.sqrt(len(loss))) if len(loss) >= 3 else float("nan")


def _nanmedian(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else float("nan")


def load_runs(logdir: str | Path, *, errors: list[str] | None = None, **kwargs) -> list[RunSummary]:
    """Summaries of every log under ``logdir``.

    Args:
        logdir: a folder (searched recursively for ``*.h5``) or one file.
        errors: when a list is given, a log that cannot be read is skipped and its one-line message
            (naming the file) appended here; without it the first bad log raises ``LogError``.
        **kwargs: passed to ``summarise_run``.

    Raises:
        LogError: a bad log (without ``errors``), or no readable log at all (naming the folder).
    """
    out = []
    paths = find_logs(logdir)
    for p in paths:
        try:
            out.append(summarise_run(p, **kwargs))
        except LogError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
    if not out:
        detail = f" ({len(paths)} found, none readable: {errors[0]})" if errors else ""
        raise LogError(f"LOGDIR {str(logdir)!r}: no readable *.h5 run logs{detail}")
    return out


def print_skipped(skipped: list[str]) -> None:
    """Name each log ``load_runs(errors=...)`` skipped, one line each on stderr."""
    for msg in skipped:
        print(f"batchlaw: skipped: {msg}", file=sys.stderr)


def skipped_status(skipped: list[str]) -> int:
    """The exit status of a command whose output was written: 0, or ``EXIT_SKIPPED`` (said on stderr)
    when logs were skipped."""
    if not skipped:
        return 0
    print(f"batchlaw: {len(skipped)} unreadable log(s) skipped (exit status {EXIT_SKIPPED})", file=sys.stderr)
    return EXIT_SKIPPED


def summaries_table(runs: list[RunSummary]) -> dict[str, np.ndarray]:
    """Summaries as columns (for CSV, or ``pandas.DataFrame(table)``)."""
    rows = [{k: v for k, v in asdict(r).items() if k not in ("layout", "config", "kernels")} for r in runs]
    return {k: np.array([row[k] for row in rows]) for k in rows[0]}
