"""How many data seeds and how long a window ``probe-cbs`` needs, decided before launch from the noise.

The noise of one seed's excess D_k = L_k - L_1 (the project's noise model: within-run + between-seed):

    var(D_k) = pairing x 2 sigma_B^2 / n_1  +  tau^2

- sigma_B: the per-step scatter of the base run's training loss at batch B over the last 20% of its
  steps before the checkpoint, measured by the mean square successive difference (von Neumann, Kent,
  Bellinson and Hart 1941: sigma^2 = mean((l_{j+1} - l_j)^2) / 2, insensitive to a slow trend).
- n_1 = tail x window / B: the steps of the reference branch in the compared tail. Unpaired, the tail
  means of two branches over the same sequences differ by 2 sigma_B^2 / n_1 (each branch k averages the
  same number of sequences, so this does not depend on k); ``pairing`` is the fraction of that variance
  the step-by-step pairing on the same sequences leaves (prior, below).
- tau: the between-seed spread of an excess (which window of data; how the branches' trajectories
  diverge on it), which more window does not remove: prior ``seed_spread`` x the loss.

With S seeds the mean excess has standard deviation sqrt(var / S) and the analysis uses the t quantile
with S - 1 degrees of freedom (``probe_fit``), so the predicted 80% half-width of each excess is
t_{0.9, S-1} sqrt(var / S). The plan takes the cheapest (seeds x window) whose half-width is at most
``precision`` x the tolerance (0.5: an excess at the tolerance is told apart from half and from 1.5
times the tolerance), with at least two seeds (one seed cannot measure the between-seed spread) and a
window of at least ``MIN_TAIL_STEPS`` steps of the largest branch in the tail.

Priors (``NoisePrior``): measured on the CPU demo (demo-s at batch 8, final checkpoint, factors
1..16, sqrt LR rule; docs/probe.md, "Where the priors come from"). They are this project's only
measurement; give your own (``--seed-spread``, ``--pairing``) once a probe of your model has measured
them (probe.json reports the measured spread beside the prior). The project-wide between-seed prior
will live in ``simulator/noisemodel.py``; this module takes it as an argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["MIN_TAIL_STEPS", "NoisePlan", "NoisePrior", "plan_noise", "step_scatter"]

MIN_TAIL_STEPS = 4
"""Steps of the largest branch in the compared tail, at least (its tail mean and its within-run
standard error need a few steps; the old default of 8 window steps left 2)."""
MAX_SEEDS = 16


@dataclass(frozen=True, kw_only=True, slots=True)
class NoisePrior:
    """What the plan assumes about the noise of an excess before any branch has run."""

    seed_spread: float = 0.007
    """Between-seed standard deviation of one seed's excess, as a fraction of the loss at the checkpoint
    (demo measurement: 0.004-0.014, median 0.007, over 4-5 seeds at three window lengths; docs/probe.md)."""
    pairing: float = 0.04
    """Fraction of the unpaired per-step variance 2 sigma_B^2 / n_1 left after pairing branches step by
    step on the same sequences (demo measurement: 0.02-0.09; docs/probe.md)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seed_spread) and 0 <= self.seed_spread < 1):
            raise ValueError(f"--seed-spread = {self.seed_spread}: a fraction of the loss in [0, 1), e.g. 0.007")
        if not (math.isfinite(self.pairing) and 0 < self.pairing <= 1):
            raise ValueError(f"--pairing = {self.pairing}: a fraction in (0, 1], e.g. 0.04")


@dataclass(frozen=True, kw_only=True, slots=True)
class NoisePlan:
    """Seeds and window chosen for one probe, with the precision they are predicted to give."""

    num_seeds: int
    window_samples: int
    """Sequences each branch trains (a multiple of k_max x B)."""
    half_width: float
    """Predicted 80% half-width of each mean excess (nats)."""
    target: float
    """The half-width asked for: precision x tolerance x loss (nats)."""
    sigma_step: float
    """Per-step scatter of the base run's loss at batch B (nats)."""
    tau: float
    """Prior between-seed standard deviation of one seed's excess (nats)."""
    reached: bool
    """Whether ``half_width <= target``."""

    def line(self, seq_len: int) -> str:
        """One line for the plan printout."""
        ok = "meets" if self.reached else "MISSES"
        return (f"noise plan: {self.num_seeds} seed(s) x {self.window_samples * seq_len:,}-token window; per-step"
                f" scatter {self.sigma_step:.3g}, between-seed prior {self.tau:.3g} nats -> predicted 80% half-width"
                f" of each excess {self.half_width:.3g} nats ({ok} the target {self.target:.3g}, half the tolerance)")


def step_scatter(loss: np.ndarray) -> float:
    """Per-step scatter of a loss series by the mean square successive difference (von Neumann et al. 1941)."""
    loss = np.asarray(loss, float)
    loss = loss[np.isfinite(loss)]
    if len(loss) < 3:
        return math.nan
    return float(np.sqrt(np.mean(np.diff(loss) ** 2) / 2))


def _half_width(num_seeds: int, var: float) -> float:
    q = stats.t.ppf(0.9, num_seeds - 1) if num_seeds >= 2 else stats.norm.ppf(0.9)
    return float(q * math.sqrt(var / num_seeds))


def predicted_half_width(*, num_seeds: int, window_samples: int, base_batch: int, tail: float, sigma_step: float,
                         tau: float, pairing: float) -> float:
    """Predicted 80% half-width of a mean excess over ``num_seeds`` seeds (module docstring)."""
    n1 = max(1.0, tail * window_samples / base_batch)
    return _half_width(num_seeds, pairing * 2 * sigma_step**2 / n1 + tau**2)


def plan_noise(*, sigma_step: float, loss: float, base_batch: int, k_max: int, tail: float, tolerance: float,
               precision: float, prior: NoisePrior, num_seeds: int = 0, window_samples: int = 0) -> NoisePlan:
    """The cheapest seeds x window meeting the target (a given ``num_seeds`` or ``window_samples`` is kept).

    Args:
        sigma_step: per-step loss scatter of the base run at ``base_batch`` (``step_scatter``).
        loss: the base run's loss at the checkpoint.
        num_seeds, window_samples: fixed by the user when > 0; the plan then reports their precision.
    """
    unit = k_max * base_batch
    w_min = unit * math.ceil(MIN_TAIL_STEPS / tail)
    sigma = sigma_step if math.isfinite(sigma_step) else 0.0
    tau = prior.seed_spread * loss
    target = precision * tolerance * loss
    seeds = [num_seeds] if num_seeds else list(range(2, MAX_SEEDS + 1))
    windows = [window_samples] if window_samples else [w_min * 2**i for i in range(7)]
    options = [(s * w, s, w, predicted_half_width(num_seeds=s, window_samples=w, base_batch=base_batch, tail=tail,
                                                  sigma_step=sigma, tau=tau, pairing=prior.pairing))
               for s in seeds for w in windows]
    # the cheapest that meets the target; when none does, the cheapest within 10% of the best reachable
    # (a longer window does not remove the between-seed part: 64x the window would buy almost nothing)
    best_h = min(h for *_, h in options)
    ok = [o for o in options if o[3] <= target] or [o for o in options if o[3] <= 1.1 * best_h]
    _, s, w, h = min(ok)
    return NoisePlan(num_seeds=s, window_samples=w, half_width=h, target=target, sigma_step=sigma, tau=tau,
                     reached=h <= target)
