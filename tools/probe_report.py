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
                       window_tokens=window, settings=settings)
        b, blo, bhi = _b_simple_before(base_cols, c["row"])
        out.append({"estimate": est, "b_simple": float(b), "b_simple_lo": float(blo), "b_simple_hi": float(bhi),
                    "loss_at": float(base_cols["loss"][c["row"]])})
    return out


def _atomic(path: Path, text: str) -> None:
    from batchlaw.simulator.config import write_text_atomic

    write_text_atomic(path, text)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "inf" if x == np.inf else "-"


def write_outputs(out: Path, results: list[dict], settings: ProbeSettings, plans, seconds, system: str,
                  base_log: Path, window_tokens: int) -> Path:
    """probe.json (the file a probe ramp reads), probe.csv, probe.md, probe_excess.png; returns probe.json."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in results:
        e = r["estimate"]
        rows.append({**e.to_dict(), "b_simple": r["b_simple"], "b_simple_lo": r["b_simple_lo"],
                     "b_simple_hi": r["b_simple_hi"], "loss_at": r["loss_at"]})
    data = {"method": "branched training (Merrill et al. 2025, arXiv 2505.23971)", "base_log": str(base_log),
            "units": {"b_crit": "sequences", "tokens": "tokens consumed by the base run at the checkpoint",
                      "excess": "nats per token"},
            "settings": {"factors": list(settings.factors), "lr_rule": settings.lr_rule,
                         "window_tokens": int(window_tokens),
                         "tolerance": settings.tolerance, "tail": settings.tail, "seeds": list(settings.seeds),
                         "interval": "80%"},
            "plan": {"system": system, "predicted_s": float(np.sum(seconds)), "branches": len(plans)},
            "estimates": rows}
    text = json.dumps(data, indent=1, default=float).replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null")
    _atomic(out / "probe.json", text + "\n")
    keys = ["step", "tokens", "base_batch", "b_crit", "lo", "hi", "bound", "largest_within", "b_simple",
            "b_simple_lo", "b_simple_hi", "loss_ref", "eps"]
    csv = [",".join(keys)] + [",".join(str(row[k]) if row[k] is not None else "" for k in keys) for row in rows]
    _atomic(out / "probe.csv", "\n".join(csv) + "\n")
    md = ["# batchlaw probe-cbs", "", f"Base run: `{base_log}`. B_crit (sequences) = the largest batch whose mean"
          f" training loss over the last {settings.tail:g} of a {data['settings']['window_tokens']:,}-token window stays"
          f" within {settings.tolerance:g} x the k = 1 branch's loss (LR rule {settings.lr_rule}); 80% intervals."
          " B_simple is the noise scale of the base run over the steps before the same checkpoint.", "",
          "| step | tokens | B | B_crit (probe) | 80% interval | largest within | B_simple | 80% interval |",
          "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        md.append(f"| {row['step']} | {row['tokens']:,} | {row['base_batch']} | {row['bound']} {_fmt(row['b_crit'])} |"
                  f" {_fmt(row['lo'])} .. {_fmt(row['hi'] if row['hi'] is not None else np.inf)} |"
                  f" {row['largest_within']} | {_fmt(row['b_simple'])} | {_fmt(row['b_simple_lo'])} .."
                  f" {_fmt(row['b_simple_hi'])} |")
    _atomic(out / "probe.md", "\n".join(md) + "\n")
    _plot(out / "probe_excess.png", results, settings)
    return out / "probe.json"


def _plot(path: Path, results: list[dict], settings: ProbeSettings) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from batchlaw.tools.plots import _COLOURS, _batch_axis

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, r in enumerate(results):
        e, col = r["estimate"], _COLOURS[i % len(_COLOURS)]
        b = np.array(e.factors) * e.base_batch
        ax.errorbar(b, np.array(e.excess) / e.loss_ref, yerr=1.2816 * np.array(e.excess_se) / e.loss_ref, fmt="o-",
                    color=col, capsize=3, label=f"step {e.step} ({e.tokens:,} tokens)")
        if np.isfinite(e.b_crit) and not e.bound:
            ax.axvline(e.b_crit, color=col, ls=":", lw=1)
    ax.axhline(settings.tolerance, color="k", ls="--", lw=1, label=f"tolerance {settings.tolerance:g}")
    ax.set(xscale="log", xlabel="branch batch (sequences)", ylabel="(L_k - L_1) / L_1",
           title="probe-cbs: loss excess against batch (dotted: B_crit)")
    _batch_axis(ax.xaxis, [f * r["estimate"].base_batch for r in results for f in r["estimate"].factors])
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
