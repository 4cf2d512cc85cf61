"""``batchlaw train RUN [--nproc-per-node N] [--set k=v ...]``: a local run on one machine.

The launcher starts the N ranks itself (``python -m batchlaw.plugin.train RUN.toml ...`` with RANK,
WORLD_SIZE, LOCAL_RANK and a ``FileStore`` rendezvous file in a fresh temporary folder, so no TCP
port is chosen, and none can be taken by another process before rank 0 binds it) and owns them,
which torchrun does not (it puts its ranks in sessions of their own, so killing its group leaves
them training):

- the ranks stay in the launcher's process group: ``kill -KILL -PGID`` ends all of them at once;
- each rank asks the kernel for SIGTERM when the launcher dies (``PR_SET_PDEATHSIG``), so even a
  ``kill -9`` of the launcher alone makes them checkpoint and stop;
- SIGTERM and SIGUSR1 to the launcher are forwarded; SIGINT and SIGHUP are forwarded as SIGTERM
  (the ranks ignore SIGINT, so Ctrl-C in a terminal reaches them once, through the launcher). The
  ranks checkpoint at the next step boundary and exit; the launcher prints one line and exits with
  128 + the signal number, never a traceback. Run the same command again to resume;
- if a rank fails, the others get SIGTERM, then SIGKILL after a grace period.

This process never imports torch. On a cluster, use ``batchlaw submit`` / slurm/train.sbatch.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

_FORWARD = {signal.SIGTERM: signal.SIGTERM, signal.SIGUSR1: signal.SIGUSR1,
            signal.SIGINT: signal.SIGTERM, signal.SIGHUP: signal.SIGTERM}
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
GRACE_S = 30.0  # after a rank fails, how long the others get to stop before SIGKILL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from batchlaw.tools.cli import retire

    parser.add_argument("config", help="run config: a name in configs/runs (e.g. tiny-cpu) or a TOML path")
    parser.add_argument("--nproc-per-node", dest="nproc", type=int, default=1,
                        help="processes on this node (GPUs, or CPU ranks under gloo)")
    retire(parser, "--nproc", "--nproc-per-node N")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a run-config key, e.g. --set parallel.tp=2")
    parser.add_argument("--print-command", action="store_true", help="print the rank command and exit")


def command(args: argparse.Namespace) -> list[str]:
    """The command line of every rank for ``args`` (validated first, so errors come before any launch)."""
    return _plan(args)[0]


def _plan(args: argparse.Namespace) -> tuple[list[str], str]:
    """(the rank command, the absolute path of the run's HDF5 log or "" when ``log.path`` is empty)."""
    from batchlaw.simulator.runconfig import find_run_config, load_run_config
    from batchlaw.simulator.spec import validate_run
    from batchlaw.plugin.prelaunch import check_prelaunch, cuda_visible

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
    cmd = [sys.executable, "-m", "batchlaw.plugin.train", str(path)]
    for item in args.overrides + local_system(cfg, args.nproc):
        cmd += ["--set", item]
    return cmd, os.path.abspath(cfg.log.path) if cfg.log.path else ""  # the ranks run in this folder


def local_system(cfg, nproc: int) -> list[str]:
    """Overrides that make the config the ranks log say where this local run executes: one node of
    ``nproc`` ranks (a config's ``system`` section, 8 GPUs per node by default, would otherwise be
    recorded beside a layout of another world size)."""
    if (cfg.system.gpus_per_node, cfg.system.nodes) == (nproc, 1):
        return []
    return [f"system.gpus_per_node={nproc}", "system.nodes=1"]


def _rank_setup(launcher_pid: int, prctl) -> None:
    """Runs in each rank between fork and exec: SIGTERM when the launcher dies; SIGINT ignored; SIGTERM
    and SIGUSR1 blocked (kept pending across exec) until the rank has its handler (``signals.catch_early``,
    the first thing ``plugin/train.py`` does), so a stop sent while the rank starts up is not lost."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1})
    prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != launcher_pid:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _start(cmd: list[str], nproc: int, rendezvous: str) -> list[subprocess.Popen]:
    """Start the ranks; they meet through a ``FileStore`` on ``rendezvous`` (a file that must not exist
    yet), so no TCP port is chosen and none can be taken by another process in between (issue 21)."""
    from batchlaw.plugin.launch import INIT_FILE  # stdlib only, like plugin.logschema: no torch here

    me = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork (Linux only)
    procs = []
    for rank in range(nproc):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
               "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", INIT_FILE: rendezvous}
        env.pop("MASTER_PORT", None)
        env.setdefault("OMP_NUM_THREADS", "1")
        procs.append(subprocess.Popen(cmd, env=env, preexec_fn=lambda: _rank_setup(me, prctl)))
    pids = " ".join(str(p.pid) for p in procs)
    print(f"batchlaw train: {nproc} rank(s), pids {pids}, rendezvous {rendezvous}", file=sys.stderr, flush=True)
    return procs


def _signal_all(procs: list[subprocess.Popen], sig: int) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass


def _supervise(procs: list[subprocess.Popen], received: list[int]) -> int:
    """Forward signals, stop the rest when a rank fails; returns the launcher's exit status."""
    forwarded, failed_at, failed_rc = 0, None, 0
    while any(p.poll() is None for p in procs):
        while forwarded < len(received):
            sig = received[forwarded]
            forwarded += 1
            print(f"batchlaw train: {signal.Signals(sig).name}: asking the ranks to checkpoint and stop",
                  file=sys.stderr, flush=True)
            _signal_all(procs, _FORWARD[sig])
        bad = [p.returncode for p in procs if p.returncode not in (None, 0)]
        if bad and failed_at is None:
            failed_at, failed_rc = time.monotonic(), bad[0]
            _signal_all(procs, signal.SIGTERM)
        if failed_at is not None and time.monotonic() - failed_at > GRACE_S:
            _signal_all(procs, signal.SIGKILL)
        time.sleep(0.05)
    bad = [p.returncode for p in procs if p.returncode != 0]
    if received and bad and all(rc == -_FORWARD[received[0]] for rc in bad):  # ended by what we forwarded
        sig = signal.Signals(received[0])
        print(f"batchlaw train: stopped on {sig.name} before every rank could checkpoint; run the same command"
              " to resume from the last checkpoint (if any)", file=sys.stderr, flush=True)
        return 128 + int(sig)
    if failed_rc or bad:
        rc = failed_rc or bad[0]
        return 128 - rc if rc < 0 else rc
    if received:
        sig = signal.Signals(received[0])
        print(f"batchlaw train: stopped on {sig.name} after a checkpoint; run the same command to resume",
              file=sys.stderr, flush=True)
        return 128 + int(sig)
    return 0


def run(args: argparse.Namespace) -> int:
    cmd, log = _plan(args)
    if args.print_command:
        print(f"{args.nproc} x RANK=<0..{args.nproc - 1}> WORLD_SIZE={args.nproc} " + shlex.join(cmd))
        return 0
    print(f"batchlaw train: HDF5 log -> {log}" if log else "batchlaw train: no HDF5 log (log.path is empty)", flush=True)
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in _FORWARD}
    procs: list[subprocess.Popen] = []
    meeting = tempfile.mkdtemp(prefix="batchlaw-rendezvous-")
    try:
        procs = _start(cmd, args.nproc, os.path.join(meeting, "store"))
        rc = _supervise(procs, received)
        if log:
            print(f"batchlaw train: no HDF5 log was written ({log})" if not os.path.exists(log) else
                  f"batchlaw train: HDF5 log {'written' if rc == 0 else '(up to its last flush)'}: {log}", flush=True)
        return rc
    finally:
        _signal_all(procs, signal.SIGKILL)  # only reached with ranks alive on an error in the launcher
        for p in procs:
            p.wait()
        shutil.rmtree(meeting, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
