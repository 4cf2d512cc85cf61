"""``batchlaw demo``: the whole loop on CPU, as a designed study, on a built-in default, in minutes on 2 cores.

1. design the study ``configs/studies/demo.toml`` (three tiny GPTs): ``batchlaw design`` chooses each size's
   batches around the prior B_opt law, gives every point its LR from Step Law's lr_opt(N, D), prices the runs
   with the simulator and predicts, before anything runs, how likely each optimum is to be bracketed;
2. the data: the trainer's synthetic task, a learnable walk over the vocabulary (on the Python-source corpus of
   ``batchlaw data build --demo`` these tiny models land 0.03-0.10 nats apart from one seed to the next, more than
   the loss differs between neighbouring batches: docs/design.md);
3. train wave 1 for real (megatron-core, gloo, CPU), two runs at a time, each with its HDF5 log, plus one
   batch-ramp run;
4. design wave 2 from the logs (``batchlaw design --next``): the noise learned from wave 1, unbracketed edges
   extended, seeds added where the basin is flat; train it (or stop when the target is met);
5. analyse the logs with the study's priors: optimal batch per size with intervals that carry the seed noise,
   B_opt(N), the noise scale, predicted against measured per wave, pictures, report;
6. calibrate the cpu-gloo profile from the measured step times.
The trainer runs in subprocesses (torchrun), so this command itself never imports torch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


STUDY = "demo"
LR_DECAY = "constant"
"""The demo trains at a constant LR (after warmup): with a decaying LR the smallest batch won at every
size of the demo's budgets, so no optimum was bracketed (docs/benchmarks.md, the demo section)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from batchlaw.tools.cli import retire

    parser.add_argument("--out-dir", default="demo-out", help="output folder (logs, report, profile)")
    retire(parser, "--out", "--out-dir DIR (the demo writes a folder)")
    parser.add_argument("--quick", action="store_true", help="smaller budget (tests and smoke checks)")
    parser.add_argument("--jobs", type=int, default=2, help="training runs at a time (each one CPU rank)")
    parser.add_argument("--seed", type=int, default=0,
                        help="first training seed of every configuration (0: the study's, 1234); another seed shows"
                             " how much the answer moves with the data order and the initialisation")


def _progress(i: int, n: int, text: str) -> None:
    bar = "#" * int(20 * i / n) + "." * (20 - int(20 * i / n))
    print(f"[{bar}] {i}/{n} {text}", flush=True)


def _demo_sets(data_prefix: Path | None) -> list[str]:
    """What the demo adds to the base run config (data, logs, LR schedule); never a planned column.
    The run folder's paths and the warmup (a tenth of the run) are set per run."""
    data = ["data.kind=indexed", f"data.path={data_prefix}"] if data_prefix else ["data.kind=synthetic"]
    return ["train.min_lr=3e-4", f"train.decay={LR_DECAY}", "train.eval_every=0", *data, "log.stdout_every=0",
            "log.flush_every=50", "checkpoint.keep=1"]


