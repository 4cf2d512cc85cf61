"""A Markdown report of a study: definitions, tables of runs and optima, the laws the data carry (and
why the others are missing), the pictures with a description of what each shows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from batchlaw.tools.analysis import at_edge

__all__ = ["DEFINITIONS", "b_simple_end", "describe_pictures", "law_verdict", "no_dependence_text", "plural",
           "probe_section", "sweep_runs", "write_report"]

DEFINITIONS = """## Definitions and units

- **Loss**: mean next-token cross-entropy of the training batch, in nats per token; a run's *final
  loss* is the mean over its last 20% of steps.
- **Batch**: global batch in sequences (multiply by the sequence length for tokens).
- **B_opt**: the batch of lowest final loss at a fixed token budget, from the loss basin over ln(batch)
  (and ln(LR) when a batch ran at several learning rates) fitted through the constant-batch runs of one
  model at one budget (Li et al. 2025, sec. 3; its shape from the basin prior, docs/design.md). It is a
  number only when *bracketed*: the best batch has a worse one on each side, worse by more than the noise of
  the difference (1.28 sd, counting each run's within-run error and the between-seed noise). Otherwise it is
  a bound (`<= 4`: no smaller batch is separably worse, so the optimum may lie lower; `~ 16`: no batch is
  separably worse on either side, the sweep is flat within its noise), marked, and kept out of laws.
- **B_simple**: the simple gradient noise scale tr(Sigma) / |G|^2 (McCandlish et al. 2018, eq. 2.8),
  from the unbiased two-batch estimates logged every step, averaged over the last 20% of steps.
- **B_simple (end)** of a batch sweep: the median of B_simple over the sweep's constant-batch runs (the
  points of its B_opt; a batch-ramp run is left out), with the range of those runs' values.
- **B_crit**: the critical batch. Here it is estimated by B_simple near the end of training
  (McCandlish et al. 2018, sec. 2.2), which can differ from the batch at which training actually
  stops being token-efficient; `batchlaw probe-cbs` measures that directly (Merrill et al. 2025).
- **Noise**: a final loss differs from its configuration's by its within-run error (per-step scatter) and
  a between-seed part; the between-seed sd is learned from the runs (basin-fit residuals, repeated seeds) on
  top of a stated prior ({noise}).
- **Intervals** (all 80%): B_opt, a parametric bootstrap of the basin's vertex in which each replicate draws
  the between-seed noise from its posterior and the basin's shape from its uncertainty, and redraws every
  run's loss with both noises; B_simple, a block bootstrap of the ratio of means over the last 20% of steps; a
  law's exponent, a bootstrap redrawing the sizes together from their B_opt draws (shared draws paired), plus
  the law's lack of fit when its residuals exceed the points' own uncertainty.
- **Laws**: y = c x^a by least squares in log space; R^2 is in log space. A law needs at least
  {min_sizes} model sizes with usable points, and is "not determined" (printed, never extrapolated)
  when its exponent interval is wider than {max_width:g}. A law whose exponent interval includes 0
  shows no dependence on its variable: it is printed as such, drawn dashed, and never extrapolated.
"""


def plural(n: int, word: str) -> str:
    """'1 run', '3 runs', '1 model size'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _f(x, fmt="{:.4g}") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def law_verdict(law) -> str:
    """What a law across sizes may claim, the same in text and pictures: ``none`` (no fit), ``not determined``
    (exponent interval wider than the limit), ``no dependence`` (the exponent's 80% interval includes 0: the data
    show no dependence on the variable) or ``law``."""
    if not law.fitted:
        return "none"
    if not law.determined:
        return "not determined"
    lo, hi = law.exponent_ci
    return "no dependence" if lo <= 0 <= hi else "law"


def no_dependence_text(law) -> str:
    """'no size dependence shown' (N) or 'no token-budget dependence shown' (D)."""
    return f"no {'size' if law.variable == 'N' else 'token-budget'} dependence shown"


