"""What the size limits of simulator/checks.py protect against, and what the checks cost.

    python benchmarks/bench_checks.py [--sizes 5040 50400 201600]

1. ``run_grid`` time and peak-RSS growth per grid point at several grid sizes (each size in a fresh
   process), side by side: the figures behind ``MAX_GRID_POINTS`` and the cost stated in the
   grid-size error (about 1 KiB and 0.05 ms per point).
2. The time of the refusal itself for a 720,000,000-point grid (nothing is allocated).
3. ``load_run_config`` of the shipped tiny run with the per-field checks, and the checks alone, so
   the ratio shows what validation adds to loading.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

_CHILD = r"""
import resource, sys, time
from batchlaw.simulator.grid import load_grid, run_grid
n_lr = int(sys.argv[1])
lrs = "[" + ",".join(f"{1e-4 * (1 + i / n_lr):.8g}" for i in range(n_lr)) + "]"
g = load_grid("configs/grids/batch-sweep-180m-4b.toml", [f"grid.lr={lrs}", "prune.loss_law=''"])
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
t = run_grid(g)
dt = time.perf_counter() - t0
print(len(t["model"]), dt, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024)
"""
_POINTS_PER_LR = 504  # configs/grids/batch-sweep-180m-4b.toml: 6 models x 7 batches x 3 tp x 2 pp x 2 recompute


def grid_costs(sizes: list[int]) -> None:
    print(f"{'points':>9s} {'time_s':>8s} {'ms/point':>9s} {'RSS MiB':>8s} {'B/point':>8s}")
    for n in sizes:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(max(1, n // _POINTS_PER_LR))], check=True,
                             capture_output=True, text=True).stdout.split()
        points, dt, rss = int(out[0]), float(out[1]), int(out[2])
        print(f"{points:9d} {dt:8.2f} {dt / points * 1e3:9.4f} {rss / 2**20:8.0f} {rss / points:8.0f}")


def refusal_time() -> None:
    from batchlaw.simulator.grid import load_grid, run_grid

    g = load_grid("configs/grids/batch-sweep-180m-4b.toml",
                  ["grid.global_batch=[" + ",".join(str(i) for i in range(1, 10001)) + "]",
                   "grid.lr=[" + ",".join(f"{i}e-6" for i in range(1, 1001)) + "]"])
    t0 = time.perf_counter()
    try:
        run_grid(g)
    except ValueError as exc:
        print(f"refused in {time.perf_counter() - t0:.4f} s: {exc}")


def check_overhead(repeats: int = 200) -> None:
    from batchlaw.simulator import checks
    from batchlaw.simulator.runconfig import load_run_config

    cfg = load_run_config("configs/runs/tiny-cpu.toml")
    t0 = time.perf_counter()
    for _ in range(repeats):
        load_run_config("configs/runs/tiny-cpu.toml")
    load_s = (time.perf_counter() - t0) / repeats
    t0 = time.perf_counter()
    for _ in range(repeats):
        checks.check_model(cfg.model), checks.check_train(cfg.train), checks.check_data(cfg.data)
        checks.check_log(cfg.log), checks.check_checkpoint(cfg.checkpoint), checks.check_run(cfg)
    check_s = (time.perf_counter() - t0) / repeats
    print(f"load_run_config {load_s * 1e3:.3f} ms, of which the per-field checks {check_s * 1e3:.3f} ms"
          f" ({check_s / load_s:.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5040, 50400, 201600])
    args = parser.parse_args()
    grid_costs(args.sizes)
    refusal_time()
    check_overhead()


if __name__ == "__main__":
    main()
