"""One writer per run: an exclusive lease on the run's outputs (issue 21).

Before the log or a checkpoint is opened, rank 0 takes the run's lease: an exclusive ``flock`` on
``LEASE`` in ``checkpoint.dir`` and on ``LOG.lease`` beside ``log.path`` (both, so that two launches
sharing either output clash). Each lease file says who holds it (host, pid, SLURM job, start time).
A second trainer on the same run refuses in one line naming the holder and exits 1. The kernel drops
a ``flock`` when its holder dies, however it dies (``kill -9`` included), so the next trainer takes
the run over; nothing has to be cleaned up. A SLURM requeue of the same job (the same
``JOB_TASK`` id) waits up to ``LEASE_WAIT_S`` for its previous attempt's lease: on NFS a dead
client's lock is released only when its NFS lease expires (90 s by default).

Where locks are not shared between the machines that may run the job, the lease cannot keep them
apart, and it refuses rather than guess (docs/slurm.md, "One writer per run"): a file system whose
``flock`` fails (``ENOLCK``, ``ENOSYS``, ``EOPNOTSUPP``), NFS mounted with ``local_lock=flock|all`` or
``nolock``, and Lustre mounted with ``localflock``.

Stdlib only (no torch), so ``batchlaw submit`` and the sbatch script read leases too:
``python -m batchlaw.plugin.lease check RUN.toml`` exits 1 with the holder's line when the run is held.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["LEASE_WAIT_S", "LeaseHeld", "LeaseUnsupported", "RunLease", "acquire_on_rank0", "describe", "holder",
           "lease_paths",
           "local_only_locks", "wait_free"]

LEASE_WAIT_S = 180.0
"""How long a requeued SLURM job waits for the lease of its own previous attempt (NFS v4 lease: 90 s)."""
_GRACE_S = 2.0  # retries before refusing: another process may be testing the lease at that instant
_UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}


class LeaseHeld(RuntimeError):
    """Another live trainer holds the run."""


class LeaseUnsupported(ValueError):
    """The file system cannot keep two machines from holding the run at once."""


def lease_paths(checkpoint_dir: str, log_path: str) -> list[Path]:
    """The lease files of a run: ``checkpoint.dir/LEASE`` and ``log.path + '.lease'`` (those set)."""
    paths = [Path(checkpoint_dir) / "LEASE"] if checkpoint_dir else []
    paths += [Path(f"{log_path}.lease")] if log_path else []
    return paths


def _job(env: Mapping[str, str]) -> str:
    """This process's SLURM job as ``scontrol requeue`` names it (``ARRAY_TASK`` in an array), or ''."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID", "")


def describe(who: Mapping[str, Any]) -> str:
    """'host n1, pid 4242, SLURM job 77_3, since 2025-01-01T10:00:00Z' (what is known of a holder)."""
    if not who:
        return "a trainer that has not written its name yet"
    parts = [f"host {who.get('host', '?')}", f"pid {who.get('pid', '?')}"]
    parts += [f"SLURM job {who['job']}"] if who.get("job") else []
    parts += [f"since {who['started']}"] if who.get("started") else []
    return ", ".join(parts)


