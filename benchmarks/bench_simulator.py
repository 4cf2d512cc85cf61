"""Simulator benchmarks: accuracy on every public Megatron throughput row it was not fitted to, and speed.

    python benchmarks/bench_simulator.py [--write-profiles] [--n 1000000] [--skip-speed]
        [--width-half W --tokens-half T]  (start values of the GEMM size half-points: sensitivity)

Accuracy (all 199 rows of data/throughput/throughput_megatron.csv, via ``perf_data.public_rows``):
- leave-one-model-out (LOMO): for each model (rows with the same hidden, ffn and MLP type, so Llama 3
  and 3.1 8B, or a 405B proxy and the 405B, count as one model), each GPU's profile is fitted on that
  GPU's other rows, starting from the physics defaults (``Efficiency()``), and predicts the held-out
  model's rows;
- leave-one-source-out (LOSO): the same with each publishing source held out;
- Spearman rank correlation of the LOMO predictions inside each (model, GPU, GPU count) group with at
  least 3 distinct layouts;
- the small-model regime (1.7B-8B rows) separately; rows called infeasible.
``--write-profiles`` fits each profile on all of its rows and writes configs/systems/<name>.toml.
Speed: predict_table (time + memory) on 1e6 random layouts, CPU time of one process; the same with every
row distinct, and with the text columns as a CSV brings them (``--string-speed`` alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from batchlaw.simulator.calibrate import FitWarning, calibrate
from batchlaw.simulator.perf_data import PUBLIC_CSV, public_rows
from batchlaw.simulator.system import Efficiency, gpu_profile_name, load_system, save_system
from batchlaw.simulator.table import predict_table

ROOT = Path(__file__).resolve().parents[1]
_ALL = ("matmul_max", "fp8_matmul_max", "attention_eff", "cp_attention_eff", "hbm_eff", "width_half", "tokens_half",
        "network_eff", "tp_exposed", "dp_exposed", "overhead_s", "overhead_mb_s", "overhead_layer_s")
# What each profile's rows can inform: A100 rows are 16-bit, unfused attention, full recompute, no
# TP-comm overlap; the Blackwell rows are FP8 only (16-bit GEMM efficiency stays at its default).
_BLACKWELL = ("fp8_matmul_max", "mxfp8_eff", "attention_eff", "cp_attention_eff", "hbm_eff", "width_half",
              "tokens_half", "network_eff", "tp_exposed", "dp_exposed", "overhead_mb_s", "overhead_layer_s")
PARAMS = {"a100-80gb": ("matmul_max", "hbm_eff", "width_half", "network_eff", "dp_exposed", "overhead_mb_s",
                        "overhead_layer_s"),
          "h100-sxm": _ALL,
          "b200": tuple(p for p in _BLACKWELL if p != "dp_exposed"),
          "gb200": _BLACKWELL,
          "gb300": _BLACKWELL}


PRIOR_SIGMA = 0.3  # width of the calibration prior (log units; see calibrate.py)


def _source_family(src: str) -> str:
    for key in ("April 2021", "H100 weak scaling", "BLOOM", "24.07", "dgxc", "Megatron-Bridge", "NeMo 25.0"):
        if key in src:
            return key
    return src


def tagged_rows() -> dict[str, np.ndarray]:
    r = public_rows()
    r["profile"] = np.array([gpu_profile_name(g) for g in r["gpu"]])
    r["model_key"] = np.array([f"h{h:g}-f{f:g}-{g}" for h, f, g in zip(r["hidden"], r["ffn_hidden"], r["gated_mlp"])])
    r["source_key"] = np.array([_source_family(s) for s in r["source"]])
    return r


START = Efficiency()  # the physics defaults every fit starts from (``--width-half``/``--tokens-half`` change them)


def _start(name: str):
    return dataclasses.replace(load_system(name), efficiency=START)


def _fit(rows, idx, name):
    """Profile ``name`` fitted on rows ``idx`` (start values without rows)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        if len(idx) == 0:
            return _start(name)
        return calibrate({k: v[idx] for k, v in rows.items()}, _start(name), params=PARAMS[name],
                         prior_sigma=PRIOR_SIGMA)[0]


