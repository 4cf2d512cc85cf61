"""``batchlaw demo``: the whole loop on CPU, on a built-in default, in a few minutes on 2 cores.

1. simulate and prune the grid ``configs/grids/tiny-cpu-demo.toml`` (three tiny GPTs x batch sizes);
2. build a Megatron indexed dataset from the Python standard library's source (no download);
3. plan the runs with the planner of ``batchlaw submit`` (one run.toml per surviving point at its
   fastest layout, plus one batch-ramp run planned the same way) and train them for real
   (megatron-core, gloo, CPU), two at a time, each writing its HDF5 log;
4. analyse the logs: optimal batch per model, B_opt(N), noise scale, pictures, report;
5. calibrate the cpu-gloo profile from the measured step times and re-predict.
The trainer runs in subprocesses (torchrun), so this command itself never imports torch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


GRID = "tiny-cpu-demo"
LR_DECAY = "constant"
"""The demo trains at a constant LR (after warmup): with a decaying LR the smallest batch won at every
size of the demo's budgets, so no optimum was bracketed (docs/benchmarks.md, the demo section)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from batchlaw.tools.cli import retire

    parser.add_argument("--out-dir", default="demo-out", help="output folder (logs, report, profile)")
    retire(parser, "--out", "--out-dir DIR (the demo writes a folder)")
    parser.add_argument("--quick", action="store_true", help="smaller budget (tests and smoke checks)")
    parser.add_argument("--jobs", type=int, default=2, help="training runs at a time (each one CPU rank)")


def _progress(i: int, n: int, text: str) -> None:
    bar = "#" * int(20 * i / n) + "." * (20 - int(20 * i / n))
    print(f"[{bar}] {i}/{n} {text}", flush=True)


def _demo_sets(data_prefix: Path) -> list[str]:
    """What the demo adds to the base run config (data, logs, LR schedule); never a planned column.
    The run folder's paths and the warmup (a tenth of the run) are set per run."""
    return ["train.min_lr=3e-4", f"train.decay={LR_DECAY}", "train.eval_every=0", "data.kind=indexed",
            f"data.path={data_prefix}", "log.stdout_every=0", "log.flush_every=50", "checkpoint.keep=1"]


def plan_demo_runs(table: dict, out: Path, data_prefix: Path, base: str, suffix: str = "") -> list[Path]:
    """The planner ``batchlaw submit`` uses (``grid.plan_rows`` + ``spec_from_row``): one run per
    surviving point at its fastest layout, each written as ``run.toml`` (a RunSpec) in its folder."""
    from batchlaw.simulator import config as _config
    from batchlaw.simulator.grid import plan_rows
    from batchlaw.simulator.plan import spec_from_row
    from batchlaw.simulator.runconfig import find_run_config, in_run_dir
    from batchlaw.simulator.spec import replace

    base_data = _config.apply_overrides(_config.load_toml(find_run_config(base)), _demo_sets(data_prefix))
    paths = []
    for i in plan_rows(table):
        spec = spec_from_row({k: v[i] for k, v in table.items()}, base_data)
        run_dir = out / "runs" / f"{spec.model.name}-b{spec.train.global_batch}{suffix}"
        spec = in_run_dir(replace(spec, train=replace(spec.train, warmup_samples=max(1, spec.total_samples() // 10))),
                          run_dir, done_marker=True)
        spec.validate()  # the trainer's pre-launch check, as submit makes it
        _config.write_text_atomic(run_dir / "run.toml", _config.to_toml(spec))
        paths.append(run_dir)
    return paths


def _torchrun(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m",
            "batchlaw.plugin.train", str(run_dir / "run.toml")]


def demo(out: Path, *, quick: bool = False, parallel: int = 2) -> Path:
    """Run the loop; returns the report path."""
    from batchlaw.simulator.csvio import write_csv
    from batchlaw.simulator.grid import load_grid, plan_rows, run_grid, summary
    from batchlaw.tools.analyze_cmd import analyze
    from batchlaw.tools.indexed_data import ByteTokenizer, demo_corpus_files, tokenize_files, write_indexed_dataset
    from batchlaw.tools.jobs import run_jobs

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    overrides = ["grid.tokens_per_param=0.5", "grid.global_batch=[2, 4, 8]"] if quick else []
    print("== 1/5 simulate and prune the grid")
    g = load_grid(GRID, overrides)
    table = run_grid(g)
    print(summary(table, g))
    write_csv(out / "grid.csv", table)
    print("== 2/5 build the demo corpus (Python standard library source, byte-level tokens)")
    prefix = out / "data" / "corpus"
    if not Path(f"{prefix}.idx").exists():
        files = demo_corpus_files(2_000_000 if quick else 4_000_000)
        docs, tokens = write_indexed_dataset(prefix, tokenize_files(files, ByteTokenizer()))
        print(f"   {docs} files, {tokens:,} tokens -> {prefix}.bin/.idx")
    print("== 3/5 train the planned runs (the submit planner; megatron-core, gloo, CPU)")
    jobs = plan_demo_runs(table, out, prefix, g.base or "tiny-cpu")
    mid_model = g.grid.models[len(g.grid.models) // 2]
    batches = sorted({int(b) for m, b, ok in zip(table["model"], table["global_batch"], table["survives"])
                      if ok and m == mid_model})
    if batches:  # one ramp run: from the smallest batch of the sweep to the largest over the first third
        top, low = batches[-1], batches[0]
        i = next(i for i in plan_rows(table) if table["model"][i] == mid_model and int(table["global_batch"][i]) == top)
        ramp = f"{low},{low},{int(table['tokens'][i]) // int(table['seq_len'][i]) // 3}"
        g_ramp = load_grid(GRID, overrides + [f"grid.models=['{mid_model}']",
                           f"grid.global_batch=[{top}]", f"grid.ramp=['{ramp}']"])
        jobs += plan_demo_runs(run_grid(g_ramp), out, prefix, g.base or "tiny-cpu", suffix="-ramp")
    run_jobs(jobs, _torchrun, jobs=parallel, progress=_progress)
    print("== 4/5 analyse the logs, fit the batch laws")
    report = analyze(out / "runs", out / "report", extrapolate=1e6)
    print("== 5/5 calibrate the cpu-gloo profile from the measured step times")
    subprocess.run([sys.executable, "-m", "batchlaw.tools", "calibrate", str(out / "runs"), "--system", "cpu-gloo",
                    "--out", str(out / "cpu-gloo-calibrated.toml")], check=True)
    print(f"demo finished in {time.perf_counter() - t_start:.0f} s; report: {report}")
    return report


def run(args: argparse.Namespace) -> int:
    demo(Path(args.out_dir), quick=args.quick, parallel=args.jobs)
    return 0