def _read(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _mount_of(path: Path, mountinfo: str | None = None) -> tuple[str, str]:
    """(file system type, mount and super options) of the mount holding ``path`` ('' if unknown), from
    ``/proc/self/mountinfo`` (or the text given)."""
    target = os.path.realpath(path)  # a path still to be created lies in the mount of its existing part
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return "", ""
    best, found = -1, ("", "")
    for line in mountinfo.splitlines():  # id parent major:minor root mountpoint options ... - fstype source superoptions
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or not tail:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, found = len(point), (tail[0], fields[5] + "," + (tail[2] if len(tail) > 2 else ""))
    return found


def local_only_locks(path: Path, mountinfo: str | None = None) -> str:
    """Why locks on ``path`` would not be seen by other machines ('' when they are, as far as known)."""
    fstype, options = _mount_of(path, mountinfo)
    opts = set(options.split(","))
    if fstype.startswith("nfs") and (opts & {"local_lock=flock", "local_lock=all", "nolock"}):
        return f"it is on NFS mounted with {sorted(opts & {'local_lock=flock', 'local_lock=all', 'nolock'})[0]}"
    if fstype == "lustre" and "localflock" in opts:
        return "it is on Lustre mounted with localflock"
    return ""


def _unsupported(path: Path, why: str) -> LeaseUnsupported:
    return LeaseUnsupported(f"run lease {str(path)!r}: {why}, so locks taken here are not seen by other machines"
                            " and two trainers could write one run; put checkpoint.dir and log.path on a file"
                            " system with shared locks (docs/slurm.md, 'One writer per run')")


def _try_lock(fd: int, path: Path, mode: int) -> bool:
    """True if ``flock(mode | LOCK_NB)`` succeeded, False if another holder has the file."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        if exc.errno in _UNSUPPORTED:
            raise _unsupported(path, f"the file system refuses locks ({os.strerror(exc.errno)})") from None
        raise
    return True


def holder(path: Path) -> dict[str, Any] | None:
    """Who holds the lease file ``path`` now (``{}`` when held by a holder that wrote no name yet),
    or None when nobody does. Takes a shared lock for the instant of the test only."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if _try_lock(fd, path, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read(fd)
    finally:
        os.close(fd)


def _wait(path: Path, fd: int, mode: int, me: Mapping[str, Any], wait_s: float,
          sleep: Callable[[float], None]) -> None:
    """Lock ``fd`` with ``mode``, retrying for ``_GRACE_S`` (another process may be testing the lease
    at this instant) and, when the holder is this SLURM job's previous attempt, for ``wait_s``."""
    start = time.monotonic()
    while not _try_lock(fd, path, mode):
        who, waited = _read(fd), time.monotonic() - start
        if waited >= _GRACE_S and not (me.get("job") and who.get("job") == me["job"] and waited < wait_s):
            raise LeaseHeld(f"run lease {str(path)!r} is held by {describe(who)}: another trainer is writing"
                            " this run; wait for it to end or stop it (a lease whose holder died is taken"
                            " over at once)")
        sleep(0.25)


def _me(env: Mapping[str, str]) -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "job": _job(env),
            "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def wait_free(paths: list[Path], *, env: Mapping[str, str] | None = None, wait_s: float = LEASE_WAIT_S,
              sleep: Callable[[float], None] = time.sleep) -> None:
    """Return when nobody holds the run (``LeaseHeld`` otherwise), waiting as ``RunLease.acquire`` does;
    takes nothing (a shared lock for the instant of each test)."""
    me = _me(os.environ if env is None else env)
    for path in sorted(set(paths)):
        why = local_only_locks(path)
        if why:
            raise _unsupported(path, why)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            _wait(path, fd, fcntl.LOCK_SH, me, wait_s, sleep)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class RunLease:
    """The exclusive lease of one run, held until :meth:`release` or the death of this process."""

    def __init__(self, fds: dict[Path, int]):
        self._fds = fds

    @classmethod
    def acquire(cls, paths: list[Path], *, env: Mapping[str, str] | None = None, wait_s: float = LEASE_WAIT_S,
                sleep: Callable[[float], None] = time.sleep) -> "RunLease":
        """Take every lease file of ``paths`` or none: ``LeaseHeld`` (one line naming the holder) when
        another trainer has one, ``LeaseUnsupported`` where locks would not be shared."""
        me = _me(os.environ if env is None else env)
        lease = cls({})
        try:
            for path in sorted(set(paths)):
                lease._take(path, me, wait_s, sleep)
        except BaseException:
            lease.release()
            raise
        return lease

    def _take(self, path: Path, me: dict[str, Any], wait_s: float, sleep: Callable[[float], None]) -> None:
        why = local_only_locks(path)
        if why:
            raise _unsupported(path, why)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._fds[path] = fd
        _wait(path, fd, fcntl.LOCK_EX, me, wait_s, sleep)
        data = json.dumps(me).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    @property
    def paths(self) -> list[Path]:
        """The lease files held."""
        return list(self._fds)

    def release(self) -> None:
        """Give the run up (the files stay; their content names the last holder)."""
        for fd in self._fds.values():
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError:
                pass  # never locked (the take failed), or the file system refused: closing drops it anyway
            finally:
                os.close(fd)
        self._fds = {}


def acquire_on_rank0(paths: list[Path], rank: int) -> tuple[RunLease | None, str]:
    """(the lease, '') on rank 0 when it took the run, (None, the one-line reason, also printed as the
    trainer's error line) when it could not; (None, '') on every other rank (the trainer then agrees
    over all ranks)."""
    if rank != 0:
        return None, ""
    try:
        return RunLease.acquire(paths), ""
    except (LeaseHeld, ValueError) as exc:
        print(f"batchlaw train: error: {exc}", file=sys.stderr)
        return None, str(exc)


def main(argv: list[str] | None = None) -> int:
    """``python -m batchlaw.plugin.lease check RUN.toml``: exit 0 when nobody holds the run (waiting for
    this SLURM job's own previous attempt, as a trainer would), else print one line and exit 1."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "check":
        print("usage: python -m batchlaw.plugin.lease check RUN.toml", file=sys.stderr)
        return 2
    from batchlaw.simulator.runconfig import load_run_config

    try:
        cfg = load_run_config(argv[1])
        wait_free(lease_paths(cfg.checkpoint.dir, cfg.log.path))
    except (LeaseHeld, ValueError) as exc:
        print(f"batchlaw: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
