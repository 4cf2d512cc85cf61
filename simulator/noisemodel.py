"""The noise of a final loss, in two parts, and what the data say about the second.

A run's final loss (the mean training loss over its last fraction of steps) differs from the loss its
configuration would reach "on average" by
- a within-run part: the per-step scatter of the losses averaged (its standard error ``se`` is measured in
  every log: ``tools.logs``, detrended and corrected for autocorrelation), and
- a between-seed part with standard deviation ``seed_sd``: another seed (initialisation and data order)
  lands the whole run elsewhere, and a run's own per-step scatter cannot show it.
So the variance of one run's final loss about the basin is ``se**2 + seed_sd**2`` (runs independent).

``seed_sd`` is learned from the data where they carry it and taken from a stated prior where they do not,
with the conjugate normal model of a variance (a scaled inverse chi-square, Gelman et al. 2013, *Bayesian
Data Analysis*, 3rd ed., sec. 2.6 and 3.2): a prior ``seed_sd`` worth ``prior_dof`` degrees of freedom is
combined with the sums of squares the study supplies:
- repeated seeds of one configuration: their scatter about their mean, less the within-run part;
- residuals of each sweep's basin fit (neighbouring points): their scatter about the fitted curve, less the
  within-run part (this also absorbs misfit of the curve, which is honest for intervals built on it).
The posterior is what every interval uses: its draws (``draw_var``) enter each bootstrap replicate, so an
interval also carries the uncertainty of ``seed_sd`` itself when the data have few degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["NoiseModel", "pooled_repeats"]


@dataclass(frozen=True, kw_only=True, slots=True)
class NoiseModel:
    """Between-seed noise of final losses: a prior and, when learned, the data it was updated with."""

    seed_sd: float
    """Between-seed standard deviation of a final loss, nats/token (the posterior mode once learned)."""
    prior_sd: float = float("nan")
    """The prior's seed_sd (NaN: this is the prior itself)."""
    prior_dof: float = 4.0
    """How many degrees of freedom the prior is worth (small: the data soon dominate)."""
    data_dof: float = 0.0
    """Degrees of freedom the data added (repeated seeds plus fit residuals)."""
    data_ss: float = 0.0
    """Their sum of squares about the fits and means, less the within-run part, nats^2."""
    source: str = ""
    """Where the prior comes from (one line)."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """What the data contributed (one line each)."""

    def __post_init__(self) -> None:
        for name in ("seed_sd", "prior_dof", "data_dof", "data_ss"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"noise.{name} = {v!r}: must be a finite number >= 0")
        if self.prior_dof + self.data_dof <= 0:
            raise ValueError("noise: prior_dof = 0 and no data: the seed noise has no estimate")

    @property
    def dof(self) -> float:
        """Degrees of freedom of the posterior of seed_sd^2."""
        return self.prior_dof + self.data_dof

    def run_sd(self, se) -> np.ndarray:
        """Standard deviation of one run's final loss about the basin: sqrt(se^2 + seed_sd^2) (blank se = 0)."""
        se = np.nan_to_num(np.asarray(se, float), nan=0.0)
        return np.sqrt(se**2 + self.seed_sd**2)

    def draw_var(self, rng: np.random.Generator, size: int | None = None):
        """Draws of seed_sd^2 from its posterior, Scale-Inv-chi^2(dof, seed_sd^2) (BDA3 eq. 3.4 / sec. 2.6):
        dof * s^2 / chi^2_dof."""
        return self.dof * self.seed_sd**2 / rng.chisquare(self.dof, size=size)

    def updated(self, ss: float, dof: float, note: str = "") -> "NoiseModel":
        """This model with ``dof`` more degrees of freedom and sum of squares ``ss`` (nats^2) from the data:
        s^2 = (nu_0 s_0^2 + SS) / (nu_0 + nu) (BDA3 sec. 2.6, the conjugate update of a normal variance)."""
        if not (math.isfinite(ss) and ss >= 0 and math.isfinite(dof) and dof >= 0):
            raise ValueError(f"noise update: ss = {ss!r}, dof = {dof!r}: must be finite and >= 0")
        prior = self.prior_sd if math.isfinite(self.prior_sd) else self.seed_sd
        total_ss, total_dof = self.data_ss + ss, self.data_dof + dof
        var = (self.prior_dof * prior**2 + total_ss) / (self.prior_dof + total_dof)
        return NoiseModel(seed_sd=math.sqrt(var), prior_sd=prior, prior_dof=self.prior_dof, data_dof=total_dof,
                          data_ss=total_ss, source=self.source, notes=self.notes + ((note,) if note else ()))

    def describe(self) -> str:
        """One line: the value, its degrees of freedom and where it comes from."""
        if self.data_dof:
            prior = self.prior_sd if math.isfinite(self.prior_sd) else self.seed_sd
            return (f"seed-to-seed sd {self.seed_sd:.3g} nats ({self.data_dof:g} dof from the data + prior"
                    f" {prior:.3g} worth {self.prior_dof:g} dof: {self.source})")
        return f"seed-to-seed sd {self.seed_sd:.3g} nats (prior only, worth {self.prior_dof:g} dof: {self.source})"


def pooled_repeats(keys, losses, se) -> tuple[float, float]:
    """(sum of squares, dof) of repeated runs of one configuration about their means, less the within-run
    part: for a group of k runs, sum (L - mean)^2 estimates (k - 1)(seed_sd^2 + mean se^2).

    Args:
        keys: one hashable per run (its configuration: size, budget, batch, lr, ...); runs sharing a key
            are repeats (other seeds).
        losses: final losses.
        se: their within-run standard errors (NaN: unknown, counted as 0).
    """
    groups: dict = {}
    for k, y, s in zip(keys, losses, se):
        if math.isfinite(y):
            groups.setdefault(k, []).append((y, 0.0 if not math.isfinite(s) else s))
    ss, dof = 0.0, 0.0
    for runs in groups.values():
        if len(runs) < 2:
            continue
        y = np.array([r[0] for r in runs])
        s2 = np.mean([r[1] ** 2 for r in runs])
        ss += max(float(((y - y.mean()) ** 2).sum()) - (len(y) - 1) * s2, 0.0)
        dof += len(y) - 1
    return ss, dof
