"""``batchlaw train RUN [--nproc-per-node N] [--set k=v ...]``: a local run through torchrun.

Builds ``torchrun --standalone --nproc_per_node=N -m batchlaw.plugin.train RUN.toml ...`` and runs
it (this process never imports torch). On a cluster, use ``batchlaw submit`` / slurm/train.sbatch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="run config: a name in configs/runs (e.g. tiny-cpu) or a TOML path")
    parser.add_argument("--nproc-per-node", dest="nproc", type=int, default=1,
                        help="processes on this node (GPUs, or CPU ranks under gloo)")
    parser.add_argument("--nproc", dest="nproc", type=int, help=argparse.SUPPRESS)  # the old spelling
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a run-config key, e.g. --set parallel.tp=2")
    parser.add_argument("--print-command", action="store_true", help="print the torchrun command and exit")


def command(args: argparse.Namespace) -> list[str]:
    """The torchrun command line for ``args`` (validated first, so errors come before any launch)."""
    from batchlaw.simulator.runconfig import find_run_config, load_run_config
    from batchlaw.simulator.spec import validate_run
    from batchlaw.simulator.checks import check_prelaunch, cuda_visible

    if args.nproc < 1:
        raise ValueError(f"--nproc-per-node = {args.nproc}: must be >= 1")
    path = find_run_config(args.config)
    if not path.is_file():
        raise ValueError(f"config {args.config!r}: no such file")
    cfg = load_run_config(path, args.overrides)
    check_prelaunch(cfg, on_cpu=not cuda_visible())  # paths, data, device: what the ranks would refuse
    # the same rule table the ranks check (ramp included), before anything starts
    validate_run(cfg.model, cfg.parallel, world_size=args.nproc, global_batch=cfg.train.global_batch,
                 ramp=cfg.train.ramp)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "batchlaw.plugin.train", str(path)]
    for item in args.overrides:
        cmd += ["--set", item]
    return cmd


def run(args: argparse.Namespace) -> int:
    cmd = command(args)
    if args.print_command:
        import shlex

        print(shlex.join(cmd))
        return 0
    env = {**os.environ}
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(cmd, env=env).returncode
