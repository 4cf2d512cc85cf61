"""Tier (a), pure (stdlib; holders are child processes): the run lease (``plugin/lease.py``, issue 21).

A second holder is refused in one line naming the first (host, pid, SLURM job); a holder killed
with SIGKILL leaves a lease the next one takes at once; a requeue of the same SLURM job waits for its
previous attempt; file systems whose locks are not shared between machines are refused, not trusted.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from batchlaw.plugin import lease as L

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from batchlaw.plugin.lease import RunLease
    held = RunLease.acquire([Path(p) for p in sys.argv[2:]])
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
    held.release()
""")


def _holder(tmp_path: Path, *paths: Path, seconds: float = 60, env: dict | None = None) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(seconds), *map(str, paths)], stdout=subprocess.PIPE,
                         text=True, env={**os.environ, **(env or {})})
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_trainer_is_refused_naming_the_holder_and_takes_over_after_kill9(tmp_path):
    paths = L.lease_paths(str(tmp_path / "ckpt"), str(tmp_path / "log.h5"))
    assert paths == [tmp_path / "ckpt" / "LEASE", tmp_path / "log.h5.lease"]
    first = _holder(tmp_path, *paths, env={"SLURM_JOB_ID": "77", "SLURM_ARRAY_JOB_ID": "70",
                                           "SLURM_ARRAY_TASK_ID": "3"})
    try:
        who = L.holder(paths[0])
        assert who["pid"] == first.pid and who["host"] == socket.gethostname() and who["job"] == "70_3"
        with pytest.raises(L.LeaseHeld) as err:
            L.RunLease.acquire(paths, env={})
        text = str(err.value)
        assert "\n" not in text and f"pid {first.pid}" in text and "SLURM job 70_3" in text, text
        with pytest.raises(L.LeaseHeld):  # either output alone is enough to clash
            L.RunLease.acquire([paths[1]], env={})
        with pytest.raises(L.LeaseHeld):
            L.wait_free(paths, env={})
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert L.holder(paths[0]) is None  # the kernel dropped the dead holder's lock
    taken = L.RunLease.acquire(paths, env={})
    assert L.holder(paths[1])["pid"] == os.getpid()
    taken.release()
    assert L.holder(paths[1]) is None


def test_a_requeue_of_the_same_job_waits_for_its_previous_attempt(tmp_path):
    path = tmp_path / "LEASE"
    job = {"SLURM_JOB_ID": "91"}
    previous = _holder(tmp_path, path, seconds=3, env=job)
    try:
        t0 = time.monotonic()
        taken = L.RunLease.acquire([path], env=job, wait_s=60)
        assert time.monotonic() - t0 > 0.5 and previous.wait(timeout=10) == 0
        taken.release()
    finally:
        previous.kill()
    other = _holder(tmp_path, path, seconds=60, env=job)
    try:  # another job never waits past the grace period
        t0 = time.monotonic()
        with pytest.raises(L.LeaseHeld, match="SLURM job 91"):
            L.RunLease.acquire([path], env={"SLURM_JOB_ID": "92"}, wait_s=60)
        assert time.monotonic() - t0 < 30
    finally:
        other.kill()
        other.wait()


MOUNTS = """\
36 25 0:32 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
50 36 0:45 / /scratch rw,relatime shared:2 - nfs4 srv:/scratch rw,vers=4.2,local_lock=none
51 36 0:46 / /home rw,relatime shared:3 - nfs srv:/home rw,vers=3,local_lock=flock
52 36 0:47 / /lustre rw shared:4 - lustre mds@o2ib:/fs rw,localflock
53 36 0:48 / /lustre2 rw shared:5 - lustre mds@o2ib:/fs rw,flock
"""


@pytest.mark.parametrize("where, refused", [("/scratch/run/ckpt", ""), ("/home/me/run", "local_lock=flock"),
                                            ("/lustre/run", "localflock"), ("/lustre2/run", ""), ("/tmp/x", "")])
def test_file_systems_whose_locks_stay_on_one_machine_are_refused(where, refused):
    why = L.local_only_locks(Path(where), MOUNTS)
    assert (refused in why) if refused else why == ""


def test_a_file_system_without_locks_is_refused_in_one_line(tmp_path, monkeypatch):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(L.fcntl, "flock", no_locks)
    with pytest.raises(L.LeaseUnsupported) as err:
        L.RunLease.acquire([tmp_path / "LEASE"], env={})
    assert "\n" not in str(err.value) and "refuses locks" in str(err.value) and "One writer per run" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_check_command_exits_1_in_one_line_while_held(tmp_path):
    run = tmp_path / "run.toml"
    run.write_text(f'[model]\nname = "tiny"\n[train]\nglobal_batch = 8\nsteps = 2\n'
                   f'[log]\npath = "{tmp_path / "log.h5"}"\n[checkpoint]\ndir = "{tmp_path / "ckpt"}"\n')
    cmd = [sys.executable, "-m", "batchlaw.plugin.lease", "check", str(run)]
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    first = _holder(tmp_path, tmp_path / "ckpt" / "LEASE")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True)
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and f"pid {first.pid}" in out.stderr, out.stderr
    finally:
        first.kill()
        first.wait()
