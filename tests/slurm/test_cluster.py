"""Tier (d), a real two-node SLURM on this machine (slurm/local/up.sh; .ci/run starts it): the
project's own slurm/train.sbatch trains the tiny model on CPU with 2 nodes x 2 ranks (TP=2 x DP=2),
survives a forced requeue, and a job array skips the run that already completed."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from batchlaw.tools.cli import main

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "configs" / "runs" / "tiny-cpu.toml"


def _cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mix", "alloc"))


if not _cluster_up():
    pytest.skip("no local SLURM cluster (run: bash slurm/local/up.sh as root)", allow_module_level=True)
pytest.importorskip("megatron.core")


def _submit(tmp_path, rows, *sets):
    grid = tmp_path / "grid.csv"
    grid.write_text("model,global_batch,tp,pp,nodes,survives\n" + "\n".join(rows) + "\n")
    args = ["submit", str(grid), "--base-config", str(BASE), "--runs-dir", str(tmp_path / "runs"), "--time", "00:10:00",
            "--nproc-per-node", "2", "--cpus-per-task", "2", "--python", sys.executable,
            "--env", str(REPO / "slurm" / "env" / "local.sh")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0


def _wait(pred, timeout=240, what=""):
    t0 = time.time()
    while not pred():
        assert time.time() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(1)


def test_two_nodes_tp2_dp2_requeue_and_resume(tmp_path):
    _submit(tmp_path, ["tiny,8,2,1,2,true"], "train.steps=60", "log.stdout_every=5", "log.flush_every=5")
    run = tmp_path / "runs" / "tiny-b8-tp2-pp1"
    out = lambda: "".join(p.read_text() for p in (tmp_path / "runs").glob("slurm-*.out"))
    _wait(lambda: "step     10 " in out(), what="step 10")
    job = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True).stdout.split()[0]
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
    _wait(lambda: (run / "COMPLETED").is_file(), timeout=300, what="completion after requeue")
    text = out()
    assert "requeueing job" in text and "resumed from" in text
    with h5py.File(run / "log.h5", "r") as f:
        steps = f["steps/step"][:]
        assert f.attrs["restart_count"] == 1 and f.attrs["status"] == "completed"
        assert list(steps) == list(range(1, 61))  # every step exactly once
        assert '"tp": 2' in f.attrs["layout"] and '"dp": 2' in f.attrs["layout"] and '"world_size": 4' in f.attrs["layout"]
        assert np.all(np.isfinite(f["steps/gns_g2"][:]))
    assert (run / "pip-freeze.txt").stat().st_size > 0 and "git_sha=" in (run / "provenance.txt").read_text()


def test_job_array_skips_completed_run(tmp_path, capsys):
    rows = ["tiny,8,1,1,1,true", "tiny,16,1,1,1,true", "tiny,4,1,1,1,true"]
    done = tmp_path / "runs" / "tiny-b16-tp1-pp1"
    done.mkdir(parents=True)
    (done / "COMPLETED").write_text("completed\n")
    _submit(tmp_path, rows, "train.steps=3", "log.stdout_every=1")
    printed = capsys.readouterr().out
    assert "2 runs on 1 node(s) as an array; skipped 1 completed" in printed
    for name in ("tiny-b8-tp1-pp1", "tiny-b4-tp1-pp1"):
        _wait(lambda: (tmp_path / "runs" / name / "COMPLETED").is_file(), what=name)
        with h5py.File(tmp_path / "runs" / name / "log.h5", "r") as f:
            assert list(f["steps/step"][:]) == [1, 2, 3]
    assert not (done / "log.h5").exists()
