"""Tier (d), slurm/train.sbatch without a cluster: the rendered script runs under bash with stub
`srun` / `scontrol` on PATH (as slurmd would run it, with the SLURM variables it reads), to pin the
issue-13 leftovers that need exact timing: a USR1/TERM before the trainer starts requeues at once
(the trap is set before the cluster file and pip freeze), a step that ends while the trap runs is
reported with its real status (never guessed from `kill -0`), and the rendezvous port is derived from
the job id with a probe (plugin/launch.py free_port). The real-cluster runs are in test_cluster.py."""

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from batchlaw.plugin.launch import job_port
from batchlaw.tools.submit import SubmitSettings, job_environment, render_sbatch

REPO = Path(__file__).resolve().parents[2]
SCONTROL = '#!/usr/bin/env bash\ncase "$1" in show) echo n1 ;; requeue) echo "$2" >> "$BOX/requeued" ;; esac\n'


def _box(tmp_path, srun: str, env_file: str = "") -> tuple[Path, dict[str, str]]:
    """A sandbox with the script, stubs and a run directory; returns (script, environment)."""
    (tmp_path / "bin").mkdir()
    for name, text in (("srun", "#!/usr/bin/env bash\n" + srun), ("scontrol", SCONTROL)):
        (tmp_path / "bin" / name).write_text(text)
        (tmp_path / "bin" / name).chmod(0o755)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.toml").write_text('[model]\nname = "tiny"\n[train]\nglobal_batch = 8\nsteps = 2\n')
    s = SubmitSettings(runs_dir=tmp_path, base_config=None, time="00:05:00", nproc_per_node=1)
    script = tmp_path / "train.sbatch"
    script.write_text(render_sbatch(s, nodes=1))
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "BOX": str(tmp_path),
           "BATCHLAW_PYTHON": sys.executable, "BATCHLAW_RUN_DIR": str(tmp_path / "run"),
           "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_ID": "7",
           "BATCHLAW_PORT_LOCKS": str(tmp_path)}
    env.pop("BATCHLAW_PORT", None)
    if env_file:
        (tmp_path / "cluster.sh").write_text(env_file)
        env["BATCHLAW_ENV"] = str(tmp_path / "cluster.sh")
    return script, env


