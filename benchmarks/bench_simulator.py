"""Simulator benchmarks: held-out accuracy on published Megatron throughput, and speed.

    python benchmarks/bench_simulator.py [--write-profiles]

Accuracy: each GPU's profile is calibrated on half of its rows of
data/throughput/published_throughput.csv (alternate rows by model size) and judged on the other
half. Speed: configurations per second of predict_table (time + memory) on random layouts, side by
side with a plain per-configuration Python loop over the same model.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from batchlaw.simulator.calibrate import calibrate, errors
from batchlaw.simulator.system import load_system, save_system
from batchlaw.simulator.table import predict_table

DATA = Path(__file__).resolve().parents[1] / "data" / "throughput" / "published_throughput.csv"
FIT_MODELS = {"1.7B", "7.5B", "39B", "145B", "530B", "16B", "70B"}  # the rest are held out


def published_rows() -> dict[str, np.ndarray]:
    rows = list(csv.DictReader(DATA.open()))
    # The 1T row's vpp = 128 is the total number of virtual stages (128 layers on 64 ranks allow at
    # most 2 chunks per rank); the table defines vpp per rank, so the row is dropped as inconsistent.
    rows = [r for r in rows if not (r["model"] == "1T" and r["vpp"] == "128")]
    cols = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    core = cols["source"] == "megatron_core_r0.8_readme"
    # Assumption: the Megatron-Core r0.8 benchmark runs use the distributed optimizer with overlapped
    # gradient reduction (Megatron-LM README, "Performance Benchmarking"); Narayanan's runs do not.
    cols["distributed_optimizer"] = core
    cols["overlap_grad_reduce"] = core
    cols["iter_time_s"] = cols["iter_time_s"].astype(float)
    return cols


def accuracy(write: bool) -> None:
    cols = published_rows()
    print("held-out accuracy of iteration time (calibrated on the other rows of the same GPU)")
    print(f"{'gpu':16s} {'model':6s} {'split':5s} {'measured_s':>10s} {'pred_s':>8s} {'error':>7s}")
    held = []
    for gpu in dict.fromkeys(cols["gpu"]):
        idx = np.flatnonzero(cols["gpu"] == gpu)
        fit_idx = [i for i in idx if cols["model"][i] in FIT_MODELS]
        fit_rows = {k: v[fit_idx] for k, v in cols.items()}
        # three H100 fit rows identify three parameters; micro batches are unpublished there, so the
        # token half-saturation is left at its default
        params = ("matmul_max", "width_half", "tokens_half", "network_eff") if len(fit_idx) > 3 else \
            ("matmul_max", "width_half", "network_eff")
        profile, rep = calibrate(fit_rows, load_system(gpu), params=params)
        err = errors({k: v[idx] for k, v in cols.items()}, profile)
        pred = cols["iter_time_s"][idx] * (1 + err)
        for j, i in enumerate(idx):
            split = "fit" if i in fit_idx else "held"
            if split == "held":
                held.append(err[j])
            print(f"{gpu:16s} {cols['model'][i]:6s} {split:5s} {cols['iter_time_s'][i]:10.2f} {pred[j]:8.2f} {err[j]:+7.1%}")
        print(f"  fitted {gpu}: " + ", ".join(f"{k}={v:.3g}" for k, v in rep.fitted.items())
              + f" (fit rows median |err| {rep.median_abs_error_after:.1%})")
        if write:
            name = load_system(gpu).name
            save_system(profile, Path("configs/systems") / f"{name}.toml",
                        comment=f"Calibrated by benchmarks/bench_simulator.py --write-profiles on the rows of\n"
                                f"published_throughput.csv for {gpu} with model in {sorted(FIT_MODELS)}.")
    held = np.abs(np.array(held))
    print(f"HELD-OUT: n={len(held)} median |error| = {np.median(held):.1%}, worst = {held.max():.1%}")


def speed(n: int = 1_000_000) -> None:
    rng = np.random.default_rng(0)
    cols = {"layers": np.full(n, 24), "hidden": np.full(n, 2048), "heads": np.full(n, 16),
            "seq_len": np.full(n, 2048), "vocab": np.full(n, 50304), "ffn_hidden": np.full(n, 5504),
            "activation": np.full(n, "swiglu"), "tp": rng.choice([1, 2, 4, 8], n), "pp": rng.choice([1, 2, 4], n),
            "micro_batch": rng.choice([1, 2, 4], n), "global_batch": rng.choice([256, 512, 1024], n),
            "recompute": rng.choice(["none", "selective", "full"], n), "precision": np.full(n, "bf16"),
            "sequence_parallel": rng.choice([True, False], n), "distributed_optimizer": rng.choice([True, False], n)}
    cols["dp"] = 64 // (cols["tp"] * cols["pp"])
    prof = load_system("h100-sxm")
    t0 = time.perf_counter()
    predict_table(cols, prof)
    vec = time.perf_counter() - t0
    k = 300
    t0 = time.perf_counter()
    for i in range(k):
        predict_table({key: v[i:i + 1] for key, v in cols.items()}, prof)
    loop = (time.perf_counter() - t0) / k * n
    print(f"SPEED: predict_table {n / vec:,.0f} configs/s (time + memory, 1 process); per-config Python loop"
          f" {n / loop:,.0f} configs/s; ratio {loop / vec:,.0f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-profiles", action="store_true", help="write the calibrated profiles to configs/systems")
    ap.add_argument("--n", type=int, default=1_000_000)
    a = ap.parse_args()
    accuracy(a.write_profiles)
    speed(a.n)
