"""Results of ``batchlaw probe-cbs``: read the branch logs, estimate B_crit per checkpoint, put the
noise scale B_simple of the base run (over the steps before the same checkpoint) beside it, and
write probe.json, probe.csv, probe.md and probe_excess.png (atomically)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from batchlaw.tools.probe import ProbeSettings, estimate

__all__ = ["collect", "write_outputs"]


def _b_simple_before(cols: dict[str, np.ndarray], row: int, frac: float = 0.2) -> tuple[float, float, float]:
    """B_simple over the last ``frac`` of the base run's steps up to the checkpoint (McCandlish et al.
    2018, eq. 2.8; the block-bootstrap interval of ``logs``)."""
    from batchlaw.tools.logs import _tail_ratio_ci

    k = max(4, int(round((row + 1) * frac)))
    lo = max(0, row + 1 - k)
    return _tail_ratio_ci(cols["gns_g2"][lo:row + 1], cols["gns_trace"][lo:row + 1], np.random.default_rng(0))


def collect(plans, dirs, ckpts, base_cols, settings: ProbeSettings, seq_len: int) -> list[dict]:
    """Per checkpoint: the estimate and B_simple (raises ValueError naming a missing branch log)."""
    from batchlaw.tools.logs import read_columns

    out = []
    for c in ckpts:
        branches: dict[int, dict[int, dict[str, np.ndarray]]] = {}
        window = 0
        for p, d in zip(plans, dirs):
            if p.step != c["step"]:
                continue
            log = d / "log.h5"
            if not (d / "COMPLETED").exists():
                raise ValueError(f"branch {d}: not completed (no COMPLETED marker); run the branches first")
            branches.setdefault(p.seed, {})[p.factor] = read_columns(log, ("tokens", "loss", "global_batch_size"))
            window = p.window_samples * seq_len
        est = estimate(branches, step=c["step"], tokens_at=c["consumed"] * seq_len, base_batch=c["batch"],
                       window_tokens=window, settings=settings, tau=float(c.get("tau", 0.0)))
        b, blo, bhi = _b_simple_before(base_cols, c["row"])
        noise = c.get("noise")
        out.append({"estimate": est, "b_simple": float(b), "b_simple_lo": float(blo), "b_simple_hi": float(bhi),
                    "loss_at": float(base_cols["loss"][c["row"]]), "window_tokens": window,
                    "noise_plan": _plan_dict(noise, seq_len) if noise is not None else {}})
    return out


def _plan_dict(plan, seq_len: int) -> dict:
    return {"num_seeds": plan.num_seeds, "window_tokens": plan.window_samples * seq_len,
            "predicted_half_width": plan.half_width, "target_half_width": plan.target,
            "per_step_scatter": plan.sigma_step, "prior_seed_sd": plan.tau, "reached": plan.reached}


def _atomic(path: Path, text: str) -> None:
    from batchlaw.simulator.config import write_text_atomic

    write_text_atomic(path, text)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "inf" if x == np.inf else "-"


def _b_crit_text(row: dict) -> tuple[str, str]:
    """(B_crit cell, interval cell) of one estimate: a number, a bound, or 'not determined'."""
    hi = _fmt(row["hi"] if row["hi"] is not None else np.inf)
    if row.get("determined", True):
        return f"{_fmt(row['b_crit'])}", f"{_fmt(row['lo'])} .. {hi}"
    if row["bound"] == ">=":
        return f"not determined: >= {_fmt(row['b_crit'])}", f"{_fmt(row['lo'])} .. {hi}"
    if row["bound"] == "<":
        return f"not determined: < {_fmt(row['hi'])}", "-"
    return "not determined", "-"


def _md(rows: list[dict], settings: ProbeSettings, base_log: Path) -> list[str]:
    md = ["# batchlaw probe-cbs", "", f"Base run: `{base_log}`. B_crit (sequences) = where the excess of the mean"
          f" training loss over the last {settings.tail:g} of each branch's window over the k = 1 branch's, fitted as a"
          f" non-decreasing function of log k, crosses {settings.tolerance:g} x the k = 1 branch's loss (LR rule"
          f" {settings.lr_rule}); 80% intervals from the scatter over data seeds (docs/probe.md). B_simple is the noise"
          " scale of the base run over the steps before the same checkpoint.", "",
          "| step | tokens | B | seeds x window (tokens) | B_crit (probe) | 80% interval | largest within | B_simple |"
          " 80% interval |", "|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for row in rows:
        cell, interval = _b_crit_text(row)
        md.append(f"| {row['step']} | {row['tokens']:,} | {row['base_batch']} | {row['num_seeds']} x"
                  f" {row['window_tokens']:,} | {cell} | {interval} | {row['largest_within']} | {_fmt(row['b_simple'])}"
                  f" | {_fmt(row['b_simple_lo'])} .. {_fmt(row['b_simple_hi'])} |")
        ex = ", ".join(f"k={k}: {m:+.4f} +- {q:.4f}" for k, m, q in zip(row["factors"], row["excess"],
                                                                      [v or 0.0 for v in row["excess_se"]]))
        sd = [v for v in row.get("seed_sd", [])[1:] if v is not None]
        plan = row.get("noise_plan") or {}
        spread = (f"measured scatter of one seed's excess {min(sd):.3g}..{max(sd):.3g} nats" if sd else
                  "one seed: the between-seed part is the prior")
        prior = f" (plan's prior {plan['prior_seed_sd']:.3g}, per-step part included)" if plan else ""
        notes.append(f"- step {row['step']}: {row['reason'] or 'determined'}. Mean excess (nats, standard error):"
                     f" {ex}; eps = {row['eps']:.4f}. {spread}{prior}.")
    return md + [""] + notes


def write_outputs(out: Path, results: list[dict], settings: ProbeSettings, plans, seconds, system: str,
                  base_log: Path, window_tokens: int) -> Path:
    """probe.json (the file a probe ramp reads), probe.csv, probe.md, probe_excess.png; returns probe.json."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in results:
        e = r["estimate"]
        rows.append({**e.to_dict(), "b_simple": r["b_simple"], "b_simple_lo": r["b_simple_lo"],
                     "b_simple_hi": r["b_simple_hi"], "loss_at": r["loss_at"],
                     "window_tokens": int(r.get("window_tokens", window_tokens)),
                     "noise_plan": r.get("noise_plan", {})})
    data = {"method": "branched training (Merrill et al. 2025, arXiv 2505.23971); monotone fit and seed intervals"
                      " (docs/probe.md)", "base_log": str(base_log),
            "units": {"b_crit": "sequences", "tokens": "tokens consumed by the base run at the checkpoint",
                      "excess": "nats per token"},
            "settings": {"factors": list(settings.factors), "lr_rule": settings.lr_rule,
                         "window_tokens": int(window_tokens), "tolerance": settings.tolerance, "tail": settings.tail,
                         "seeds": sorted({p.seed for p in plans}), "precision": settings.precision, "interval": "80%"},
            "plan": {"system": system, "predicted_s": float(np.sum(seconds)), "branches": len(plans)},
            "estimates": rows}
    text = json.dumps(data, indent=1, default=float).replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null")
    _atomic(out / "probe.json", text + "\n")
    keys = ["step", "tokens", "base_batch", "b_crit", "lo", "hi", "bound", "largest_within", "b_simple",
            "b_simple_lo", "b_simple_hi", "loss_ref", "eps", "determined", "num_seeds", "window_tokens", "reason"]
    csv = [",".join(keys)] + [",".join(_csv_cell(row[k]) for k in keys) for row in rows]
    _atomic(out / "probe.csv", "\n".join(csv) + "\n")
    _atomic(out / "probe.md", "\n".join(_md(rows, settings, base_log)) + "\n")
    _plot(out / "probe_excess.png", results, settings)
    return out / "probe.json"