def held_out(rows, key: str) -> np.ndarray:
    """Predicted iteration time of every row by a profile fitted without the row's ``key`` group."""
    pred = np.full(len(rows["row"]), np.nan)
    for group in dict.fromkeys(rows[key]):
        for name in dict.fromkeys(rows["profile"][rows[key] == group]):
            test = np.flatnonzero((rows[key] == group) & (rows["profile"] == name))
            train = np.flatnonzero((rows[key] != group) & (rows["profile"] == name))
            prof = _fit(rows, train, name)
            pred[test] = predict_table({k: v[test] for k, v in rows.items()}, prof)["pred_iter_time_s"]
    return pred


def spearman_groups(rows, pred) -> list[float]:
    """Spearman of predicted vs measured time across the distinct layouts of each (model, GPU, GPU
    count) group with >= 3 layouts; repeated runs of one layout (other releases) are averaged first."""
    out = []
    keys = np.array([f"{m}|{p}|{g:g}" for m, p, g in zip(rows["model_key"], rows["profile"], rows["gpus"])])
    for k in dict.fromkeys(keys):
        idx = np.flatnonzero(keys == k)
        layout = [(rows["tp"][i], rows["pp"][i], rows["cp"][i], np.nan_to_num(rows["vpp"][i]),
                   np.nan_to_num(rows["micro_batch"][i]), rows["precision"][i], rows["global_batch"][i],
                   bool(rows["fsdp"][i])) for i in idx]
        uniq = list(dict.fromkeys(layout))
        if len(uniq) < 3:
            continue
        meas = [np.mean([rows["iter_time_s"][i] for i, l in zip(idx, layout) if l == u]) for u in uniq]
        prd = [np.mean([pred[i] for i, l in zip(idx, layout) if l == u]) for u in uniq]
        out.append(float(spearmanr(prd, meas).statistic))
    return out


def _summary(label: str, err: np.ndarray) -> str:
    a = np.abs(err)
    return f"{label}: n={len(a)} median |error| {np.median(a):.1%}, worst {a.max():.1%}"


def accuracy(write: bool) -> None:
    rows = tagged_rows()
    t0 = time.process_time()
    lomo = held_out(rows, "model_key")
    loso = held_out(rows, "source_key")
    fit_s = time.process_time() - t0
    e_lomo = lomo / rows["iter_time_s"] - 1
    e_loso = loso / rows["iter_time_s"] - 1
    print(f"rows: {len(e_lomo)} from {PUBLIC_CSV.relative_to(ROOT)}; {len(set(rows['model_key']))} models,"
          f" {len(set(rows['source_key']))} sources ({fit_s:.0f} s CPU of fits)")
    print(_summary("LOMO all", e_lomo))
    print(_summary("LOSO all", e_loso))
    for name in dict.fromkeys(rows["profile"]):
        i = rows["profile"] == name
        print("  " + _summary(f"LOMO {name}", e_lomo[i]) + "; " + _summary("LOSO", e_loso[i]))
    for prec in ("bf16", "fp8"):
        i = (rows["precision"] == prec) | ((prec == "bf16") & (rows["precision"] == "half"))
        print("  " + _summary(f"LOMO {prec}", e_lomo[i]))
    hidden = rows["hidden"]
    small = (hidden <= 4096) & (rows["layers"] <= 36)
    print(_summary("LOMO small models (1.7B-8B)", e_lomo[small]))
    for i in np.flatnonzero(small):
        print(f"    {rows['model'][i]:12s} {rows['gpu'][i]:10s} gpus={rows['gpus'][i]:<5g} tp={rows['tp'][i]:g}"
              f" cp={rows['cp'][i]:g} {rows['precision'][i]:5s} measured {rows['iter_time_s'][i]:.3f} s"
              f" LOMO {e_lomo[i]:+.1%}")
    rho = spearman_groups(rows, lomo)  # one adjacent swap of 5 layouts is 0.9 exactly; scipy returns 0.8999...
    print(f"Spearman of layout ranking (LOMO) in {len(rho)} (model, GPU, GPU count) groups with >= 3 distinct layouts:"
          f" median {np.median(rho):.2f}, mean {np.mean(rho):.2f}, min {np.min(rho):.2f},"
          f" groups >= 0.9: {sum(r >= 0.9 - 1e-12 for r in rho)}" if rho else "Spearman: no group with 3 layouts")
    worst = np.argsort(-np.abs(e_lomo))[:8]
    print("worst LOMO rows:")
    for i in worst:
        print(f"    {rows['model'][i]:14s} {rows['gpu'][i]:10s} gpus={rows['gpus'][i]:<5g} tp={rows['tp'][i]:g}"
              f" pp={rows['pp'][i]:g} cp={rows['cp'][i]:g} {rows['precision'][i]:5s} {e_lomo[i]:+.1%}")
    out = predict_table(rows)
    bad = np.flatnonzero(~out["feasible"])
    print(f"infeasible rows: {len(bad)} of {len(bad) + int(out['feasible'].sum())}")
    for i in bad:
        print(f"    {rows['model'][i]} {rows['gpu'][i]} tp={rows['tp'][i]:g} pp={rows['pp'][i]:g}: {out['reason'][i]}")
    if write:
        write_profiles(rows)


