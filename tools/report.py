"""A Markdown report of a study: definitions, tables of runs and optima, the laws the data carry (and
why the others are missing), the pictures with a description of what each shows."""

from __future__ import annotations

import math
from pathlib import Path

from batchlaw.tools.analysis import at_edge

__all__ = ["DEFINITIONS", "describe_pictures", "plural", "probe_section", "write_report"]

DEFINITIONS = """## Definitions and units

- **Loss**: mean next-token cross-entropy of the training batch, in nats per token; a run's *final
  loss* is the mean over its last 20% of steps.
- **Batch**: global batch in sequences (multiply by the sequence length for tokens).
- **B_opt**: the batch of lowest final loss at a fixed token budget, from a parabola of final loss in
  ln(batch) through the constant-batch runs of one model (Li et al. 2025, sec. 3). It is a number only
  when *bracketed*: the best run has a worse run on each side, worse by more than the two runs' noise
  (1.28 combined standard errors of their final losses). Otherwise it is a bound (`<= 4`: no smaller
  batch is separably worse, so the optimum may lie lower; `~ 16`: no batch is separably worse on
  either side, the sweep is flat within its noise), marked, and kept out of laws.
- **B_simple**: the simple gradient noise scale tr(Sigma) / |G|^2 (McCandlish et al. 2018, eq. 2.8),
  from the unbiased two-batch estimates logged every step, averaged over the last 20% of steps.
- **B_crit**: the critical batch. Here it is estimated by B_simple near the end of training
  (McCandlish et al. 2018, sec. 2.2), which can differ from the batch at which training actually
  stops being token-efficient; `batchlaw probe-cbs` measures that directly (Merrill et al. 2025).
- **Intervals** (all 80%): B_opt, a parametric bootstrap of the parabola's vertex, each final loss
  redrawn with its standard error from the per-step scatter of its last 20% of steps (this misses
  run-to-run variation that a second seed would show); B_simple, a block
  bootstrap of the ratio of means over the last 20% of steps; a law's exponent, a parametric
  bootstrap redrawing each point from its own interval plus the fit's residual scatter.
- **Laws**: y = c x^a by least squares in log space; R^2 is in log space. A law needs at least
  {min_sizes} model sizes with usable points, and is "not determined" (printed, never extrapolated)
  when its exponent interval is wider than {max_width:g}.
"""


