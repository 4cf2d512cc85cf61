"""Fit a system profile's efficiency parameters to measured iteration times.

Rows are any table accepted by ``predict_table`` plus a measured ``iter_time_s`` column: published
throughput (``shared/reference/published_throughput.csv``) or rows measured from HDF5 run logs
(``batchlaw calibrate``). The fit minimises squared log errors of iteration time with
``scipy.optimize.least_squares`` (bounded, soft-L1 loss), which weights fast and slow runs alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import least_squares

from batchlaw.simulator.system import Efficiency, SystemProfile
from batchlaw.simulator.table import predict_table

__all__ = ["CalibrationReport", "calibrate", "errors"]

# name -> (lower, upper) bounds; parameters not listed keep the profile's value.
BOUNDS = {"matmul_max": (0.2, 1.0), "width_half": (1.0, 1e5), "tokens_half": (1.0, 1e5),
          "network_eff": (0.1, 1.0), "dp_exposed": (0.0, 1.0), "overhead_s": (0.0, 10.0)}


@dataclass(frozen=True, kw_only=True, slots=True)
class CalibrationReport:
    """What calibration did and how well the profile predicts before and after."""

    fitted: dict[str, float]
    """Fitted efficiency parameters."""
    n_rows: int
    """Rows used."""
    median_abs_error_before: float
    """Median |relative error| of iteration time with the starting profile."""
    median_abs_error_after: float
    """The same after the fit."""
    max_abs_error_after: float
    """Worst |relative error| after the fit."""
    success: bool
    """Optimizer success flag."""
    message: str
    """Optimizer message."""


def errors(rows: Mapping[str, Any], profile: SystemProfile) -> np.ndarray:
    """Relative errors (pred / measured - 1) of iteration time for ``rows`` under ``profile``."""
    out = predict_table(rows, profile)
    measured = np.asarray(rows["iter_time_s"], dtype=float)
    return out["pred_iter_time_s"] / measured - 1.0


def calibrate(rows: Mapping[str, Any], system: SystemProfile, *,
              params: Sequence[str] = ("matmul_max", "width_half", "tokens_half", "network_eff")
              ) -> tuple[SystemProfile, CalibrationReport]:
    """Fit ``params`` of ``system.efficiency`` to the measured ``iter_time_s`` of ``rows``.

    Raises:
        ValueError: with fewer rows than parameters, or a missing ``iter_time_s`` column.
    """
    if "iter_time_s" not in rows:
        raise ValueError("calibration rows need a measured 'iter_time_s' column")
    n = len(np.asarray(rows["iter_time_s"]))
    unknown = [p for p in params if p not in BOUNDS]
    if unknown:
        raise ValueError(f"calibrate params = {unknown[0]!r}: allowed are {', '.join(BOUNDS)}")
    if n < len(params):
        raise ValueError(f"calibration needs at least {len(params)} rows (one per parameter), got {n}")
    measured = np.log(np.asarray(rows["iter_time_s"], dtype=float))
    start = dataclasses.asdict(system.efficiency)
    log_params = {"width_half", "tokens_half"}

    def profile_for(x: np.ndarray) -> SystemProfile:
        values = dict(start)
        for name, v in zip(params, x):
            values[name] = float(np.exp(v)) if name in log_params else float(v)
        return dataclasses.replace(system, efficiency=Efficiency(**values))

    def residuals(x: np.ndarray) -> np.ndarray:
        pred = predict_table(rows, profile_for(x))["pred_iter_time_s"]
        return np.log(pred) - measured

    x0 = np.array([np.log(start[p]) if p in log_params else start[p] for p in params])
    lo = np.array([np.log(BOUNDS[p][0]) if p in log_params else BOUNDS[p][0] for p in params])
    hi = np.array([np.log(BOUNDS[p][1]) if p in log_params else BOUNDS[p][1] for p in params])
    fit = least_squares(residuals, np.clip(x0, lo, hi), bounds=(lo, hi), loss="soft_l1", f_scale=0.05)
    fitted = profile_for(fit.x)
    before, after = errors(rows, system), errors(rows, fitted)
    report = CalibrationReport(
        fitted={p: getattr(fitted.efficiency, p) for p in params}, n_rows=n,
        median_abs_error_before=float(np.median(np.abs(before))),
        median_abs_error_after=float(np.median(np.abs(after))),
        max_abs_error_after=float(np.max(np.abs(after))), success=bool(fit.success), message=str(fit.message))
    return fitted, report
