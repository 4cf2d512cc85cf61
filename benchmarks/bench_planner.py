"""What building each planned RunSpec once saves (``batchlaw submit`` and ``batchlaw demo`` planners).

    python benchmarks/bench_planner.py [--repeat 50]

Side by side in one process, on the surviving rows of the plan -> submit test grid
(``tests/tools/test_plan_submit.py``): the planner step before (build the RunSpec from the row, then
build it again from the row with the run folder's log and checkpoint paths) and now (build once,
then ``runconfig.in_run_dir``). Both give equal RunSpecs (checked); prints the best time per run of
each and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from batchlaw.simulator import config as _config
from batchlaw.simulator.grid import load_grid, plan_rows, run_grid
from batchlaw.simulator.plan import spec_from_row
from batchlaw.simulator.runconfig import find_run_config, in_run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50, help="passes over the rows per timing")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "tools"))
    import test_plan_submit

    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.toml"
        grid.write_text(test_plan_submit.GRID)
        table = run_grid(load_grid(grid))
    base = _config.load_toml(find_run_config("tiny-cpu"))
    rows = [{k: v[i] for k, v in table.items()} for i in plan_rows(table)]
    run_dir = Path("/tmp/runs/x")

    def twice(row):
        spec = spec_from_row(row, base)
        return spec_from_row(row, _config.apply_overrides(_config.to_dict(spec), [
            f"log.path={run_dir / 'log.h5'}", f"checkpoint.dir={run_dir / 'ckpt'}"]))

    def once(row):
        return in_run_dir(spec_from_row(row, base), run_dir)

    assert all(twice(r) == once(r) for r in rows)
    best = {"twice": float("inf"), "once": float("inf")}
    for _ in range(5):
        for name, fn in (("twice", twice), ("once", once)):
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                for r in rows:
                    fn(r)
            best[name] = min(best[name], (time.perf_counter() - t0) / (args.repeat * len(rows)))
    print(f"{len(rows)} planned rows: built twice {best['twice'] * 1e3:.2f} ms per run, once"
          f" {best['once'] * 1e3:.2f} ms per run; ratio {best['twice'] / best['once']:.2f}")


if __name__ == "__main__":
    main()
