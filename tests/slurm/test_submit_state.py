"""Tier (a), pure (no cluster, no torch; ``sbatch`` and ``squeue`` are stubs on PATH): what ``batchlaw
submit`` decides from the state of the world before it submits anything.

- In flight (issue 21): submitting twice in a row launched every run again and rewrote each run.toml.
  Runs that are completed (``COMPLETED``), running (a trainer holds the lease) or queued (the job
  recorded in ``SUBMITTED`` is in ``squeue``) are skipped and counted; a started run whose run.toml
  differs from the plan is refused unless ``--force``, naming the differing keys; a ``squeue`` that
  fails stops the submit (nothing could tell what is queued). The real cluster: test_cluster.py.

- Data (issue 20, newcomer): the shipped grid reads ``data/corpus``; a dry run without it used to fail
  with ``no data/corpus.idx`` and no way on. The dry run now prints the plan and a one-line note naming
  the ways on (``batchlaw data build``, ``--set data.path=PREFIX``, ``--set data.kind=synthetic``);
  the real submit refuses with the same line, before anything is written: the data must exist when
  the jobs start, and a job that waited in the queue to fail on every node buys nothing. Both files
  of the dataset are checked (submit checked ``.idx`` only).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchlaw.tools.cli import main

GRID = """
name = "state"
system = "cpu-gloo"
gpus_per_node = 2
base = "tiny-cpu"

[grid]
models = ["tiny"]
tokens_per_param = 1
global_batch = [8, 16]
nodes = [1]
tp = [1]
pp = [1]
"""


def _stub(tmp_path: Path, monkeypatch, name: str, body: str) -> Path:
    bin_dir = tmp_path / "stubs"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
    (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir


@pytest.mark.parametrize("source", ["grid", "plan"])
def test_a_dry_run_of_the_shipped_grid_without_data_says_how_to_proceed(tmp_path, capsys, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    if source == "plan":
        assert main(["simulate", "batch-sweep-180m-4b", "--out", "plan.csv"]) == 0
    capsys.readouterr()
    src = "plan.csv" if source == "plan" else "batch-sweep-180m-4b"
    assert main(["submit", src, "--time", "04:00:00", "--dry-run"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "data.path = 'data/corpus'" in notes[0], out[-2000:]
    for way in ("batchlaw data build", "--set data.path=PREFIX", "--set data.kind=synthetic"):
        assert way in notes[0]
    assert "would submit: 42 runs" in out and not (tmp_path / "runs").exists()
    assert main(["submit", src, "--time", "04:00:00", "--dry-run", "--set", "data.kind=synthetic"]) == 0
    assert "note: " not in capsys.readouterr().out


@pytest.mark.parametrize("present", [(".idx",), ()])
def test_submit_refuses_missing_data_before_writing_anything(tmp_path, capsys, monkeypatch, present):
    monkeypatch.chdir(tmp_path)
    _stub(tmp_path, monkeypatch, "sbatch", 'echo "sbatch must not be called" >&2; exit 99\n')
    (tmp_path / "grid.toml").write_text(GRID)
    for suffix in present:
        (tmp_path / f"corpus{suffix}").write_bytes(b"x")
    args = ["submit", "grid.toml", "--time", "01:00:00", "--runs-dir", "runs", "--set", "data.kind=indexed",
            "--set", f"data.path={tmp_path / 'corpus'}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "corpus.bin is missing" in err and "--set data.kind=synthetic" in err, err
    assert not (tmp_path / "runs").exists()


SBATCH = 'echo "$@" >> "$BOX/sbatch-calls"; echo $(( 500 + $(wc -l < "$BOX/sbatch-calls") ))\n'


def _submit(*extra: str) -> int:
    return main(["submit", "grid.toml", "--time", "01:00:00", "--runs-dir", "runs", *extra])


def _box(tmp_path: Path, monkeypatch, squeue: str) -> None:
    """A grid of two 1-node runs, stub sbatch (job 501, 502, ...) and squeue printing ``squeue``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BOX", str(tmp_path))
    (tmp_path / "grid.toml").write_text(GRID)
    _stub(tmp_path, monkeypatch, "sbatch", SBATCH)
    (tmp_path / "queue").write_text(squeue)
    _stub(tmp_path, monkeypatch, "squeue", 'cat "$BOX/queue"\n')


