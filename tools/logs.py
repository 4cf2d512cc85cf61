"""Read HDF5 run logs lazily (h5py only) and summarise each run.

Only the columns a summary needs are read, each with one read per dataset. The noise scale is
B_simple from separately smoothed |G|^2 and tr(Sigma) (``simulator.noise``); its interval comes
from a block bootstrap over the last ``tail`` fraction of the run of the ratio of means.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from batchlaw.plugin import logschema as S
from batchlaw.simulator.noise import ema_series

__all__ = ["RunSummary", "find_logs", "read_columns", "summarise_run", "summaries_table", "load_runs"]


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
    first_batch: int
    ramp: str
    final_loss: float
    smoothed_loss: float
    val_loss: float
    b_simple: float
    b_simple_lo: float
    b_simple_hi: float
    step_time_s: float
    tokens_per_s: float
    layout: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

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


def find_logs(logdir: str | Path) -> list[Path]:
    """All ``*.h5`` run logs under ``logdir`` (sorted)."""
    root = Path(logdir)
    if not root.exists():
        raise ValueError(f"LOGDIR {str(root)!r} does not exist")
    return sorted(root.rglob("*.h5")) if root.is_dir() else [root]


def read_columns(path: str | Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The requested ``/steps`` columns (missing ones as NaN arrays) of one log."""
    with h5py.File(path, "r") as f:
        S.check_version(f.attrs.get("schema_version", 0))
        grp = f[S.STEPS_GROUP]
        n = grp["step"].shape[0] if "step" in grp else 0
        return {k: grp[k][:] if k in grp else np.full(n, np.nan) for k in names}


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
    cols = ("step", "tokens", "global_batch_size", "loss", "gns_g2", "gns_trace", "step_time_s", "tokens_per_s")
    with h5py.File(path, "r") as f:
        S.check_version(f.attrs.get("schema_version", 0))
        a = dict(f.attrs)
        grp = f[S.STEPS_GROUP]
        n = grp["step"].shape[0] if "step" in grp else 0
        c = {k: grp[k][:] if k in grp else np.full(n, np.nan) for k in cols}
        ev = f.get(f"{S.EVENTS_GROUP}/eval/val_loss")
        val = float(ev[-1]) if ev is not None and ev.shape[0] else np.nan
    if n == 0:
        raise ValueError(f"{path}: the log has no steps")
    k = max(1, int(round(n * tail)))
    loss = c["loss"]
    smooth = ema_series(loss, beta=0.9)
    b_point, lo, hi = _tail_ratio_ci(c["gns_g2"][-k:], c["gns_trace"][-k:], np.random.default_rng(seed))
    cfg = json.loads(a.get("config", "{}"))
    return RunSummary(
        path=str(path), model_name=str(a.get("model_name", "")), num_params=int(a.get("num_params", 0)),
        seq_len=int(a.get("seq_len", 0)), status=str(a.get("status", "")), restart_count=int(a.get("restart_count", 0)),
        steps=int(c["step"][-1]), tokens=int(c["tokens"][-1]), global_batch=int(c["global_batch_size"][-1]),
        first_batch=int(c["global_batch_size"][0]), ramp=str(a.get("ramp", "")),
        final_loss=float(np.nanmean(loss[-k:])), smoothed_loss=float(smooth[-1]), val_loss=val,
        b_simple=b_point, b_simple_lo=lo, b_simple_hi=hi,
        step_time_s=float(np.nanmedian(c["step_time_s"][1:] if n > 1 else c["step_time_s"])),
        tokens_per_s=float(np.nanmedian(c["tokens_per_s"])), layout=json.loads(a.get("layout", "{}")), config=cfg)


def load_runs(logdir: str | Path, **kwargs) -> list[RunSummary]:
    """Summaries of every log under ``logdir``; unreadable files raise ValueError naming the file."""
    out = []
    for p in find_logs(logdir):
        try:
            out.append(summarise_run(p, **kwargs))
        except (OSError, KeyError) as exc:
            raise ValueError(f"{p}: not a readable batchlaw run log ({exc})") from None
    if not out:
        raise ValueError(f"LOGDIR {str(logdir)!r}: no *.h5 run logs found")
    return out


def summaries_table(runs: list[RunSummary]) -> dict[str, np.ndarray]:
    """Summaries as columns (for CSV, or ``pandas.DataFrame(table)``)."""
    rows = [{k: v for k, v in asdict(r).items() if k not in ("layout", "config")} for r in runs]
    return {k: np.array([row[k] for row in rows]) for k in rows[0]}
