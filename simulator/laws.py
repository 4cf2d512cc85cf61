"""Scaling laws as small frozen dataclasses with ``predict``, ``to_dict``/``from_dict`` and a citation.

Loss laws (``predict(n_params, tokens, batch_tokens)``, vectorised, broadcasting):

- ``ChinchillaLoss``: L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2); the
  batch is ignored (the runs it was fitted on used a near-optimal batch).
- ``LossAtBatch``: the loss of a run whose batch is not optimal. L(N, D, B) = L(N, D) + k * x^2 with
  x = ln(B / B_opt(D)), k = ``k_below`` for B < B_opt and ``k_above`` above. The final loss against
  log batch at fixed (N, D) is a convex basin (Li et al. 2025, "Predictable Scale: Part I", sec. 3,
  Fig. 2); B_opt(D) is the Step Law (their eq. 6); k is fitted on their released dense sweep
  (``benchmarks/bench_fits.py``). This is the model behind ``pred_loss`` in grids.
- ``KaplanLossAtBatch``: Kaplan et al. 2020 L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S
  (eq. 1.6 / 5.6) with S = D / B steps and S_min = S / (1 + B_crit(L) / B) (eq. 5.4; McCandlish
  et al. 2018, eq. 2.11), B_crit(L) = B* / L^(1/alpha_B) (eq. 1.4), solved as a fixed point. It
  penalises large batches only: at fixed data a smaller batch never hurts in this model.

Other laws: ``PowerLaw`` (B_opt, lr_opt in N, D or C), ``KaplanCriticalBatch`` (B_crit(L)).
Helpers: ``s_min``/``e_min`` (the McCandlish trade-off (S/S_min - 1)(E/E_min - 1) = 1) and
``zhang_critical_batch`` (Zhang et al. 2024's 20%-overhead definition of the critical batch).
Presets by name live in ``batchlaw.simulator.presets`` (``configs/laws/*.toml``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batchlaw.simulator.basin import Basin
from batchlaw.simulator.config import build

__all__ = ["ChinchillaLoss", "KaplanCriticalBatch", "KaplanLossAtBatch", "LossAtBatch", "PowerLaw", "e_min",
           "law_from_dict", "load_law", "load_loss_law", "s_min", "zhang_critical_batch"]


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


@dataclass(frozen=True, kw_only=True, slots=True)
class ChinchillaLoss:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2)."""

    E: float
    """Irreducible loss (nats per token)."""
    A: float
    """Coefficient of the parameter term."""
    B: float
    """Coefficient of the data term."""
    alpha: float
    """Exponent of N (parameters)."""
    beta: float
    """Exponent of D (training tokens)."""
    citation: str = "Hoffmann et al. 2022, eq. 2"
    """Where the constants come from."""

    def predict(self, n_params, tokens, batch_tokens=None) -> np.ndarray:
        """Final loss of N parameters trained on D tokens (at a near-optimal batch; B is ignored)."""
        n, d = _arr(n_params), _arr(tokens)
        out = self.E + self.A / n**self.alpha + self.B / d**self.beta
        return out if batch_tokens is None else np.broadcast_to(out, np.broadcast(out, _arr(batch_tokens)).shape)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "chinchilla", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChinchillaLoss:
        return law_from_dict({"kind": "chinchilla", **d})


@dataclass(frozen=True, kw_only=True, slots=True)
class PowerLaw:
    """y = c * x1^a1 * x2^a2 * ...; ``variables`` names the inputs, e.g. ("D",), ("N", "D"), ("C",)."""

    c: float
    """Prefactor (in ``unit`` when the inputs are in parameters, tokens or FLOPs)."""
    exponents: tuple[float, ...]
    """One exponent per input."""
    variables: tuple[str, ...]
    """Names of the inputs, in the order ``predict`` takes them."""
    unit: str = ""
    """Unit of y, e.g. 'tokens'."""
    citation: str = ""
    """Where the constants come from."""

    def __post_init__(self):
        if len(self.exponents) != len(self.variables):
            raise ValueError(f"exponents = {list(self.exponents)}: need one per variable {list(self.variables)}")

    def predict(self, *xs) -> np.ndarray:
        """Evaluate the law at the given inputs (in the order of ``variables``)."""
        if len(xs) != len(self.exponents):
            raise ValueError(f"law over {self.variables} needs {len(self.exponents)} inputs, got {len(xs)}")
        out = np.full(np.broadcast(*[_arr(x) for x in xs]).shape, self.c)
        for x, a in zip(xs, self.exponents):
            out = out * _arr(x) ** a
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "power", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PowerLaw:
        return law_from_dict({"kind": "power", **d})