def _calls(tmp_path: Path) -> int:
    path = tmp_path / "sbatch-calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_submitting_twice_submits_nothing_the_second_time_and_says_why(tmp_path, capsys, monkeypatch):
    """Issue 21: a second submit launched all runs again and rewrote their run.toml."""
    _box(tmp_path, monkeypatch, "501_0 PENDING\n501_1 RUNNING\n")
    assert _submit() == 0
    assert "submitted job 501: 2 runs on 1 node(s) as an array; skipped 0" in capsys.readouterr().out
    runs = sorted((tmp_path / "runs").glob("*/SUBMITTED"))
    assert sorted(p.read_text() for p in runs) == ["501_0\n", "501_1\n"]  # the array task of each run
    toml = runs[0].parent / "run.toml"
    toml.write_text(toml.read_text().replace("lr = ", "lr = 0.5 #"))  # an edit while queued is kept
    edited = toml.read_text()
    assert _submit() == 0
    out = capsys.readouterr().out
    assert "nothing to submit on 1 node(s): all 2 runs are completed, running or queued (1 running, 1 queued)" in out
    assert _calls(tmp_path) == 1 and toml.read_text() == edited
    assert _submit("--dry-run") == 0 and _calls(tmp_path) == 1
    assert " queued" in capsys.readouterr().out  # the table names each run's state


def test_a_started_run_whose_run_toml_changed_needs_force(tmp_path, capsys, monkeypatch):
    _box(tmp_path, monkeypatch, "")  # submitted once, no longer in the queue (ended without COMPLETED)
    assert _submit() == 0
    toml = next((tmp_path / "runs").glob("*b8*/run.toml"))
    toml.write_text(toml.read_text().replace("warmup_samples = 16", "warmup_samples = 32"))
    capsys.readouterr()
    assert _submit() == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the run has started and its run.toml differs from the plan" in err, err
    assert "train.warmup_samples: 32 in run.toml, 16 planned" in err and "--force" in err
    assert _calls(tmp_path) == 1
    assert _submit("--force") == 0 and _calls(tmp_path) == 2
    assert "warmup_samples = 16" in toml.read_text()
    assert "submitted job 502: 2 runs" in capsys.readouterr().out


def test_a_running_trainer_and_a_completed_run_are_skipped_without_slurm_records(tmp_path, capsys, monkeypatch):
    from batchlaw.plugin.lease import RunLease

    _box(tmp_path, monkeypatch, "")
    assert _submit("--dry-run") == 0
    names = sorted(line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("tiny-b"))
    run8, run16 = (tmp_path / "runs" / n for n in names)
    held = RunLease.acquire([run8 / "ckpt" / "LEASE"], env={})  # a trainer started by hand on this run
    (run16 / "COMPLETED").parent.mkdir(parents=True, exist_ok=True)
    (run16 / "COMPLETED").write_text("completed\n")
    try:
        assert _submit() == 0
        out = capsys.readouterr().out
        assert "nothing to submit on 1 node(s): all 2 runs are completed, running or queued (1 completed, 1 running)" \
            in out, out
    finally:
        held.release()
    assert _calls(tmp_path) == 0


def test_a_failing_squeue_submits_nothing(tmp_path, capsys, monkeypatch):
    _box(tmp_path, monkeypatch, "")
    assert _submit() == 0
    _stub(tmp_path, monkeypatch, "squeue", 'echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1\n')
    capsys.readouterr()
    assert _submit() == 2
    err = capsys.readouterr().err
    assert "squeue failed (slurm_load_jobs error: Unable to contact slurm controller)" in err and _calls(tmp_path) == 1