def plural(n: int, word: str) -> str:
    """'1 run', '3 runs', '1 model size'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _f(x, fmt="{:.4g}") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def _law(law) -> str:
    if not law.fitted:
        return f"- {law.name}: none. {law.reason[0].upper() + law.reason[1:]}."
    lo, hi = law.exponent_ci
    body = (f"{law.c:.3g} x {law.variable}^{law.exponent:.3f} (80% interval of the exponent {lo:.3f} .. {hi:.3f};"
            f" {plural(law.n_points, 'point')}; R^2 = {_f(law.r2, '{:.3f}')} in log space)")
    if law.determined:
        return f"- {law.name} = {body}"
    return f"- {law.name}: not determined: {law.reason}. The fit was {body}."


def _runs_table(runs) -> list[str]:
    lines = ["| model | params | batch | ramp | tokens | steps | final loss | B_simple [80%] | step s | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r.num_params, r.global_batch, r.ramp)):
        ramp = r.ramp_label
        lines.append(f"| {r.model_name} | {r.num_params:,} | {r.global_batch} | {ramp} | {r.tokens:,} | {r.steps} |"
                     f" {r.final_loss:.4f} | {_f(r.b_simple, '{:.3g}')} [{_f(r.b_simple_lo, '{:.3g}')},"
                     f" {_f(r.b_simple_hi, '{:.3g}')}] | {r.step_time_s:.3f} | {r.status} |")
    return lines


def _optima_table(result) -> list[str]:
    lines = ["| model | params | tokens | seq | lr | runs | batches tried | B_opt | 80% interval | method |"
             " B_simple (end) | best loss |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in result.optima:
        tried = ", ".join(f"{b:g}" for b in sorted(set(o.batches)))
        interval = f"[{_f(o.b_opt_lo, '{:.3g}')}, {_f(o.b_opt_hi, '{:.3g}')}]" if o.bracketed else "none (bound)"
        mark = " (edge)" if not o.bracketed and at_edge(o) else ""
        lines.append(f"| {o.model_name} | {o.num_params:,} | {o.tokens:,} | {o.seq_len or '-'} | {_f(o.lr, '{:.3g}')} |"
                     f" {o.n_runs} | {tried} | {o.b_opt_text}{mark} |"
                     f" {interval} | {o.interval_method or '-'} | {_f(o.b_crit, '{:.3g}')} | {o.best_loss:.4f} |")
    return lines


def _summary(runs, result, skipped) -> list[str]:
    sizes = len({r.num_params for r in runs})
    done = sum(1 for r in runs if r.status == "completed")
    n_br = sum(1 for o in result.optima if o.bracketed)
    text = (f"{plural(len(runs), 'run')} ({done} completed) of {plural(sizes, 'model size')};"
            f" {n_br} of {len(result.optima)} sizes have a bracketed optimum.")
    if done < len(runs):
        text += " Runs not completed (live or failed) are listed but not used for optima."
    out = [text]
    if skipped:
        out += ["", f"**{plural(len(skipped), 'log')} could not be read and {'was' if len(skipped) == 1 else 'were'}"
                " skipped:**", ""] + [f"- {e}" for e in skipped]
    return out


def probe_section(logdir) -> list[str]:
    """B_crit measured by ``probe-cbs`` beside B_simple, for every probe.json under ``logdir``."""
    import json

    root = Path(logdir)
    files = sorted(root.rglob("probe.json")) if root.is_dir() else []
    if not files:
        return []
    lines = ["", "## Critical batch measured by branched training (probe-cbs)", "",
             "B_crit (probe): the largest batch whose loss after a fixed token window stays within the tolerance of"
             " the base batch (Merrill et al. 2025; docs/probe.md). B_simple: the base run's noise scale over the"
             " steps before the same checkpoint. Sequences; 80% intervals.", "",
             "| probe | step | tokens | B | B_crit (probe) [80%] | B_simple [80%] |", "|---|---|---|---|---|---|"]
    for f in files:
        try:  # a damaged probe.json is named in its row, never a traceback that loses the report
            rows = [_probe_row(f.parent.relative_to(root), r) for r in json.loads(f.read_text())["estimates"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            rows = [f"| {f} | unreadable ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
                    " | | | | |"]
        lines += rows
    return lines


def _probe_row(where, r) -> str:
    hi = "inf" if r.get("hi") is None else _f(r["hi"], "{:.3g}")
    return (f"| {where} | {r['step']} | {r['tokens']:,} | {r['base_batch']} |"
            f" {r.get('bound', '')} {_f(r['b_crit'], '{:.3g}')} [{_f(r['lo'], '{:.3g}')}, {hi}] |"
            f" {_f(r.get('b_simple'), '{:.3g}')} [{_f(r.get('b_simple_lo'), '{:.3g}')},"
            f" {_f(r.get('b_simple_hi'), '{:.3g}')}] |")


def write_report(out_dir: Path, runs, result, pictures: dict[str, str], extra_sections: list[str] = (),
                 *, skipped: list[str] = (), descriptions: dict[str, str] | None = None) -> Path:
    """Write ``report.md`` into ``out_dir`` (pictures are file names relative to it) atomically."""
    s = result.settings or {}
    lines = ["# batchlaw study report", ""] + _summary(runs, result, list(skipped)) + [""]
    lines += DEFINITIONS.format(min_sizes=s.get("min_sizes", 3), max_width=s.get("max_exponent_width", 1.0)).splitlines()
    lines += ["", "## Runs", ""] + _runs_table(runs)
    lines += ["", "## Optimal and critical batch per model size (sequences)", ""] + _optima_table(result)
    lines += ["", "## Laws across model sizes", ""]
    if s.get("include_bounds"):
        lines += ["Edge optima (bounds) are included in these fits at the user's request: the laws are biased"
                  " toward the sweep's edge.", ""]
    lines += [_law(result.b_opt_vs_n), _law(result.b_opt_vs_d), _law(result.b_crit_vs_n)]
    e = result.extrapolation
    if e:
        if "b_opt" in e:
            lo, hi = e["b_opt_range"]
            lines.append(f"- extrapolated to N = {e['N']:.3g}: B_opt ~ {e['b_opt']:.3g} sequences (range {lo:.3g} .. {hi:.3g})"
                         + (f", B_crit ~ {e['b_crit']:.3g}" if "b_crit" in e else ""))
        else:
            lines.append(f"- no extrapolation to N = {e['N']:.3g}: B_opt(N) is not a determined law.")
    lines += list(extra_sections)
    lines += ["", "## Pictures", ""]
    for title, name in pictures.items():
        lines += [f"### {title}", "", f"![{title}]({name})", ""]
        if descriptions and name in descriptions:
            lines += [descriptions[name], ""]
    out = Path(out_dir) / "report.md"
    from batchlaw.simulator.config import write_text_atomic

    return write_text_atomic(out, "\n".join(lines) + "\n")


def _why_bound(o) -> str:
    """Why an optimum is a bound, in words."""
    side = {"<=": "smaller", ">=": "larger"}.get(o.bound)
    if side:
        return ("the best run is at the edge of the sweep" if at_edge(o)
                else f"no {side} batch is worse by more than the losses' noise")
    return "no batch is worse by more than the losses' noise" if o.bound == "~" else "one batch only"


def describe_pictures(runs, result) -> dict[str, str]:
    """One paragraph per picture saying what it shows for this study (read from the numbers drawn)."""
    sizes = sorted({(r.num_params, r.model_name) for r in runs})
    batches = sorted({r.global_batch for r in runs})
    enc = (f"Colour is the model size ({', '.join(n for _, n in sizes)}), line style or marker the batch"
           f" ({', '.join(str(b) for b in batches)}).")
    out = {"loss_curves.png": f"Training loss (nats/token, EMA 0.95) against tokens, one panel per model size. {enc}"
                              " Smaller batches take more steps per token and fall faster early on.",
           "noise_scale.png": f"B_simple (sequences; |G|^2 and tr(Sigma) smoothed separately) against tokens. {enc}"}
    parts = []
    for o in result.optima:
        where = (f"bracketed at {o.b_opt:.3g} (80% interval {o.b_opt_lo:.3g} .. {o.b_opt_hi:.3g})" if o.bracketed
                 else f"a bound {o.b_opt_text} ({_why_bound(o)})")
        parts.append(f"{o.model_name}: {where}")
    out["final_loss_vs_batch.png"] = ("Final loss against batch per model size with the parabola in ln(batch);"
                                      " a filled star marks a bracketed optimum, an open triangle a bound, a dash"
                                      " a flat sweep. " + "; ".join(parts) + ".")
    law = result.b_opt_vs_n
    txt = ("B_opt against N: filled circles are bracketed optima with their intervals, open triangles bounds,"
           " dashes flat sweeps.")
    if law.fitted:
        txt += (f" The line is the fit {law.c:.3g} N^{law.exponent:.2f} through {plural(law.n_points, 'point')}"
                f" with its 80% band ({'determined' if law.determined else 'not determined: ' + law.reason}).")
    else:
        txt += f" No law is drawn: {law.reason}."
    out["bopt_vs_n.png"] = txt + " Open squares: B_simple at the end of training; crosses: Step Law's B(D)."
    return out