def _csv_cell(v) -> str:
    if v is None:
        return ""
    text = str(v)
    return '"' + text.replace('"', '""') + '"' if ("," in text or '"' in text) else text


def _plot(path: Path, results: list[dict], settings: ProbeSettings) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    from batchlaw.tools.plots import _COLOURS, _batch_axis

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, r in enumerate(results):
        e, col = r["estimate"], _COLOURS[i % len(_COLOURS)]
        b = np.array(e.factors) * e.base_batch
        q = 1.2816 if e.num_seeds < 2 else float(stats.t.ppf(0.9, e.num_seeds - 1))
        ax.errorbar(b, np.array(e.excess) / e.loss_ref, yerr=q * np.array(e.excess_se) / e.loss_ref, fmt="o",
                    color=col, capsize=3, label=f"step {e.step}: mean of {e.num_seeds} seed(s), 80%")
        ax.plot(b, np.array(e.excess_fit) / e.loss_ref, "-", color=col, lw=1.2,
                label="monotone fit" + ("" if e.determined else f" (not determined: {e.reason.split(':')[0]})"))
        if e.determined:
            ax.axvline(e.b_crit, color=col, ls=":", lw=1)
            ax.axvspan(e.lo, min(e.hi, b[-1]), color=col, alpha=0.12)
    ax.axhline(settings.tolerance, color="k", ls="--", lw=1, label=f"tolerance {settings.tolerance:g}")
    ax.set(xscale="log", xlabel="branch batch (sequences)", ylabel="(L_k - L_1) / L_1",
           title="probe-cbs: loss excess against batch (dotted: B_crit, band: 80%)")
    _batch_axis(ax.xaxis, [f * r["estimate"].base_batch for r in results for f in r["estimate"].factors])
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
