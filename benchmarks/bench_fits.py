"""Fits on real published data, and their speed (docs/benchmarks.md, section "Fits").

    python benchmarks/bench_fits.py [--bootstrap 1000] [--loop-starts 4500] [--data data]

1. Epoch AI refit of Chinchilla (Besiroglu et al. 2024): five highest losses dropped, D = C/(6N),
   Huber on log L over 4,500 starts; against their published estimates, standard errors and 95%
   intervals; a held-out check; speed of one fit, of the bootstrap, and of a straightforward scipy
   loop over the starts (their notebook's approach: L-BFGS-B with finite differences from every
   start), measured side by side in this run.
2. Zhang et al. 2024: per-model critical batch and its power law in N, against their notebook.
3. Step Law (Li et al. 2025) on the released dense sweep: B_opt(D), lr_opt(N, D) against the
   published laws and their 1,000 bootstrap fits, and the basin curvature of the L(N, D, B) preset.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from batchlaw.simulator import fits, resources
from batchlaw.simulator.csvio import read_csv
from batchlaw.simulator.fit_loss import huber_objective, loss_grid

DATA = resources.data_root()  # data/ of the checkout, or the copy shipped in the wheel
# Besiroglu et al. 2024, Table 1 = epoch-research/analyzing-chinchilla data_analysis.ipynb (cells 25, 26):
# estimate, bootstrap standard error (4,000 refits), 95% bootstrap percentile interval.
EPOCH = {"A": (482.01, 124.52, (285.21, 743.63)), "B": (2085.43, 1293.28, (1042.36, 5810.34)),
         "E": (1.8169, 0.0257, (1.769, 1.871)), "alpha": (0.3478, 0.0154, (0.317, 0.373)),
         "beta": (0.3658, 0.0206, (0.331, 0.415))}
# Their plain Huber-sum fit over the same 4,500 starts (notebook cell 18, "Replicate exactly").
EPOCH_HUBER = {"A": 477.84, "B": 2143.86, "E": 1.8172, "alpha": 0.34731, "beta": 0.36718}
# Zhang et al. 2024, hlzhang109/critical-batch-size plots/chinchilla.ipynb cells 5-7 (sequences of 512).
ZHANG_CBS = {85: 745.32, 151: 955.16, 302: 1393.73, 604: 1888.52, 1200: 2533.41}
ZHANG_LAW = (93.197, 0.46828)  # CBS = 93.197 (N / 1e6)^0.46828 sequences


def _epoch_points(data: Path):
    t = read_csv(data / "epoch_chinchilla" / "svg_extracted_data.csv")
    n, c, loss = t["Model Size"], t["Training FLOP"], t["loss"]
    keep = np.argsort(loss)[:-5]  # Epoch drop the five highest losses
    return n[keep], c[keep] / (6 * n[keep]), loss[keep]


def _loop_fit(n, d, loss, starts: np.ndarray):
    """The published approach: scipy L-BFGS-B (finite-difference gradient) from every start."""
    ln, ld, ll = np.log(n), np.log(d), np.log(loss)
    best = None
    for x0 in starts:
        r = minimize(lambda x: huber_objective(x, ln, ld, ll)[0], x0, method="L-BFGS-B")
        if r.success and (best is None or r.fun < best.fun):
            best = r
    return best


def epoch(data: Path, bootstrap: int, loop_starts: int) -> None:
    n, d, loss = _epoch_points(data)
    t0 = time.perf_counter()
    one = fits.fit_loss(n, d, loss)
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    boot = fits.fit_loss(n, d, loss, bootstrap=bootstrap, level=0.95)
    t_boot = time.perf_counter() - t0
    grid = loss_grid()
    starts = grid if loop_starts >= len(grid) else grid[np.random.default_rng(0).choice(len(grid), loop_starts, False)]
    t0 = time.perf_counter()
    loop = _loop_fit(n, d, loss, starts)
    t_loop = (time.perf_counter() - t0) * len(grid) / len(starts)
    print(f"EPOCH refit: {one.n_points} points, {len(grid)} starts")
    print(f"  one fit {t_one:.2f} s; {bootstrap} bootstrap refits {t_boot:.1f} s; scipy loop over "
          f"{len(starts)} starts {t_loop:.1f} s{'' if len(starts) == len(grid) else ' (scaled to 4,500)'};"
          f" ratio {t_loop / t_one:.0f}x")
    print(f"  objective: ours {one.extra['objective']:.10f}, loop {loop.fun:.10f}")
    print(f"  {'param':>6s} {'ours':>9s} {'loop':>9s} {'Epoch Huber':>11s} | {'std':>8s} {'95% CI':>20s} |"
          f" {'Table 1':>8s} {'SE':>8s} {'their 95% CI':>20s} in ours?")
    loop_p = dict(zip(["A", "B", "E", "alpha", "beta"], [*np.exp(loop.x[:3]), *loop.x[3:]]))
    for k, v in one.params.items():
        lo, hi = boot.ci[k]
        pub, se, (plo, phi) = EPOCH[k]
        print(f"  {k:>6s} {v:9.4g} {loop_p[k]:9.4g} {EPOCH_HUBER[k]:11.4g} | {boot.extra['std'][k]:8.3g} "
              f"[{lo:8.4g}, {hi:8.4g}] | {pub:8.4g} {se:8.3g} [{plo:8.4g}, {phi:8.4g}] {lo <= pub <= hi}")
    h = fits.fit_loss_heldout(n, d, loss, quantile=0.9).extra["heldout"]
    print(f"  held out the {h['n_heldout']} runs with N > {h['n_threshold']:.3g}: mean |rel. error| "
          f"{h['mean_abs_rel_error']:.2%}, max {h['max_abs_rel_error']:.2%}, mean signed {h['mean_rel_error']:+.2%}")


def zhang(data: Path) -> None:
    t = read_csv(data / "zhang2024_cbs" / "steps_to_target_loss.csv")
    n_m, seqs, steps = t["n_params_nominal"] / 1e6, t["batch_size_seqs"], t["steps_to_target"]
    z = fits.fit_critical_batch_law(n_m, seqs, steps, definition="zhang", b_ref=256, bootstrap=1000)
    print("ZHANG critical batch (sequences of 512), S(B) = S_min (1 + B_noise / B), CBS = 1.2 * 256 + 0.2 B_noise:")
    for size, r in z["per_size"].items():
        lo, hi = r.ci["B_crit"]
        print(f"  N={size:6.0f}M  CBS {r.params['B_crit']:8.2f} [{lo:.0f}, {hi:.0f}]  published {ZHANG_CBS[int(size)]:8.2f}"
              f"  B_noise {r.params['B_noise']:8.1f}  S_min {r.params['S_min']:7.1f}")
    law = z["law"]
    print(f"  CBS = {law.params['c']:.3f} (N/1e6)^{law.params['N']:.5f} (80% CI of exponent {law.ci['N'][0]:.3f}.."
          f"{law.ci['N'][1]:.3f}); published {ZHANG_LAW[0]} (N/1e6)^{ZHANG_LAW[1]}")
    m = fits.fit_critical_batch_law(t["n_params_nominal"], t["batch_size_tokens"], steps, bootstrap=1000)["law"]
    print(f"  McCandlish B_crit = B_noise in tokens: {m.params['c']:.3g} N^{m.params['N']:.3f} (80% CI "
          f"{m.ci['N'][0]:.3f}..{m.ci['N'][1]:.3f})")


def _basin(t, bs_tokens) -> tuple[np.ndarray, np.ndarray]:
    """x = ln(B / B_cell) and y = loss - best, with the best loss over lr at each (cell, batch)."""
    xs, ys = [], []
    for key in sorted(set(zip(t["N"], t["D"]))):
        sel = (t["N"] == key[0]) & (t["D"] == key[1])
        bv = np.unique(bs_tokens[sel])
        best = np.array([t["smooth loss"][sel & (bs_tokens == b)].min() for b in bv])
        i = int(np.argmin(best))
        xs.append(np.log(bv / bv[i]))
        ys.append(best - best[i])
    return np.concatenate(xs), np.concatenate(ys)


def steplaw(data: Path, bootstrap: int) -> None:
    t = read_csv(data / "steplaw" / "dense_lr_bs_loss.csv")
    bs_tokens = t["bs"] * 2048
    pub = read_csv(data / "steplaw" / "1004_fitted_lr_bs_scaling_model_parameters.csv")

    def q(a):
        return f"[{np.percentile(a, 10):.3f}, {np.percentile(a, 90):.3f}]"

    print("STEPLAW dense sweep: near-optimal runs (0.25%), OLS in log space, 1,000 row bootstraps:")
    for est, method in (("bootstrap-mean", "near-optimal"), ("ols", "near-optimal"), ("ols", "parabola")):
        o = fits.fit_optimal_batch(t["N"], t["D"], bs_tokens, t["smooth loss"], lr=t["lr"], method=method,
                                   estimate=est, bootstrap=bootstrap)
        b, lr = o["batch"], o["lr"]
        print(f"  {method:>12s} {est:>14s}: B_opt = {b.params['c']:.3g} D^{b.params['D']:.3f} (80% CI "
              f"{b.ci['D'][0]:.3f}..{b.ci['D'][1]:.3f}); lr_opt = {lr.params['c']:.3g} N^{lr.params['N']:.3f} "
              f"D^{lr.params['D']:.3f} (N {lr.ci['N'][0]:.3f}..{lr.ci['N'][1]:.3f}, D {lr.ci['D'][0]:.3f}.."
              f"{lr.ci['D'][1]:.3f}); {b.n_points} points")
    print(f"  published: B_opt = {np.exp(pub['bs_intercept'].mean()):.3f} D^{pub['bs_coefD'].mean():.4f}, lr_opt = "
          f"{np.exp(pub['lr_intercept'].mean()):.3f} N^{pub['lr_coefN'].mean():.4f} D^{pub['lr_coefD'].mean():.4f};"
          f" their bootstrap 10-90%: bs D {q(pub['bs_coefD'])}, lr N {q(pub['lr_coefN'])}, D {q(pub['lr_coefD'])}")
    idx = fits.near_optimal_runs(t["N"], t["D"], t["smooth loss"])
    n, d, b, lr = t["N"][idx], t["D"][idx], bs_tokens[idx], t["lr"][idx]
    pb = np.exp(pub["bs_intercept"].mean()) * d ** pub["bs_coefD"].mean()
    plr = np.exp(pub["lr_intercept"].mean()) * n ** pub["lr_coefN"].mean() * d ** pub["lr_coefD"].mean()
    ob = fits.fit_power_law([d], b, names=["D"], bootstrap=0)
    olr = fits.fit_power_law([n, d], lr, names=["N", "D"], bootstrap=0)
    print(f"  RMSE in log on the near-optimal runs: batch ours {ob.extra['rmse_log']:.3f} vs published "
          f"{np.sqrt(np.mean(np.log(b / pb) ** 2)):.3f}; lr ours {olr.extra['rmse_log']:.3f} vs published "
          f"{np.sqrt(np.mean(np.log(lr / plr) ** 2)):.3f}; corr(log N, log D) over cells "
          f"{np.corrcoef(np.log(n), np.log(d))[0, 1]:.2f}")
    x, y = _basin(t, bs_tokens)
    near = np.abs(x) <= np.log(8)
    for name, side in (("k_below", near & (x < 0)), ("k_above", near & (x > 0)), ("k (both)", near & (x != 0))):
        xx = x[side] ** 2
        k = float(xx @ y[side] / (xx @ xx))
        rmse = float(np.sqrt(np.mean((y[side] - k * xx) ** 2)))
        print(f"  basin curvature {name:>8s} = {k:.4f} nats per ln(B/B_best)^2 ({int(side.sum())} points within a "
              f"factor 8, RMSE {rmse:.4f} nats)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--loop-starts", type=int, default=4500, help="starts timed for the plain scipy loop")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    a = ap.parse_args(argv)
    if not (a.data / "epoch_chinchilla").is_dir():
        raise SystemExit(f"--data {str(a.data)!r}: no epoch_chinchilla/ folder; pass the shared data folder")
    epoch(a.data, a.bootstrap, a.loop_starts)
    zhang(a.data)
    steplaw(a.data, a.bootstrap)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
