"""Tier (a), pure: the step-model terms added for the public rows' interleaved pipelines, context
parallelism, CPU activation offloading and per-layer overheads, and the recipe-schedule rule of the public
data (perf.py, perf_ops.py, perf_data.py; citations in their docstrings and docs/formulas.md)."""

import dataclasses

import numpy as np
import pytest

from batchlaw.simulator.perf import iteration
from batchlaw.simulator.perf_data import public_rows
from batchlaw.simulator.perf_mem import layer_activation_bytes
from batchlaw.simulator.perf_ops import layer_times
from batchlaw.simulator.system import Efficiency, load_system
from batchlaw.simulator.table import normalise, predict_table

BASE = dict(layers=32, hidden=4096, heads=32, seq_len=4096, vocab=128256, tp=2, pp=4, dp=2, micro_batch=1,
            global_batch=64, ffn_hidden=14336, activation="swiglu",
            framework="batchlaw-te")  # the settings pinned (batchlaw resolves by what is installed)


def cols(**kw):
    return normalise({k: np.array([v]) for k, v in {**BASE, **kw}.items()})


def _with(system, **eff):
    return dataclasses.replace(system, efficiency=dataclasses.replace(system.efficiency, **eff))


def test_overlapped_p2p_hides_transfers_shorter_than_a_chunk_forward():
    # Megatron-Core's interleaved schedule with overlap_p2p_comm: a boundary transfer runs beside the next
    # chunk's compute, so only its latency stays exposed when the wire time is shorter than that compute.
    h = load_system("h100-sxm")
    m = 64 / (1 * 2)
    plain = iteration(cols(vpp=2), h)["pp_comm_s"][0]
    over = iteration(cols(vpp=2, overlap_p2p_comm=True), h)["pp_comm_s"][0]
    transfers = 2 * (m * 2 + 4 - 1)
    assert over == pytest.approx(transfers * h.latency_us * 1e-6, rel=1e-9)
    assert plain > 2 * over
    # the flag acts on the interleaved schedule only (megatron-core ignores it without VP)
    assert iteration(cols(overlap_p2p_comm=True), h)["pp_comm_s"][0] == iteration(cols(), h)["pp_comm_s"][0]


def test_overlapped_p2p_exposes_the_excess_of_a_slow_link():
    # tp = 1: no TP collective on the slow link lengthens the chunk that hides the transfer
    slow = dataclasses.replace(load_system("h100-sxm"), nvlink_gbps=0.05, network_gbps=0.05)
    plain = iteration(cols(vpp=2, tp=1), slow)["pp_comm_s"][0]
    over = iteration(cols(vpp=2, tp=1, overlap_p2p_comm=True), slow)["pp_comm_s"][0]
    assert 0.5 * plain < over < plain


def test_context_parallel_attention_efficiency_applies_only_with_cp():
    h = load_system("h100-sxm")
    half = _with(h, cp_attention_eff=0.5)
    full = _with(h, cp_attention_eff=1.0)
    assert layer_times(cols(cp=2), half)["attn"][0] == pytest.approx(2 * layer_times(cols(cp=2), full)["attn"][0])
    assert layer_times(cols(cp=1), half)["attn"][0] == layer_times(cols(cp=1), full)["attn"][0]
    assert layer_times(cols(cp=2), half)["gemm"][0] == layer_times(cols(cp=2), full)["gemm"][0]


def test_activation_offload_costs_only_the_copy_time_compute_cannot_hide():
    gb = load_system("gb200")
    row = dict(pp=1, dp=8, global_batch=16, micro_batch=2, activation_offload_layers=10)
    base = iteration(cols(**{**row, "activation_offload_layers": 0}), gb)["iter_time_s"][0]
    fast = iteration(cols(**row), dataclasses.replace(gb, host_gbps=1e6))["iter_time_s"][0]
    assert fast == pytest.approx(base, rel=1e-12)  # a copy shorter than the next layer's pass is free
    slow_sys = dataclasses.replace(gb, host_gbps=1.0)
    slow = iteration(cols(**row), slow_sys)["iter_time_s"][0]
    c = cols(**row)
    wire = layer_activation_bytes(c)[0] / 1e9  # seconds per direction at 1 GB/s
    m = 16 / (2 * 8)
    # both copies far exceed the layer's passes: each offloaded layer exposes ~ 2 x wire - its own time
    assert slow - base == pytest.approx(m * 10 * 2 * wire, rel=0.05)


def test_per_layer_overhead_adds_layers_times_micro_batches():
    h = load_system("h100-sxm")
    a = iteration(cols(pp=1, dp=8), _with(h, overhead_layer_s=0.0))["iter_time_s"][0]
    b = iteration(cols(pp=1, dp=8), _with(h, overhead_layer_s=1e-3))["iter_time_s"][0]
    m = 64 / (1 * 8)
    assert b - a == pytest.approx(32 * m * 1e-3, rel=1e-9)


