"""Where this process sits in the job: rank, world size, local rank, master address and port.

Three launchers are understood, checked in this order:

1. ``torchrun`` (also under ``srun``, one torchrun per node): it exports ``RANK``, ``WORLD_SIZE``,
   ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` itself; they are used as they are.
2. ``mpirun`` / ``mpiexec`` (Open MPI, MPICH/Hydra, Intel MPI; markers such as
   ``OMPI_COMM_WORLD_SIZE`` or ``MPI_LOCALNRANKS``): rank and size from ``mpi4py``'s ``COMM_WORLD``,
   the local rank from a node-local split (``COMM_TYPE_SHARED``), and rank 0's host name and a free
   port on it broadcast to all (``pip install mpi4py mpich`` works without a system MPI). Only PMI
   variables (``PMI_SIZE``, ``PMIX_RANK``, which ``srun --mpi=...`` sets too) count after 3.
3. ``srun`` with one task per GPU (or per CPU rank): ``SLURM_PROCID``, ``SLURM_NTASKS`` and
   ``SLURM_LOCALID``; the master is ``MASTER_ADDR`` / ``MASTER_PORT`` when the sbatch script exported
   them (slurm/train.sbatch does), else the first host of ``SLURM_STEP_NODELIST`` and
   :func:`job_port` of the job id (every task computes the same one; no probe is possible there).

Anything else is a single process (rank 0 of 1 on 127.0.0.1). :func:`setup_env` writes the result
into ``os.environ`` so that ``torch.distributed.init_process_group("env://")`` finds it; it imports
no torch and is called by ``plugin/train.py`` before the process group exists.

Rendezvous ports have ONE implementation here, :func:`free_port` (used by the local launcher
``batchlaw train``, the mpirun path, the single-process default, ``slurm/train.sbatch`` through
``python -m batchlaw.plugin.launch --port-for JOB_ID`` and the kill test's driver). A port is derived
from an id (the SLURM job id, else this process id) into 10000-29999, below Linux's ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default), then probed: the first of it and
the next ones that can be bound now wins. Array tasks sharing a node have distinct job ids, so they
start from distinct ports, and no outgoing connection takes a port from that range; what remains of
the race (probed free, released, bound by torchrun or the TCP store) is another server binding the
same port in between. Only if every probed port is taken does the kernel pick one (``bind(0)``).
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["INIT_FILE", "Placement", "detect", "first_host", "free_port", "init_args", "job_port", "port_lock",
           "setup_env"]

_MPIRUN_MARKERS = ("OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")  # set by mpirun itself (Open MPI, Hydra)
_PMI_MARKERS = ("PMI_SIZE", "PMIX_RANK")  # also set by srun --mpi=...: SLURM's own variables win there
PORT_BASE, PORT_SPAN = 10000, 20000  # derived ports: 10000-29999, below the ephemeral range
_PROBES = 64  # ports tried from the derived one before the kernel picks


@dataclass(frozen=True, kw_only=True, slots=True)
class Placement:
    """This process's place in the job, as ``init_process_group(env://)`` needs it."""

    launcher: str
    """Who started the process: "torchrun", "srun", "mpirun" or "single"."""
    rank: int
    """Global rank, 0 .. world_size - 1."""
    world_size: int
    """Number of processes in the job."""
    local_rank: int
    """Rank among the processes on this node (the GPU index to use)."""
    master_addr: str
    """Host of rank 0, where the TCP store listens."""
    master_port: int
    """Port of the TCP store on ``master_addr``."""


