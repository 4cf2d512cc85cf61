"""Tier (a), pure: session-6 terms of the step and memory model: NCCL's ring/tree latency and the DDP
bucket count (perf_comm.py, perf.py), dropout-aware activation memory and the memory range whose floor
decides feasibility (perf_mem.py, choices.py). Golden values from the sources cited in the modules."""

import dataclasses

import numpy as np
import pytest

from batchlaw.simulator.perf_comm import allreduce, ring_latency, rs_or_ag
from batchlaw.simulator.perf_mem import ALLOCATOR_SLACK, GIB, memory_range
from batchlaw.simulator.system import load_system
from batchlaw.simulator.table import normalise, predict_table

# NCCL src/graph/tuning.cc (Simple protocol): base 8.4 us, ring hop 3.4 us over NVLink, 9.6 us over the network
NCCL = dict(latency_us=8.4, hop_nvlink_us=3.4, hop_net_us=9.6)


def _h100(**kw):
    return dataclasses.replace(load_system("h100-sxm"), **{**NCCL, **kw})


def _us(x) -> float:
    return float(np.asarray(x).reshape(-1)[0]) * 1e6


def test_ring_latency_is_nccls_tuning_model():
    h = _h100()
    assert _us(ring_latency(8, 1, h, allreduce=True)) == pytest.approx(8.4 + 14 * 3.4)  # one node: 14 NVLink steps
    assert _us(ring_latency(8, 1, h, allreduce=False)) == pytest.approx(8.4 + 7 * 3.4)
    # 16 ranks on 2 nodes: 30 steps, 2 of them across the network, x 1.9 (multi-node ring plateau)
    assert _us(ring_latency(16, 1, h, allreduce=True)) == pytest.approx(1.9 * (8.4 + 28 * 3.4 + 2 * 9.6))
    # DP ranks 8 apart: one per node, every step crosses the network
    assert _us(ring_latency(4, 8, h, allreduce=False)) == pytest.approx(8.4 + 3 * 9.6)
    assert _us(ring_latency(1, 1, h, allreduce=True)) == 0.0


def test_thousands_of_ranks_take_the_tree():
    # a small all-reduce over 1024 nodes: the ring's 2 x 1023 network steps cost ~37 ms of latency, NCCL's tree
    # 2 log2(1024) x 50 us = 1 ms; 4 GB over 16 nodes still takes the ring (tree: 0.45 of the bus bandwidth)
    h = _h100()
    small = _us(allreduce(1024, 8, 1e3, h))
    assert small == pytest.approx(2 * 10 * 50.0, rel=0.01)
    big = float(allreduce(16, 8, 4e9, h)[()])  # 4 GB over 16 nodes
    ring_wire = 2 * 15 / 16 * 4e9 / (50e9 * h.efficiency.network_eff)
    assert big == pytest.approx(ring_wire + 1.9 * (8.4 + 2 * 15 * 9.6) * 1e-6, rel=1e-9)
    assert float(rs_or_ag(2, 1, 0.0, h)[()]) == pytest.approx((8.4 + 3.4) * 1e-6)


L70 = dict(layers=80, hidden=8192, heads=64, query_groups=8, seq_len=8192, vocab=128256, ffn_hidden=28672,
           activation="swiglu", tp=4, pp=4, dp=4, vpp=5, micro_batch=1, global_batch=128, recompute="none",
           precision="bf16", framework="nemo-2", sequence_parallel=True)


def _c(**kw):
    return normalise({k: np.array([v]) for k, v in {**L70, **kw}.items()})


def test_dropout_masks_only_with_dropout():
    # ATen dropout returns its input for p = 0 (no mask); Korthikanti et al. 2022 count two 1-byte masks (of
    # 34 bytes per token and h, with SP all / t): dropping them saves 2/34 of the layer's activations
    h = load_system("h100-sxm")
    none, some, unknown = (memory_range(_c(dropout=d), h) for d in (0.0, 0.1, np.nan))
    assert some[1][0] == unknown[1][0] > none[1][0]  # the estimate keeps the masks of an unknown dropout
    assert unknown[0][0] == none[0][0]  # the floor does not
    per_tok = 2 * 8192 / 4 * 1 * 8192  # bytes of the two masks per layer and micro-batch
    layers_in_flight = 80 / 4 * 4 * (1 + 3 / 20)
    assert (some[1][0] - none[1][0]) * GIB == pytest.approx(per_tok * layers_in_flight, rel=1e-9)
    assert unknown[2][0] == pytest.approx(unknown[1][0] + ALLOCATOR_SLACK * (unknown[1][0] - h.memory_overhead_gib))


