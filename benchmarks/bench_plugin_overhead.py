"""Overhead of batchlaw's per-step work (ramp + noise scale + HDF5 log) on a real megatron-core loop.

    python benchmarks/bench_plugin_overhead.py [--steps 60] [--repeats 2] [--config configs/runs/tiny-cpu.toml]
        [--nproc 1 2] [--set KEY=VALUE ...] [--ramp-on 0:8] [--json OUT.json]

The same run is launched with everything off (constant batch, log.gns = false, no HDF5 log) and on
(step-schedule ramp ``--ramp-on``, noise scale, HDF5 flushed every 10 steps), alternately, at each
world size in ``--nproc`` (1: DP = 1 micro-batch noise-scale path; 2: DP = 2 bucket-hook path).
Median step time over steps 5..N of each launch; the ratio on/off is printed per layout, with the
median MFU and peak memory of the "on" launches read back from their HDF5 logs (NaN on CPU).
``--set`` overrides go to both launches (``benchmarks/gpu_check.sh`` uses them for 180M and 1B).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LINE = re.compile(r"^step\s+(\d+) .* \| ([0-9.]+) ms$")


def _log_medians(path: Path, first: int) -> dict[str, float]:
    import h5py
    import numpy as np

    with h5py.File(path, "r", locking=False, swmr=True) as f:
        keep = f["steps/step"][:] >= first
        return {k: float(np.median(f[f"steps/{k}"][:][keep])) for k in ("mfu", "mem_gib", "tokens_per_s")}


def launch(config: str, nproc: int, steps: int, on: bool, workdir: Path, sets: list[str], ramp_on: str,
           first: int = 5) -> tuple[list[float], dict[str, float]]:
    sets = [f"train.steps={steps}", "train.tokens=0", "log.stdout_every=1", "checkpoint.dir=", *sets]
    sets += (["log.gns=true", f"log.path={workdir / 'log.h5'}", "log.flush_every=10", f"train.ramp={ramp_on}"] if on
             else ["log.gns=false", "log.path=", "train.ramp="])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
           "batchlaw.plugin.train", config] + [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    if out.returncode:
        raise SystemExit(f"bench: launch failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    times = [float(m.group(2)) / 1e3 for m in map(LINE.match, out.stdout.splitlines()) if m and int(m.group(1)) >= first]
    extra = _log_medians(workdir / "log.h5", first) if on else {}
    (workdir / "log.h5").unlink(missing_ok=True)
    return times, extra


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "runs" / "tiny-cpu.toml"))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--nproc", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--ramp-on", default="0:8", help="step-schedule ramp of the 'on' launches")
    ap.add_argument("--label", default="", help="name printed with the results")
    ap.add_argument("--json", default="", help="append one JSON line per layout to this file")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in a.nproc:
            off, on, extras = [], [], []
            for _ in range(a.repeats):  # alternate so drifts hit both sides alike
                off += launch(a.config, nproc, a.steps, False, Path(tmp), a.sets, a.ramp_on)[0]
                times, extra = launch(a.config, nproc, a.steps, True, Path(tmp), a.sets, a.ramp_on)
                on += times
                extras.append(extra)
            m_off, m_on = statistics.median(off), statistics.median(on)
            med = {k: statistics.median(e[k] for e in extras) for k in extras[0]}
            print(f"OVERHEAD {a.label} world={nproc}: median step {m_off * 1e3:.2f} ms off, {m_on * 1e3:.2f} ms on;"
                  f" overhead {m_on / m_off - 1:+.1%} ({len(off)} + {len(on)} steps); on: mfu {med['mfu']:.3f},"
                  f" peak mem {med['mem_gib']:.1f} GiB, {med['tokens_per_s']:.0f} tokens/s", flush=True)
            if a.json:
                rec = {"label": a.label, "world": nproc, "off_ms": m_off * 1e3, "on_ms": m_on * 1e3,
                       "overhead": m_on / m_off - 1, **{k: (v if math.isfinite(v) else None) for k, v in med.items()}}
                with open(a.json, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
