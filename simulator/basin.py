"""The loss basin over log batch x log learning rate: the shape the study planner designs with.

At fixed model size N and training tokens D, the final loss against the global batch B and the peak
learning rate lr is a convex basin with a broad floor (Li et al. 2025, "Predictable Scale: Part I",
arXiv 2503.04715: abstract and the LR x batch contour maps of their Fig. 1) whose valley runs
diagonally: a larger batch wants a larger learning rate, so the best batch at a fixed learning rate
moves with that learning rate. With u = ln(B / B_opt), w = ln(lr / lr_opt) and the distance from the
ridge of optimal learning rates v = w - r(u) * u::

    excess(u, w) = a(u) * u^2 + c(v) * v^2
    a = a_below (u < 0) or a_above,  c = c_below (v < 0) or c_above,  r = ridge (u < 0) or ridge_above

so lr_opt(B) = lr_opt * exp(r(u) * u). A ridge that flattens above B_opt (ridge_above < ridge) is what
Adam-style optimisers show: the optimal learning rate stops growing with the batch, and can fall,
beyond a batch near the noise scale (Li, S. et al. 2024, "Surge Phenomenon in Optimal Learning Rate and
Batch Size Scaling", arXiv 2405.14578). The shape may depend on tokens per parameter and on N (``at``).

``fit_basin`` (``batchlaw.simulator.fit_basin``, re-exported here) fits it to LR x batch sweeps; the
shipped fit is ``configs/laws/steplaw-basin.toml`` (``benchmarks/bench_basin.py``), its evidence and
assumptions are in docs/design.md, "The basin model".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batchlaw.simulator.config import build, load_toml

__all__ = ["SCALES", "SHAPE", "Basin", "BasinFit", "fit_basin", "load_basin"]  # noqa: F822 (lazy, PEP 562)

SHAPE = ("a_below", "a_above", "c_below", "c_above", "ridge", "ridge_above")
"""The shape parameters, in the order the fit reports them (curvatures first)."""
SCALES = ("tpp", "n")
"""What the shape may depend on (field suffixes): tokens per parameter D / N, and parameters N."""
_CURVATURES = SHAPE[:4]


def __getattr__(name: str):  # PEP 562: the fit lives in fit_basin.py and imports this module
    if name in ("fit_basin", "BasinFit"):
        from batchlaw.simulator import fit_basin as _fit

        return getattr(_fit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


@dataclass(frozen=True, kw_only=True, slots=True)
class Basin:
    """Excess final loss (nats/token) over a cell's optimum, in u = ln(B / B_opt) and w = ln(lr / lr_opt), where
    lr_opt is the optimal LR at B_opt. The LR optimum moves with the batch along the ridge
    ln lr_opt(B) = ln lr_opt + ridge * u, and v = w - ridge * u is the distance from it.

    For u > 0 the ridge slope is ``ridge_above`` when set (a kinked ridge). The shape fields hold at
    D / N = ``tpp_ref`` and N = ``n_ref``; ``at(N, D)`` gives another cell's shape: each curvature
    times (D / N / tpp_ref)^<name>_tpp * (N / n_ref)^<name>_n, each ridge slope plus
    <name>_tpp * ln(D / N / tpp_ref) + <name>_n * ln(N / n_ref). The scale fields default to 0 (one
    shape everywhere)."""

    a_below: float
    """Curvature in u for u < 0 (batch below its optimum), nats per (ln batch)^2."""
    a_above: float
    """Curvature in u for u > 0 (batch above its optimum), nats per (ln batch)^2."""
    c_below: float
    """Curvature in v for v < 0 (LR below the ridge), nats per (ln lr)^2."""
    c_above: float
    """Curvature in v for v > 0 (LR above the ridge), nats per (ln lr)^2."""
    ridge: float
    """d ln lr_opt(B) / d ln B (for B < B_opt, and above too unless ``ridge_above`` is set)."""
    ridge_above: float | None = None
    """d ln lr_opt(B) / d ln B for B > B_opt; None = ``ridge`` (a straight ridge)."""
    noise_sd: float = 0.0
    """Standard deviation of one run's final loss around the basin (nats): the prior for run-to-run
    noise (seed, per-step scatter and misfit together); 0 when unknown."""
    tpp_ref: float = 50.0
    """Tokens per parameter D / N at which the shape fields hold."""
    n_ref: float = 5e8
    """Parameters N at which the shape fields hold."""
    a_below_tpp: float = 0.0
    """Exponent of D / N in a_below."""
    a_above_tpp: float = 0.0
    """Exponent of D / N in a_above."""
    c_below_tpp: float = 0.0
    """Exponent of D / N in c_below."""
    c_above_tpp: float = 0.0
    """Exponent of D / N in c_above."""
    ridge_tpp: float = 0.0
    """d ridge / d ln(D / N)."""
    ridge_above_tpp: float = 0.0
    """d ridge_above / d ln(D / N) (0 unless ridge_above is set)."""
    a_below_n: float = 0.0
    """Exponent of N in a_below."""
    a_above_n: float = 0.0
    """Exponent of N in a_above."""
    c_below_n: float = 0.0
    """Exponent of N in c_below."""
    c_above_n: float = 0.0
    """Exponent of N in c_above."""
    ridge_n: float = 0.0
    """d ridge / d ln N."""
    ridge_above_n: float = 0.0
    """d ridge_above / d ln N (0 unless ridge_above is set)."""
    citation: str = ""
    """Where the numbers come from."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "citation" or (f.name == "ridge_above" and value is None):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"basin.{f.name} = {value!r}: must be a finite number")
            if f.name in ("tpp_ref", "n_ref") and value <= 0:
                raise ValueError(f"basin.{f.name} = {value!r}: must be > 0")
            if f.name in (*_CURVATURES, "noise_sd") and value < 0:
                raise ValueError(f"basin.{f.name} = {value!r}: must be >= 0")
        if self.ridge_above is None:
            for s in SCALES:
                if getattr(self, f"ridge_above_{s}") != 0:
                    raise ValueError(f"basin.ridge_above_{s} = {getattr(self, f'ridge_above_{s}')!r}: needs "
                                     f"ridge_above to be set")

    @property
    def scale_free(self) -> bool:
        """Whether the shape is the same for every (N, D) (all scale fields 0)."""
        return all(getattr(self, f"{k}_{s}") == 0 for k in SHAPE for s in SCALES)

    def at(self, n_params: float, tokens: float) -> Basin:
        """The shape of the cell of N parameters trained on D tokens (scale fields 0, same noise_sd).

        Raises:
            ValueError: N or D not a positive finite number.
        """
        for name, value in (("n_params", n_params), ("tokens", tokens)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} = {value!r}: must be a positive finite number")
        z = {"tpp": math.log(tokens / n_params / self.tpp_ref), "n": math.log(n_params / self.n_ref)}
        out: dict[str, Any] = {}
        for k in SHAPE:
            base = getattr(self, k)
            if base is None:
                continue
            shift = sum(getattr(self, f"{k}_{s}") * z[s] for s in SCALES)
            out[k] = base * math.exp(shift) if k in _CURVATURES else base + shift
        return Basin(**out, noise_sd=self.noise_sd, tpp_ref=self.tpp_ref, n_ref=self.n_ref, citation=self.citation)

    def _ridge(self, u: np.ndarray) -> np.ndarray:
        above = self.ridge if self.ridge_above is None else self.ridge_above
        return np.where(u < 0, self.ridge, above)

    def excess(self, u, w) -> np.ndarray:
        """Loss above the cell's optimum at u = ln(B / B_opt), w = ln(lr / lr_opt) (vectorised, >= 0)."""
        u, w = np.broadcast_arrays(_arr(u), _arr(w))
        v = w - self._ridge(u) * u
        a = np.where(u < 0, self.a_below, self.a_above)
        c = np.where(v < 0, self.c_below, self.c_above)
        return a * u * u + c * v * v

    def lr_ratio_at(self, u) -> np.ndarray:
        """lr_opt(B) / lr_opt(B_opt) = exp(ridge * u): the best learning rate at batch B_opt * e^u."""
        u = _arr(u)
        return np.exp(self._ridge(u) * u)

    def u_opt_at(self, w: float) -> float:
        """The u = ln(B / B_opt) minimising ``excess(u, w)`` at a fixed w = ln(lr / lr_opt).

        On each side of u = 0 the excess is a quadratic in u with leading coefficient a + c r^2 >= 0 and
        stationary point u = c r w / (a + c r^2), where v = w a / (a + c r^2) has the sign of w, so the
        c of that side is the one for the sign of w and the v = 0 kink is never the minimum. The minimum
        is therefore one of the side's stationary points or the kink u = 0; the lowest excess wins.
        """
        w = float(w)
        above = self.ridge if self.ridge_above is None else self.ridge_above
        cands = [0.0]
        for a, r in ((self.a_below, self.ridge), (self.a_above, above)):
            for c in (self.c_below, self.c_above):
                if a + c * r * r > 0:
                    cands.append(c * r * w / (a + c * r * r))
        cands_arr = np.array(cands)
        return float(cands_arr[np.argmin(self.excess(cands_arr, w))])

    def b_opt_ratio(self, w: float) -> float:
        """The batch minimising excess at a FIXED lr = lr_opt * e^w, over B_opt (1 at w = 0)."""
        return math.exp(self.u_opt_at(w))

    def to_dict(self) -> dict[str, Any]:
        """The TOML/JSON form: ``kind = "basin"`` and every field (``ridge_above`` only when set)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"kind": "basin", **{k: v for k, v in fields.items() if v is not None}}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "basin") -> Basin:
        """Inverse of ``to_dict``; ``kind`` may be left out; unknown keys are rejected with the valid ones."""
        d = dict(d)
        kind = d.pop("kind", "basin")
        if kind != "basin":
            raise ValueError(f"{where}.kind = {kind!r}: a basin has kind = 'basin'")
        return build(cls, d, where)


def load_basin(name_or_path: str | Path) -> Basin:
    """A basin by preset name (``steplaw-basin``, in ``configs/laws``) or from a ``.toml`` path.

    Raises:
        ValueError: one line for an unknown name (listing the presets), an unreadable or invalid file,
            a law of another kind, an unknown key or a bad value.
    """
    from batchlaw.simulator import resources

    path = resources.resolve("laws", name_or_path, field="basin")
    data = load_toml(path)
    if data.get("kind") != "basin":
        raise ValueError(f"basin = {str(name_or_path)!r}: {str(path)!r} has kind = {data.get('kind')!r}, not 'basin'")
    return Basin.from_dict(data, path.stem)
