"""Driver of test_kill_anytime.py: kill -9 a training run at random moments, resume it each time.

Imports torch and megatron-core once, then forks one child per attempt (a single-rank gloo trainer,
``batchlaw.plugin.train.main``), so an attempt costs about a second instead of a torchrun start.
After each SIGKILL it records what a resume would see: the logged steps (read as a SWMR reader)
and the newest published checkpoint. Writes ``result.json`` in the work directory.

    python tests/plugin/killdriver.py WORKDIR SEED KILLS STEPS -- RUN.toml --set k=v ...
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path


def _child(workdir: Path, args: list[str]) -> int:
    os.chdir(workdir)
    from batchlaw.plugin.launch import free_port
    from batchlaw.plugin.train import main

    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))

    return main(args)


def _spawn(workdir: Path, args: list[str]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _child(workdir, args)
        finally:
            os._exit(code)
    return pid


def _state(workdir: Path) -> dict:
    import h5py

    from batchlaw.plugin.checkpoint import latest_checkpoint

    log = workdir / "log.h5"
    steps = []
    if log.exists():
        with h5py.File(log, "r", locking=False, swmr=True) as f:
            steps = [int(s) for s in f["steps/step"][:]]
    ck = latest_checkpoint(workdir / "ckpt")
    return {"logged": steps, "checkpoint": int(ck.name[5:]) if ck else 0}


def main() -> None:
    workdir, seed, kills, steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    args = sys.argv[sys.argv.index("--") + 1:]
    from batchlaw.plugin.cpu import apply_cpu_patches

    apply_cpu_patches()
    import batchlaw.plugin.loop  # noqa: F401 - torch and megatron-core imported once, before forking

    rng = random.Random(seed)
    ref, run = workdir / "reference", workdir / "killed"
    ref.mkdir(parents=True), run.mkdir(parents=True)
    t0 = time.perf_counter()
    pid, t_start = _spawn(ref, args), None
    while True:  # time to the first published checkpoint: start-up, first steps, first flush
        done, status = os.waitpid(pid, os.WNOHANG)
        if t_start is None and any(p.suffix != ".tmp" for p in (ref / "ckpt").glob("step_*")):
            t_start = time.perf_counter() - t0
        if done:
            break
        time.sleep(0.005)
    assert os.waitstatus_to_exitcode(status) == 0 and t_start, "reference run failed"
    full = time.perf_counter() - t0
    step_s = (full - t_start) / steps
    records, stretch, last = [], 1.0, 0
    for _ in range(kills):  # from start-up to about 12 steps past the first checkpoint
        pid = _spawn(run, args)
        time.sleep(stretch * rng.uniform(0.5 * t_start, t_start + 12 * step_s))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        records.append({"killed": os.waitstatus_to_exitcode(status) == -signal.SIGKILL, **_state(run)})
        # a shared machine may be slower than during the reference: widen the window while no
        # checkpoint is gained, so that the kills keep landing all along the run
        stretch = min(4.0, stretch * 1.5) if records[-1]["checkpoint"] <= last else 1.0
        last = records[-1]["checkpoint"]
    _, status = os.waitpid(_spawn(run, args), 0)
    result = {"records": records, "final_exit": os.waitstatus_to_exitcode(status), "reference_s": full,
              "startup_s": t_start, "step_s": step_s}
    (workdir / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
