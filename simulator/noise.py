"""Offline smoothing of the gradient noise scale (numpy only).

B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, eq. 2.8). The per-step estimates of both are
unbiased but very noisy (|G|^2 can even be negative); the ratio of their *separately* smoothed
values is the estimator to use. Smoothing the per-step ratio is biased (reference/plugin_gns_sim2.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["EmaNoiseScale", "b_simple_series", "ema_series", "two_batch_estimates"]


def ema_series(x, beta: float = 0.9) -> np.ndarray:
    """Bias-corrected EMA after every finite value of ``x`` (Kingma and Ba 2015, alg. 1); NaN rows are
    skipped and carry the last value forward."""
    return b_simple_series(np.ones(np.shape(x)), x, beta=beta)


def two_batch_estimates(small_sq, big_sq, b_small, b_big):
    """Unbiased |G|^2 and tr(Sigma) from two batch sizes (McCandlish et al. 2018, eqs. A.3-A.4).

    |G|^2 = (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small),
    tr(Sigma) = (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big). Scalars or arrays; NaN where
    B_big <= B_small (no second batch size to compare).
    """
    s, b = np.asarray(small_sq, dtype=float), np.asarray(big_sq, dtype=float)
    bs, bb = np.asarray(b_small, dtype=float), np.asarray(b_big, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (bb > bs) & (bs > 0)
        g2 = np.where(ok, (bb * b - bs * s) / np.where(ok, bb - bs, 1.0), np.nan)
        trace = np.where(ok, (s - b) / np.where(ok, 1.0 / bs - 1.0 / bb, 1.0), np.nan)
    if g2.ndim == 0:
        return float(g2), float(trace)
    return g2, trace


@dataclass(kw_only=True, slots=True)
class EmaNoiseScale:
    """Bias-corrected EMAs of |G|^2 and tr(Sigma) (Adam-style correction, Kingma and Ba 2015, alg. 1)."""

    beta: float = 0.95
    """EMA decay per step."""
    g2: float = 0.0
    """State: un-corrected EMA of |G|^2."""
    trace: float = 0.0
    """State: un-corrected EMA of tr(Sigma)."""
    n: int = 0
    """State: finite observations so far."""

    def update(self, g2: float, trace: float) -> float:
        """Add one step's estimates; return the current B_simple (NaN until defined)."""
        if math.isfinite(g2) and math.isfinite(trace):
            self.g2 = self.beta * self.g2 + (1 - self.beta) * g2
            self.trace = self.beta * self.trace + (1 - self.beta) * trace
            self.n += 1
        return self.value()

    def value(self) -> float:
        """B_simple from the bias-corrected EMAs."""
        if self.n == 0:
            return math.nan
        corr = 1 - self.beta**self.n
        g2, trace = self.g2 / corr, self.trace / corr
        return trace / g2 if g2 > 0 else math.nan

    def state_dict(self) -> dict[str, float]:
        return {"g2": self.g2, "trace": self.trace, "n": self.n}

    def load_state_dict(self, state) -> None:
        self.g2, self.trace, self.n = float(state["g2"]), float(state["trace"]), int(state["n"])


def b_simple_series(g2: np.ndarray, trace: np.ndarray, beta: float = 0.95) -> np.ndarray:
    """B_simple after every step from separately smoothed, bias-corrected EMAs (NaN rows skipped)."""
    g2 = np.asarray(g2, dtype=float)
    trace = np.asarray(trace, dtype=float)
    ok = np.isfinite(g2) & np.isfinite(trace)
    out = np.full(g2.shape, np.nan)
    if ok.any():
        from scipy.signal import lfilter

        n = np.arange(1, int(ok.sum()) + 1)
        corr = 1 - beta**n
        sg = lfilter([1 - beta], [1, -beta], g2[ok]) / corr
        st = lfilter([1 - beta], [1, -beta], trace[ok]) / corr
        with np.errstate(divide="ignore", invalid="ignore"):
            out[ok] = np.where(sg > 0, st / sg, np.nan)
    idx = np.maximum.accumulate(np.where(ok, np.arange(len(out)), -1))
    filled = np.where(idx >= 0, out[np.maximum(idx, 0)], np.nan)
    return filled
