"""Tier (d), a real two-node SLURM on this machine (slurm/local/up.sh; .ci/run starts it): the
project's own slurm/train.sbatch trains the tiny model on CPU with 2 nodes x 2 ranks (TP=2 x DP=2),
launched by torchrun and by srun alone (one task per rank), survives a forced requeue (USR1 to the
batch shell or the step, TERM to the step with torchrun); a signal before training starts requeues
at once; a 3-task array on shared nodes (a rendezvous port per task) survives USR1 to the batch
shell and to the step, requeueing only the signalled task, and leaves out the run that already
completed."""

import os
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


def _submit(tmp_path, rows, *sets, runs="runs", nproc=2, env=REPO / "slurm" / "env" / "local.sh"):
    grid = tmp_path / "grid.csv"
    grid.write_text("model,global_batch,tp,pp,nodes,survives\n" + "\n".join(rows) + "\n")
    args = ["submit", str(grid), "--base-config", str(BASE), "--runs-dir", str(tmp_path / runs), "--time", "00:10:00",
            "--nproc-per-node", str(nproc), "--cpus-per-task", str(nproc), "--python", sys.executable,
            "--env", str(env)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0


def _wait(pred, timeout=240, what=""):
    t0 = time.time()
    while not pred():
        assert time.time() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(1)


def _tasks() -> list[tuple[str, str, str]]:
    """(array job id, job id, array task id) of every running task."""
    out = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%F %A %K"], capture_output=True, text=True).stdout
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]


