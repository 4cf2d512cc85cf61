"""Coverage of probe-cbs's 80% B_crit interval on simulated probes of known truth, side by side.

    python benchmarks/bench_probe.py [--sims 2000] [--seed 0]

A simulated probe: factors 1, 2, 4, 8, 16; a true excess curve (nats) with a known crossing of the
tolerance eps = 0.025 (the estimand: the crossing of the curve read linearly in log k between factors);
per seed, the excess is truth + between-seed noise (sd tau = 0.01, correlated over factors: loading 0.755,
so neighbouring factors correlate 0.57, the median measured on the demo) + within-run noise (sd 0.005). For each
number of seeds it prints how often the 80% interval covers the true crossing, for
  new      ``probe_fit.fit_excess_curve`` (isotonic fit; t test inversion over seeds; one seed: within +
           the prior tau, given the true tau here);
  boot     a percentile bootstrap over seeds of the isotonic crossing (200 resamples);
  old      the estimator before issue 19 (per-factor standard errors, crossings of d -/+ 1.28 se);
and the median width (log2 of hi / lo), the share of "not determined" answers, and the false-alarm rate
of "not monotone" (the truth is monotone) beside its power on a truth that is not monotone. A bound
('>=') counts as covering when the truth is above it; "not determined" without a bound does not cover.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from batchlaw.tools.probe_fit import first_crossing, fit_excess_curve, isotonic

K = np.array([1, 2, 4, 8, 16])
LOGK = np.log(K)
EPS, TAU, WITHIN, LOADING = 0.025, 0.01, 0.005, 0.755
TRUTHS = {"convex": np.array([0, 0.003, 0.01, 0.03, 0.1]), "late": np.array([0, 0.0, 0.005, 0.02, 0.06]),
          "dip": np.array([0, -0.01, 0.0, 0.02, 0.15])}
NOT_MONOTONE = {"drop 0.05": np.array([0, 0.005, 0.05, 0.0, 0.15]),
                "drop 0.02": np.array([0, 0.005, 0.035, 0.015, 0.15])}


def draw(rng, truth, seeds):
    common = rng.normal(size=(seeds, 1))
    x = truth + TAU * (LOADING * common + math.sqrt(1 - LOADING**2) * rng.normal(size=(seeds, len(K))))
    x = x + WITHIN * rng.normal(size=x.shape)
    x[:, 0] = 0.0
    se = np.full(x.shape, WITHIN)
    se[:, 0] = 0.0
    return x, se


def old_interval(x, se):
    """The estimator of tools/probe.py before issue 19."""
    s = len(x)
    d = x.mean(axis=0)
    e = np.sqrt(np.sum(se**2, axis=0)) / s
    if s > 1:
        e = np.maximum(e, x.std(axis=0, ddof=1) / math.sqrt(s))
    e[0] = 0.0

    def cross(v):
        c = first_crossing(LOGK, v, EPS)
        return math.inf if math.isnan(c) else math.exp(c)

    return cross(d + 1.2816 * e), cross(d - 1.2816 * e)


def boot_interval(rng, x, reps=200):
    s = len(x)
    if s < 2:
        return math.nan, math.nan
    pts = []
    for _ in range(reps):
        m = x[rng.integers(0, s, s)].mean(axis=0)
        f = np.concatenate([[0.0], isotonic(m[1:], np.ones(len(K) - 1))])
        c = first_crossing(LOGK, f, EPS)
        pts.append(math.inf if math.isnan(c) else math.exp(c))
    return tuple(np.quantile(pts, [0.1, 0.9]))


def run_case(rng, truth, seeds, sims):
    b_true = math.exp(first_crossing(LOGK, truth, EPS))
    cov = {"new": 0, "boot": 0, "old": 0}
    widths, undetermined = [], 0
    for _ in range(sims):
        x, se = draw(rng, truth, seeds)
        f = fit_excess_curve(K, x, se, EPS, tau=TAU if seeds == 1 else 0.0)
        if f.determined:
            cov["new"] += f.lo <= b_true <= f.hi
            widths.append(math.log2(f.hi / f.lo) if math.isfinite(f.hi) else math.inf)
        else:
            undetermined += 1
            cov["new"] += f.bound == ">=" and f.lo <= b_true
        lo, hi = boot_interval(rng, x) if seeds >= 2 else (math.nan, math.nan)
        cov["boot"] += lo <= b_true <= hi
        lo, hi = old_interval(x, se)
        cov["old"] += lo <= b_true <= hi
    return {k: v / sims for k, v in cov.items()}, float(np.median(widths)) if widths else math.nan, undetermined / sims


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    print(f"{args.sims} simulated probes per row; eps {EPS}, tau {TAU}, within {WITHIN}; coverage of 80% intervals")
    print("| truth | seeds | new | seed bootstrap | old | new: median width (log2) | new: not determined |")
    print("|---|---|---|---|---|---|---|")
    for name, truth in TRUTHS.items():
        for seeds in (1, 3, 4, 6):
            cov, width, nd = run_case(rng, truth, seeds, args.sims)
            boot = f"{cov['boot']:.3f}" if seeds >= 2 else "-"
            print(f"| {name} {truth.tolist()} | {seeds} | {cov['new']:.3f} | {boot} | {cov['old']:.3f} | {width:.2f} |"
                  f" {nd:.3f} |")
    print("\n| truth | seeds | 'not monotone' rate |\n|---|---|---|")
    cases = [(f"{n} (monotone)", t) for n, t in TRUTHS.items()] + [(f"not monotone, {n}: {t.tolist()}", t)
                                                                 for n, t in NOT_MONOTONE.items()]
    for name, truth in cases:
        for seeds in (1, 4, 8):
            hits = sum(fit_excess_curve(K, *draw(rng, truth, seeds), EPS, tau=TAU if seeds == 1 else 0.0)
                       .reason.startswith("not monotone") for _ in range(args.sims))
            print(f"| {name} | {seeds} | {hits / args.sims:.3f} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