@dataclass(frozen=True, kw_only=True, slots=True)
class KaplanCriticalBatch:
    """B_crit(L) = B_star / L^(1 / alpha_B), in tokens (Kaplan et al. 2020, eq. 1.4)."""

    B_star: float = 2e8
    """Critical batch at L = 1 nat (tokens)."""
    alpha_B: float = 0.21
    """Exponent of the loss."""
    citation: str = "Kaplan et al. 2020, eq. 1.4: B* ~ 2e8 tokens, alpha_B ~ 0.21"
    """Where the constants come from."""

    def predict(self, loss) -> np.ndarray:
        """Critical batch (tokens) at a given loss."""
        return self.B_star / _arr(loss) ** (1.0 / self.alpha_B)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "kaplan_critical_batch", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KaplanCriticalBatch:
        return law_from_dict({"kind": "kaplan_critical_batch", **d})


def s_min(steps, batch, b_crit) -> np.ndarray:
    """Fewest steps to the same loss: S_min = S / (1 + B_crit / B) (McCandlish et al. 2018, eq. 2.11;
    Kaplan et al. 2020, eq. 5.4)."""
    return _arr(steps) / (1.0 + _arr(b_crit) / _arr(batch))


def e_min(examples, batch, b_crit) -> np.ndarray:
    """Fewest examples (or tokens) to the same loss: E_min = E / (1 + B / B_crit) (McCandlish et al.
    2018, eq. 2.12; Kaplan et al. 2020, eq. 5.5). With ``s_min``: (S/S_min - 1)(E/E_min - 1) = 1."""
    return _arr(examples) / (1.0 + _arr(batch) / _arr(b_crit))


def zhang_critical_batch(s_min_steps, b_noise, b_ref, overhead: float = 0.2) -> np.ndarray:
    """Critical batch as Zhang et al. 2024 compute it from S(B) = S_min (1 + B_noise / B).

    It is the batch at which S(B) exceeds perfect linear scaling from ``b_ref`` by ``overhead``:
    S(B) = (1 + r) S(b_ref) b_ref / B, i.e. B = (1 + r) b_ref + r B_noise (their code,
    ``plots/chinchilla.ipynb``: r = 0.2, b_ref = 256 sequences). ``s_min_steps`` cancels out and is
    accepted for symmetry with the fit result.
    """
    del s_min_steps
    return (1.0 + overhead) * _arr(b_ref) + overhead * _arr(b_noise)


@dataclass(frozen=True, kw_only=True, slots=True)
class LossAtBatch:
    """L(N, D, B) = loss(N, D) + k * ln(B / B_opt(D))^2 with k = k_below (B < B_opt) or k_above."""

    loss: ChinchillaLoss
    """L(N, D) at the optimal batch."""
    batch_opt: PowerLaw
    """B_opt(D) in tokens (one variable, D)."""
    k_below: float
    """Curvature of the basin below the optimal batch (nats per ln(B/B_opt)^2)."""
    k_above: float
    """Curvature of the basin above the optimal batch (nats per ln(B/B_opt)^2)."""
    citation: str = ("convex basin in log batch around the Step Law optimum (Li et al. 2025, sec. 3, Fig. 2) "
                     "on top of Chinchilla L(N, D); k fitted on the Step Law dense sweep")
    """Where the model and its constants come from."""

    def __post_init__(self):
        if self.batch_opt.variables != ("D",):
            raise ValueError(f"batch_opt.variables = {list(self.batch_opt.variables)}: must be ['D']")

    def predict(self, n_params, tokens, batch_tokens) -> np.ndarray:
        """Final loss of N parameters on D tokens at a global batch of B tokens."""
        x = np.log(_arr(batch_tokens) / self.batch_opt.predict(tokens))
        k = np.where(x < 0, self.k_below, self.k_above)
        return self.loss.predict(n_params, tokens) + k * x * x

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "loss_at_batch", "loss": self.loss.to_dict(), "batch_opt": self.batch_opt.to_dict(),
                "k_below": self.k_below, "k_above": self.k_above, "citation": self.citation}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossAtBatch:
        return law_from_dict({"kind": "loss_at_batch", **d})


