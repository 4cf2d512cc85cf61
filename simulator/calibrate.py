"""Fit a system profile's efficiency parameters to measured iteration times.

Rows are any table accepted by ``predict_table`` plus a measured ``iter_time_s`` column: published
throughput (``data/throughput/throughput_megatron.csv`` via ``perf_data.public_rows``) or rows measured
from HDF5 run logs (``batchlaw calibrate``). The fit minimises squared log errors of iteration time with
``scipy.optimize.least_squares`` (bounded, soft-L1 loss), which weights fast and slow runs alike.

Honesty rules:
- Each parameter has a weak Gaussian prior around the starting profile (``prior_sigma``, in log
  space for scale parameters): a maximum-a-posteriori fit, so a parameter the rows do not constrain
  stays where physics put it instead of running to a bound. Set ``prior_sigma=0`` for a plain fit.
- A ``FitWarning`` names every parameter that ends within 1% of a bound, and every parameter the data
  do not identify (its posterior standard error is more than 0.7 x its prior's: the rows taught
  little).
- Standard errors come from the Gauss-Newton covariance ``s^2 (J^T J)^-1`` at the optimum.
- The fitted profile records what it was fitted on, the parameters, their errors and the residuals.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import least_squares

from batchlaw.simulator.frameworks import DEFAULT
from batchlaw.simulator.system import Calibration, Efficiency, SystemProfile
from batchlaw.simulator.table import _predict_group, normalise, predict_table

__all__ = ["BOUNDS", "CalibrationReport", "FitWarning", "calibrate", "errors"]

# name -> (lower, upper) bounds; parameters not listed keep the profile's value.
BOUNDS = {"matmul_max": (0.05, 1.0), "fp8_matmul_max": (0.05, 1.0), "attention_eff": (0.1, 1.0),
          "cp_attention_eff": (0.1, 1.0), "mxfp8_eff": (0.3, 1.5), "hbm_eff": (0.2, 1.0), "width_half": (1.0, 1e5),
          "tokens_half": (0.01, 1e5),
          "network_eff": (0.05, 1.0), "tp_exposed": (0.0, 1.0), "dp_exposed": (0.0, 1.0),
          "overhead_s": (0.0, 10.0), "overhead_mb_s": (0.0, 1.0), "overhead_layer_s": (0.0, 0.1)}
# scale parameters fitted in log space (their prior is relative); a tiny floor keeps log(0) finite
_LOG = {"width_half", "tokens_half", "overhead_s", "overhead_mb_s", "overhead_layer_s"}
# The GEMM size half-points are known to a factor of a few only (wave and tile quantisation depend on
# the kernel chosen): their prior is this many times wider.
_PRIOR_WIDTH = {"width_half": 3.0, "tokens_half": 3.0}
_FLOOR = {"overhead_s": 1e-4, "overhead_mb_s": 1e-5, "overhead_layer_s": 1e-6}


class FitWarning(UserWarning):
    """A fitted parameter ended at a bound or is not identified by the rows."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CalibrationReport:
    """What calibration did and how well the profile predicts before and after."""

    fitted: dict[str, float]
    """Fitted efficiency parameters."""
    stderr: dict[str, float]
    """Standard error of each fitted parameter (same units)."""
    n_rows: int
    """Rows used."""
    median_abs_error_before: float
    """Median |relative error| of iteration time with the starting profile."""
    median_abs_error_after: float
    """The same after the fit."""
    max_abs_error_after: float
    """Worst |relative error| after the fit."""
    at_bound: tuple[str, ...]
    """Parameters within 1% of a bound."""
    not_identified: tuple[str, ...]
    """Parameters the rows do not constrain (held by the prior)."""
    success: bool
    """Optimizer success flag."""
    message: str
    """Optimizer message."""


def errors(rows: Mapping[str, Any], profile: SystemProfile) -> np.ndarray:
    """Relative errors (pred / measured - 1) of iteration time for ``rows`` under ``profile``."""
    out = predict_table(rows, profile)
    measured = np.asarray(rows["iter_time_s"], dtype=float)
    return out["pred_iter_time_s"] / measured - 1.0


def _to_x(name: str, v: float) -> float:
    return float(np.log(max(v, _FLOOR.get(name, 1e-12)))) if name in _LOG else float(v)


def _from_x(name: str, x: float) -> float:
    return float(np.exp(x)) if name in _LOG else float(x)


def _bounds(name: str) -> tuple[float, float]:
    lo, hi = BOUNDS[name]
    return (_to_x(name, max(lo, _FLOOR.get(name, lo))), _to_x(name, hi)) if name in _LOG else (lo, hi)