def test_a_run_is_infeasible_only_when_even_its_floor_does_not_fit():
    # a layout whose estimate is just over the capacity but whose floor fits: feasible, and said to be tight
    h = load_system("h100-sxm")
    rows = {k: np.array([v]) for k, v in {**L70, "dropout": np.nan, "gpu": "h100-sxm"}.items()}
    low, est, _ = memory_range(normalise(rows), h)
    cap = float((low[0] + est[0]) / 2)
    tight = predict_table(rows, dataclasses.replace(h, memory_gib=cap))
    assert tight["feasible"][0] and "memory may not fit" in tight["unknowns"][0]
    short = predict_table(rows, dataclasses.replace(h, memory_gib=float(low[0]) * 0.99))
    assert not short["feasible"][0] and "over capacity" in short["reason"][0]


# Korthikanti et al. 2022 Fig. 1 (GiB per GPU on A100; the values as Calculon's llm-validation tabulates them,
# calculon/llm/validation.py seqsel_fig1): weights + optimizer of the transformer layers, and activations
# without (TP only) and with sequence parallelism + selective recompute. 22B: tp 8, micro batch 4; 175B: tp 8,
# pp 8; 530B: tp 8, pp 35; 1T: tp 8, pp 64; s = 2048, micro batch 1 but for 22B. The 175B and 530B
# activations are those of the interleaved schedule with 3 model chunks per stage (Megatron's in-flight
# factor 1 + (p - 1) / (3 p)); with the plain schedule they would be 23% lower.
FIG1 = {"22B": (dict(layers=48, hidden=6144, heads=64, pp=1, micro_batch=4, vpp=1), 45.5625, 59.25, 9.5625),
        "175B": (dict(layers=96, hidden=12288, heads=96, pp=8, micro_batch=1, vpp=3), 45.5625, 66.84375, 12.3515625),
        "530B": (dict(layers=105, hidden=20480, heads=128, pp=35, micro_batch=1, vpp=3), 31.640625, 114.0234375,
                 23.076171875),
        "1T": (dict(layers=128, hidden=25600, heads=160, pp=64, micro_batch=1, vpp=1), 32.958984375, 131.25, 26.5625)}


@pytest.mark.parametrize("model", list(FIG1))
def test_memory_reproduces_korthikanti_fig1(model):
    from batchlaw.simulator.perf_mem import memory_gib

    shape, states_gib, acts_none, acts_seqsel = FIG1[model]
    a100 = load_system("a100-80gb")
    base = dict(seq_len=2048, vocab=0, tp=8, dp=1, global_batch=1024, precision="bf16", flash_attention=False,
                dropout=0.1, framework="megatron-lm-2021", **shape)  # vocab 0: the figure counts the layers only

    def parts(**kw):
        c = normalise({k: np.array([v]) for k, v in {**base, **kw}.items()})
        total = memory_gib(c, a100)[0]
        no_acts = memory_gib({**c, "micro_batch": np.array([1e-12])}, a100)[0]
        return no_acts - a100.memory_overhead_gib, total - no_acts

    states, acts = parts()
    assert states == pytest.approx(states_gib, rel=1e-3) and acts == pytest.approx(acts_none, rel=1e-3)
    assert parts(sequence_parallel=True, recompute="selective")[1] == pytest.approx(acts_seqsel, rel=1e-3)


def test_dp_collectives_are_the_single_collectives():
    from batchlaw.simulator.perf_comm import dp_collectives

    h = _h100()
    n, stride = np.array([1.0, 4.0, 64.0, 2048.0]), np.array([8.0, 2.0, 8.0, 1.0])
    rs, ag, ar = dp_collectives(n, stride, 1e8, 5e7, h)
    np.testing.assert_allclose(rs, rs_or_ag(n, stride, 1e8, h), rtol=1e-12)
    np.testing.assert_allclose(ag, rs_or_ag(n, stride, 5e7, h), rtol=1e-12)
    np.testing.assert_allclose(ar, allreduce(n, stride, 1e8, h), rtol=1e-12)
