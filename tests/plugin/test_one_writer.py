"""Tier (b), CPU + gloo + real megatron-core: one writer per run on one machine (issue 21).

Two trainers on one run used to both train: the second "resumed" from the first's checkpoint while
the first went on, and both wrote checkpoints into one folder and rows into one log. Now trainer A
(``batchlaw train``, 2 ranks) takes the run's lease; trainer B, started on the same run while A
holds it (A is paused with SIGSTOP after step 25, so that B's start-up cannot outlast A's run), exits
1 with one error line naming A's rank 0 and touches nothing; ``kill -9`` of A's whole
process group leaves the lease to the kernel, and trainer C takes the run over at once and resumes
from A's last checkpoint. The log then holds every step once, with the losses of an uninterrupted
run bit for bit (CPU, fixed seed). The same on the local SLURM cluster: tests/slurm/test_cluster.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from .conftest import TINY, read_log

pytestmark = pytest.mark.dist

STEPS = 60
ARGS = ["--nproc-per-node", "2", "--set", f"train.steps={STEPS}", "--set", "log.path=log.h5", "--set",
        "checkpoint.dir=ckpt", "--set", "checkpoint.every=10", "--set", "log.flush_every=1",
        "--set", "log.stdout_every=1"]


def _train(workdir, *, popen=False):
    cmd = [sys.executable, "-m", "batchlaw.tools", "train", str(TINY), *ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if popen:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


def test_a_second_trainer_is_refused_and_a_killed_holder_is_taken_over(megatron, tmp_path):
    ref, run = tmp_path / "reference", tmp_path / "run"
    ref.mkdir(), run.mkdir()
    assert _train(ref).returncode == 0
    a = _train(run, popen=True)
    seen = []
    try:
        for line in a.stdout:  # until A has logged step 25 (and checkpointed step 20)
            seen.append(line)
            if re.match(r"step\s+25 ", line):
                break
        pids = re.search(r"pids (\d+) (\d+)", "".join(seen)).group(1)  # rank 0 holds the lease
        os.killpg(a.pid, signal.SIGSTOP)  # A holds the run for as long as B needs to start (seconds here)
        b = _train(run)
        errors = [line for line in (b.stdout + b.stderr).splitlines() if "error" in line.lower()]
        assert b.returncode == 1 and len(errors) == 1, b.stdout[-2000:] + b.stderr[-2000:]
        assert "is held by" in errors[0] and f"pid {pids}" in errors[0] and "Traceback" not in b.stderr
        assert a.poll() is None  # A is alive, holding the run
    finally:
        os.killpg(a.pid, signal.SIGKILL)  # the launcher and both ranks
        a.wait()
    time.sleep(0.5)
    c = _train(run)
    assert c.returncode == 0, c.stdout[-2000:] + c.stderr[-3000:]
    assert "resumed from" in c.stdout + c.stderr
    log, want = read_log(run / "log.h5"), read_log(ref / "log.h5")
    assert list(log["step"]) == list(range(1, STEPS + 1))  # no step lost, none doubled
    assert log["attrs"]["status"] == "completed" and log["attrs"]["restart_count"] == 1
    for col in ("loss", "grad_norm", "consumed_samples"):
        np.testing.assert_array_equal(log[col], want[col], err_msg=col)
