"""Scaling laws as small frozen dataclasses with ``predict``, ``to_dict``/``from_dict`` and a citation.

- ``ChinchillaLoss``: L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2).
- ``PowerLaw``: y = c * x1^a1 * x2^a2 (batch and learning-rate laws: Step Law, DeepSeek).
- ``KaplanCriticalBatch``: B_crit(L) = B* / L^(1/alpha_B) (Kaplan et al. 2020, eq. 1.4).
- ``LossAtBatch``: L(N, D, B) = L(N, D) + k * ln(B / B_opt(D))^2 -- the loss of a run at a batch that
  is not optimal: the basin of final loss is close to a parabola in log batch (Li et al. 2025, "Predictable
  Scale: Part I", sec. 3 and Fig. 2, convex landscape in log bs); k is fitted on the Step Law sweep
  (``benchmarks/bench_fits.py``).
Presets carry the published constants and their sources; ``load_loss_law(name)`` returns one by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ChinchillaLoss", "KaplanCriticalBatch", "LossAtBatch", "PRESETS", "PowerLaw", "law_from_dict",
           "load_law", "load_loss_law"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ChinchillaLoss:
    """L(N, D) = E + A / N^alpha + B / D^beta."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    citation: str = "Hoffmann et al. 2022, eq. 2"

    def predict(self, n_params, tokens, batch_tokens=None):
        """Final loss of N parameters trained on D tokens (batch ignored: at the optimal batch)."""
        n, d = np.asarray(n_params, dtype=float), np.asarray(tokens, dtype=float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "chinchilla", **dataclasses.asdict(self)}


@dataclass(frozen=True, kw_only=True, slots=True)
class PowerLaw:
    """y = c * x1^a1 (* x2^a2); ``variables`` names the inputs (e.g. ("N", "D") or ("C",))."""

    c: float
    exponents: tuple[float, ...]
    variables: tuple[str, ...]
    unit: str = ""
    citation: str = ""

    def predict(self, *xs):
        """Evaluate the law at the given inputs (in the order of ``variables``)."""
        if len(xs) != len(self.exponents):
            raise ValueError(f"law over {self.variables} needs {len(self.exponents)} inputs, got {len(xs)}")
        out = np.full(np.broadcast(*[np.asarray(x, float) for x in xs]).shape, self.c)
        for x, a in zip(xs, self.exponents):
            out = out * np.asarray(x, dtype=float) ** a
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "power", **dataclasses.asdict(self)}


@dataclass(frozen=True, kw_only=True, slots=True)
class KaplanCriticalBatch:
    """B_crit(L) = B_star / L^(1 / alpha_B), in tokens."""

    B_star: float = 2e8
    alpha_B: float = 0.21
    citation: str = "Kaplan et al. 2020, eq. 1.4 / sec. 5.1 (B* ~ 2e8 tokens, alpha_B ~ 0.21)"

    def predict(self, loss):
        return self.B_star / np.asarray(loss, dtype=float) ** (1.0 / self.alpha_B)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "kaplan_critical_batch", **dataclasses.asdict(self)}


@dataclass(frozen=True, kw_only=True, slots=True)
class LossAtBatch:
    """L(N, D, B) = loss(N, D) + k * ln(B / B_opt(D))^2, B and B_opt in tokens."""

    loss: ChinchillaLoss
    batch_opt: PowerLaw
    k: float
    citation: str = ("parabola in log batch around the Step Law optimum (Li et al. 2025, sec. 3), on top of "
                     "Chinchilla L(N, D); k fitted on the Step Law dense sweep")

    def predict(self, n_params, tokens, batch_tokens):
        """Final loss at a given global batch (tokens)."""
        b_opt = self.batch_opt.predict(tokens)
        return self.loss.predict(n_params, tokens) + self.k * np.log(np.asarray(batch_tokens, float) / b_opt) ** 2

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "loss_at_batch", "loss": self.loss.to_dict(), "batch_opt": self.batch_opt.to_dict(),
                "k": self.k, "citation": self.citation}


def law_from_dict(d: dict[str, Any]):
    """Inverse of ``to_dict`` for every law kind."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind == "chinchilla":
        return ChinchillaLoss(**d)
    if kind == "power":
        return PowerLaw(**{**d, "exponents": tuple(d["exponents"]), "variables": tuple(d["variables"])})
    if kind == "kaplan_critical_batch":
        return KaplanCriticalBatch(**d)
    if kind == "loss_at_batch":
        return LossAtBatch(loss=law_from_dict(d["loss"]), batch_opt=law_from_dict(d["batch_opt"]), k=float(d["k"]),
                           citation=d.get("citation", ""))
    raise ValueError(f"law kind = {kind!r}: allowed are chinchilla, power, kaplan_critical_batch, loss_at_batch")


_STEP_LAW_B = PowerLaw(c=0.58, exponents=(0.571,), variables=("D",), unit="tokens",
                       citation="Li et al. 2025, Predictable Scale Part I (Step Law), eq. 6: B = 0.58 D^0.571")

PRESETS: dict[str, Any] = {
    "chinchilla": ChinchillaLoss(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28,
                                 citation="Hoffmann et al. 2022, approach 3, eq. 10"),
    "epoch-chinchilla": ChinchillaLoss(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
                                       citation="Besiroglu et al. 2024, Chinchilla scaling: a replication attempt, Table 1"),
    "kaplan-critical-batch": KaplanCriticalBatch(),
    "steplaw-batch": _STEP_LAW_B,
    "steplaw-lr": PowerLaw(c=1.79, exponents=(-0.713, 0.307), variables=("N", "D"),
                           citation="Li et al. 2025 (Step Law), eq. 5: lr = 1.79 N^-0.713 D^0.307"),
    "deepseek-batch": PowerLaw(c=0.2920, exponents=(0.3271,), variables=("C",), unit="tokens",
                               citation="DeepSeek-AI 2024, DeepSeek LLM, eq. 1: B_opt = 0.2920 C^0.3271"),
    "deepseek-lr": PowerLaw(c=0.3118, exponents=(-0.1250,), variables=("C",),
                            citation="DeepSeek-AI 2024, DeepSeek LLM, eq. 1: lr_opt = 0.3118 C^-0.1250"),
    # k = 0.0142 nats per ln(B/B_opt)^2: fitted on the Step Law dense sweep by benchmarks/bench_fits.py
    "epoch-steplaw-batch": LossAtBatch(
        loss=ChinchillaLoss(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
                            citation="Besiroglu et al. 2024, Table 1"),
        batch_opt=_STEP_LAW_B, k=0.0142),
}


def load_law(name: str):
    """A preset law by name."""
    if name not in PRESETS:
        raise ValueError(f"law = {name!r}: unknown; presets are {', '.join(PRESETS)}")
    return PRESETS[name]


def load_loss_law(name_or_path: str):
    """A law with ``predict(n_params, tokens, batch_tokens)``: a preset name or a JSON file of ``to_dict``."""
    from pathlib import Path

    p = Path(name_or_path)
    if p.suffix == ".json" and p.is_file():
        import json

        return law_from_dict(json.loads(p.read_text()))
    law = load_law(name_or_path)
    if not isinstance(law, (ChinchillaLoss, LossAtBatch)):
        raise ValueError(f"loss_law = {name_or_path!r}: not a loss law; use chinchilla, epoch-chinchilla or "
                         "epoch-steplaw-batch")
    return law
