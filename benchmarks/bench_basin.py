"""The loss basin over log batch x log learning rate (issue 19), fitted on Step Law's dense sweep.

    python benchmarks/bench_basin.py [--quick] [--bootstrap 200] [--write configs/laws/steplaw-basin.toml]

Data: Li et al. 2025 ("Predictable Scale: Part I", arXiv 2503.04715) released dense runs,
data/steplaw/dense_lr_bs_loss.csv (1,911 runs, 17 (N, D) cells, batch in sequences of 2048 tokens,
``smooth loss`` as they fit). Prints, in order:

1. the cut: shape and residual sd against max_excess (the near-quadratic region);
2. the shape: straight or kinked ridge, one shape or log-linear in D / N (shipped: kinked, D / N) or
   in D / N and N, with 10-90% bootstrap intervals over cells (and over runs for the shipped one);
   per-cell separate fits (the scale dependence);
3. the noise: residual sd overall and near the optimum, by region, within and between batch rows,
   a model-free local estimate (third differences along LR) and ``loss`` against ``smooth loss``;
4. the issue's claims: the batch with the lowest loss at an LR 8x and 2.8x below each cell's best,
   measured (grid argmin and parabola vertex) next to the basin's prediction;
5. held out: each cell predicted from a fit on the others (excess surface, B_opt at a fixed LR);
6. the time of one fit. ``--write`` writes the shipped fit as a ``kind = "basin"`` preset.
"""

from __future__ import annotations

import os

# One BLAS thread for the rest of the numpy work (the fit itself avoids LAPACK; simulator/fit_basin.py _solve):
# threads only contend on a shared 2-core machine. Set before numpy is imported.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from batchlaw.simulator import resources  # noqa: E402
from batchlaw.simulator.basin import SHAPE, Basin, fit_basin  # noqa: E402
from batchlaw.simulator.config import toml_value, write_text_atomic  # noqa: E402
from batchlaw.simulator.csvio import read_csv  # noqa: E402
from batchlaw.simulator.fits import FitWarning  # noqa: E402

DATA = resources.data_root()  # the shipped public data sets (data/ of a checkout)
SEQ = 2048  # tokens per sequence in the Step Law runs (data/PROVENANCE.md)
CUT = 0.05  # nats above the cell's best: the fitted region (section 1 says why)
MODELS = {"straight ridge, one shape": {"ridge_kink": False},
          "straight ridge, D/N": {"ridge_kink": False, "scale": ("tpp",)},
          "kinked ridge, one shape": {}, "kinked ridge, D/N": {"scale": ("tpp",)},
          "kinked ridge, D/N and N": {"scale": ("tpp", "n")}}
SHIPPED = "kinked ridge, D/N"
SHARED = "kinked ridge, one shape"


def load(data: Path) -> dict[str, np.ndarray]:
    t = read_csv(data / "steplaw" / "dense_lr_bs_loss.csv")
    k = np.round(2 * np.log2(t["lr"])).astype(int)  # LR grid: powers of sqrt(2), rounded in the file
    return {"N": t["N"], "D": t["D"], "B": t["bs"] * SEQ, "lr": t["lr"], "k": k, "smooth": t["smooth loss"],
            "loss": t["loss"]}