@dataclass(frozen=True, kw_only=True, slots=True)
class KaplanLossAtBatch:
    """Kaplan et al. 2020 L(N, S_min) with S = D / B and the critical batch B_crit(L)."""

    N_c: float = 6.5e13
    """Parameter scale (non-embedding parameters; Kaplan et al. 2020, Table 3)."""
    alpha_N: float = 0.077
    """Exponent of N in L(N, S) (Table 3)."""
    S_c: float = 2.1e3
    """Step scale (Table 3)."""
    alpha_S: float = 0.76
    """Exponent of S_min (Table 3)."""
    critical: KaplanCriticalBatch = dataclasses.field(default_factory=KaplanCriticalBatch)
    """B_crit(L) in tokens."""
    citation: str = "Kaplan et al. 2020, eq. 1.6 / 5.6 and Table 3, with S_min from eq. 5.4 and B_crit from eq. 1.4"
    """Where the model and its constants come from."""

    def loss_at_steps(self, n_params, s_min_steps) -> np.ndarray:
        """L(N, S_min) = (N_c / N)^alpha_N + (S_c / S_min)^alpha_S (eq. 1.6)."""
        return (self.N_c / _arr(n_params)) ** self.alpha_N + (self.S_c / _arr(s_min_steps)) ** self.alpha_S

    def predict(self, n_params, tokens, batch_tokens) -> np.ndarray:
        """Final loss with S = D / B steps: the root of L = f(L) = L(N, S / (1 + B_crit(L) / B)).

        f decreases in L (a lower loss raises B_crit, which lowers S_min), so the root is unique and
        lies in [f(inf), f(f(inf))] with f(inf) = L(N, S); found by vectorised bisection.
        """
        n, b = _arr(n_params), _arr(batch_tokens)
        steps = _arr(tokens) / b

        def f(loss):
            return self.loss_at_steps(n, s_min(steps, b, self.critical.predict(loss)))

        lo = self.loss_at_steps(n, steps)
        hi = f(lo)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = f(mid) > mid
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["critical"] = self.critical.to_dict()
        return {"kind": "kaplan_loss_at_batch", **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KaplanLossAtBatch:
        return law_from_dict({"kind": "kaplan_loss_at_batch", **d})


_KINDS = {"chinchilla": ChinchillaLoss, "power": PowerLaw, "kaplan_critical_batch": KaplanCriticalBatch,
          "loss_at_batch": LossAtBatch, "kaplan_loss_at_batch": KaplanLossAtBatch, "basin": Basin}
LOSS_LAWS = (ChinchillaLoss, LossAtBatch, KaplanLossAtBatch)


def law_from_dict(d: dict[str, Any], where: str = "law"):
    """Inverse of ``to_dict`` for every law kind; unknown keys are rejected with the valid ones."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"{where}.kind = {kind!r}: allowed are {', '.join(_KINDS)}")
    for key, value in d.items():  # nested laws carry their own kind
        if isinstance(value, dict) and "kind" in value:
            d[key] = law_from_dict(value, f"{where}.{key}")
    return build(_KINDS[kind], d, where)


def load_law(name: str):
    """A preset law by name (``batchlaw.simulator.presets``)."""
    from batchlaw.simulator import presets

    return presets.load_preset(name)


def load_loss_law(name_or_path: str | Path):
    """A loss law with ``predict(n_params, tokens, batch_tokens)``.

    Args:
        name_or_path: a preset name (``epoch-steplaw-batch``), a ``.toml`` file as in ``configs/laws``
            or a ``.json`` file holding ``law.to_dict()``.

    Raises:
        ValueError: unknown preset, unreadable file, or a law that does not predict a loss.
    """
    p = Path(name_or_path)
    if p.suffix == ".json":
        if not p.is_file():
            raise ValueError(f"loss_law = {str(p)!r}: no such file")
        try:
            law = law_from_dict(json.loads(p.read_text()), p.name)
        except json.JSONDecodeError as exc:
            raise ValueError(f"loss_law = {str(p)!r}: not valid JSON: {exc}") from None
    else:
        from batchlaw.simulator import presets

        law = presets.load_preset(name_or_path)
    if not isinstance(law, LOSS_LAWS):
        from batchlaw.simulator import presets

        raise ValueError(f"loss_law = {str(name_or_path)!r}: a {type(law).__name__}, not a loss law; loss presets"
                         f" are {', '.join(presets.loss_preset_names())}")
    return law
