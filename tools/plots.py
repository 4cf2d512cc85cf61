"""Pictures of a study (matplotlib, Agg backend, PNG). Each function returns the Figure it saved.

One encoding everywhere: one colour per model size, one line style (lines) or marker (points) per
batch size; legends list each size and each batch once; bands have their own legend entry; log axes
carry plain-number tick labels.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.legend  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator  # noqa: E402

from batchlaw.simulator.noise import b_simple_series, ema_series  # noqa: E402
from batchlaw.simulator.optimum import curve_at  # noqa: E402
from batchlaw.tools.analysis import Z80  # noqa: E402
from batchlaw.tools.logs import read_columns  # noqa: E402
from batchlaw.tools.report import b_simple_end, law_verdict, no_dependence_text, sweep_runs  # noqa: E402

__all__ = ["plot_bopt_vs_n", "plot_final_loss_vs_batch", "plot_loss_curves", "plot_noise_scale", "plot_pareto",
           "size_colours"]

_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
_STYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2)), (0, (3, 1, 1, 1))]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "h", "p", "d", "H", "8"]


def _plain(x, _pos=None) -> str:
    if x <= 0:
        return ""
    exp = int(np.floor(np.log10(x) + 1e-9))
    if abs(exp) >= 4:
        m = x / 10**exp
        return f"{m:.3g}e{exp}" if abs(m - 1) > 1e-6 else f"1e{exp}"
    return f"{x:.6g}"


def _log_axis(axis) -> None:
    """Log scale with ticks at 1, 2, 5 x 10^k (only 10^k past 2.5 decades) labelled as plain numbers.
    Call after the data are drawn (the decades are read from the axis limits)."""
    lo, hi = sorted(axis.get_view_interval())
    decades = np.log10(hi / lo) if lo > 0 and hi > 0 else 10
    subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,) if decades <= 8 else None
    axis.set_major_locator(LogLocator(base=10, subs=subs) if subs else LogLocator(base=10, numticks=8))
    axis.set_major_formatter(FuncFormatter(_plain))
    axis.set_minor_formatter(FuncFormatter(lambda *_: ""))


def _batch_axis(axis, batches) -> None:
    """Log scale with a tick at each batch tried (thinned to every other one past 10)."""
    ticks = sorted(set(float(b) for b in batches))
    if len(ticks) > 10:
        ticks = ticks[::2]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(_plain))
    axis.set_minor_locator(FixedLocator([]))


def _save(fig, path: Path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    legends = [a for ax in fig.axes for a in ax.get_children() if isinstance(a, matplotlib.legend.Legend)]
    fig.savefig(tmp, dpi=110, bbox_inches="tight", bbox_extra_artists=legends)  # legends outside the axes too
    tmp.replace(path)
    plt.close(fig)
    return fig


def size_colours(num_params) -> dict[int, str]:
    """Model size -> colour, in increasing size."""
    return {n: _COLOURS[i % len(_COLOURS)] for i, n in enumerate(sorted(set(int(v) for v in num_params)))}


def _batch_index(batches) -> dict[int, int]:
    return {b: i for i, b in enumerate(sorted(set(int(v) for v in batches)))}


def _legends(ax, sizes: dict[str, str], batches: dict[int, int], *, lines: bool, extra=(), loc="best",
             outside: bool = False) -> None:
    """Two legends: sizes by colour, batches by line style (or marker); extra handles go with the sizes.
    ``outside`` puts both to the right of the axes, where they hide no data."""
    h1 = [Line2D([], [], color=c, lw=2, label=name) for name, c in sizes.items()] + list(extra)
    h2 = [Line2D([], [], color="0.3", ls=_STYLES[i % len(_STYLES)] if lines else "none",
                 marker=None if lines else _MARKERS[i % len(_MARKERS)], label=f"B={b}") for b, i in batches.items()]
    kw1 = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if outside else {"loc": loc}
    first = ax.legend(handles=h1, fontsize=7, title="model", title_fontsize=7, **kw1)
    ax.add_artist(first)
    if h2:
        kw2 = ({"loc": "lower left", "bbox_to_anchor": (1.01, 0.0)} if outside
               else {"loc": "lower left" if loc != "lower left" else "upper right"})
        ax.legend(handles=h2, fontsize=7, title="batch", title_fontsize=7, ncol=2 if len(h2) > 4 else 1, **kw2)


def _by_model(runs):
    out = {}
    for r in runs:
        out.setdefault((r.num_params, r.model_name), []).append(r)
    return sorted(out.items())


def _shade(colour: str, i: int, n: int) -> tuple[float, float, float]:
    """The size's colour, lighter for small batches and darker for large ones."""
    rgb = np.array(matplotlib.colors.to_rgb(colour))
    t = 0.5 if n <= 1 else i / (n - 1)
    return tuple(rgb * (0.55 + 0.45 * (1 - t)) + (1 - rgb) * 0.45 * (1 - t) * 0.6)