def plan_demo_runs(table: dict, runs_dir: Path, data_prefix: Path | None, base: str) -> list[Path]:
    """The planner ``batchlaw submit`` uses (``grid.plan_rows`` + ``spec_from_row``): one run per planned point,
    each written as ``run.toml`` (a RunSpec) in its folder ``MODEL-bBATCH-sSEED`` (``-lrLR`` when a size ran at
    several LRs, ``-ramp`` for a ramp)."""
    from batchlaw.simulator import config as _config
    from batchlaw.simulator.grid import plan_rows
    from batchlaw.simulator.plan import spec_from_row
    from batchlaw.simulator.runconfig import find_run_config, in_run_dir
    from batchlaw.simulator.spec import replace

    base_data = _config.apply_overrides(_config.load_toml(find_run_config(base)), _demo_sets(data_prefix))
    rows = plan_rows(table)
    several = {m for m in set(table["model"][rows]) if len({float(x) for x in table["lr"][rows][table["model"][rows] == m]}) > 1}
    paths = []
    for i in rows:
        spec = spec_from_row({k: v[i] for k, v in table.items()}, base_data)
        t = spec.train
        name = (f"{spec.model.name}-b{t.global_batch}-s{t.seed}" + (f"-lr{t.lr:g}" if spec.model.name in several else "")
                + ("" if t.ramp.is_constant else "-ramp"))
        run_dir = runs_dir / name
        spec = in_run_dir(replace(spec, train=replace(t, warmup_samples=max(1, spec.total_samples() // 10))),
                          run_dir, done_marker=True)
        spec.validate()  # the trainer's pre-launch check, as submit makes it
        _config.write_text_atomic(run_dir / "run.toml", _config.to_toml(spec))
        paths.append(run_dir)
    return paths


def _ramp_plan(plan: Path, out: Path) -> Path | None:
    """One ramp run beside wave 1: the middle size at its largest batch, ramped up from its smallest over the
    first third of its tokens (``train.ramp``: a Megatron staircase), planned like the rest."""
    import numpy as np

    from batchlaw.simulator.plan import base_of, read_plan, write_plan

    table, doc = read_plan(plan)
    models = sorted(set(table["model"]), key=lambda m: float(table["num_params"][table["model"] == m][0]))
    mid = models[len(models) // 2]
    rows = np.flatnonzero(table["model"] == mid)
    low, top = (rows[np.argmin(table["global_batch"][rows])], rows[np.argmax(table["global_batch"][rows])])
    gran = int(float(table["micro_batch"][top]) * float(table["dp"][top]))  # every stair a multiple of it
    small = max(gran, -(-int(table["global_batch"][low]) // gran) * gran)
    samples = int(table["tokens"][top]) // int(table["seq_len"][top])
    row = {k: v[top:top + 1].copy() for k, v in table.items()}
    row["ramp"] = np.array([f"{small},{small},{samples // 3}"], dtype=object)
    path = out / "plans" / "ramp.csv"
    write_plan(path, row, base=base_of(doc), meta={k: v for k, v in doc.items() if k != "base_config"})
    return path


def _torchrun(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m",
            "batchlaw.plugin.train", str(run_dir / "run.toml")]


def _train_plan(plan: Path, runs_dir: Path, base: str, parallel: int) -> None:
    """Train every run of a plan on the demo's synthetic data (no indexed corpus), ``parallel`` at a time."""
    from batchlaw.simulator.plan import read_plan
    from batchlaw.tools.jobs import run_jobs

    table, _ = read_plan(plan)
    run_jobs(plan_demo_runs(table, runs_dir, None, base), _torchrun, jobs=parallel, progress=_progress)


def demo(out: Path, *, quick: bool = False, parallel: int = 2, seed: int = 0) -> Path:
    """Run the loop; returns the report path."""
    from batchlaw.simulator.study import load_study
    from batchlaw.tools.analyze_cmd import analyze
    from batchlaw.tools.design_cmd import design

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    # --quick (tests): a quarter of the tokens, a looser target (short runs are noisier), fewer simulations
    overrides = ["sizes.tokens_per_param=0.5", "target.b_opt_factor=4", "design.simulations=8"] if quick else []
    if seed:
        overrides.append(f"design.first_seed={seed}")
    study = load_study(STUDY, overrides)
    plans = out / "plans"
    runs = out / "runs"
    print(f"== 1/6 design the study {study.name!r} (wave 1: batches, LRs, seeds and node counts, priced and predicted)")
    design(STUDY, overrides, out=str(plans / "wave1.csv"))
    print("== 2/6 the data: the trainer's synthetic task (a learnable walk over the vocabulary; docs/design.md says"
          " why not the Python-source corpus of `batchlaw data build --demo`)")
    print("== 3/6 train wave 1 and one batch-ramp run (the submit planner; megatron-core, gloo, CPU)")
    _train_plan(plans / "wave1.csv", runs, study.base, parallel)
    _train_plan(_ramp_plan(plans / "wave1.csv", out), runs, study.base, parallel)
    print("== 4/6 design wave 2 from the logs of wave 1, and train it")
    waves = [str(plans / "wave1.csv")]
    wave2 = design(STUDY, overrides, logdir=str(runs), out=str(plans / "wave2.csv"))
    if wave2 is not None and wave2.points:
        _train_plan(plans / "wave2.csv", runs, study.base, parallel)
        waves.append(str(plans / "wave2.csv"))
    print("== 5/6 analyse the logs with the study's priors, fit the batch laws")
    report = analyze(runs, out / "report", extrapolate=1e6, study=STUDY, plans=waves)
    print("== 6/6 calibrate the cpu-gloo profile from the measured step times")
    subprocess.run([sys.executable, "-m", "batchlaw.tools", "calibrate", str(runs), "--system", "cpu-gloo",
                    "--out", str(out / "cpu-gloo-calibrated.toml")], check=True)
    print(f"demo finished in {time.perf_counter() - t_start:.0f} s; report: {report}")
    return report


def run(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise ValueError(f"--seed = {args.seed}: a training seed >= 1 (0: the study's)")
    demo(Path(args.out_dir), quick=args.quick, parallel=args.jobs, seed=args.seed)
    return 0