def test_recipe_schedule_replaces_a_table_schedule_only_when_nothing_else_differs():
    # throughput_megatron.PROVENANCE.md, section 6: 9 rows "DIFFERS" from their release's recipe; 3 differ
    # only in micro batch / VP (26.02.01 GB300 Llama3-70B MXFP8: table mbs 2 no VP, recipe mbs 1 VP 5;
    # 25.11 GB300 Llama3-8B: table mbs 2, recipe 4). The others (layout, FSDP, GBS) keep the table.
    r = public_rows()
    notes = r["notes"].astype(str)
    flagged = np.flatnonzero(np.char.find(notes, "DIFFERS") >= 0)
    assert len(flagged) == 9
    changed = [i for i in flagged if "DIFFERS - mbs" in notes[i]]
    assert len(changed) == 3
    seventy = [i for i in changed if r["model"][i] == "Llama3-70B"]
    assert [(r["micro_batch"][i], r["vpp"][i]) for i in seventy] == [(1.0, 5.0)]
    assert all(r["micro_batch"][i] == 4.0 for i in changed if r["model"][i] == "Llama3-8B")
    gbs = [i for i in flagged if "gbs: recipe 128 vs table 256" in notes[i]]
    assert all(r["global_batch"][i] == 256 for i in gbs)


def test_no_public_run_is_called_infeasible():
    # Every row of data/throughput/throughput_megatron.csv ran (with the recipe schedule where the table
    # differs from it only there).
    rows = public_rows()
    out = predict_table(rows)
    assert out["feasible"].all(), [(rows["model"][i], out["reason"][i]) for i in np.flatnonzero(~out["feasible"])]


def test_the_public_rows_written_as_columns_predict_the_same_from_the_cli(tmp_path, capsys):
    # session-5 audit: `simulate --runs` on the published CSV called 177 of 199 rows infeasible, because the
    # sources' settings live in its provenance and notes; bench_simulator.py --write-runs writes them out
    import subprocess
    import sys

    from batchlaw.simulator.csvio import read_csv
    from batchlaw.tools.cli import main

    runs = tmp_path / "runs.csv"
    subprocess.run([sys.executable, "benchmarks/bench_simulator.py", "--write-runs", str(runs)], check=True,
                   capture_output=True)
    assert main(["simulate", "--runs", str(runs), "--out", str(tmp_path / "pred.csv")]) == 0
    assert "199 rows, 199 feasible" in capsys.readouterr().out
    cli = read_csv(tmp_path / "pred.csv")["pred_iter_time_s"].astype(float)
    np.testing.assert_allclose(cli, predict_table(public_rows())["pred_iter_time_s"].astype(float), rtol=1e-9)


def test_new_efficiencies_are_range_checked():
    with pytest.raises(ValueError, match="cp_attention_eff"):
        dataclasses.replace(load_system("h100-sxm"), efficiency=Efficiency(cp_attention_eff=1.5))
    with pytest.raises(ValueError, match="host_gbps"):
        dataclasses.replace(load_system("h100-sxm"), host_gbps=float("nan"))


def test_large_tables_are_priced_in_chunks_with_the_same_values():
    # predict_table slices tables over 2 x 32768 rows (cache-sized passes): rows must not depend on it
    from batchlaw.simulator import table

    rng = np.random.default_rng(3)
    n = 2 * table._CHUNK + 7
    big = {**{k: np.full(n, v) for k, v in BASE.items()}, "tp": rng.choice([1, 2, 4], n),
           "global_batch": 8 * rng.integers(1, 10**6, n), "pp": rng.choice([1, 2, 4], n),
           "recompute": rng.choice(["none", "full"], n), "dp": np.full(n, 8)}
    whole = predict_table(big, "h100-sxm")
    for lo in (0, table._CHUNK - 3, n - 5):
        part = predict_table({k: v[lo:lo + 5] for k, v in big.items()}, "h100-sxm")
        for key in ("pred_iter_time_s", "pred_mem_gib", "feasible"):
            np.testing.assert_array_equal(whole[key][lo:lo + 5], part[key])


def test_auto_precision_is_fp32_on_a_cpu_profile_and_bf16_on_a_gpu():
    # spec.resolve_precision, the rule grids use: predict_table applies it per row's system. fp32 keeps
    # 4-byte activations and 16 bytes of model state per parameter, so memory tells the precisions apart.
    row = {**{k: np.array([v]) for k, v in BASE.items()}, "tp": np.array([1]), "pp": np.array([1]),
           "dp": np.array([1]), "global_batch": np.array([4]), "precision": np.array(["auto"])}

    def mem(precision, system):
        return predict_table({**row, "precision": np.array([precision])}, system)["pred_mem_gib"][0]

    for system in ("cpu-gloo", "h100-sxm"):
        assert mem("fp32", system) != mem("bf16", system)
    assert mem("auto", "cpu-gloo") == mem("fp32", "cpu-gloo")
    assert mem("auto", "h100-sxm") == mem("bf16", "h100-sxm")


def test_a_profile_fitted_before_the_new_terms_keeps_its_predictions(tmp_path):
    # an [efficiency] table without overhead_layer_s / cp_attention_eff was fitted by a model without them:
    # it loads them switched off; a profile with no [efficiency] table takes the physics defaults
    from batchlaw.simulator.system import load_system

    old = tmp_path / "old.toml"
    old.write_text('[system]\nname = "old"\npeak_tflops = 989.0\nhbm_gbps = 3350.0\nmemory_gib = 80.0\n'
                   '[efficiency]\nmatmul_max = 0.7\n')
    e = load_system(old).efficiency
    assert (e.overhead_layer_s, e.cp_attention_eff, e.matmul_max) == (0.0, 1.0, 0.7)
    bare = tmp_path / "bare.toml"
    bare.write_text('[system]\nname = "bare"\npeak_tflops = 989.0\nhbm_gbps = 3350.0\nmemory_gib = 80.0\n')
    assert load_system(bare).efficiency == Efficiency()