def plot_loss_curves(runs, path: Path):
    """Training loss (EMA-smoothed, beta 0.95) against tokens, one panel per model (its colour, darker
    for larger batches), one line style per batch size; ramp runs in black."""
    groups = _by_model(runs)
    colours = size_colours([r.num_params for r in runs])
    bidx = _batch_index([r.global_batch for r in runs])
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False, sharey=True)
    for ax, ((n, name), rs) in zip(axes[0], groups):
        handles = []
        for r in sorted(rs, key=lambda r: (r.global_batch, r.ramp)):
            c = read_columns(r.path, ("tokens", "loss"))
            ramp = r.is_ramp
            i = bidx[r.global_batch]
            col = "k" if ramp else _shade(colours[n], i, len(bidx))
            label = f"ramp {r.ramp_label}" if ramp else f"B={r.global_batch}"
            (h,) = ax.plot(c["tokens"], ema_series(c["loss"], beta=0.95), lw=1.6 if ramp else 1.1, color=col,
                           ls=_STYLES[i % len(_STYLES)], label=label)
            handles.append(h)
        ax.set(title=f"{name} ({n / 1e6:.3g}M params)", xlabel="tokens", xscale="log")
        _log_axis(ax.xaxis)
        ax.legend(handles=handles, fontsize=7, loc="upper right", ncol=2 if len(handles) > 5 else 1)
    axes[0][0].set_ylabel("training loss, EMA 0.95 (nats/token)")
    return _save(fig, path)


def plot_noise_scale(runs, path: Path):
    """B_simple (separately smoothed |G|^2 and tr(Sigma)) against tokens: colour = size, style = batch."""
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    colours = size_colours([r.num_params for r in runs])
    bidx = _batch_index([r.global_batch for r in runs])
    for r in sorted(runs, key=lambda r: (r.num_params, r.global_batch)):
        c = read_columns(r.path, ("tokens", "gns_g2", "gns_trace"))
        series = b_simple_series(c["gns_g2"], c["gns_trace"], beta=0.95)
        if np.isfinite(series).any():
            ramp = r.is_ramp
            ax.plot(c["tokens"], series, lw=1.8 if ramp else 1, color=colours[r.num_params],
                    ls=_STYLES[bidx[r.global_batch] % len(_STYLES)], alpha=0.6 if ramp else 0.9)
    ax.set(xlabel="tokens", ylabel="B_simple (sequences)", yscale="log", xscale="log",
           title="gradient noise scale over training")
    _log_axis(ax.xaxis)
    _log_axis(ax.yaxis)
    names = {name: colours[n] for n, name in sorted({(r.num_params, r.model_name) for r in runs})}
    _legends(ax, names, bidx, lines=True, outside=True)
    return _save(fig, path)