def fit(t, loss="smooth", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        return fit_basin(t["N"], t["D"], t["B"], t["lr"], t[loss], **kw)


def shape_text(b: Basin, scale=()) -> str:
    out = " ".join(f"{k}={getattr(b, k):.4f}" for k in SHAPE if getattr(b, k) is not None)
    for s in scale:
        out += "; " + " ".join(f"{k}_{s}={getattr(b, f'{k}_{s}'):+.3f}" for k in SHAPE if getattr(b, k) is not None)
    return out


def ratios(b: Basin) -> str:
    return f"b_opt_ratio(-ln 8)={b.b_opt_ratio(-np.log(8)):.3f} (-ln 3)={b.b_opt_ratio(-np.log(3)):.3f}"


def cut_scan(t) -> None:
    print(f"1. CUT: runs within max_excess nats of their cell's best smoothed loss; shape of {SHIPPED} at D/N=50")
    for cut in (0.02, 0.03, 0.05, 0.08, 0.12):
        f = fit(t, max_excess=cut, **MODELS[SHIPPED])
        print(f"  max_excess {cut:.2f}: {f.n_points:4d} runs, residual sd {f.residual_sd:.4f} (near optimum "
              f"{f.residual_sd_near:.4f}); {shape_text(f.basin)}; {ratios(f.basin)}")


def shapes(t, bootstrap: int) -> dict:
    print(f"2. SHAPE (max_excess {CUT}); 10-90% intervals from {bootstrap} bootstrap refits over cells "
          f"[and over runs within cells]")
    fits = {}
    for name, kw in MODELS.items():
        f = fit(t, max_excess=CUT, bootstrap=bootstrap, **kw)
        fits[name] = f
        print(f"  {name}: residual sd {f.residual_sd:.5f} nats, near optimum {f.residual_sd_near:.5f}, "
              f"{f.n_points} runs, dof {f.dof}")
        runs = None
        if bootstrap and name == SHIPPED:
            runs = fit(t, max_excess=CUT, bootstrap=bootstrap, bootstrap_over="runs", **kw)
        for key in f.ci or [k for k in SHAPE if getattr(f.basin, k) is not None]:
            ci = f.ci.get(key)
            extra = f" cells [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""
            extra += f" runs [{runs.ci[key][0]:+.4f}, {runs.ci[key][1]:+.4f}]" if runs else ""
            print(f"    {key:>12s} = {getattr(f.basin, key):+.4f}{extra}")
        for tpp in (19, 50, 100, 466):
            b = f.basin.at(5e8, 5e8 * tpp)
            print(f"    at D/N={tpp:3d}: {shape_text(b)}; {ratios(b)}{_ratio_ci(f, tpp)}")
    return fits


def _ratio_ci(f, tpp: float) -> str:
    """10-90% of b_opt_ratio(-ln 8) and (-ln 3) at D / N = tpp over the bootstrap refits ('' without them)."""
    if not f.boot:
        return ""
    keys = list(f.boot)
    out = []
    for w in (-np.log(8), -np.log(3)):
        r = [Basin(**{k: f.boot[k][i] for k in keys}).at(5e8, 5e8 * tpp).b_opt_ratio(w)
             for i in range(len(f.boot[keys[0]]))]
        out.append(f"{np.percentile(r, 10):.3f}..{np.percentile(r, 90):.3f}")
    return f" (bootstrap 10-90%: {out[0]}, {out[1]})"


def n_stability(t) -> None:
    """The N slopes refitted without the largest and without the smallest model size."""
    kw = MODELS["kinked ridge, D/N and N"]
    for label, keep in (("without the 1.07B cells", t["N"] < t["N"].max()),
                        ("without the 215M cells", t["N"] > t["N"].min())):
        f = fit({k: v[keep] for k, v in t.items()}, max_excess=CUT, **kw)
        print(f"  N slopes {label}: " + " ".join(f"{k}_n={getattr(f.basin, f'{k}_n'):+.3f}" for k in SHAPE))


def per_cell(t) -> None:
    print("  per-cell separate fits (each cell its own shape), against tokens per parameter:")
    for n, d in sorted(set(zip(t["N"], t["D"]))):
        s = (t["N"] == n) & (t["D"] == d)
        f = fit({k: v[s] for k, v in t.items()}, max_excess=CUT)
        print(f"    N={n / 1e6:5.0f}M D={d / 1e9:4.0f}B D/N={d / n:4.0f}: {shape_text(f.basin)} "
              f"sd={f.residual_sd:.4f} b_opt_ratio(-ln 8)={f.basin.b_opt_ratio(-np.log(8)):.2f}")


def _third_differences(t, value: np.ndarray, cut: float) -> np.ndarray:
    """x[k+3] - 3x[k+2] + 3x[k+1] - x[k] along each batch row's LR grid (4 neighbours all within ``cut``).

    Zero in expectation for any locally quadratic surface; var = 20 sigma^2 for independent noise.
    """
    out = []
    for n, d in set(zip(t["N"], t["D"])):
        s = (t["N"] == n) & (t["D"] == d)
        best = t["smooth"][s].min()
        for b in np.unique(t["B"][s]):
            r = np.flatnonzero(s & (t["B"] == b))
            m = {int(t["k"][i]): (value[i], t["smooth"][i] - best) for i in r}
            for k in m:
                quad = [m.get(k + j) for j in range(4)]
                if all(q is not None and q[1] < cut for q in quad):
                    x = [q[0] for q in quad]
                    out.append(x[3] - 3 * x[2] + 3 * x[1] - x[0])
    return np.array(out)


def _rows(f, t) -> tuple[float, float]:
    """Residual sd within (cell, batch) rows and the sd of the row means beyond what that explains."""
    key = f.cell_of * 100000 + t["B"][f.used] / SEQ
    means, sizes, within, dof = [], [], 0.0, 0
    for k in np.unique(key):
        r = f.residuals[key == k]
        if r.size >= 2:
            means.append(r.mean())
            sizes.append(r.size)
            within += float(((r - r.mean()) ** 2).sum())
            dof += r.size - 1
    sw2 = within / dof
    return float(np.sqrt(sw2)), float(np.sqrt(max(np.var(means) - np.mean(sw2 / np.array(sizes)), 0.0)))


def noise(t, f) -> None:
    print(f"3. NOISE (the {SHIPPED} fit): residual sd {f.residual_sd:.4f} nats over {f.n_points} runs, "
          f"{f.residual_sd_near:.4f} near the optimum (fitted excess < 0.01 nats, {np.sum(f.excess < 0.01)} runs)")
    for lo, hi in ((0, 0.0025), (0.0025, 0.01), (0.01, 0.02), (0.02, 0.05), (0.05, 1.0)):
        s = (f.excess >= lo) & (f.excess < hi)
        if s.any():
            rms = np.sqrt(np.mean(f.residuals[s] ** 2))
            mean = f.residuals[s].mean()
            print(f"  fitted excess [{lo:.4f}, {hi:.4f}): {s.sum():4d} runs, rms {rms:.4f}, mean {mean:+.4f}")
    w = np.log(t["lr"][f.used] / f.cells["lr_opt"][f.cell_of])
    for name, s in (("LR below lr_opt (w < 0)", w < 0), ("LR above lr_opt (w > 0)", w >= 0)):
        print(f"  {name}: {s.sum()} runs, rms {np.sqrt(np.mean(f.residuals[s] ** 2)):.4f}")
    within, between = _rows(f, t)
    print(f"  within (cell, batch) rows: sd {within:.4f}; row means beyond that: sd {between:.4f} (runs of one"
          f" batch share their data order)")
    for cut in (0.01, 0.02, 0.05):
        d3s, d3r = _third_differences(t, t["smooth"], cut), _third_differences(t, t["loss"], cut)
        print(f"  model-free, third differences along LR within {cut} nats: smooth loss sigma "
              f"{d3s.std() / np.sqrt(20):.4f} ({d3s.size}), last-step loss {d3r.std() / np.sqrt(20):.4f}")
    best = {k: t["smooth"][(t["N"] == k[0]) & (t["D"] == k[1])].min() for k in set(zip(t["N"], t["D"]))}
    ex = t["smooth"] - np.array([best[k] for k in zip(t["N"], t["D"])])
    diff = t["loss"] - t["smooth"]
    s = ex < 0.01
    print(f"  loss - smooth loss (last-step scatter) within 0.01 nats: sd {diff[s].std():.4f} ({s.sum()} runs); "
          f"by batch within {CUT} nats (sd x sqrt(B / 256 seqs) flat = per-step noise ~ 1/sqrt(B)):")
    s = ex < CUT
    cols = []
    for b in np.unique(t["B"][s]):
        q = s & (t["B"] == b)
        cols.append(f"{int(b / SEQ)}: {diff[q].std():.4f}/{diff[q].std() * np.sqrt(b / SEQ / 256):.4f}")
    print("    " + ", ".join(cols))
    g = fit(t, loss="loss", max_excess=CUT, **MODELS[SHIPPED])
    gw, gb = _rows(g, t)
    print(f"  the same fit on the last-step `loss`: residual sd {g.residual_sd:.4f} (near optimum "
          f"{g.residual_sd_near:.4f}); within rows {gw:.4f}, between rows {gb:.4f}")


def _vertex(lnb: np.ndarray, loss: np.ndarray) -> float:
    """ln B at the minimum of a parabola through the column's points within a factor 2.9 of its best batch
    (the best batch itself when that is not an interior minimum)."""
    i = int(np.argmin(loss))
    sel = np.abs(lnb - lnb[i]) <= np.log(2.9)
    if np.unique(lnb[sel]).size < 3:
        return float(lnb[i])
    a, b, _ = np.polyfit(lnb[sel], loss[sel], 2)
    v = -b / (2 * a) if a > 0 else np.nan
    return float(v) if lnb[sel].min() <= v <= lnb[sel].max() else float(lnb[i])


def _bracketed(t, col: np.ndarray) -> bool:
    """Whether an LR column has 3 batches and its best batch is neither its smallest nor its largest."""
    b = t["B"][col]
    return np.unique(b).size >= 3 and b.min() < b[np.argmin(t["smooth"][col])] < b.max()


def _columns(t, n, d):
    """The cell's runs, its best run, and the runs of each LR grid column (k -> rows)."""
    s = np.flatnonzero((t["N"] == n) & (t["D"] == d))
    best = s[np.argmin(t["smooth"][s])]
    return best, {int(k): s[t["k"][s] == k] for k in np.unique(t["k"][s])}


def _ratio_row(t, j, n, d, cols, best, steps, fits) -> tuple[float, ...] | None:
    """(grid argmin, vertex ratio, then one basin prediction per fit) at ``steps`` grid steps below the best LR."""
    col, ref = cols.get(int(t["k"][best]) - steps, np.zeros(0, int)), cols[int(t["k"][best])]
    if not _bracketed(t, col):
        return None
    raw = t["B"][col][np.argmin(t["smooth"][col])] / t["B"][best]
    vtx = np.exp(_vertex(np.log(t["B"][col]), t["smooth"][col]) - _vertex(np.log(t["B"][ref]), t["smooth"][ref]))
    pred = []
    for f in fits:
        b, w0 = f.basin.at(n, d), np.log(t["lr"][best] / f.cells["lr_opt"][j])
        pred.append(np.exp(b.u_opt_at(w0 - steps * np.log(2) / 2) - b.u_opt_at(w0)))
    return (raw, vtx, *pred)


def claims(t, fits: dict) -> None:
    print("4. CLAIMS: batch with the lowest loss at an LR 8x (6 grid steps) and 2.8x (3 steps; 3x is off the"
          " sqrt(2) grid) below the cell's best run, over the best run's batch: grid argmin | parabola vertex"
          " (over the vertex at the best LR) | basin | one-shape basin, at the same LRs")
    pair = (fits[SHIPPED], fits[SHARED])
    got = {6: [], 3: []}
    for j, (n, d) in enumerate(zip(pair[0].cells["N"], pair[0].cells["D"])):
        best, cols = _columns(t, n, d)
        line = (f"  N={n / 1e6:5.0f}M D={d / 1e9:4.0f}B D/N={d / n:4.0f}: best {int(t['B'][best] / SEQ):4d} seqs lr "
                f"{t['lr'][best]:.2e}")
        deepest = int(t["k"][best]) - min(cols)
        for steps in (6, 3) if deepest >= 6 else (deepest, 3) if deepest > 3 else (3,):
            row = _ratio_row(t, j, n, d, cols, best, steps, pair)
            label = f"{2 ** (steps / 2):.1f}x" + ("" if steps in got else " (lowest LR)")
            if row is None:
                line += f" | {label}: not bracketed"
                continue
            if steps in got:
                got[steps].append(row)
            line += f" | {label}: " + " | ".join(f"{v:.2f}" for v in row)
        print(line)
    for steps, rows in got.items():
        a = np.array(rows)
        print(f"  {2 ** (steps / 2):.1f}x below, {len(a)} cells, median [min, max]: " + "; ".join(
            f"{name} {np.median(a[:, i]):.2f} [{a[:, i].min():.2f}, {a[:, i].max():.2f}]"
            for i, name in enumerate(("argmin", "vertex", "basin", "one shape"))))
    for name, f in zip((SHIPPED, SHARED), pair):
        print(f"  {name}: " + "; ".join(f"D/N={tpp}: {ratios(f.basin.at(5e8, 5e8 * tpp))}" for tpp in (19, 50, 466)))


def _offlr_errors(t, n, d, basin: Basin, cell_fit, row: int) -> list[tuple[float, float]]:
    """(predicted - measured, B_opt - measured) in ln B at the LR columns 8x and 2.8x below the cell's best."""
    best, cols = _columns(t, n, d)
    out = []
    for steps in (6, 3):
        col = cols.get(int(t["k"][best]) - steps, np.zeros(0, int))
        if not _bracketed(t, col):
            continue
        measured = _vertex(np.log(t["B"][col]), t["smooth"][col])
        lnb = np.log(cell_fit.cells["B_opt_tokens"][row])
        w = np.log(t["lr"][col][0] / cell_fit.cells["lr_opt"][row])
        out.append((lnb + basin.at(n, d).u_opt_at(w) - measured, lnb - measured))
    return out


def heldout(t, fits: dict, hold: list[int], models: list[str]) -> None:
    print(f"5. HELD OUT: each of {len(hold)} cells refitted (L_opt, B_opt, lr_opt only) with the shape fitted on the"
          f" other cells; residual rms on that cell vs in the joint fit; B_opt at the LR 8x and 2.8x below its best"
          f" run (parabola vertex) vs basin prediction, and vs ignoring the LR (B_opt)")
    for name in models:
        full, kw = fits[name], MODELS[name]
        rms_out, rms_in, err, naive = [], [], [], []
        for j in hold:
            n, d = full.cells["N"][j], full.cells["D"][j]
            s = (t["N"] == n) & (t["D"] == d)
            train = fit({k: v[~s] for k, v in t.items()}, max_excess=CUT, **kw)
            test = fit({k: v[s] for k, v in t.items()}, max_excess=CUT, shape=train.basin)
            rms_out.append(np.sqrt(np.mean(test.residuals ** 2)))
            rms_in.append(np.sqrt(np.mean(full.residuals[full.cell_of == j] ** 2)))
            for e, e0 in _offlr_errors(t, n, d, train.basin, test, 0):
                err.append(e)
                naive.append(e0)
        err, naive = np.array(err), np.array(naive)
        print(f"  {name}: excess rms held out {np.sqrt(np.mean(np.square(rms_out))):.4f} vs in the joint fit "
              f"{np.sqrt(np.mean(np.square(rms_in))):.4f} nats (worst cell {max(rms_out):.4f}); off-LR B_opt "
              f"({err.size} columns): rms error x{np.exp(np.sqrt(np.mean(err ** 2))):.2f}, mean "
              f"x{np.exp(err.mean()):.2f}, worst x{np.exp(np.abs(err).max()):.2f}; ignoring the LR: rms "
              f"x{np.exp(np.sqrt(np.mean(naive ** 2))):.2f}, mean x{np.exp(naive.mean()):.2f}")


def timing(t) -> None:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fit(t, max_excess=CUT, **MODELS[SHIPPED])
        times.append(time.perf_counter() - t0)
    print(f"6. TIME: one joint fit ({SHIPPED}, 17 cells, 63 parameters): {min(times):.3f} s (best of 3)")


def write_preset(path: Path, f, t) -> None:
    """The shipped preset: the shipped fit, its bootstrap intervals and the numbers behind noise_sd in comments."""
    d3 = [_third_differences(t, t["smooth"], cut).std() / np.sqrt(20) for cut in (0.02, CUT)]
    fields = {k: v for k, v in f.basin.to_dict().items()
              if k not in ("kind", "citation") and not (k.endswith("_n") and v == 0)}
    lines = [
        "# The loss basin over ln batch x ln learning rate (simulator/basin.py; docs/design.md, \"The basin model\"):",
        "#   excess = a(u) u^2 + c(v) v^2,  u = ln(B / B_opt),  v = ln(lr / lr_opt) - r(u) u,",
        "#   a = a_below (u < 0) or a_above, c = c_below (v < 0) or c_above, r = ridge (u < 0) or ridge_above;",
        "# the shape at D / N = tpp_ref tokens per parameter; Basin.at(N, D) scales each curvature by",
        "# (D / N / tpp_ref)^<name>_tpp and moves each ridge slope by <name>_tpp * ln(D / N / tpp_ref).",
        "# Fitted by benchmarks/bench_basin.py on the Step Law dense sweep (Li et al. 2025, arXiv 2503.04715;",
        f"# data/steplaw/dense_lr_bs_loss.csv, `smooth loss`): {f.n_points} runs of {len(f.cells['N'])} (N, D) cells "
        f"within {CUT} nats of their cell's best.",
    ]
    if f.ci:
        lines.append(f"# 10-90% intervals, {len(next(iter(f.boot.values())))} refits on resampled cells:")
        items = [f"{k} {lo:.4g}..{hi:.4g}" for k, (lo, hi) in f.ci.items()]
        lines += ["#   " + ", ".join(items[i:i + 4]) for i in range(0, len(items), 4)]
    lines += [
        f"# noise_sd: residual sd of single runs around this fit ({f.n_points} runs, dof {f.dof}), i.e. how far",
        "# one run lands from this model: per-step and data-order noise plus misfit. Near the optimum (fitted",
        f"# excess < 0.01 nats) it is {f.residual_sd_near:.4f}. The model-free scatter along LR at a fixed batch",
        f"# (third differences) is {d3[0]:.4f}-{d3[1]:.4f},",
        "# so most of noise_sd is smooth misfit of the quadratic shape, largest above the LR optimum.",
    ]
    lines.append('kind = "basin"')
    for k, v in fields.items():
        lines.append(f"{k} = {toml_value(float(f'{v:.4g}'), k)}")
    lines.append(f"citation = {toml_value(CITATION, 'citation')}")
    write_text_atomic(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")


CITATION = ("Li et al. 2025 (Predictable Scale: Part I, arXiv 2503.04715) Step Law dense LR x batch data; "
            "fitted by benchmarks/bench_basin.py")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the shipped model only, 3 held-out cells, no bootstrap")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap refits per model (0 = none)")
    ap.add_argument("--data", type=Path, default=DATA, help="folder holding steplaw/ (default: the shipped data)")
    ap.add_argument("--write", type=Path, help="write the shipped fit as a kind = 'basin' preset to this path")
    a = ap.parse_args(argv)
    if not (a.data / "steplaw" / "dense_lr_bs_loss.csv").is_file():
        raise SystemExit(f"--data {str(a.data)!r}: no steplaw/dense_lr_bs_loss.csv; pass a folder that holds it")
    t = load(a.data)
    print(f"Step Law dense sweep: {t['N'].size} runs, {len(set(zip(t['N'], t['D'])))} (N, D) cells; "
          f"fitted on `smooth loss`, batch in tokens ({SEQ} per sequence)")
    if a.quick:
        fits = {name: fit(t, max_excess=CUT, **MODELS[name]) for name in (SHARED, SHIPPED)}
        f = fits[SHIPPED]
        print(f"2. SHAPE {SHIPPED}: {shape_text(f.basin, MODELS[SHIPPED].get('scale', ()))}; residual sd "
              f"{f.residual_sd:.4f}, near optimum {f.residual_sd_near:.4f}; {ratios(f.basin)}")
        noise(t, f)
        claims(t, fits)
        heldout(t, fits, [3, 9, 15], [SHIPPED])
    else:
        cut_scan(t)
        fits = shapes(t, a.bootstrap)
        n_stability(t)
        per_cell(t)
        noise(t, fits[SHIPPED])
        claims(t, fits)
        heldout(t, fits, list(range(len(fits[SHIPPED].cells["N"]))), list(MODELS))
    timing(t)
    if a.write:
        write_preset(a.write, fits[SHIPPED], t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
