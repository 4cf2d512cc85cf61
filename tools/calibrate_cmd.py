"""``batchlaw calibrate LOGDIR --system NAME``: fit a system profile to measured step times.

Each completed run log becomes one row (its model, layout and median step time); the profile's
efficiency parameters are fitted on every other run (sorted by size and batch) and the error is
reported on the rest, before and after; then refitted on all runs and written as a profile TOML
that ``batchlaw simulate --system PATH`` uses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", help="folder of HDF5 run logs")
    parser.add_argument("--system", required=True, help="starting profile (name or TOML)")
    parser.add_argument("--out", help="profile TOML to write (default: LOGDIR/<system>-calibrated.toml)")
    parser.add_argument("--params", default="matmul_max,width_half,tokens_half,overhead_s",
                        help="efficiency parameters to fit (comma separated)")


def rows_from_logs(runs) -> dict[str, np.ndarray]:
    """Simulator rows (published_throughput columns + iter_time_s) from run summaries."""
    from batchlaw.simulator.config import build
    from batchlaw.simulator.spec import ModelShape

    rows = []
    for r in runs:
        if r.status != "completed" or not r.config:
            continue
        m = build(ModelShape, r.config["model"], "model")
        par, lay = r.config.get("parallel", {}), r.layout
        prec = r.config.get("train", {}).get("precision", "auto")
        rows.append({"model": m.name, "layers": m.layers, "hidden": m.hidden, "heads": m.heads,
                     "query_groups": m.num_query_groups, "ffn_hidden": m.ffn, "activation": m.activation,
                     "seq_len": m.seq_len, "vocab": m.vocab, "tied_embeddings": m.tied_embeddings,
                     "gpus": lay["world_size"], "tp": lay["tp"], "pp": lay["pp"], "dp": lay["dp"], "vpp": lay["vpp"],
                     "micro_batch": lay["micro_batch"], "global_batch": r.global_batch,
                     "recompute": par.get("recompute", "none"), "sequence_parallel": par.get("sequence_parallel", False),
                     "distributed_optimizer": par.get("distributed_optimizer", False),
                     "overlap_grad_reduce": par.get("overlap_grad_reduce", False),
                     "precision": "fp32" if prec in ("auto", "fp32") and r.config.get("_device", "cpu") == "cpu" else
                     ("bf16" if prec == "auto" else prec), "iter_time_s": r.step_time_s, "num_params": r.num_params})
    if not rows:
        raise ValueError("calibrate: no completed run logs with a config attribute")
    return {k: np.array([row[k] for row in rows]) for k in rows[0]}


def run(args: argparse.Namespace) -> int:
    from batchlaw.simulator.calibrate import calibrate, errors
    from batchlaw.simulator.system import load_system, save_system
    from batchlaw.tools.logs import load_runs

    rows = rows_from_logs(load_runs(args.logdir))
    start = load_system(args.system)
    params = tuple(p.strip() for p in args.params.split(",") if p.strip())
    n = len(rows["iter_time_s"])
    order = np.lexsort((rows["global_batch"], rows["num_params"]))
    fit_idx, held_idx = order[::2], order[1::2]
    pick = lambda idx: {k: v[idx] for k, v in rows.items()}
    if len(held_idx) and len(fit_idx) >= len(params):
        fitted, _ = calibrate(pick(fit_idx), start, params=params)
        before = np.abs(errors(pick(held_idx), start))
        after = np.abs(errors(pick(held_idx), fitted))
        print(f"held-out runs ({len(held_idx)}): median |error| of step time {np.median(before):.1%} before,"
              f" {np.median(after):.1%} after (worst {after.max():.1%})")
    final, report = calibrate(rows, start, params=params)
    out = Path(args.out) if args.out else Path(args.logdir) / f"{start.name}-calibrated.toml"
    save_system(final, out, comment=f"Calibrated by batchlaw calibrate on {n} runs in {args.logdir}.")
    print(f"all {n} runs: median |error| {report.median_abs_error_before:.1%} -> {report.median_abs_error_after:.1%};"
          f" fitted " + ", ".join(f"{k}={v:.3g}" for k, v in report.fitted.items()))
    print(f"wrote {out}")
    return 0