def calibrate(rows: Mapping[str, Any], system: SystemProfile, *,
              params: Sequence[str] = ("matmul_max", "width_half", "tokens_half", "network_eff"),
              prior_sigma: float = 0.3, fitted_on: str = "",
              framework: str = "") -> tuple[SystemProfile, CalibrationReport]:
    """Fit ``params`` of ``system.efficiency`` to the measured ``iter_time_s`` of ``rows``.

    Args:
        prior_sigma: width of the Gaussian prior around the starting value (log units for scale
            parameters, absolute for fractions x 1/0.3 of the start); 0 disables the prior.
        fitted_on: description of the rows, recorded in the profile.
        framework: the framework of rows without a ``framework`` column (``table.normalise``; default
            ``batchlaw``); the profile records the rows' preset when they share one.

    Raises:
        ValueError: with fewer rows than parameters, an unknown parameter, a negative or non-finite
            ``prior_sigma`` or no ``iter_time_s`` column.
    """
    if "iter_time_s" not in rows:
        raise ValueError("calibration rows need a measured 'iter_time_s' column")
    if not (np.isfinite(prior_sigma) and prior_sigma >= 0):
        raise ValueError(f"prior_sigma = {prior_sigma!r}: allowed is a finite number >= 0 (0: no prior)")
    n = len(np.asarray(rows["iter_time_s"]))
    unknown = [p for p in params if p not in BOUNDS]
    if unknown:
        raise ValueError(f"calibrate params = {unknown[0]!r}: allowed are {', '.join(BOUNDS)}")
    if n < len(params) and prior_sigma <= 0:
        raise ValueError(f"calibration needs at least {len(params)} rows (one per parameter), got {n}")
    measured = np.log(np.asarray(rows["iter_time_s"], dtype=float))
    cols = normalise(rows, framework=framework or DEFAULT, system=system.name)
    kinds = set(np.asarray(cols["framework"]).astype(str))
    start = dataclasses.asdict(system.efficiency)
    x0 = np.array([_to_x(p, start[p]) for p in params])
    lo, hi = (np.array(v) for v in zip(*(_bounds(p) for p in params)))
    x0 = np.clip(x0, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    # prior width: relative for log parameters, 0.3 x start for fractions (at least 0.05)
    sig = np.array([prior_sigma * _PRIOR_WIDTH.get(p, 1.0) if p in _LOG
                    else prior_sigma * max(abs(start[p]), 0.15) / 0.3 for p in params])

    def profile_for(x: np.ndarray) -> SystemProfile:
        values = dict(start)
        values.update({p: _from_x(p, v) for p, v in zip(params, x)})
        return dataclasses.replace(system, efficiency=Efficiency(**values))

    def data_res(x: np.ndarray) -> np.ndarray:
        return np.log(_predict_group(cols, profile_for(x))["pred_iter_time_s"]) - measured

    def residuals(x: np.ndarray) -> np.ndarray:
        r = data_res(x)
        return np.concatenate([r, (x - x0) / sig]) if prior_sigma > 0 else r

    fit = least_squares(residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.05, x_scale="jac")
    fitted = profile_for(fit.x)
    before, after = np.exp(data_res(x0)) - 1, np.exp(data_res(fit.x)) - 1
    dof = max(n - len(params), 1)
    s2 = float(np.sum(data_res(fit.x) ** 2) / dof)
    jac = fit.jac
    prior_prec = np.diag(1 / sig**2) if prior_sigma > 0 else 0.0
    info = jac[:n].T @ jac[:n] / max(s2, 1e-12) + prior_prec
    cov = np.linalg.pinv(info)
    sd_x = np.sqrt(np.clip(np.diag(cov), 0, None))
    stderr = {p: float(sd * (_from_x(p, v) if p in _LOG else 1.0)) for p, v, sd in zip(params, fit.x, sd_x)}
    span = hi - lo
    at_bound = tuple(p for p, v, a, b, w in zip(params, fit.x, lo, hi, span) if v - a < 0.01 * w or b - v < 0.01 * w)
    weak = tuple(p for p, sd, sg in zip(params, sd_x, sig) if prior_sigma > 0 and sd > 0.7 * sg)
    values = {p: getattr(fitted.efficiency, p) for p in params}
    if at_bound:
        warnings.warn(f"calibrate {system.name}: {', '.join(at_bound)} ended at a bound "
                      f"({', '.join(f'{p}={values[p]:.3g}' for p in at_bound)}); the model is short of a term",
                      FitWarning, stacklevel=2)
    if weak:
        warnings.warn(f"calibrate {system.name}: {', '.join(weak)} not identified by these {n} rows "
                      f"(held near the prior)", FitWarning, stacklevel=2)
    record = Calibration(fitted_on=fitted_on or f"{n} rows", n_rows=n, params=tuple(params),
                         stderr=tuple(stderr[p] for p in params),
                         median_abs_error=float(np.median(np.abs(after))), max_abs_error=float(np.max(np.abs(after))),
                         fixed=f"not fitted (start values): {', '.join(k for k in start if k not in params)}",
                         not_identified=weak, framework=kinds.pop() if len(kinds) == 1 else "")
    fitted = dataclasses.replace(fitted, calibration=record)
    report = CalibrationReport(
        fitted=values, stderr=stderr, n_rows=n,
        median_abs_error_before=float(np.median(np.abs(before))),
        median_abs_error_after=float(np.median(np.abs(after))), max_abs_error_after=float(np.max(np.abs(after))),
        at_bound=at_bound, not_identified=weak, success=bool(fit.success), message=str(fit.message))
    return fitted, report