def _run(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("sig", ["USR1", "TERM"])
def test_a_signal_during_the_cluster_file_requeues_at_once(tmp_path, sig):
    """The cluster file is the first slow step (module loads); the signal reaches the batch shell
    there. Before the fix the shell died of it (status 138 / 143) and nothing requeued."""
    script, env = _box(tmp_path, 'touch "$BOX/srun-started"\n', env_file=f"kill -{sig} $$\n")
    out = _run(script, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "requeued").read_text() == "7\n"
    assert "before training started; requeueing job 7" in out.stdout
    assert not (tmp_path / "srun-started").exists()  # nothing was launched
    assert (tmp_path / "run" / "STOP").is_file() and not (tmp_path / "run" / "pip-freeze.txt").exists()


@pytest.mark.parametrize("sig", ["USR1", "TERM"])
def test_a_signal_while_bash_env_is_sourced_requeues_at_once(tmp_path, sig):
    """Issue 21: bash sources BASH_ENV (Lmod's module setup on many clusters, seconds on a busy file
    system) before the script's first line, so a signal then killed the batch shell before its trap
    existed: status 138 / 143, no requeue. ``batchlaw submit`` hands it to the job as
    BATCHLAW_BASH_ENV, which the script sources after the trap."""
    script, env = _box(tmp_path, 'touch "$BOX/srun-started"\n')
    # signals the first shell that sources it (the children of the batch shell source it too)
    (tmp_path / "bashenv.sh").write_text(f'[ -e "$BOX/signalled" ] || {{ touch "$BOX/signalled"; kill -{sig} $$; }}\n')
    (tmp_path / "runs.txt").write_text(f"{tmp_path / 'run'}\n")
    s = SubmitSettings(runs_dir=tmp_path, base_config=None, time="00:05:00", nproc_per_node=1,
                       python=sys.executable)
    env = job_environment(s, tmp_path / "runs.txt", base={**env, "BASH_ENV": str(tmp_path / "bashenv.sh")})
    env |= {"SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "0"}
    out = _run(script, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "requeued").read_text() == "7_0\n" and not (tmp_path / "srun-started").exists()
    assert "before training started; requeueing job 7_0" in out.stdout


def test_a_step_that_ends_while_the_trap_runs_keeps_its_real_status(tmp_path):
    """The step signals the batch shell and exits 0 at once: `wait` is interrupted, the trap runs and
    the step is gone before the old `kill -0` check, which then reported status 138 as a failure.
    The exit status must come from the step, every time (10 tries; the old loop failed most)."""
    script, env = _box(tmp_path, 'kill -USR1 "$(cat "$BOX/batch.pid")"\nexit 0\n',
                       env_file='echo $$ > "$BOX/batch.pid"\n')
    for attempt in range(10):
        (tmp_path / "requeued").unlink(missing_ok=True)
        out = _run(script, env)
        assert out.returncode == 0 and "training failed" not in out.stderr, (attempt, out.stdout + out.stderr)
        assert (tmp_path / "requeued").read_text() == "7\n" and "checkpointed on signal" in out.stdout


def test_a_failing_step_interrupted_by_a_signal_still_fails_with_its_status(tmp_path):
    script, env = _box(tmp_path, 'kill -USR1 "$(cat "$BOX/batch.pid")"\nsleep 0.5\nexit 3\n',
                       env_file='echo $$ > "$BOX/batch.pid"\n')
    out = _run(script, env)
    assert out.returncode == 3 and "training failed with status 3" in out.stderr, out.stdout + out.stderr
    assert not (tmp_path / "requeued").exists()


def _step_args(tmp_path) -> list[str]:
    return (tmp_path / "srun.args").read_bytes().decode().split("\0")[:-1]


@pytest.mark.parametrize("launcher", ["torchrun", "srun"])
def test_rendezvous_port_comes_from_the_job_id_and_skips_a_busy_one(tmp_path, launcher):
    script, env = _box(tmp_path, 'printf "%s\\0" "$@" "MASTER_PORT=${MASTER_PORT:-}" '
                                 '"SIGNALS_TO_HANDLE=${PET_SIGNALS_TO_HANDLE:-}" > "$BOX/srun.args"\n'
                                 'echo completed > "$BATCHLAW_RUN_DIR/COMPLETED"\n')
    env |= {"BATCHLAW_LAUNCHER": launcher, "SLURM_JOB_ID": str(2 * 20000 + 4321)}
    with socket.socket() as busy:  # the derived port, taken: the script must probe on to the next one
        busy.bind(("", job_port(4321)))
        busy.listen()
        out = _run(script, env)
    assert out.returncode == 0, out.stdout + out.stderr
    expected = 10000 + 4321 + 1
    args = _step_args(tmp_path)
    if launcher == "torchrun":
        assert f"--rdzv_endpoint=n1:{expected}" in args
        assert "SIGNALS_TO_HANDLE=SIGINT,SIGHUP,SIGQUIT" in args  # torchrun leaves TERM to the ranks
    else:
        assert f"MASTER_PORT={expected}" in args
    assert f"head n1:{expected}" in out.stdout


def test_a_port_another_job_has_chosen_is_never_chosen_again(tmp_path):
    """Issue 21: the port was probed free and released; a second job probing before the first one's
    launcher bound it got the same port. The batch shell now holds the chosen port's lock file for the
    whole job, and the probe skips held ports even when they can still be bound."""
    import fcntl

    from batchlaw.plugin.launch import port_lock

    script, env = _box(tmp_path, 'printf "%s\\0" "$@" > "$BOX/srun.args"\n'
                                 'echo completed > "$BATCHLAW_RUN_DIR/COMPLETED"\n')
    env |= {"SLURM_JOB_ID": str(4321)}
    with open(port_lock(tmp_path, job_port(4321)), "w") as held:  # another job's shell holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        out = _run(script, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"--rdzv_endpoint=n1:{job_port(4321) + 1}" in _step_args(tmp_path)  # the next one, though bindable


def test_the_step_wrapper_leaves_term_to_the_ranks_and_reports_the_launchers_status(tmp_path):
    """The srun step wrapper starts the launcher with USR1 and TERM ignored (torchrun died on them)
    and returns the launcher's own status even when a TERM interrupted its wait."""
    launcher = tmp_path / "launcher.sh"
    launcher.write_text('grep -E "^Sig(Ign|Cgt)" /proc/$$/status > "$1"\nkill -TERM "$(cat "$2")"\nexit 5\n')
    script = render_sbatch(SubmitSettings(runs_dir=tmp_path, base_config=None, time="5", nproc_per_node=1), 1)
    # the script's own definitions of run_waited and STEP, then the step as srun runs it
    defs = [re.search(pattern, script, re.S | re.M).group(0)
            for pattern in (r"^run_waited\(\) \{.*?^\}\n", r"^STEP='.*?^run_waited \"\" \"\$@\"'\n")]
    text = "".join(defs) + 'echo $$ > "$0"; exec bash -c "$STEP" batchlaw-step "$@"\n'  # $$ stays the step's
    out = subprocess.run(["bash", "-c", text, str(tmp_path / "step.pid"), str(tmp_path / "STOP"), "bash",
                          str(launcher), str(tmp_path / "sigs"), str(tmp_path / "step.pid")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 5 and (tmp_path / "STOP").is_file(), out.stderr
    ignored = int((tmp_path / "sigs").read_text().split("SigIgn:")[1].split()[0], 16)
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        assert ignored >> (int(sig) - 1) & 1, f"{sig.name} not ignored by the launcher"


def test_a_launcher_that_fails_after_the_trainer_checkpointed_still_requeues(tmp_path):
    """Issue 21: TERM to the step ended FAILED under a torchrun that handles TERM itself (older torch, or
    one that ignores PET_SIGNALS_TO_HANDLE): it stops its ranks, which checkpoint and write INTERRUPTED,
    then exits 1. INTERRUPTED is written only after every rank saved, so the task requeues."""
    script, env = _box(tmp_path, 'echo interrupted > "$BATCHLAW_RUN_DIR/INTERRUPTED"\nexit 1\n')
    out = _run(script, env)
    assert out.returncode == 0 and (tmp_path / "requeued").read_text() == "7\n", out.stdout + out.stderr
    assert "launcher exited with status 1 after the trainer checkpointed" in out.stdout


def test_a_step_that_exits_0_without_completing_is_a_failure(tmp_path):
    """Session-3 leftover: a trainer (or a wrapper) that exits 0 without COMPLETED or a STOP request was
    reported "failed with status 0" and the job exited 0, so SLURM counted it a success."""
    script, env = _box(tmp_path, "exit 0\n")
    out = _run(script, env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "exited 0 without" in out.stderr and "COMPLETED" in out.stderr
    assert not (tmp_path / "requeued").exists()
    # a step that checkpointed and stopped on request (train.exit_after_steps) is requeued
    (tmp_path / "int").mkdir()
    script, env = _box(tmp_path / "int", 'echo interrupted > "$BATCHLAW_RUN_DIR/INTERRUPTED"\nexit 0\n')
    out = _run(script, env)
    assert out.returncode == 0 and (tmp_path / "int" / "requeued").read_text() == "7\n", out.stdout + out.stderr
    # the same step after writing the marker is a success
    (tmp_path / "ok").mkdir()
    script, env = _box(tmp_path / "ok", 'touch "$BATCHLAW_RUN_DIR/COMPLETED"\nexit 0\n')
    out = _run(script, env)
    assert out.returncode == 0 and "completed" in out.stdout, out.stdout + out.stderr
