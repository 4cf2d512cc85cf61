"""Tier (b), CPU + gloo + real megatron-core: checkpoint/resume and signals.

A run interrupted after step 3 (Megatron-style exit interval) and resumed reproduces the
uninterrupted run's losses exactly; its HDF5 log holds each step once with restart_count = 1.
SIGTERM makes the trainer checkpoint at the next step boundary, close the log and exit 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from .conftest import read_log, torchrun

pytestmark = pytest.mark.dist

COMMON = ("train.steps=6", "log.path=log.h5", "checkpoint.dir=ckpt")


def test_resume_reproduces_uninterrupted_run(megatron, tmp_path):
    torchrun(2, tmp_path / "full", *COMMON, "parallel.distributed_optimizer=true", "train.ramp=4,4,8")
    torchrun(2, tmp_path / "cut", *COMMON, "parallel.distributed_optimizer=true", "train.ramp=4,4,8",
             "train.exit_after_steps=3")
    first = read_log(tmp_path / "cut" / "log.h5")
    assert first["attrs"]["status"] == "interrupted" and list(first["step"]) == [1, 2, 3]
    torchrun(2, tmp_path / "cut", *COMMON, "parallel.distributed_optimizer=true", "train.ramp=4,4,8")
    full, resumed = read_log(tmp_path / "full" / "log.h5"), read_log(tmp_path / "cut" / "log.h5")
    assert list(resumed["step"]) == [1, 2, 3, 4, 5, 6]
    assert resumed["attrs"]["restart_count"] == 1 and resumed["attrs"]["status"] == "completed"
    np.testing.assert_array_equal(resumed["loss"], full["loss"])  # exact on CPU
    np.testing.assert_allclose(resumed["gns_small_sq"], full["gns_small_sq"], rtol=1e-12)
    # the ramp 4 -> 8 over 8 samples resumes from the restored counter
    assert list(full["global_batch_size"]) == [4, 4, 8, 8, 8, 8]
    np.testing.assert_array_equal(resumed["global_batch_size"], full["global_batch_size"])


def test_layout_mismatch_on_resume_is_refused(megatron, tmp_path):
    torchrun(1, tmp_path, "train.steps=2", "checkpoint.dir=ckpt", "log.path=")
    out = torchrun(2, tmp_path, "train.steps=4", "checkpoint.dir=ckpt", "log.path=", check=False)
    assert out.returncode != 0 and "resume with the same tp, pp and world size" in out.stdout + out.stderr


def _workers(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(c) for c in children]


@pytest.mark.parametrize("how", ["sigterm", "sigusr1", "stop_file"])
def test_signal_checkpoints_and_exits_zero(megatron, tmp_path, how):
    proc = torchrun(2, tmp_path, "train.steps=100000", "log.path=log.h5", "checkpoint.dir=ckpt",
                    f"checkpoint.stop_file={tmp_path / 'STOP'}", popen=True)
    lines = []
    deadline = time.time() + 180
    for line in proc.stdout:
        lines.append(line)
        if re.match(r"step\s+2 ", line):
            if how == "stop_file":
                (tmp_path / "STOP").touch()
            else:  # signals go to the workers, as srun/SLURM deliver them (torchrun would die)
                for pid in _workers(proc.pid):
                    os.kill(pid, signal.SIGTERM if how == "sigterm" else signal.SIGUSR1)
            break
        assert time.time() < deadline, "".join(lines[-20:])
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(lines) + rest
    log = read_log(tmp_path / "log.h5")
    assert log["attrs"]["status"] == "interrupted"
    last = int(log["step"][-1])
    assert 2 <= last < 100 and list(log["step"]) == list(range(1, last + 1))
    assert (tmp_path / "ckpt" / f"step_{last:08d}" / "meta.json").is_file()


def test_bad_config_is_one_line_error(megatron, tmp_path):
    out = torchrun(1, tmp_path, "parallel.tpp=2", check=False)
    assert out.returncode != 0
    assert "parallel.tpp: unknown key; valid keys are" in out.stderr
