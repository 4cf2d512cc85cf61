"""``batchlaw simulate``: predictions for a table of runs (``--runs``), a grid, or the model list.

For a grid it prints the plan line (runs and GPU-hours) that ``batchlaw submit --dry-run`` prints
for the same grid: both call ``grid.plan_rows``. ``--system`` replaces the grid's system everywhere
(pricing, the summary, the ``system`` column that submit reads).
"""

from __future__ import annotations

import argparse

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grid", nargs="?", help="grid name (configs/grids) or TOML to expand, price and prune")
    parser.add_argument("--runs", help="CSV with the columns of published_throughput.csv (or RunSpec columns), or a"
                        " shipped data set (data/throughput/published_throughput.csv)")
    parser.add_argument("--out", help="output CSV file (a grid also writes OUT.resolved.json next to it)")
    parser.add_argument("--system", help="system profile (name or TOML) for every row; replaces the grid's system")
    parser.add_argument("--framework", help="framework of rows that name none (a preset: batchlaw, megatron-core,"
                        " nemo-1, nemo-2, megatron-bridge, megatron-lm-2021, ...; default batchlaw, this project's"
                        " trainer); blank setting columns take its values")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a grid key, e.g. --set grid.nodes=[16]")
    parser.add_argument("--all-layouts", action="store_true",
                        help="plan every surviving layout of each point, not only the fastest (as submit --all-layouts)")
    parser.add_argument("--models", action="store_true", help="list the available models with exact parameter counts")


def _models() -> int:
    from batchlaw.simulator.params import num_params
    from batchlaw.simulator.spec import load_model, model_names

    print(f"{'model':10s} {'layers':>6s} {'hidden':>6s} {'heads':>5s} {'ffn':>6s} {'params':>14s}")
    for name in model_names():
        m = load_model(name)
        print(f"{name:10s} {m.layers:6d} {m.hidden:6d} {m.heads:5d} {m.ffn:6d} {num_params(m):14,d}")
    return 0


def _runs(args) -> int:
    from batchlaw.simulator.csvio import read_csv, write_csv
    from batchlaw.simulator.frameworks import DEFAULT
    from batchlaw.simulator.resources import data_file
    from batchlaw.simulator.table import predict_table, settings_lines

    table = read_csv(data_file(args.runs, field="--runs"))
    out = predict_table(table, args.system, framework=args.framework or DEFAULT)  # 'auto' precision: per system
    if "precision" in table:
        out["precision"] = table["precision"]  # the RunSpec value ('auto' stays 'auto'), as a grid writes it
    for line in settings_lines(out):
        print(line)
    if args.out:
        write_csv(args.out, out)
        print(f"wrote {args.out}: {len(out['feasible'])} rows, {int(np.sum(out['feasible']))} feasible")
    else:
        for i in range(len(out["feasible"])):
            print(f"{out.get('model', np.arange(len(out['feasible'])))[i]}: {out['pred_iter_time_s'][i]:.3f} s,"
                  f" {out['pred_tflops_per_gpu'][i]:.0f} TFLOP/s, MFU {out['pred_mfu'][i]:.2f},"
                  f" {out['pred_mem_gib'][i]:.1f} GiB {out['reason'][i]}")
    return 0


def _grid(args) -> int:
    from pathlib import Path

    from batchlaw.simulator import config as _config
    from batchlaw.simulator.grid import base_spec, load_grid, run_grid, summary
    from batchlaw.simulator.plan import write_plan
    from batchlaw.simulator.table import settings_lines

    import sys

    from batchlaw.simulator.grid import lr_warnings

    g = load_grid(args.grid, list(args.overrides) + ([f"system={args.system}"] if args.system else [])
                  + ([f"framework={args.framework}"] if args.framework else []))
    for line in lr_warnings(g):
        print(f"batchlaw: warning: {line}", file=sys.stderr)
    table = run_grid(g)
    print(summary(table, g, all_layouts=args.all_layouts))
    for line in settings_lines(table, unknowns=False):  # a grid's blank micro batch is the planner's choice
        print(line)
    if args.out:
        write_plan(args.out, table, base=base_spec(g) if g.base else None, meta={"grid": _config.to_dict(g)})
        print(f"wrote {args.out} ({len(table['survives'])} rows, survivors first) and its resolved config"
              f" {Path(args.out).with_suffix('.resolved.json')}")
    return 0


def _check_args(args: argparse.Namespace) -> None:
    """One mode per call and an --out that names a CSV file, checked before anything is priced or printed."""
    from pathlib import Path

    modes = [m for m, on in (("GRID", bool(args.grid)), ("--runs", bool(args.runs)), ("--models", args.models)) if on]
    if len(modes) > 1:
        raise ValueError(f"simulate: {' and '.join(modes)} given; give one of GRID, --runs CSV or --models")
    if args.out is None:
        return
    if args.models:
        raise ValueError(f"--out = {args.out!r}: --models prints its table; redirect it instead")
    out = Path(args.out)
    if out.suffix != ".csv" or out.is_dir():
        raise ValueError(f"--out = {args.out!r}: must name a .csv file (submit and analyze read plans by that suffix)")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    if args.models:
        return _models()
    if args.runs:
        return _runs(args)
    if args.grid:
        return _grid(args)
    raise ValueError("simulate: give a grid TOML, --runs CSV or --models")
