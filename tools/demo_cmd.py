"""``batchlaw demo``: the whole loop on CPU, on a built-in default, in a few minutes on 2 cores.

1. simulate and prune the grid ``configs/grids/tiny-cpu-demo.toml`` (three tiny GPTs x batch sizes);
2. build a Megatron indexed dataset from the Python standard library's source (no download);
3. train every surviving point for real (megatron-core, gloo, CPU), plus one batch-ramp run, two
   runs at a time, each writing its HDF5 log;
4. analyse the logs: optimal batch per model, B_opt(N), noise scale, pictures, report;
5. calibrate the cpu-gloo profile from the measured step times and re-predict.
The trainer runs in subprocesses (torchrun), so this command itself never imports torch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GRID = "tiny-cpu-demo.toml"
LR_DECAY = "constant"
"""The demo trains at a constant LR (after warmup): with a decaying LR the smallest batch won at every
size of the demo's budgets, so no optimum was bracketed (docs/benchmarks.md, the demo section)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo-out", help="output folder (logs, report, profile)")
    parser.add_argument("--quick", action="store_true", help="smaller budget (tests and smoke checks)")
    parser.add_argument("--jobs", type=int, default=2, help="training runs at a time")


def _progress(i: int, n: int, text: str) -> None:
    bar = "#" * int(20 * i / n) + "." * (20 - int(20 * i / n))
    print(f"[{bar}] {i}/{n} {text}", flush=True)


def _run_config(point: dict, out: Path, data_prefix: Path, ramp: str = "") -> tuple[Path, list[str]]:
    name = f"{point['model']}-b{point['global_batch']}" + ("-ramp" if ramp else "")
    run_dir = out / "runs" / name
    tokens = int(point["tokens"])
    samples = tokens // int(point["seq_len"])
    sets = [f"model.name={point['model']}", f"parallel.micro_batch={point['micro_batch']}",
            f"train.global_batch={point['global_batch']}", "train.steps=0", f"train.tokens={tokens}",
            f"train.lr={point['lr']}", f"train.warmup_samples={max(1, samples // 10)}", "train.min_lr=3e-4",
            f"train.decay={LR_DECAY}",
            "train.eval_every=0", "data.kind=indexed", f"data.path={data_prefix}", f"log.path={run_dir / 'log.h5'}",
            "log.stdout_every=0", "log.flush_every=50", f"checkpoint.dir={run_dir / 'ckpt'}", "checkpoint.keep=1",
            f"log.done_marker={run_dir / 'COMPLETED'}"]
    if ramp:
        sets.append(f"train.ramp={ramp}")
    return run_dir, sets


def _launch(run_dir: Path, sets: list[str]) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    base = Path(__file__).resolve().parents[1] / "configs" / "runs" / "tiny-cpu.toml"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m",
           "batchlaw.plugin.train", str(base)] + [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    log = open(run_dir / "train.out", "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _train_all(jobs: list[tuple[Path, list[str]]], parallel: int) -> None:
    pending, running, done = list(jobs), [], 0
    total = len(jobs)
    skipped = [j for j in pending if (j[0] / "COMPLETED").exists()]
    pending = [j for j in pending if j not in skipped]
    done = len(skipped)
    _progress(done, total, f"training ({len(skipped)} already completed)")
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            running.append((job, _launch(*job), time.perf_counter()))
        time.sleep(0.5)
        for item in list(running):
            (run_dir, _), proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                raise RuntimeError(f"training {run_dir.name} failed (exit {proc.returncode}); see {run_dir / 'train.out'}")
            done += 1
            _progress(done, total, f"{run_dir.name} done in {time.perf_counter() - t0:.0f} s")


def demo(out: Path, *, quick: bool = False, parallel: int = 2) -> Path:
    """Run the loop; returns the report path."""
    from batchlaw.simulator.csvio import write_csv
    from batchlaw.simulator.grid import load_grid, run_grid, summary
    from batchlaw.simulator.spec import CONFIG_ROOT
    from batchlaw.tools.analyze_cmd import analyze
    from batchlaw.tools.indexed_data import ByteTokenizer, demo_corpus_files, tokenize_files, write_indexed_dataset

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    overrides = ["grid.tokens_per_param=0.5", "grid.global_batch=[2, 4, 8]"] if quick else []
    print("== 1/5 simulate and prune the grid")
    g = load_grid(CONFIG_ROOT / "grids" / GRID, overrides)
    table = run_grid(g)
    print(summary(table, g))
    write_csv(out / "grid.csv", table)
    print("== 2/5 build the demo corpus (Python standard library source, byte-level tokens)")
    prefix = out / "data" / "corpus"
    if not Path(f"{prefix}.idx").exists():
        files = demo_corpus_files(2_000_000 if quick else 4_000_000)
        docs, tokens = write_indexed_dataset(prefix, tokenize_files(files, ByteTokenizer()))
        print(f"   {docs} files, {tokens:,} tokens -> {prefix}.bin/.idx")
    print("== 3/5 train the surviving points (megatron-core, gloo, CPU)")
    points = [{k: table[k][i] for k in ("model", "global_batch", "micro_batch", "tokens", "seq_len", "lr")}
              for i in np.flatnonzero(table["survives"])]
    for p in points:
        p["global_batch"], p["micro_batch"] = int(p["global_batch"]), int(p["micro_batch"])
    jobs = [_run_config(p, out, prefix) for p in points]
    mid = [p for p in points if p["model"] == g.grid.models[len(g.grid.models) // 2]]
    if mid:  # one ramp run: from the smallest batch of the sweep to the largest over the first third
        top = max(mid, key=lambda p: p["global_batch"])
        low = min(p["global_batch"] for p in mid)
        ramp = f"{low},{low},{int(top['tokens']) // int(top['seq_len']) // 3}"
        jobs.append(_run_config(top, out, prefix, ramp=ramp))
    _train_all(jobs, parallel)
    print("== 4/5 analyse the logs, fit the batch laws")
    report = analyze(out / "runs", out / "report", extrapolate=1e6)
    print("== 5/5 calibrate the cpu-gloo profile from the measured step times")
    subprocess.run([sys.executable, "-m", "batchlaw.tools", "calibrate", str(out / "runs"), "--system", "cpu-gloo",
                    "--out", str(out / "cpu-gloo-calibrated.toml")], check=True)
    print(f"demo finished in {time.perf_counter() - t_start:.0f} s; report: {report}")
    return report


def run(args: argparse.Namespace) -> int:
    demo(Path(args.out), quick=args.quick, parallel=args.jobs)
    return 0