def write_profiles(rows) -> None:
    # one profile per GPU product: achieved efficiency depends on the power and clock envelope too (a joint
    # Blackwell fit over B200/GB200/GB300 predicted GB300's held-out 405B rows 30% slow)
    for name in dict.fromkeys(rows["profile"]):
        idx = np.flatnonzero(rows["profile"] == name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FitWarning)
            prof, rep = calibrate({k: v[idx] for k, v in rows.items()}, _start(name), params=PARAMS[name],
                                  prior_sigma=PRIOR_SIGMA,
                                  fitted_on=f"{PUBLIC_CSV.name}: {len(idx)} rows with gpu -> {name}")
        for w in caught:
            print(f"  {w.message}")
        print(f"  fitted {name}: " + ", ".join(f"{k}={v:.3g}+-{rep.stderr[k]:.2g}" for k, v in rep.fitted.items())
              + f" (median |err| {rep.median_abs_error_after:.1%}, worst {rep.max_abs_error_after:.1%})")
        save_system(prof, ROOT / "configs" / "systems" / f"{name}.toml",
                    comment=f"Calibrated by benchmarks/bench_simulator.py --write-profiles on the {len(idx)} rows of\n"
                            f"{PUBLIC_CSV.name} for this GPU (MAP fit, weak prior at the physics defaults).")
    for copy, base in (("a100-40gb", "a100-80gb"), ("h200", "h100-sxm")):
        src, dst = load_system(base), load_system(copy)
        save_system(dataclasses.replace(dst, efficiency=src.efficiency, calibration=src.calibration),
                    ROOT / "configs" / "systems" / f"{copy}.toml",
                    comment=f"Efficiency parameters copied from {base} (same GPU architecture; no public rows).")


def write_runs(path: str) -> None:
    """The 199 public rows as ``simulate --runs`` reads them: each row's framework named in one column (its
    settings come from the preset), plus the row facts of ``perf_data`` (tied embeddings, FSDP, offload,
    MXFP8, BLOOM's network)."""
    from batchlaw.simulator.csvio import write_csv

    rows = public_rows()
    write_csv(path, rows)
    print(f"wrote {len(rows['model'])} rows with their settings to {path}; predict them with"
          f" `batchlaw simulate --runs {path} --out PRED.csv` (the shipped profiles)")


