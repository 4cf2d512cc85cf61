"""Speed of summarising many HDF5 run logs (``batchlaw analyze``'s first stage).

    python benchmarks/bench_analysis.py [--logs 1000] [--steps 100000] [--dir /tmp/bench-logs]

Generates the logs with the project's own writer (``RunLogWriter.append_columns``; the 16 required
columns of plugin/logschema.py, realistic values; not timed), then times ``load_runs`` on all of them,
next to the time of merely reading every column of every file (no summary), for scale.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import h5py
import numpy as np

from batchlaw.plugin import logschema as S
from batchlaw.plugin.h5log import RunLogWriter
from batchlaw.tools.logs import find_logs, load_runs


def generate(root: Path, logs: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    s = np.arange(1, steps + 1)
    for i in range(logs):
        b = int(2 ** (4 + i % 6))
        cols = {"step": s, "consumed_samples": s * b, "tokens": s * b * 2048, "global_batch_size": np.full(steps, b),
                "num_micro_batches": np.full(steps, b // 8), "lr": np.full(steps, 3e-4), "loss": 2.5 + 8.0 / np.sqrt(s),
                "grad_norm": 0.5 + rng.random(steps), "gns_b_small": np.full(steps, b / 8.0), "gns_b_big": np.full(steps, float(b)),
                "gns_small_sq": 1.2 + rng.random(steps), "gns_big_sq": 1.0 + rng.random(steps) * 0.1,
                "gns_g2": 1.0 + rng.normal(0, 0.3, steps), "gns_trace": 100 + rng.normal(0, 10, steps),
                "step_time_s": 0.2 + rng.random(steps) * 0.01, "tokens_per_s": np.full(steps, 1e6)}
        w = RunLogWriter(root / f"run{i:04d}.h5", attrs={"config": {"train": {"tokens": steps * b * 2048}},
                                                           "num_params": 10**8 * (1 + i % 5), "model_name": f"m{i % 5}",
                                                           "seq_len": 2048})
        w.append_columns(cols)
        w.close()


def naive(paths) -> float:
    total = 0.0
    for p in paths:
        with h5py.File(p, "r") as f:
            for name in f[S.STEPS_GROUP]:
                total += float(np.nanmean(f[S.STEPS_GROUP][name][:]))
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--logs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--dir", default="/tmp/batchlaw-bench-logs")
    ap.add_argument("--keep", action="store_true", help="keep the generated logs")
    a = ap.parse_args()
    root = Path(a.dir)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    generate(root, a.logs, a.steps)
    gen = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in root.glob("*.h5")) / 2**30
    t0 = time.perf_counter()
    runs = load_runs(root)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive(find_logs(root))
    base = time.perf_counter() - t0
    print(f"ANALYSIS: {len(runs)} logs x {a.steps:,} steps ({size:.1f} GiB, generated in {gen:.0f} s):"
          f" summarised in {ours:.1f} s (incl. the one-time scipy import); for scale, reading every column of"
          f" every file without summarising takes {base:.1f} s")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
