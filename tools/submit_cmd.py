"""``batchlaw submit GRID|PRUNED.csv``: launch exactly the plan ``batchlaw simulate`` priced.

One run per surviving point (``grid.POINT_COLUMNS``: model, batch, ramp, lr, tokens, precision, seed) at its
fastest layout (``--all-layouts``: every
surviving layout), each a RunSpec in its own run directory, one sbatch job array per node count
(see tools/submit.py). ``--dry-run`` writes nothing: it prints the plan line, the table of runs and
the rendered script(s).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from batchlaw.tools.cli import retire

    parser.add_argument("source", help="grid name or TOML (priced here), or a grid CSV written by simulate --out")
    parser.add_argument("--base-config", default=None,
                        help="run config (name or TOML) every run starts from; default: the grid's base")
    parser.add_argument("--system", help="system profile to plan on (grid sources; replaces the grid's system)")
    parser.add_argument("--runs-dir", default="runs", help="folder that receives one directory per run")
    parser.add_argument("--time", required=True, help="time limit per job, e.g. 04:00:00")
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="ranks (GPUs) per node; default: the plan's gpus_per_node (8 if the table has none)")
    retire(parser, "--nproc", "--nproc-per-node N")
    parser.add_argument("--cpus-per-task", type=int, default=8, help="#SBATCH --cpus-per-task (one task per node)")
    parser.add_argument("--gpus-per-node", type=int, default=None,
                        help="#SBATCH --gpus-per-node: default the ranks per node when the plan names a GPU system,"
                             " else none; 0 omits the line (clusters that hand out whole nodes)")
    parser.add_argument("--partition", default="", help="#SBATCH --partition ('' = the cluster default)")
    parser.add_argument("--account", default="", help="#SBATCH --account ('' = the cluster default)")
    parser.add_argument("--env", default="", help="cluster settings file sourced by the job (slurm/env/*.sh)")
    parser.add_argument("--python", default="", help="interpreter on the nodes (default: python3 on PATH)")
    parser.add_argument("--signal-lead", type=int, default=120, help="seconds before the limit to checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a run-config key that the plan does not set (e.g. train.warmup_samples=1000)")
    parser.add_argument("--all-layouts", action="store_true",
                        help="launch every surviving layout of each point, not only the fastest")
    parser.add_argument("--dry-run", action="store_true",
                        help="write nothing; print the plan, the table of runs and the rendered script(s)")
    parser.add_argument("--show-configs", action="store_true",
                        help="also print each run's run.toml (its RunSpec) as it would be written")
    parser.add_argument("--force", action="store_true",
                        help="resubmit runs that have started even where their run.toml differs from the plan"
                             " (it is rewritten); completed, running and queued runs are never resubmitted")


def load_plan(source: str, system: str | None = None, base_config: str | None = None):
    """(table, base) of a grid (name/TOML, priced now) or a plan CSV from simulate --out / design.

    ``base`` is what every run starts from: ``--base-config`` when given (a name or TOML, read at launch),
    else the resolved base RunSpec (a dict) that travels with the plan: the grid's base, or the one in the
    plan's sidecar ``PLAN.resolved.json`` (``plan.write_plan``). A CSV without its sidecar needs
    ``--base-config``, or the runs would silently start from the defaults (synthetic data, no warmup, no
    checkpoints) instead of what was planned."""
    from batchlaw.simulator import config as _config
    from batchlaw.simulator.plan import read_plan, sidecar

    src = Path(source)
    if src.suffix != ".csv":
        from batchlaw.simulator.grid import base_spec, load_grid, run_grid

        g = load_grid(source, [f"system={system}"] if system else [])
        return run_grid(g), base_config or (_config.to_dict(base_spec(g)) if g.base else None)
    if system:
        raise ValueError("--system: a CSV was priced when it was simulated; re-run simulate --system instead")
    table, doc = read_plan(src)
    if not doc and base_config is None:
        raise ValueError(f"{source}: no {sidecar(src).name} beside it (simulate --out and design write it with the"
                         " resolved base run config); copy it along, or name the base with --base-config NAME|TOML")
    return table, base_config or doc.get("base_config")


def _gpu_request(table, nproc: int, requested: int | None) -> int:
    """``#SBATCH --gpus-per-node``: by default one GPU per rank when the plan names a GPU system (its ``system``
    column), else no line (CPU plans, and hand-written plans that say nothing). ``check_settings`` refuses
    any other count than the ranks per node."""
    if requested is not None:
        return requested
    from batchlaw.simulator.system import gpu_profile_name

    systems = {gpu_profile_name(str(x)) for x in [*table.get("system", []), *table.get("gpu", [])]} - {"", "nan"}
    return nproc if systems and not any(x.startswith("cpu") for x in systems) else 0


def run(args: argparse.Namespace) -> int:
    from batchlaw.simulator.grid import plan_line, plan_rows
    from batchlaw.tools.submit import SubmitSettings, missing_data, runs_table, submit

    table, base = load_plan(args.source, args.system, args.base_config)
    nproc = args.nproc_per_node
    if nproc is None:
        nproc = int(float(table["gpus_per_node"][0])) if "gpus_per_node" in table else 8
    gpus = _gpu_request(table, nproc, args.gpus_per_node)
    s = SubmitSettings(runs_dir=Path(args.runs_dir), base_config=base,
                       time=args.time, cpus_per_task=args.cpus_per_task, nproc_per_node=nproc,
                       gpus_per_node=gpus, partition=args.partition, account=args.account,
                       env_file=args.env, python=args.python, signal_lead_s=args.signal_lead,
                       overrides=tuple(args.overrides), all_layouts=args.all_layouts, force=args.force)
    results = submit(table, s, dry_run=args.dry_run)
    print(plan_line(table, plan_rows(table, all_layouts=args.all_layouts), all_layouts=args.all_layouts))
    planned = [r for e in results for r in e["planned"]]
    for note in results[0]["notes"] if results else []:
        print(f"note: {note}")
    if args.dry_run:
        print(runs_table(planned, table))
        for line in missing_data([r for r in planned if not r["state"]]):
            print(f"note: {line} (the data need only exist when the jobs start; submit without --dry-run"
                  " refuses until then)")
    if args.show_configs:
        from batchlaw.simulator.config import to_toml

        for r in planned:
            print(f"--- {r['dir'] / 'run.toml'}{' (not written)' if args.dry_run else ''} ---\n{to_toml(r['config'])}", end="")
    for r in results:
        if args.dry_run:
            print(f"--- train-{r['nodes']}n.sbatch (rendered; not written) ---\n{r['script']}---")
        what = "would submit" if args.dry_run else f"submitted job {r['job_id']}"
        states = ", ".join(f"{n} {k}" for k, n in r["states"].items() if n) or "0"
        if r["command"]:
            print(f"{what}: {len(r['runs'])} runs on {r['nodes']} node(s) as an array; skipped {states}"
                  f"\n  {r['command']}")
        else:
            print(f"nothing to submit on {r['nodes']} node(s): all {len(r['skipped'])} runs are completed, running"
                  f" or queued ({states})")
    return 0
