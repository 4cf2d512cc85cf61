"""``batchlaw analyze LOGDIR``: summaries, optimal/critical batch, laws, pictures, a report."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", help="folder of HDF5 run logs (searched recursively)")
    parser.add_argument("--out-dir", default="report", help="report folder (runs.csv, pictures, report.md)")
    parser.add_argument("--out", dest="out_dir", help=argparse.SUPPRESS)  # the old spelling
    parser.add_argument("--extrapolate", type=float, help="parameter count N to extrapolate B_opt to")
    parser.add_argument("--grid", help="a pruned grid CSV (batchlaw simulate --out) for the Pareto picture")


def analyze(logdir, out, *, extrapolate=None, grid=None) -> Path:
    """Run the whole analysis; returns the report path (callable without the CLI)."""
    from batchlaw.simulator.csvio import read_csv, write_csv
    from batchlaw.tools import plots
    from batchlaw.tools.analysis import analyse
    from batchlaw.tools.logs import load_runs, summaries_table
    from batchlaw.tools.report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(logdir)
    write_csv(out / "runs.csv", summaries_table(runs))
    result = analyse(runs, extrapolate_n=extrapolate)
    pics = {"Loss against tokens per batch size": "loss_curves.png", "Noise scale over training": "noise_scale.png",
            "Final loss against batch": "final_loss_vs_batch.png", "Optimal batch against model size": "bopt_vs_n.png"}
    plots.plot_loss_curves(runs, out / "loss_curves.png")
    plots.plot_noise_scale(runs, out / "noise_scale.png")
    if result.optima:
        plots.plot_final_loss_vs_batch(result, out / "final_loss_vs_batch.png")
        plots.plot_bopt_vs_n(result, out / "bopt_vs_n.png")
    if grid:
        table = read_csv(grid)
        if "pred_loss" not in table:
            raise ValueError(f"--grid {grid!r}: no pred_loss column; set prune.loss_law in the grid")
        plots.plot_pareto(table, out / "pareto.png")
        pics["Simulator: loss against GPU-hours"] = "pareto.png"
    return write_report(out, runs, result, {k: v for k, v in pics.items() if (out / v).exists()})


def run(args: argparse.Namespace) -> int:
    path = analyze(args.logdir, args.out_dir, extrapolate=args.extrapolate, grid=args.grid)
    print(f"report: {path}")
    return 0
