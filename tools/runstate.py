"""Where each planned run stands before ``batchlaw submit`` launches it (issue 21): completed (its
``COMPLETED`` marker), running (a trainer holds its lease, ``plugin/lease.py``), queued (the job
``submit`` recorded in its ``SUBMITTED`` file is still in ``squeue``), or free to submit. Submitting
twice in a row therefore launches nothing the second time, and says why.

A run that has started (it was submitted, or has a log or a checkpoint) keeps its ``run.toml``: a
plan that would write another one is refused unless ``--force``, with the differing keys shown
(an edit made to ``run.toml`` between two submits is never lost silently).

Torch-free: ``plugin.lease`` and ``plugin.ckptfiles`` are stdlib only.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any, Iterable

from batchlaw.plugin.ckptfiles import complete_checkpoints
from batchlaw.plugin.lease import describe, holder, lease_paths

__all__ = ["SUBMITTED", "annotate", "differences", "queued_jobs", "record_submitted", "started"]

SUBMITTED = "SUBMITTED"
# squeue states of a job that has not ended (squeue(1), JOB STATE CODES)
_LIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
         "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "SPECIAL_EXIT", "RESV_DEL_HOLD"}


def queued_jobs(squeue: str | None = None) -> dict[str, str] | None:
    """{job id as ``scontrol requeue`` names it (``ARRAY_TASK``): state} of this user's live jobs, one
    line per array task; None where SLURM is not installed. A ``squeue`` that fails is a ValueError:
    without it nobody can tell which runs are still queued."""
    squeue = squeue or shutil.which("squeue")
    if not squeue:
        return None
    out = subprocess.run([squeue, "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"], capture_output=True,
                         text=True, timeout=120)
    if out.returncode != 0:
        said = (out.stderr.strip() or f"exit {out.returncode}").splitlines()[-1]
        raise ValueError(f"squeue failed ({said}): cannot tell which runs are still queued, so nothing was"
                         " submitted; try again when SLURM answers")
    jobs = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in _LIVE:
            jobs[parts[0]] = parts[1]
    return jobs


def record_submitted(run_dir: Path, job: str) -> None:
    """Remember the SLURM job (``ARRAY_TASK``) a run was submitted as (written atomically)."""
    from batchlaw.simulator.config import write_text_atomic

    write_text_atomic(run_dir / SUBMITTED, job + "\n")


def _submitted_job(run_dir: Path) -> str:
    try:
        return (run_dir / SUBMITTED).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def started(run_dir: Path, spec: Any) -> bool:
    """Whether a run has begun: submitted before, or it has a log or a published checkpoint."""
    return bool(_submitted_job(run_dir) or (spec.log.path and Path(spec.log.path).exists())
                or (spec.checkpoint.dir and complete_checkpoints(spec.checkpoint.dir)))


def _state(run_dir: Path, spec: Any, jobs: dict[str, str] | None) -> tuple[str, str]:
    """(state, what says so) of one run: completed, running, queued or ''."""
    if (run_dir / "COMPLETED").is_file():
        return "completed", "COMPLETED"
    for path in lease_paths(spec.checkpoint.dir, spec.log.path):
        who = holder(path)
        if who is not None:
            return "running", describe(who)
    job = _submitted_job(run_dir)
    if job and jobs and job in jobs:
        return ("running" if jobs[job] == "RUNNING" else "queued"), f"SLURM job {job} {jobs[job]}"
    return "", ""


def annotate(runs: list[dict[str, Any]], *, squeue: str | None = None) -> list[str]:
    """Set each run's ``state`` and ``why`` (``done`` stays "completed"); returns notes to print (one
    line each), e.g. when submitted runs exist but ``squeue`` is not installed."""
    need_queue = any(_submitted_job(r["dir"]) for r in runs if not (r["dir"] / "COMPLETED").is_file())
    jobs = queued_jobs(squeue) if need_queue else {}
    notes = []
    if need_queue and jobs is None:
        notes.append("squeue not found: runs submitted before are counted as not queued (only their COMPLETED"
                     " markers and leases are seen)")
    for r in runs:
        r["state"], r["why"] = _state(r["dir"], r["config"], jobs)
        r["done"] = r["state"] == "completed"
    return notes


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(written: str, planned: str) -> list[str]:
    """'key: X in run.toml, Y planned' for every key whose value differs between two run TOMLs."""
    try:
        old = _flat(tomllib.loads(written))
    except tomllib.TOMLDecodeError as exc:
        return [f"run.toml does not parse ({exc})"]
    new = _flat(tomllib.loads(planned))
    missing = object()
    return [f"{k}: {old.get(k, '(absent)')!r} in run.toml, {new.get(k, '(absent)')!r} planned"
            for k in sorted(set(old) | set(new)) if old.get(k, missing) != new.get(k, missing)]


def changed_started_runs(runs: Iterable[dict[str, Any]], planned_toml) -> list[tuple[dict[str, Any], list[str]]]:
    """Runs about to be (re)submitted that have started and whose ``run.toml`` differs from the plan's."""
    out = []
    for r in runs:
        path = r["dir"] / "run.toml"
        if r["state"] or not path.is_file() or not started(r["dir"], r["config"]):
            continue
        diff = differences(path.read_text(), planned_toml(r["config"]))
        if diff:
            out.append((r, diff))
    return out
