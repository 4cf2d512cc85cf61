"""``batchlaw analyze LOGDIR``: summaries, optimal/critical batch, laws, pictures, a report.

Exit status: 0 when every log was read; 1 (``logs.EXIT_SKIPPED``) when the report was written but some
logs could not be read (each is named on stderr and in the report, and skipped); 2 on a usage error or when no log
could be read at all (the CLI's one-line error). Live runs (still being written) are read, listed
and left out of the optima until they complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from batchlaw.tools.cli import retire

    parser.add_argument("logdir", help="folder of HDF5 run logs (searched recursively), or one log")
    parser.add_argument("--out-dir", default="report", help="report folder (runs.csv, pictures, report.md)")
    retire(parser, "--out", "--out-dir DIR (the report is a folder)")
    parser.add_argument("--extrapolate", type=float, help="parameter count N to extrapolate B_opt to"
                        " (only done with a determined law)")
    parser.add_argument("--grid", help="a pruned grid CSV (batchlaw simulate --out) for the Pareto picture")
    parser.add_argument("--include-bounds", action="store_true",
                        help="also fit laws on optima at the edge of the batch sweep (bounds; marked in the report)")
    parser.add_argument("--min-sizes", type=int, default=3, help="model sizes a law across sizes needs (default 3)")
    parser.add_argument("--max-exponent-width", type=float, default=1.0,
                        help="a law whose 80%% exponent interval is wider is 'not determined' (default 1.0)")
    parser.add_argument("--plans", nargs="+", default=[], metavar="PLAN.csv",
                        help="the study's wave plans (batchlaw design --out), in order: predicted against measured")
    parser.add_argument("--study", help="the study (name or TOML) the runs belong to: its basin and noise priors")
    parser.add_argument("--basin", default=None, help="basin prior (a preset such as steplaw-basin, or a TOML);"
                        " default: the study's, else steplaw-basin")
    parser.add_argument("--seed-sd", type=float, default=None,
                        help="prior between-seed sd of a final loss, nats (default: the study's, else the basin's noise_sd)")


def analyze(logdir, out, *, extrapolate=None, grid=None, include_bounds=False, min_sizes=3,
            max_exponent_width=1.0, skipped: list[str] | None = None, study: str | None = None,
            basin: str | None = None, seed_sd: float | None = None, plans=()) -> Path:
    """Run the whole analysis; returns the report path (callable without the CLI).

    Args:
        skipped: when a list is given, unreadable logs are skipped and their messages appended;
            otherwise the first unreadable log raises ``ValueError`` naming it.
    """
    from batchlaw.simulator.csvio import read_csv, write_csv
    from batchlaw.tools import plots
    from batchlaw.tools.analysis import analyse, priors
    from batchlaw.tools.logs import load_runs, summaries_table
    from batchlaw.tools.report import describe_pictures, probe_section, write_report
    from batchlaw.tools.waves import waves_section

    if min_sizes < 2:
        raise ValueError(f"--min-sizes = {min_sizes}: a law across sizes needs at least 2 (3 recommended)")
    if not max_exponent_width > 0:
        raise ValueError(f"--max-exponent-width = {max_exponent_width}: must be > 0")
    if extrapolate is not None and not (0 < extrapolate < float("inf")):
        raise ValueError(f"--extrapolate = {extrapolate}: a parameter count, a finite number > 0")
    out = Path(out)
    table = None
    if grid:  # every input is read and checked before the report folder is made: a refusal writes nothing
        table = read_csv(grid)
        if "pred_loss" not in table:
            raise ValueError(f"--grid {grid!r}: no pred_loss column; set prune.loss_law in the grid")
    b, noise, shape_sd, ridge_sd, fit_window = priors(study, basin, seed_sd)  # before anything is written
    errors: list[str] | None = [] if skipped is not None else None
    runs = load_runs(logdir, errors=errors)
    waves = []
    if plans:  # read and checked before the report folder is made
        from batchlaw.tools.waves import compare_waves

        waves = compare_waves(runs, plans, {"noise": noise, "basin": b, "shape_sd": shape_sd, "ridge_sd": ridge_sd,
                                            "fit_window": fit_window, "min_sizes": min_sizes,
                                            "max_exponent_width": max_exponent_width})
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "runs.csv", summaries_table(runs))
    result = analyse(runs, noise=noise, basin=b, shape_sd=shape_sd, ridge_sd=ridge_sd, fit_window=fit_window,
                     extrapolate_n=extrapolate,
                     include_bounds=include_bounds, min_sizes=min_sizes, max_exponent_width=max_exponent_width)
    pics = {"Loss against tokens per batch size": "loss_curves.png", "Noise scale over training": "noise_scale.png",
            "Final loss against batch": "final_loss_vs_batch.png", "Optimal batch against model size": "bopt_vs_n.png"}
    plots.plot_loss_curves(runs, out / "loss_curves.png")
    plots.plot_noise_scale(runs, out / "noise_scale.png")
    if result.optima:
        plots.plot_final_loss_vs_batch(result, runs, out / "final_loss_vs_batch.png")
        plots.plot_bopt_vs_n(result, runs, out / "bopt_vs_n.png")
    if waves:
        plots.plot_waves(waves, out / "waves.png")
        pics["Design: predicted against measured, wave by wave"] = "waves.png"
    if table is not None:
        plots.plot_pareto(table, out / "pareto.png")
        pics["Simulator: loss against GPU-hours"] = "pareto.png"
    if errors:
        skipped.extend(errors)
    return write_report(out, runs, result, {k: v for k, v in pics.items() if (out / v).exists()},
                        probe_section(logdir) + waves_section(waves), skipped=errors or (),
                        descriptions=describe_pictures(runs, result))


def run(args: argparse.Namespace) -> int:
    skipped: list[str] = []
    path = analyze(args.logdir, args.out_dir, extrapolate=args.extrapolate, grid=args.grid,
                   include_bounds=args.include_bounds, min_sizes=args.min_sizes,
                   max_exponent_width=args.max_exponent_width, skipped=skipped, study=args.study,
                   basin=args.basin, seed_sd=args.seed_sd, plans=args.plans)
    from batchlaw.tools.logs import print_skipped, skipped_status

    print_skipped(skipped)
    print(f"report: {path}")
    return skipped_status(skipped)
