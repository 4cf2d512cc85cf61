"""A Markdown report of a study: tables of runs and optima, the fitted laws, the pictures."""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["write_report"]


def _f(x, fmt="{:.4g}") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def _law(name: str, r) -> str:
    if r is None:
        return f"- {name}: not enough model sizes (need 3)"
    p, ci = r.params, r.ci
    exp_key = [k for k in p if k != "c"][0]
    band = f" (80% CI of the exponent {ci[exp_key][0]:.3f} .. {ci[exp_key][1]:.3f})" if ci else ""
    return f"- {name}: {p['c']:.4g} x {exp_key}^{p[exp_key]:.3f}{band}, {r.n_points} points"


def write_report(out_dir: Path, runs, result, pictures: dict[str, str], extra_sections: list[str] = ()) -> Path:
    """Write ``report.md`` into ``out_dir`` (pictures are file names relative to it)."""
    lines = ["# batchlaw study report", "",
             f"{len(runs)} runs, {len(result.optima)} model sizes.", "", "## Runs", "",
             "| model | params | batch | ramp | tokens | steps | final loss | B_simple (80% CI) | step s | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r.num_params, r.global_batch, r.first_batch)):
        ramp = "" if r.first_batch == r.global_batch else f"{r.first_batch}->{r.global_batch}"
        lines.append(f"| {r.model_name} | {r.num_params:,} | {r.global_batch} | {ramp} | {r.tokens:,} | {r.steps} |"
                     f" {r.final_loss:.4f} | {_f(r.b_simple, '{:.3g}')} [{_f(r.b_simple_lo, '{:.3g}')},"
                     f" {_f(r.b_simple_hi, '{:.3g}')}] | {r.step_time_s:.3f} | {r.status} |")
    lines += ["", "## Optimal and critical batch per model size (sequences)", "",
              "| model | params | tokens | B_opt | 80% CI | B_crit (B_simple) | best loss |", "|---|---|---|---|---|---|---|"]
    for o in result.optima:
        lines.append(f"| {o.model_name} | {o.num_params:,} | {o.tokens:,} | {o.b_opt:.3g} | [{_f(o.b_opt_lo, '{:.3g}')},"
                     f" {_f(o.b_opt_hi, '{:.3g}')}] | {_f(o.b_crit, '{:.3g}')} | {o.best_loss:.4f} |")
    lines += ["", "## Laws", "", _law("B_opt(N)", result.b_opt_vs_n), _law("B_opt(D)", result.b_opt_vs_d),
              _law("B_crit(N)", result.b_crit_vs_n)]
    if result.extrapolation:
        e = result.extrapolation
        rng = e.get("b_opt_range")
        lines.append(f"- extrapolated to N = {e['N']:.3g}: B_opt ~ {e['b_opt']:.3g} sequences"
                     + (f" (range {rng[0]:.3g} .. {rng[1]:.3g})" if rng else "")
                     + (f", B_crit ~ {e['b_crit']:.3g}" if "b_crit" in e else ""))
    lines += list(extra_sections)
    lines += ["", "## Pictures", ""] + [f"### {title}\n\n![{title}]({name})\n" for title, name in pictures.items()]
    out = Path(out_dir) / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out