def _job_state(task: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", task], capture_output=True, text=True).stdout
    return out.split("JobState=")[1].split()[0] if "JobState=" in out else "?"


def _steps_once(log, steps, restarts):
    with h5py.File(log, "r") as f:
        assert list(f["steps/step"][:]) == list(range(1, steps + 1))  # every step exactly once
        assert f.attrs["restart_count"] == restarts and f.attrs["status"] == "completed"
        return f.attrs["layout"]


@pytest.mark.parametrize("launcher,target,sig", [("torchrun", "--batch", "USR1"), ("srun", "step", "USR1"),
                                                ("torchrun", "step", "TERM")])
def test_two_nodes_tp2_dp2_requeue_and_resume(tmp_path, monkeypatch, launcher, target, sig):
    """TERM to the step with torchrun ended FAILED after the checkpoint (torchrun caught TERM, stopped
    its ranks and exited 1); it now ends as USR1 does: checkpoint, requeue, resume, COMPLETED."""
    monkeypatch.setenv("BATCHLAW_LAUNCHER", launcher)  # sbatch exports the submitting environment
    _submit(tmp_path, ["tiny,8,2,1,2,true"], "train.steps=30", "log.stdout_every=5", "log.flush_every=5")
    run = tmp_path / "runs" / "tiny-b8-tp2-pp1"
    out = lambda: "".join(p.read_text() for p in (tmp_path / "runs").glob("slurm-*.out"))
    _wait(lambda: "step     10 " in out(), what="step 10")
    task = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()[0]
    subprocess.run(["scancel", f"--signal={sig}", *([target] if target == "--batch" else []), task], check=True)
    _wait(lambda: (run / "COMPLETED").is_file() or _job_state(task) == "FAILED", timeout=300,
          what="completion after requeue")
    text = out()
    assert f"{launcher} on 2 node(s)" in text and f"requeueing job {task}" in text and "resumed from" in text
    layout = _steps_once(run / "log.h5", 30, 1)
    assert '"tp": 2' in layout and '"dp": 2' in layout and '"world_size": 4' in layout
    with h5py.File(run / "log.h5", "r") as f:
        assert np.all(np.isfinite(f["steps/gns_g2"][:]))
    assert (run / "pip-freeze.txt").stat().st_size > 0 and "git_sha=" in (run / "provenance.txt").read_text()
    _wait(lambda: _job_state(task) == "COMPLETED", timeout=60, what=f"{task} COMPLETED")


@pytest.mark.parametrize("sig", ["USR1", "TERM"])
def test_a_signal_before_training_starts_requeues_at_once(tmp_path, sig):
    """The batch shell's traps are set before the cluster file and pip freeze: a signal during the
    cluster file (its first attempt sleeps there, like a slow module load) used to kill the shell
    (job FAILED, no requeue). Now the task requeues without starting the trainer, then completes."""
    mark = tmp_path / "in-env-file"
    env = tmp_path / "slow-env.sh"
    env.write_text(f'source "{REPO / "slurm" / "env" / "local.sh"}"\n'
                   f'if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then touch "{mark}"; sleep 15; fi\n')
    _submit(tmp_path, ["tiny,8,1,1,1,true"], "train.steps=5", nproc=1, env=env)
    _wait(mark.is_file, what="the cluster file")
    task = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()[0]
    subprocess.run(["scancel", f"--signal={sig}", "--batch", task], check=True)
    run = tmp_path / "runs" / "tiny-b8-tp1-pp1"
    _wait(lambda: (run / "COMPLETED").is_file() or _job_state(task) == "FAILED", timeout=300, what="completion")
    _wait(lambda: _job_state(task) in ("COMPLETED", "FAILED"), timeout=60, what=f"{task} done")
    text = "".join(p.read_text() for p in (tmp_path / "runs").glob("slurm-*.out"))
    assert _job_state(task) == "COMPLETED" and f"before training started; requeueing job {task}" in text, text
    _steps_once(run / "log.h5", 5, 0)  # the first attempt never started the trainer: no resume


def test_array_on_shared_nodes_survives_usr1_to_batch_shell_and_to_step(tmp_path, capsys):
    """Three 1-node tasks fit on one node (4 CPUs): each needs its own rendezvous port. USR1 to the
    batch shell of the task whose job id is the array's (`scontrol requeue $SLURM_JOB_ID` there would
    requeue the whole array) and to another task's step each end in checkpoint + requeue of that task
    alone; the third, never signalled, must not be touched. A fourth run, already COMPLETED, is left
    out. The runs directory name is hostile: it must reach sbatch's --output and the ranks as data."""
    runs = "runs q\"'$(touch PWNED) `touch PWNED` #x %j \U0001F600"
    root = tmp_path / runs
    (root / "tiny-b32-tp1-pp1").mkdir(parents=True)
    (root / "tiny-b32-tp1-pp1" / "COMPLETED").write_text("completed\n")
    _submit(tmp_path, ["tiny,8,1,1,1,true", "tiny,16,1,1,1,true", "tiny,32,1,1,1,true", "tiny,4,1,1,1,true"],
            "train.steps=40", "log.stdout_every=1", "log.flush_every=5", runs=runs, nproc=1)
    assert "3 runs on 1 node(s) as an array; skipped 1 completed" in capsys.readouterr().out
    _wait(lambda: len(_tasks()) == 3, what="3 array tasks")
    array, heir = next((a, t) for a, j, t in _tasks() if a == j)  # the task whose job id is the array's
    out = lambda i: "".join(p.read_text() for p in root.glob(f"slurm-{array}_{i}.out"))
    signalled = {int(heir): ["--batch"], (int(heir) + 1) % 3: []}  # batch shell / step
    for i, target in signalled.items():
        _wait(lambda: "step      3 " in out(i), what=f"task {i} at step 3")
        subprocess.run(["scancel", "--signal=USR1", *target, f"{array}_{i}"], check=True)
    names = ["tiny-b8-tp1-pp1", "tiny-b16-tp1-pp1", "tiny-b4-tp1-pp1"]
    for i, name in enumerate(names):
        _wait(lambda: _job_state(f"{array}_{i}") == "COMPLETED", timeout=300, what=f"task {i} COMPLETED")
        _steps_once(root / name / "log.h5", 40, 1 if i in signalled else 0)
        assert ("requeueing job" in out(i)) == (i in signalled)
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    assert not (root / "tiny-b32-tp1-pp1" / "log.h5").exists()


def test_one_writer_per_run_and_submit_knows_what_is_in_flight(tmp_path, capsys):
    """Issue 21. Submitting twice in a row submitted every run again; the second submit now launches
    nothing and says why. A second SLURM job on a run that a trainer holds (job A, suspended after step
    15 so that it still holds the run however fast it trains) ends at once, exit 1, with one line naming
    A, and touches nothing. kill -9 of A's processes leaves the lease to the
    kernel; the next submit (the run is no longer in flight, and not completed) resumes it from A's
    last checkpoint, and the log holds every step once."""
    sets = ("train.steps=60", "log.stdout_every=1", "log.flush_every=1", "checkpoint.every=10")
    _submit(tmp_path, ["tiny,8,1,1,1,true"], *sets, nproc=1)
    first = capsys.readouterr().out
    job = first.split("submitted job ")[1].split(":")[0]
    _submit(tmp_path, ["tiny,8,1,1,1,true"], *sets, nproc=1)
    again = capsys.readouterr().out
    assert "submitted job" not in again and "nothing to submit on 1 node(s): all 1 runs are completed, running or" \
        " queued (1 " in again, again
    runs, run = tmp_path / "runs", tmp_path / "runs" / "tiny-b8-tp1-pp1"
    out_a = lambda: "".join(p.read_text() for p in runs.glob(f"slurm-{job}_*.out"))
    _wait(lambda: "step     15 " in out_a(), what="job A at step 15")
    # A is suspended (SIGSTOP to its processes; it keeps the lease), so that B's start-up cannot outlast A
    subprocess.run(["scontrol", "suspend", f"{job}_0"], check=True)
    env = {**os.environ, "BATCHLAW_RUN_DIR": str(run), "BATCHLAW_PYTHON": sys.executable,
           "BATCHLAW_ENV": str(REPO / "slurm" / "env" / "local.sh"), "BATCHLAW_NPROC_PER_NODE": "1"}
    env.pop("BATCHLAW_RUN_LIST", None)
    b = subprocess.run(["sbatch", "--parsable", f"--output={tmp_path / 'b.out'}", str(runs / "train-1n.sbatch")],
                       env=env, capture_output=True, text=True, check=True).stdout.strip()
    _wait(lambda: _job_state(b) in ("FAILED", "COMPLETED"), timeout=180, what="job B to end")
    lines = [line for line in (tmp_path / "b.out").read_text().splitlines() if line.strip()]
    assert _job_state(b) == "FAILED" and len(lines) == 1, lines
    assert "is held by" in lines[0] and f"SLURM job {job}_0" in lines[0]
    assert _job_state(f"{job}_0") == "SUSPENDED" and "step     60 " not in out_a()  # A holds the run
    subprocess.run(["scancel", "--signal=KILL", f"{job}_0"], check=True)  # kill -9 of the holder's processes
    subprocess.run(["scontrol", "resume", f"{job}_0"], capture_output=True)  # if SLURM has not ended it already
    _wait(lambda: _job_state(f"{job}_0") in ("FAILED", "CANCELLED", "COMPLETED"), timeout=120, what="job A gone")
    assert not (run / "COMPLETED").exists()
    _submit(tmp_path, ["tiny,8,1,1,1,true"], *sets, nproc=1)
    third = capsys.readouterr().out
    assert "submitted job" in third and "1 runs on 1 node(s)" in third, third
    _wait(lambda: (run / "COMPLETED").is_file(), timeout=300, what="the resumed run to complete")
    _steps_once(run / "log.h5", 60, 1)