def _int(env: Mapping[str, str], name: str) -> int:
    value = env.get(name, "")
    if not re.fullmatch(r"\d+", value.strip()):
        raise ValueError(f"environment {name} = {value!r}: expected a non-negative integer")
    return int(value)


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: "gpu[003-004,9],cpu1" -> "gpu003" (what
    ``scontrol show hostnames LIST | head -n 1`` prints)."""
    m = re.match(r"([^,\[]+)(?:\[([^],-]+))?", nodelist.strip())
    if not m:
        raise ValueError(f"SLURM node list {nodelist!r}: cannot read its first host")
    return m.group(1) + (m.group(2) or "")


def _from_mpi() -> Placement:
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("launched by mpirun, but mpi4py is missing: pip install mpi4py mpich "
                          f"(or mpi4py built against your MPI) ({exc})") from None
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    local_rank = node.Get_rank()
    node.Free()
    master = (socket.gethostname(), free_port()) if rank == 0 else None
    addr, port = comm.bcast(master, root=0)
    return Placement(launcher="mpirun", rank=rank, world_size=size, local_rank=local_rank,
                     master_addr=addr, master_port=port)


def detect(env: Mapping[str, str] | None = None) -> Placement:
    """Read this process's :class:`Placement` from the launcher's environment (see module doc)."""
    env = os.environ if env is None else env
    if "TORCHELASTIC_RUN_ID" in env or ("RANK" in env and "WORLD_SIZE" in env):
        return Placement(launcher="torchrun", rank=_int(env, "RANK"), world_size=_int(env, "WORLD_SIZE"),
                         local_rank=_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
                         master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
                         master_port=_int(env, "MASTER_PORT") if "MASTER_PORT" in env else 29500)
    if any(k in env for k in _MPIRUN_MARKERS):
        return _from_mpi()
    if "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "")
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else job_port(_int(env, "SLURM_JOB_ID"))
        return Placement(launcher="srun", rank=_int(env, "SLURM_PROCID"), world_size=_int(env, "SLURM_NTASKS"),
                         local_rank=_int(env, "SLURM_LOCALID"),
                         master_addr=env.get("MASTER_ADDR") or first_host(nodelist), master_port=port)
    if any(k in env for k in _PMI_MARKERS):
        return _from_mpi()
    return Placement(launcher="single", rank=0, world_size=1, local_rank=0,
                     master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
                     master_port=_int(env, "MASTER_PORT") if "MASTER_PORT" in env else free_port())


def job_port(job_id: int) -> int:
    """The port derived from ``job_id``: ``10000 + job_id % 20000``, the same on every node (the
    SLURM convention of deriving the rendezvous port from the job id, as Lightning's
    ``SLURMEnvironment`` does with ``15000 + the last four digits``)."""
    return PORT_BASE + job_id % PORT_SPAN


def _bindable(port: int) -> bool:
    """True if a TCP socket can bind ``port`` on every address of this host now."""
    with socket.socket() as s:
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def port_lock(lock_dir: str | Path, port: int) -> Path:
    """The lock file by which a batch shell holds ``port`` until its launcher has bound it."""
    return Path(lock_dir) / f"batchlaw-port-{port}.lock"


def _held(lock_dir: str | Path | None, port: int) -> bool:
    """True if another process holds ``port``'s lock file (chosen, not yet bound by its launcher)."""
    if lock_dir is None:
        return False
    try:
        fd = os.open(port_lock(lock_dir, port), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def free_port(seed: int | None = None, lock_dir: str | Path | None = None) -> int:
    """A port free on this host now: the first bindable of :func:`job_port` (``seed``, default this
    process id) and the next 63 ports, wrapping within 10000-29999, skipping ports whose lock file in
    ``lock_dir`` another job holds; else one the kernel picks."""
    start = job_port(os.getpid() if seed is None else seed) - PORT_BASE
    for k in range(_PROBES):
        port = PORT_BASE + (start + k) % PORT_SPAN
        if not _held(lock_dir, port) and _bindable(port):
            return port
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def setup_env(env: dict[str, str] | None = None) -> Placement:
    """Detect the placement and export it as torch's ``env://`` variables; returns it."""
    env = os.environ if env is None else env
    p = detect(env)
    if not 0 <= p.rank < p.world_size or not 0 <= p.local_rank < p.world_size:
        raise ValueError(f"{p.launcher}: rank {p.rank} / local rank {p.local_rank} outside world size {p.world_size}")
    env.update({"RANK": str(p.rank), "WORLD_SIZE": str(p.world_size), "LOCAL_RANK": str(p.local_rank),
                "MASTER_ADDR": p.master_addr, "MASTER_PORT": str(p.master_port)})
    return p


INIT_FILE = "BATCHLAW_INIT_FILE"
"""Set by ``batchlaw train``: a file for a ``FileStore`` rendezvous on this machine, so no port is needed."""


def init_args(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """Keyword arguments of ``init_process_group`` beyond the backend: a ``file://`` rendezvous when the
    local launcher named a file (``INIT_FILE``; no port, so no port race), else {} (``env://``)."""
    env = os.environ if env is None else env
    if not env.get(INIT_FILE):
        return {}
    return {"init_method": f"file://{env[INIT_FILE]}", "rank": _int(env, "RANK"), "world_size": _int(env, "WORLD_SIZE")}


def main(argv: list[str] | None = None) -> int:
    """``python -m batchlaw.plugin.launch --port-for JOB_ID``: print :func:`free_port` of JOB_ID (the
    sbatch script's rendezvous port on the head node)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m batchlaw.plugin.launch", description=main.__doc__)
    parser.add_argument("--port-for", dest="port", metavar="JOB_ID", required=True,
                        help="the SLURM job id (a non-negative integer)")
    parser.add_argument("--locks", default=None, metavar="DIR",
                        help="skip ports whose lock file DIR/batchlaw-port-PORT.lock another job holds")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"\d+", args.port):
        parser.error(f"--port-for = {args.port!r}: expected a non-negative integer job id")
    print(free_port(int(args.port), args.locks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