def plot_final_loss_vs_batch(result, runs, path: Path):
    """Final loss against batch per model: points (marker = batch) with their 80% intervals (+-Z80 of each
    run's noise about the basin, within-run and between-seed: the noise the bracketing rule uses), the fitted
    basin, optimum or bound."""
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    colours = size_colours([o.num_params for o in result.optima])
    bidx = _batch_index([b for o in result.optima for b in o.batches])
    for o in result.optima:
        col = colours[o.num_params]
        for b, loss, sd in zip(o.batches, o.losses, o.loss_sd or [np.nan] * len(o.batches)):
            err = Z80 * sd  # each run's noise about the basin: within-run and between-seed
            ax.errorbar([b], [loss], yerr=[err] if np.isfinite(err) else None, fmt=_MARKERS[bidx[int(b)] % len(_MARKERS)],
                        color=col, mfc=col, ms=6, capsize=3, elinewidth=1)
        if o.curve is not None:
            lo, hi = o.fit_batches or (min(o.batches), max(o.batches))  # drawn only where it was fitted
            xs = np.linspace(np.log(lo), np.log(hi), 60)
            ax.plot(np.exp(xs), curve_at(o.curve, np.exp(xs)), "-", color=col, lw=1)  # along the optimal LR
        if o.bracketed:
            y = curve_at(o.curve, [o.b_opt])[0] if o.curve is not None else o.best_loss  # on the basin
            ax.plot([o.b_opt], [y], "*", color=col, ms=15, mec="k", mew=0.6)
            if np.isfinite(o.b_opt_lo):
                ax.axvspan(o.b_opt_lo, o.b_opt_hi, color=col, alpha=0.12)
        else:
            ax.plot([o.b_opt], [o.best_loss], {"<=": "<", ">=": ">"}.get(o.bound, "_"), color=col, ms=12 if o.bound
                    in ("<=", ">=") else 16, mfc="none", mew=1.5 if o.bound in ("<=", ">=") else 2.5)
    ax.set(xscale="log", xlabel="global batch (sequences)", ylabel="final training loss (nats/token)",
           title="final loss against batch size")
    _batch_axis(ax.xaxis, [b for o in result.optima for b in o.batches])
    extra = [Line2D([], [], ls="none", marker="|", color="0.5", ms=10, mew=1.2,
                    label="80% interval of a final loss (+-1.28 s.e.)"),
             Line2D([], [], ls="none", marker="*", color="0.5", mec="k", ms=12, label="optimum (bracketed)"),
             Line2D([], [], ls="none", marker="<", color="0.5", mfc="none", ms=10, label="bound (<= or >=)"),
             Line2D([], [], ls="none", marker="_", color="0.5", ms=12, mew=2, label="flat within noise (~)"),
             plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.2, label="80% interval of B_opt")]
    _legends(ax, {o.model_name: colours[o.num_params] for o in result.optima}, bidx, lines=False, extra=extra,
             outside=True)
    return _save(fig, path)


def _law_label(law) -> str:
    """The legend entry of a law line, in the words of the report (``report.law_verdict``)."""
    verdict = law_verdict(law)
    tag = {"law": "", "not determined": " (not determined)",
           "no dependence": f" ({no_dependence_text(law)}: exponent interval includes 0)"}[verdict]
    return f"{law.name}: fit N^{law.exponent:.2f} on {law.n_points} pts{tag}"


