"""Overhead of batchlaw's per-step work (ramp + noise scale + HDF5 log) on a real megatron-core loop.

    python benchmarks/bench_plugin_overhead.py [--steps 60] [--repeats 2] [--config configs/runs/tiny-cpu.toml]

The same run is launched with everything off (constant batch, log.gns = false, no HDF5 log) and on
(step-schedule ramp, noise scale, HDF5 flushed every 10 steps), alternately, at world size 1 (DP = 1:
micro-batch noise-scale path) and 2 (DP = 2: the bucket-hook path). Median step time over steps
5..N of each launch; the ratio on/off is printed per layout. On a GPU machine pass a GPU config.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LINE = re.compile(r"^step\s+(\d+) .* \| ([0-9.]+) ms$")


def launch(config: str, nproc: int, steps: int, on: bool, workdir: Path) -> list[float]:
    sets = [f"train.steps={steps}", "log.stdout_every=1", "checkpoint.dir="]
    sets += (["log.gns=true", f"log.path={workdir / 'log.h5'}", "log.flush_every=10", "train.ramp=0:8"] if on else
             ["log.gns=false", "log.path=", "train.ramp="])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
           "batchlaw.plugin.train", config] + [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir, check=True).stdout
    times = [float(m.group(2)) / 1e3 for m in map(LINE.match, out.splitlines()) if m and int(m.group(1)) >= 5]
    (workdir / "log.h5").unlink(missing_ok=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "runs" / "tiny-cpu.toml"))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--nproc", type=int, nargs="*", default=[1, 2])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in a.nproc:
            off, on = [], []
            for _ in range(a.repeats):  # alternate so drifts hit both sides alike
                off += launch(a.config, nproc, a.steps, False, Path(tmp))
                on += launch(a.config, nproc, a.steps, True, Path(tmp))
            m_off, m_on = statistics.median(off), statistics.median(on)
            print(f"OVERHEAD world={nproc}: median step {m_off * 1e3:.2f} ms off, {m_on * 1e3:.2f} ms on;"
                  f" overhead {m_on / m_off - 1:+.1%} ({len(off)} + {len(on)} steps)")


if __name__ == "__main__":
    main()
