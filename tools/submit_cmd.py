"""``batchlaw submit PRUNED.csv|GRID.toml``: run directories and sbatch job arrays (see tools/submit.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="pruned grid CSV (batchlaw simulate --out) or a grid TOML")
    parser.add_argument("--base-config", required=True, help="run TOML every grid point starts from")
    parser.add_argument("--runs-dir", default="runs", help="where run directories go")
    parser.add_argument("--time", required=True, help="time limit per job, e.g. 04:00:00")
    parser.add_argument("--nproc-per-node", type=int, default=8, help="ranks (GPUs) per node")
    parser.add_argument("--cpus-per-task", type=int, default=8)
    parser.add_argument("--gpus-per-node", type=int, default=0, help="#SBATCH --gpus-per-node (0 = omit)")
    parser.add_argument("--partition", default="")
    parser.add_argument("--account", default="")
    parser.add_argument("--env", default="", help="cluster settings file sourced by the job (slurm/env/*.sh)")
    parser.add_argument("--python", default="", help="interpreter on the nodes (default: python3 on PATH)")
    parser.add_argument("--signal-lead", type=int, default=120, help="seconds before the limit to checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a run-config key for every run")
    parser.add_argument("--dry-run", action="store_true", help="render and print; submit nothing")


def run(args: argparse.Namespace) -> int:
    from batchlaw.simulator.csvio import read_csv
    from batchlaw.tools.submit import SubmitSettings, submit

    src = Path(args.source)
    if src.suffix == ".toml":
        from batchlaw.simulator.grid import load_grid, run_grid

        table = run_grid(load_grid(src))
    else:
        table = read_csv(src)
    s = SubmitSettings(runs_dir=Path(args.runs_dir), base_config=Path(args.base_config), time=args.time,
                       cpus_per_task=args.cpus_per_task, nproc_per_node=args.nproc_per_node,
                       gpus_per_node=args.gpus_per_node, partition=args.partition, account=args.account,
                       env_file=args.env, python=args.python, signal_lead_s=args.signal_lead,
                       overrides=tuple(args.overrides))
    for r in submit(table, s, dry_run=args.dry_run):
        what = "would submit" if args.dry_run else f"submitted job {r['job_id']}"
        if r["command"]:
            print(f"{what}: {len(r['runs'])} runs on {r['nodes']} node(s) as an array; skipped {len(r['skipped'])}"
                  f" completed\n  {r['command']}")
        else:
            print(f"nothing to submit on {r['nodes']} node(s): all {len(r['skipped'])} runs completed")
    return 0
