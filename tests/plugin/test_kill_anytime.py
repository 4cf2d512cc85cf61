"""Tier (b), CPU + gloo + real megatron-core (world size 1): kill -9 at 20 random moments.

One run of the tiny model (150 steps of 2 sequences, checkpoint every 3 steps, log flushed every 4 rows, so that without the
flush-before-checkpoint rule a checkpoint would run ahead of the log) is killed with SIGKILL at 20
random moments, spread over start-up, steps, log flushes and checkpoint writes, and resumed each time
(``tests/plugin/killdriver.py`` forks one trainer per attempt). After every kill the newest
checkpoint is never ahead of the logged steps, which are 1..k each once (a resume truncates to the
checkpoint, so no logged step is lost and none duplicated). At the end the log holds every step once
and its losses equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import REPO, TINY, read_log

pytestmark = pytest.mark.dist

STEPS = 150


def test_kill9_at_random_moments_loses_and_duplicates_nothing(megatron, tmp_path):
    args = [str(TINY), "--set", f"train.steps={STEPS}", "--set", "log.path=log.h5", "--set", "log.flush_every=4",
            "--set", "checkpoint.dir=ckpt", "--set", "checkpoint.every=3", "--set", "log.stdout_every=0",
            "--set", "train.global_batch=2", "--set", "parallel.micro_batch=1", "--set", "train.warmup_samples=4"]
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("killdriver.py")), str(tmp_path), "7", "20", str(STEPS),
                          "--", *args], capture_output=True, text=True, timeout=600, cwd=REPO,
                         env={"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    records = result["records"]
    assert len(records) == 20 and all(r["killed"] for r in records)
    for r in records:
        assert r["logged"] == list(range(1, len(r["logged"]) + 1)), r  # contiguous, each step once
        assert r["checkpoint"] <= len(r["logged"]), r  # the checkpoint never runs ahead of the log
    assert len({r["checkpoint"] for r in records}) > 3  # the kills hit many different moments of the run
    assert result["final_exit"] == 0
    ref, run = read_log(tmp_path / "reference" / "log.h5"), read_log(tmp_path / "killed" / "log.h5")
    assert list(run["step"]) == list(range(1, STEPS + 1)) and run["attrs"]["status"] == "completed"
    assert run["attrs"]["restart_count"] >= 1
    for col in ("loss", "grad_norm", "lr", "consumed_samples"):
        np.testing.assert_array_equal(run[col], ref[col], err_msg=col)