def random_layouts(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {"layers": np.full(n, 24), "hidden": np.full(n, 2048), "heads": np.full(n, 16),
            "seq_len": np.full(n, 2048), "vocab": np.full(n, 50304), "ffn_hidden": np.full(n, 5504),
            "activation": np.full(n, "swiglu"), "tp": rng.choice([1, 2, 4, 8], n), "pp": rng.choice([1, 2, 4], n),
            "micro_batch": rng.choice([1, 2, 4], n), "global_batch": rng.choice([256, 512, 1024], n),
            "recompute": rng.choice(["none", "selective", "full"], n), "precision": rng.choice(["bf16", "fp8"], n),
            "sequence_parallel": rng.choice([True, False], n), "distributed_optimizer": rng.choice([True, False], n)}
    cols["dp"] = 64 // (cols["tp"] * cols["pp"])
    return cols


def _cpu(fn) -> float:
    c0 = time.process_time()
    fn()
    return time.process_time() - c0


def speed(n: int) -> None:
    cols = random_layouts(n)
    prof = load_system("h100-sxm")
    cpu = min(_cpu(lambda: predict_table(cols, prof)) for _ in range(3))
    print(f"SPEED: predict_table (time + memory) of {n:,} random grid layouts: {n / cpu:,.0f} configs/s of CPU"
          f" time (best of 3, {cpu:.2f} s CPU, one process)")
    # every row distinct (global batch drawn from 1e6 values): no configuration is computed twice
    rng = np.random.default_rng(1)
    uniq = {**cols, "global_batch": cols["dp"] * cols["micro_batch"] * rng.integers(1, 10**6, n)}
    cpu = min(_cpu(lambda: predict_table(uniq, prof)) for _ in range(3))
    print(f"SPEED: the same with every layout distinct: {n / cpu:,.0f} configs/s of CPU time ({cpu:.2f} s CPU)")


def csv_string_table(n: int, seed: int = 2) -> dict[str, np.ndarray]:
    """``random_layouts`` with every row distinct and model, gpu, recompute, sequence_parallel and precision as
    the object arrays of text ``csvio.read_csv`` brings (a plan or runs CSV), plus the framework column."""
    cols = random_layouts(n, seed)
    rng = np.random.default_rng(seed + 1)
    cols["global_batch"] = cols["dp"] * cols["micro_batch"] * rng.integers(1, 10**6, n)
    for name, values in (("model", cols.get("model", np.full(n, "gpt-1.4b"))), ("gpu", np.full(n, "h100-sxm")),
                         ("recompute", cols["recompute"]), ("precision", cols["precision"]),
                         ("sequence_parallel", np.where(cols["sequence_parallel"], "true", "false")),
                         ("framework", np.full(n, "batchlaw-te"))):
        cols[name] = np.array([str(v) for v in values], dtype=object)
    return cols


def string_speed(n: int) -> float:
    """configs/s of CPU time of predict_table on ``csv_string_table`` (best of 3)."""
    cols = csv_string_table(n)
    cpu = min(_cpu(lambda: predict_table(cols)) for _ in range(3))
    print(f"SPEED: every row distinct, model/gpu/recompute/sequence_parallel/precision/framework as CSV text:"
          f" {n / cpu:,.0f} configs/s of CPU time ({cpu:.2f} s CPU, best of 3)")
    return n / cpu


def csv_speed(n: int, baseline: bool) -> None:
    """Read + write of an n-row predict_table output through csvio; optionally the previous stdlib
    DictReader/writer code path on the same table, side by side."""
    import csv as _csv
    import tempfile

    from batchlaw.simulator.csvio import read_csv, write_csv

    out = predict_table(random_layouts(n), load_system("h100-sxm"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.csv"
        w = _cpu(lambda: write_csv(path, out))
        r = _cpu(lambda: read_csv(path))
        print(f"CSV: {n:,} rows x {len(out)} columns: write {w:.1f} s + read {r:.1f} s CPU (csvio)")
        if baseline:
            def old_write():
                with (Path(tmp) / "old.csv").open("w", newline="") as fh:
                    wr = _csv.writer(fh)
                    wr.writerow(list(out))
                    arrays = [np.asarray(v) for v in out.values()]
                    for i in range(n):
                        wr.writerow([("" if np.isnan(a[i]) else f"{a[i]:.6g}") if a.dtype.kind == "f" else str(a[i])
                                     for a in arrays])

            def old_read():
                rows = list(_csv.DictReader(path.open(newline="")))
                for key in rows[0]:
                    try:
                        np.array([float(r[key]) if r[key].strip() else np.nan for r in rows])
                    except ValueError:
                        np.array([r[key] for r in rows], dtype=object)
            ow, orr = _cpu(old_write), _cpu(old_read)
            print(f"CSV baseline (previous per-cell stdlib code): write {ow:.1f} s + read {orr:.1f} s CPU;"
                  f" ratio {(ow + orr) / (w + r):.1f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-profiles", action="store_true", help="write the calibrated profiles to configs/systems")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--string-speed", action="store_true", help="only the text-column speed figure; then exit")
    ap.add_argument("--csv-baseline", action="store_true", help="also time the previous per-cell CSV code")
    ap.add_argument("--width-half", type=float, help="start value of width_half (sensitivity runs)")
    ap.add_argument("--tokens-half", type=float, help="start value of tokens_half (sensitivity runs)")
    ap.add_argument("--write-runs", metavar="OUT.csv",
                    help="write the public rows with their framework named per row (what perf_data reads from the"
                         " provenance and notes), for `batchlaw simulate --runs OUT.csv`; then exit")
    a = ap.parse_args()
    if a.string_speed:
        string_speed(a.n)
        raise SystemExit(0)
    if a.write_runs:
        write_runs(a.write_runs)
        raise SystemExit(0)
    if a.width_half or a.tokens_half:
        START = dataclasses.replace(START, width_half=a.width_half or START.width_half,
                                    tokens_half=a.tokens_half or START.tokens_half)
    if not a.skip_accuracy:
        accuracy(a.write_profiles)
    if not a.skip_speed:
        speed(a.n)
        string_speed(a.n)
        csv_speed(a.n, a.csv_baseline)