def _law(law) -> str:
    verdict = law_verdict(law)
    if verdict == "none":
        return f"- {law.name}: none. {law.reason[0].upper() + law.reason[1:]}."
    lo, hi = law.exponent_ci
    body = (f"{law.c:.3g} x {law.variable}^{law.exponent:.3f} (80% interval of the exponent {lo:.3f} .. {hi:.3f};"
            f" {plural(law.n_points, 'point')}; R^2 = {_f(law.r2, '{:.3f}')} in log space)")
    if verdict == "law":
        return f"- {law.name} = {body}"
    if verdict == "no dependence":
        return (f"- {law.name}: {no_dependence_text(law)}: the exponent's 80% interval {lo:.3f} .. {hi:.3f} includes 0."
                f" The fit was {body}.")
    return f"- {law.name}: not determined: {law.reason}. The fit was {body}."


def sweep_runs(runs, o) -> list:
    """The runs behind the points of one sweep's optimum ``o``: completed, of its size and sequence length, with
    a (batch, final loss) among its points. These are its constant-batch runs; a ramp run is none of them."""
    points = set(zip(o.batches, o.losses))
    return [r for r in runs if r.status == "completed" and r.num_params == o.num_params and r.seq_len == o.seq_len
            and (float(r.global_batch), float(r.final_loss)) in points]


def b_simple_end(runs, o) -> tuple[float, float, float]:
    """B_simple (end) of a sweep: (median, min, max) over its constant-batch runs' B_simple; NaN when none has one."""
    v = np.array([r.b_simple for r in sweep_runs(runs, o)], float)
    v = v[np.isfinite(v)]
    return (float(np.median(v)), float(v.min()), float(v.max())) if len(v) else (np.nan, np.nan, np.nan)


