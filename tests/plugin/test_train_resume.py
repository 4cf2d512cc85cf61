"""Tier (b), CPU + gloo + real megatron-core: checkpoint/resume and signals.

One uninterrupted run (world 2, DP = 2, distributed optimizer, batch ramp 4 -> 8) is the reference.
Runs stopped after step k in three ways (Megatron-style exit interval; SIGTERM to the workers, as
SLURM delivers it; SIGKILL of the whole launch with checkpoint.every = 2, as a node failure) and then
resumed reproduce the reference's losses exactly, and their HDF5 log holds each step once with
restart_count = 1. SIGUSR1 and the stop file checkpoint at the next step boundary and exit 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import read_log, torchrun

pytestmark = pytest.mark.dist

STEPS = 40
COMMON = (f"train.steps={STEPS}", "log.path=log.h5", "log.flush_every=1", "checkpoint.dir=ckpt",
          "parallel.distributed_optimizer=true", "train.ramp=4,4,8")


@pytest.fixture(scope="module")
def reference(megatron, tmp_path_factory):
    d = tmp_path_factory.mktemp("full")
    torchrun(2, d, *COMMON)
    return read_log(d / "log.h5")


def test_logged_ramp_reads_back_to_the_launched_spec(reference):
    """Issue 20: the ramp attribute is the RampSpec's canonical text (it was prose that nothing could parse);
    it reads back equal to the ramp the run was launched with, and the logged batches follow it."""
    from batchlaw.simulator.rampspec import RampSpec

    launched = RampSpec.from_config("4,4,8")
    assert reference["attrs"]["ramp"] == launched.text
    assert RampSpec.from_config(reference["attrs"]["ramp"]) == launched
    ramp = launched.bind(global_batch=8, granularity=4)  # tiny-cpu: micro_batch 2 x dp 2
    consumed = np.concatenate([[0], reference["consumed_samples"][:-1]])
    assert list(reference["global_batch_size"]) == [ramp(int(c)) for c in consumed]


def _assert_resumed_equals_reference(workdir: Path, reference: dict) -> None:
    resumed = read_log(workdir / "log.h5")
    assert list(resumed["step"]) == list(range(1, STEPS + 1))  # each step exactly once
    assert resumed["attrs"]["restart_count"] == 1 and resumed["attrs"]["status"] == "completed"
    for col in ("loss", "grad_norm", "lr", "global_batch_size", "consumed_samples"):
        np.testing.assert_array_equal(resumed[col], reference[col], err_msg=col)  # exact on CPU
    # the DP mean of the local norms is summed in a gloo all-reduce whose order may vary: last ulp
    np.testing.assert_allclose(resumed["gns_small_sq"], reference["gns_small_sq"], rtol=1e-14)


def _workers(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(c) for c in children]


def _interrupt(workdir: Path, how: str, at_step: int, *overrides: str) -> subprocess.Popen:
    """Launch the reference config and interrupt it once it has printed step ``at_step``."""
    proc = torchrun(2, workdir, *COMMON, f"checkpoint.stop_file={workdir / 'STOP'}", *overrides, popen=True)
    lines, deadline = [], time.time() + 180
    for line in proc.stdout:
        lines.append(line)
        if re.match(rf"step\s+{at_step} ", line):
            if how == "stop_file":
                (workdir / "STOP").touch()
            else:  # to the workers, as srun/SLURM deliver signals (torchrun would die on SIGTERM)
                sig = {"sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM, "sigusr1": signal.SIGUSR1}[how]
                for pid in _workers(proc.pid):
                    os.kill(pid, sig)
            break
        assert time.time() < deadline, "".join(lines[-20:])
    rest, _ = proc.communicate(timeout=120)
    proc.output = "".join(lines) + rest
    return proc


def test_resume_after_exit_interval(reference, tmp_path):
    marker = f"log.done_marker={tmp_path / 'COMPLETED'}"
    torchrun(2, tmp_path, *COMMON, "train.exit_after_steps=3", marker)
    first = read_log(tmp_path / "log.h5")
    assert first["attrs"]["status"] == "interrupted" and list(first["step"]) == [1, 2, 3]
    # the job script requeues on INTERRUPTED (written beside the done marker) and fails a bare exit 0
    assert (tmp_path / "INTERRUPTED").read_text() == "interrupted\n" and not (tmp_path / "COMPLETED").exists()
    (tmp_path / "INTERRUPTED").unlink()
    torchrun(2, tmp_path, *COMMON, marker)
    _assert_resumed_equals_reference(tmp_path, reference)
    assert (tmp_path / "COMPLETED").read_text() == "completed\n" and not (tmp_path / "INTERRUPTED").exists()
    # the staircase 4 -> 8 over 8 samples resumes from the restored counter
    assert list(reference["global_batch_size"][:4]) == [4, 4, 8, 8]


def test_resume_after_sigterm(reference, tmp_path):
    proc = _interrupt(tmp_path, "sigterm", 2)
    assert proc.returncode == 0, proc.output
    log = read_log(tmp_path / "log.h5")
    last = int(log["step"][-1])
    assert log["attrs"]["status"] == "interrupted" and 2 <= last < STEPS
    assert list(log["step"]) == list(range(1, last + 1))
    assert (tmp_path / "ckpt" / f"step_{last:08d}" / "meta.json").is_file()
    torchrun(2, tmp_path, *COMMON)
    _assert_resumed_equals_reference(tmp_path, reference)


def test_resume_after_sigkill_with_periodic_checkpoints(reference, tmp_path):
    proc = _interrupt(tmp_path, "sigkill", 5, "checkpoint.every=2")
    assert proc.returncode != 0
    killed = read_log(tmp_path / "log.h5")  # readable up to the last flush
    assert killed["attrs"]["status"] == "running" and len(killed["step"]) >= 5
    done = sorted(p.name for p in (tmp_path / "ckpt").glob("step_*") if not p.name.endswith(".tmp"))
    assert done and all(int(n[5:]) % 2 == 0 for n in done)
    assert int(killed["step"][-1]) >= int(done[-1][5:])  # rows past the checkpoint get dropped
    torchrun(2, tmp_path, *COMMON, "checkpoint.every=2")  # truncates rows past the checkpoint
    _assert_resumed_equals_reference(tmp_path, reference)


@pytest.mark.parametrize("how", ["sigusr1", "stop_file"])
def test_stop_request_checkpoints_and_exits_zero(megatron, tmp_path, how):
    proc = _interrupt(tmp_path, how, 2)
    assert proc.returncode == 0, proc.output
    log = read_log(tmp_path / "log.h5")
    last = int(log["step"][-1])
    assert log["attrs"]["status"] == "interrupted" and list(log["step"]) == list(range(1, last + 1))
    assert (tmp_path / "ckpt" / f"step_{last:08d}" / "meta.json").is_file()


def test_layout_mismatch_on_resume_is_refused(megatron, tmp_path):
    torchrun(1, tmp_path, "train.steps=2", "checkpoint.dir=ckpt", "log.path=")
    out = torchrun(2, tmp_path, "train.steps=4", "checkpoint.dir=ckpt", "log.path=", check=False)
    assert out.returncode != 0 and "resume with the same tp, pp and world size" in out.stdout + out.stderr
    # session-5 audit: one line per rank, not a traceback of ours (the refusal comes when the checkpoint is
    # opened; torchrun adds its own ChildFailedError report to any non-zero exit)
    assert "in load_checkpoint" not in out.stderr and out.stderr.count("batchlaw train: error: checkpoint") == 2
    assert not list((tmp_path / "ckpt").glob("*.damaged"))  # another world size is not damage
    shape = torchrun(1, tmp_path, "train.steps=4", "checkpoint.dir=ckpt", "log.path=", "model.ffn_hidden=96",
                     check=False)
    assert shape.returncode != 0 and "holds another model shape" in shape.stderr
    assert "in load_checkpoint" not in shape.stderr and "load_state_dict" not in shape.stderr, shape.stderr[-2000:]


def test_bad_config_is_one_line_error(megatron, tmp_path):
    out = torchrun(1, tmp_path, "parallel.tpp=2", check=False)
    assert out.returncode != 0
    assert "parallel.tpp: unknown key; valid keys are" in out.stderr
