"""Run training subprocesses a few at a time on this machine (``batchlaw demo``, ``batchlaw probe-cbs``).

Each job is a run folder: a folder holding ``COMPLETED`` is skipped (the trainer's ``log.done_marker``),
the others run ``command(folder)`` with its output in ``folder/train.out``, at most ``jobs`` at once.
The first job to fail stops the others (terminate, then wait) and raises one line naming the folder.
Torch-free: the trainer runs in the subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["run_jobs"]

POLL_S = 0.3
"""Seconds between polls of the running jobs."""


def _stop(running: list[tuple[Path, subprocess.Popen, float]]) -> None:
    for _, proc, _ in running:
        proc.terminate()
    for _, proc, _ in running:
        proc.wait()


def run_jobs(folders: Sequence[Path], command: Callable[[Path], list[str]], *, jobs: int,
             progress: Callable[[int, int, str], None]) -> None:
    """Run every folder's job that has not completed.

    Args:
        folders: run folders (each gets ``train.out``).
        command: the argv of a folder's job.
        jobs: jobs at a time (at least 1).
        progress: called as ``progress(done, total, text)`` once before the first job and after each.

    Raises:
        ValueError: a job exited non-zero (the others are stopped first).
    """
    pending = [d for d in folders if not (d / "COMPLETED").exists()]
    done = len(folders) - len(pending)
    progress(done, len(folders), f"{len(pending)} to run ({done} already completed)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    running: list[tuple[Path, subprocess.Popen, float]] = []
    try:
        while pending or running:
            while pending and len(running) < max(1, jobs):
                d = pending.pop(0)
                with open(d / "train.out", "w") as log:
                    proc = subprocess.Popen(command(d), stdout=log, stderr=subprocess.STDOUT, env=env)
                running.append((d, proc, time.perf_counter()))
            time.sleep(POLL_S)
            for item in list(running):
                d, proc, t0 = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                if proc.returncode != 0:
                    raise ValueError(f"training {d} failed (exit {proc.returncode}); see {d / 'train.out'}")
                done += 1
                progress(done, len(folders), f"{d.name} done in {time.perf_counter() - t0:.0f} s")
    finally:
        _stop(running)