def plot_bopt_vs_n(result, runs, path: Path):
    """B_opt against N: bracketed optima (with intervals) and bounds, the B_opt(N) law and its band only over the
    points it was fitted on, B_simple (end) per sweep with the B_crit(N) law, and Step Law's B(D) for reference.
    A law is solid only when ``report.law_verdict`` calls it a law; dashed when not determined or when its
    exponent interval includes 0 (the report's words are in its legend entry); absent when there is no fit."""
    fig, ax = plt.subplots(figsize=(8.4, 4.2))
    colours = size_colours([o.num_params for o in result.optima])
    for o in result.optima:
        col = colours[o.num_params]
        if o.bracketed:
            lo = o.b_opt - o.b_opt_lo if np.isfinite(o.b_opt_lo) else 0
            hi = o.b_opt_hi - o.b_opt if np.isfinite(o.b_opt_hi) else 0
            ax.errorbar([o.num_params], [o.b_opt], yerr=[[max(lo, 0)], [max(hi, 0)]], fmt="o", color=col, capsize=3)
        else:
            ax.plot([o.num_params], [o.b_opt], {"<=": "v", ">=": "^"}.get(o.bound, "_"), color=col, mfc="none",
                    ms=9 if o.bound in ("<=", ">=") else 14, mew=1 if o.bound in ("<=", ">=") else 2.5)
        mid, lo, hi = b_simple_end(runs, o)
        if np.isfinite(mid):
            ax.errorbar([o.num_params], [mid], yerr=[[mid - lo], [hi - mid]], fmt="s", color=col, mfc="none", ms=6,
                        capsize=2, elinewidth=0.8)
    law = result.b_opt_vs_n
    handles = [Line2D([], [], ls="none", marker="o", color="0.4", label="B_opt, bracketed (80% interval)"),
               Line2D([], [], ls="none", marker="v", color="0.4", mfc="none", label="B_opt bound (<= or >=)"),
               Line2D([], [], ls="none", marker="_", color="0.4", ms=12, mew=2, label="B_opt flat within noise (~)"),
               Line2D([], [], ls="none", marker="s", color="0.4", mfc="none",
                      label="B_simple (end): median of a sweep's runs (range)"),
               Line2D([], [], ls="none", marker="x", color="k", label="Step Law B(D) at each D")]
    if law.fitted:
        xs = np.geomspace(min(law.x) / 1.2, max(law.x) * 1.2, 50)
        lo, hi = law.predict_range(xs)
        style = "-" if law_verdict(law) == "law" else "--"
        ax.plot(xs, law.c * xs**law.exponent, style, color="k", lw=1.2)
        ax.fill_between(xs, lo, hi, color="k", alpha=0.12)
        handles += [Line2D([], [], color="k", ls=style, label=_law_label(law)),
                    plt.Rectangle((0, 0), 1, 1, color="k", alpha=0.12, label="80% band of the B_opt(N) fit")]
    crit = result.b_crit_vs_n
    if crit.fitted:
        xs = np.geomspace(min(crit.x) / 1.2, max(crit.x) * 1.2, 50)
        style = ":" if law_verdict(crit) == "law" else "--"
        ax.plot(xs, crit.c * xs**crit.exponent, style, color="0.45", lw=1.2)
        handles.append(Line2D([], [], color="0.45", ls=style, label=_law_label(crit)))
    n = [o.num_params for o in result.optima]
    ax.plot(n, result.published["steplaw_b_opt_seqs"], "x", color="k")
    ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="batch (sequences)",
           title="optimal and critical batch against model size")
    _log_axis(ax.xaxis)
    _log_axis(ax.yaxis)
    first = ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.add_artist(first)
    ax.legend(handles=[Line2D([], [], color=colours[o.num_params], lw=2, label=o.model_name) for o in result.optima],
              fontsize=7, loc="lower left", bbox_to_anchor=(1.01, 0.0), title="model", title_fontsize=7)
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


def plot_waves(waves, path: Path):
    """Predicted against measured per wave (``tools.waves``): left, each size's 80% interval factor of B_opt
    (open: predicted median, filled: measured; a cross where the measurement is not bracketed); right, the
    B_opt(N) exponent's half-width."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    sizes = sorted({s for w in waves for s in (*w["predicted"].get("sizes", {}), *w["measured"].get("sizes", {}))})
    colours = {s: f"C{i}" for i, s in enumerate(sizes)}
    for j, s in enumerate(sizes):
        for w in waves:
            x = w["wave"] + (j - (len(sizes) - 1) / 2) * 0.08
            p = w["predicted"].get("sizes", {}).get(s, {}).get("factor_median", np.nan)
            m = w["measured"].get("sizes", {}).get(s, {})
            ax.plot([x], [p], "o", mfc="none", color=colours[s])
            if m.get("bracketed"):
                ax.plot([x], [m["factor"]], "o", color=colours[s])
            elif m:
                ax.plot([x], [1.0], "x", color=colours[s])
    ax.set(xlabel="wave", ylabel="80% interval of B_opt (x/ factor)", title="each size: predicted (open), measured")
    ax.set_xticks([w["wave"] for w in waves])
    handles = [Line2D([], [], ls="none", marker="o", color=colours[s], label=s) for s in sizes]
    handles += [Line2D([], [], ls="none", marker="x", color="0.4", label="not bracketed (drawn at 1)")]
    ax.legend(handles=handles, fontsize=7)
    waves_x = [w["wave"] for w in waves]
    bx.plot(waves_x, [w["predicted"].get("exponent", {}).get("half_width_median", np.nan) for w in waves], "o--",
            mfc="none", color="k", label="predicted (median)")
    bx.plot(waves_x, [w["measured"].get("half_width", np.nan) for w in waves], "o-", color="k", label="measured")
    bx.set(xlabel="wave", ylabel="half-width of the exponent's 80% interval", title="B_opt(N) exponent")
    bx.set_xticks(waves_x)
    bx.legend(fontsize=7)
    return _save(fig, path)
