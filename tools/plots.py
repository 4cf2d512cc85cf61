"""Pictures of a study (matplotlib, Agg backend, PNG). Each function returns the Figure it saved."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from batchlaw.simulator.noise import b_simple_series  # noqa: E402
from batchlaw.tools.logs import read_columns  # noqa: E402

__all__ = ["plot_bopt_vs_n", "plot_final_loss_vs_batch", "plot_loss_curves", "plot_noise_scale", "plot_pareto"]


def _save(fig, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def _by_model(runs):
    out = {}
    for r in runs:
        out.setdefault((r.num_params, r.model_name), []).append(r)
    return sorted(out.items())


def plot_loss_curves(runs, path: Path):
    """Training loss against tokens, one panel per model, one line per batch size."""
    groups = _by_model(runs)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    for ax, ((n, name), rs) in zip(axes[0], groups):
        for r in sorted(rs, key=lambda r: r.global_batch):
            c = read_columns(r.path, ("tokens", "loss"))
            label = f"B={r.global_batch}" + (" (ramp)" if r.first_batch != r.global_batch else "")
            ax.plot(c["tokens"], c["loss"], lw=1, label=label)
        ax.set(title=f"{name} ({n / 1e6:.2f}M params)", xlabel="tokens", ylabel="training loss", xscale="log")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_noise_scale(runs, path: Path):
    """B_simple (separately smoothed |G|^2 and tr(Sigma)) against tokens, per run."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for r in runs:
        c = read_columns(r.path, ("tokens", "gns_g2", "gns_trace"))
        series = b_simple_series(c["gns_g2"], c["gns_trace"], beta=0.95)
        if np.isfinite(series).any():
            ax.plot(c["tokens"], series, lw=1, label=f"{r.model_name} B={r.global_batch}")
    ax.set(xlabel="tokens", ylabel="B_simple (sequences)", yscale="log", xscale="log",
           title="gradient noise scale over training")
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def plot_final_loss_vs_batch(result, path: Path):
    """Final loss against batch per model, the fitted parabola and the optimum marked."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for o in result.optima:
        (line,) = ax.plot(o.batches, o.losses, "o", label=f"{o.model_name}")
        if o.curve is not None and o.curve[0] > 0:
            xs = np.linspace(np.log(min(o.batches)), np.log(max(o.batches)), 50)
            ax.plot(np.exp(xs), np.polyval(o.curve, xs), "-", color=line.get_color(), lw=1)
        ax.axvline(o.b_opt, color=line.get_color(), ls=":", lw=1)
        ax.plot([o.b_opt], [o.best_loss], "*", color=line.get_color(), ms=12)
    ax.set(xscale="log", xlabel="global batch (sequences)", ylabel="final training loss",
           title="final loss against batch size (star: optimum)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_bopt_vs_n(result, path: Path):
    """B_opt (and B_crit) against N with the fitted law, its band, and Step Law's B(D) for reference."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    n = np.array([o.num_params for o in result.optima], float)
    b = np.array([o.b_opt for o in result.optima])
    lo = np.array([o.b_opt_lo for o in result.optima])
    hi = np.array([o.b_opt_hi for o in result.optima])
    err = np.vstack([np.where(np.isfinite(lo), np.maximum(b - lo, 0), 0), np.where(np.isfinite(hi), np.maximum(hi - b, 0), 0)])
    ax.errorbar(n, b, yerr=err, fmt="o", label="B_opt (80% interval)")
    bc = np.array([o.b_crit for o in result.optima])
    ax.plot(n, bc, "s", mfc="none", label="B_crit = B_simple at end")
    grid_n = np.geomspace(n.min() / 1.5, max(n.max(), result.extrapolation.get("N", n.max())) * 1.5, 50)
    if result.b_opt_vs_n is not None:
        p = result.b_opt_vs_n
        ax.plot(grid_n, p.params["c"] * grid_n ** p.params["N"], "-", label=f"fit: B_opt ~ N^{p.params['N']:.2f}")
        if p.ci:
            ends = np.array([p.ci["c"][i] * grid_n ** p.ci["N"][j] for i in (0, 1) for j in (0, 1)])
            ax.fill_between(grid_n, ends.min(0), ends.max(0), alpha=0.15)
    ax.plot(n, result.published["steplaw_b_opt_seqs"], "x", label="Step Law B(D) at each D")
    if "b_opt" in result.extrapolation:
        ax.plot([result.extrapolation["N"]], [result.extrapolation["b_opt"]], "D", label="extrapolated")
    ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="batch (sequences)",
           title="optimal and critical batch against model size")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_pareto(table, path: Path):
    """The simulator's (predicted loss, GPU-hours) points of a grid, survivors and front marked."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    loss, cost = np.asarray(table["pred_loss"], float), np.asarray(table["gpu_hours"], float)
    surv = np.asarray(table["survives"]).astype(str) == "true" if np.asarray(table["survives"]).dtype == object \
        else np.asarray(table["survives"], bool)
    ax.plot(cost[~surv], loss[~surv], ".", color="0.7", label="pruned")
    ax.plot(cost[surv], loss[surv], "o", label="survivors")
    order = np.lexsort((loss, cost))
    front, best = [], np.inf
    for i in order:
        if np.isfinite(loss[i]) and loss[i] < best:
            front.append(i)
            best = loss[i]
    ax.plot(cost[front], loss[front], "-", color="k", lw=1, label="Pareto front")
    ax.set(xscale="log", xlabel="GPU-hours (predicted)", ylabel="final loss (predicted)",
           title="simulator: loss against cost")
    ax.legend(fontsize=7)
    return _save(fig, path)