def _runs_table(runs) -> list[str]:
    lines = ["| model | params | batch | ramp | tokens | steps | final loss | B_simple [80%] | step s | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r.num_params, r.global_batch, r.ramp)):
        ramp = r.ramp_label
        lines.append(f"| {r.model_name} | {r.num_params:,} | {r.global_batch} | {ramp} | {r.tokens:,} | {r.steps} |"
                     f" {r.final_loss:.4f} | {_f(r.b_simple, '{:.3g}')} [{_f(r.b_simple_lo, '{:.3g}')},"
                     f" {_f(r.b_simple_hi, '{:.3g}')}] | {r.step_time_s:.3f} | {r.status} |")
    return lines


def _optima_table(runs, result) -> list[str]:
    lines = ["| model | params | tokens | seq | lr | runs | batches tried | B_opt | 80% interval | method |"
             " B_simple (end) [range] | best loss |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in result.optima:
        mid, lo, hi = b_simple_end(runs, o)
        tried = ", ".join(f"{b:g}" for b in sorted(set(o.batches)))
        interval = f"[{_f(o.b_opt_lo, '{:.3g}')}, {_f(o.b_opt_hi, '{:.3g}')}]" if o.bracketed else "none (bound)"
        mark = " (edge)" if not o.bracketed and at_edge(o) else ""
        lines.append(f"| {o.model_name} | {o.num_params:,} | {o.tokens:,} | {o.seq_len or '-'} | {_f(o.lr, '{:.3g}')} |"
                     f" {o.n_runs} | {tried} | {o.b_opt_text}{mark} |"
                     f" {interval} | {o.interval_method or '-'} | {_f(mid, '{:.3g}')} [{_f(lo, '{:.3g}')},"
                     f" {_f(hi, '{:.3g}')}] | {o.best_loss:.4f} |")
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
    cell = f"{r.get('bound', '')} {_f(r['b_crit'], '{:.3g}')} [{_f(r['lo'], '{:.3g}')}, {hi}]"
    if not r.get("determined", True):  # probe.json since issue 19: no number where the data give none
        cell = f"not determined ({r.get('reason', '')})" + (f"; >= {_f(r['b_crit'], '{:.3g}')}"
                                                            if r.get("bound") == ">=" else "")
    return (f"| {where} | {r['step']} | {r['tokens']:,} | {r['base_batch']} | {cell} |"
            f" {_f(r.get('b_simple'), '{:.3g}')} [{_f(r.get('b_simple_lo'), '{:.3g}')},"
            f" {_f(r.get('b_simple_hi'), '{:.3g}')}] |")


def write_report(out_dir: Path, runs, result, pictures: dict[str, str], extra_sections: list[str] = (),
                 *, skipped: list[str] = (), descriptions: dict[str, str] | None = None) -> Path:
    """Write ``report.md`` into ``out_dir`` (pictures are file names relative to it) atomically."""
    s = result.settings or {}
    lines = ["# batchlaw study report", ""] + _summary(runs, result, list(skipped)) + [""]
    lines += DEFINITIONS.format(min_sizes=s.get("min_sizes", 3), max_width=s.get("max_exponent_width", 1.0),
                                noise=s.get("noise", "prior only")).splitlines()
    lines += ["", "## Runs", ""] + _runs_table(runs)
    lines += ["", "## Optimal and critical batch per model size (sequences)", ""] + _optima_table(runs, result)
    lines += ["", "## Laws across model sizes", ""]
    if s.get("include_bounds"):
        lines += ["Edge optima (bounds) are included in these fits at the user's request: the laws are biased"
                  " toward the sweep's edge.", ""]
    lines += [_law(result.b_opt_vs_n), _law(result.b_opt_vs_d), _law(result.b_crit_vs_n)]
    lines += _extrapolation(result)
    lines += list(extra_sections)
    lines += ["", "## Pictures", ""]
    for title, name in pictures.items():
        lines += [f"### {title}", "", f"![{title}]({name})", ""]
        if descriptions and name in descriptions:
            lines += [descriptions[name], ""]
    out = Path(out_dir) / "report.md"
    from batchlaw.simulator.config import write_text_atomic

    return write_text_atomic(out, "\n".join(lines) + "\n")


def _extrapolation(result) -> list[str]:
    """The extrapolation line: only through laws (``law_verdict``), never through one without size dependence."""
    e = result.extrapolation
    if not e:
        return []
    verdict = law_verdict(result.b_opt_vs_n)
    if "b_opt" not in e or verdict != "law":
        why = ("B_opt(N) shows no size dependence (its exponent interval includes 0)" if verdict == "no dependence"
               else "B_opt(N) is not a determined law")
        return [f"- no extrapolation to N = {e['N']:.3g}: {why}."]
    lo, hi = e["b_opt_range"]
    crit = f", B_crit ~ {e['b_crit']:.3g}" if "b_crit" in e and law_verdict(result.b_crit_vs_n) == "law" else ""
    return [f"- extrapolated to N = {e['N']:.3g}: B_opt ~ {e['b_opt']:.3g} sequences (range {lo:.3g} .. {hi:.3g}){crit}"]


def _law_in_picture(law) -> str:
    """How ``bopt_vs_n.png`` shows a law, in the words of the report's law line."""
    verdict = law_verdict(law)
    if verdict == "none":
        return f"No {law.name} line: {law.reason}."
    fit = f"{law.c:.3g} N^{law.exponent:.2f} through {plural(law.n_points, 'point')}"
    if verdict == "law":
        return f"The {'solid' if law.name.startswith('B_opt') else 'dotted'} line is {law.name} = {fit}."
    why = (f"{no_dependence_text(law)}: its exponent interval includes 0" if verdict == "no dependence"
           else f"not determined: {law.reason}")
    return f"The dashed {'black' if law.name.startswith('B_opt') else 'grey'} line is the {law.name} fit {fit}, {why}."


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
    out["final_loss_vs_batch.png"] = ("Final loss against batch per model size, each with its 80% interval (+-1.28"
                                      " standard errors of the mean over the last 20% of steps), and the fitted"
                                      " basin in ln(batch), drawn over the batches it was fitted on (the runs"
                                      " near the floor); a filled star marks a bracketed optimum, an open triangle a"
                                      " bound, a dash a flat sweep. " + "; ".join(parts) + ".")
    txt = ("B_opt against N: filled circles are bracketed optima with their intervals, open triangles bounds,"
           " dashes flat sweeps; open squares are B_simple (end) of each sweep (median of its constant-batch runs,"
           " bars: their range); crosses are Step Law's B(D). " + _law_in_picture(result.b_opt_vs_n))
    if law_verdict(result.b_opt_vs_n) != "none":
        txt += " The grey band is the 80% band of the B_opt(N) fit."
    out["bopt_vs_n.png"] = txt + " " + _law_in_picture(result.b_crit_vs_n)
    return out
