"""Tier (a), pure: the step-model terms of session 4: the slowest pipeline stage under Megatron's
embedding/loss-aware split, the cross-entropy implementation, MXFP8, GEMM wave fill by output tiles, and
per-row network bandwidth (perf.py, perf_ops.py, table.py, perf_data.py; citations in their docstrings and
docs/formulas.md)."""

import dataclasses

import numpy as np
import pytest

from batchlaw.simulator.perf import iteration
from batchlaw.simulator.perf_data import public_rows
from batchlaw.simulator.perf_ops import CE_BYTES, layer_times, logits_time
from batchlaw.simulator.system import load_system
from batchlaw.simulator.table import normalise, predict_table

# Llama 3.1 405B on tp 4, pp 16, vp 4 as the Megatron-Bridge GB200 rows run it (126 layers + 2 slots)
L405 = dict(layers=126, hidden=16384, heads=128, query_groups=8, seq_len=8192, vocab=128256, tp=4, pp=16, dp=4,
            vpp=4, micro_batch=1, global_batch=64, ffn_hidden=53248, activation="swiglu", sequence_parallel=True,
            framework="batchlaw-te")  # the settings pinned (batchlaw resolves by what is installed)


def cols(**kw):
    return normalise({k: np.array([v]) for k, v in {**L405, **kw}.items()})


def _with(system, **eff):
    return dataclasses.replace(system, efficiency=dataclasses.replace(system.efficiency, **eff))


def _per_layer_and_logit(c, system):
    lt = layer_times(c, system)
    tp_like = iteration(c, system)["tp_comm_s"][0] / (c["global_batch"][0] / c["dp"][0] * c["layers"][0] / c["pp"][0])
    layer = (lt["gemm"][0] + lt["attn"][0] + lt["elem"][0] + lt["recompute"][0] + tp_like
             + system.efficiency.overhead_layer_s)
    return layer, logits_time(c, system)[0]


@pytest.mark.parametrize("vocab", [1024, 4_000_000])
def test_split_extra_layers_price_the_slowest_stage_as_megatron_builds_it(vocab):
    # account_for_embedding/loss_in_pipeline_split: (126 + 2) / 16 = 8 layer slots per stage; the middle
    # stages build 8 layers, the last 7 layers + the output layer (get_num_layers_to_build). The slowest
    # stage is max(8 layers, 7 layers + logits), not the 126 / 16 = 7.875-layer average plus the logits.
    g = _with(load_system("gb200"), overhead_mb_s=0.0)
    even = cols(vocab=vocab)
    split = cols(vocab=vocab, pipeline_split_extra_layers=2)
    layer, logit = _per_layer_and_logit(even, g)
    m = 64 / 4
    slot_even = 126 / 16 * layer + logit
    slot_split = max(8 * layer, 7 * layer + logit)
    t_even = iteration(even, g)["iter_time_s"][0]
    t_split = iteration(split, g)["iter_time_s"][0]
    assert t_split - t_even == pytest.approx(m * (slot_split - slot_even), rel=1e-6)
    # a small vocabulary: the middle stages are the slowest and the split is slower than the average
    # stage; a huge one: the last stage is, and the split (a layer fewer beside the logits) is faster
    assert (t_split > t_even) == (vocab == 1024)


def test_split_extra_layers_change_nothing_without_a_pipeline():
    g = load_system("gb200")
    one = dict(pp=1, vpp=1, dp=64, layers=30)
    assert iteration(cols(**one, pipeline_split_extra_layers=2), g)["iter_time_s"][0] == \
        iteration(cols(**one), g)["iter_time_s"][0]


def test_cross_entropy_bytes_follow_the_implementation():
    # bytes per logit counted from megatron-core's cross_entropy.py / fused_cross_entropy.py and TE's kernel
    h = load_system("h100-sxm")
    base = dict(pp=1, vpp=1, dp=8, layers=2)
    t = {impl: logits_time(cols(**base, cross_entropy_fusion=impl), h)[0] for impl in CE_BYTES}
    hbm = h.hbm_gbps * 1e9 * h.efficiency.hbm_eff
    logits = 8192 * 128256 / 4  # tokens x vocab / tp
    assert t["none"] - t["te"] == pytest.approx((52 - 10) * logits / hbm, rel=1e-9)
    assert t["none"] > t["native"] > t["te"]
    # no column: megatron-core's default (what batchlaw's trainer runs)
    assert logits_time(cols(**base), h)[0] == t["none"]
    with pytest.raises(ValueError, match="cross_entropy_fusion = 'fast'"):
        cols(cross_entropy_fusion="fast")


def test_mxfp8_runs_the_fp8_gemms_at_their_own_efficiency():
    g = load_system("gb200")
    slow, same = _with(g, mxfp8_eff=0.5), _with(g, mxfp8_eff=1.0)
    mx = cols(precision="fp8", fp8_recipe="mxfp8")
    cs = cols(precision="fp8", fp8_recipe="current")
    assert layer_times(mx, same)["gemm"][0] == layer_times(cs, same)["gemm"][0]
    assert layer_times(mx, slow)["gemm"][0] > 1.5 * layer_times(cs, slow)["gemm"][0]
    assert layer_times(cs, slow)["gemm"][0] == layer_times(cs, same)["gemm"][0]
    # a bf16 run has no FP8 recipe to pay for
    assert layer_times(cols(fp8_recipe="mxfp8"), slow)["gemm"][0] == layer_times(cols(), slow)["gemm"][0]
    with pytest.raises(ValueError, match="fp8_recipe = 'nvfp4'"):
        cols(precision="fp8", fp8_recipe="nvfp4")


def test_gemm_wave_fill_depends_on_output_tiles_not_rows_alone():
    # halving the rows of a narrow GEMM (few output tiles per SM) costs more than of a wide one
    h = _with(load_system("h100-sxm"), width_half=1e-9, hbm_eff=1.0)
    def gemm(tokens, hidden):
        c = cols(seq_len=tokens, hidden=hidden, heads=hidden // 128, query_groups=hidden // 128, ffn_hidden=4 * hidden,
                 tp=1, activation="gelu")
        return layer_times(c, h)["gemm"][0] / tokens  # seconds per token
    narrow = gemm(512, 1024) / gemm(1024, 1024)
    wide = gemm(512, 16384) / gemm(1024, 16384)
    assert narrow > wide > 1.0


def test_network_override_prices_only_its_rows():
    h = load_system("h100-sxm")
    rows = {k: np.array([v, v, v]) for k, v in L405.items() if k not in ("vpp",)}
    rows.update(tp=np.array([8, 8, 8]), pp=np.array([1, 1, 1]), dp=np.array([16, 16, 16]),
                global_batch=np.array([16, 16, 16]), gpu=np.array(["H100"] * 3),
                network_gbps=np.array([np.nan, 1.0, 50.0]))
    out = predict_table(rows)
    plain = predict_table({k: v for k, v in rows.items() if k != "network_gbps"})
    t, t0 = out["pred_iter_time_s"], plain["pred_iter_time_s"]
    assert t[0] == t0[0]  # blank: the profile's network
    assert t[2] == pytest.approx(t0[2], rel=1e-12)  # the profile's own value (50 GB/s per GPU)
    assert t[1] > t0[1]  # DP over 16 nodes on a 1 GB/s NIC is slower
    assert out["reason"].dtype == object
    with pytest.raises(ValueError, match="network_gbps = 0"):
        predict_table({**rows, "network_gbps": np.array([0.0, 1.0, 1.0])})


def test_public_rows_carry_their_sources_settings():
    r = public_rows()
    src = r["source"].astype(str)
    bloom = np.char.find(src, "BLOOM") >= 0
    assert r["network_gbps"][bloom].tolist() == [6.25]  # 4 x 100 Gb/s Omni-Path per 8 GPUs
    assert np.isnan(r["network_gbps"][~bloom]).all()
    # MXFP8 only where the table prints it, and only on Blackwell (provenance: precision as printed)
    mx = r["fp8_recipe"] == "mxfp8"
    assert mx.sum() == 27  # B200 4, GB200 13, GB300 10
    assert set(r["gpu"][mx]) <= {"B200", "GB200", "GB300"}
    # each row names the framework it ran (its framework_version); the loss kernel comes from that preset
    fw = r["framework_version"].astype(str)
    ce = predict_table(r)["cross_entropy_fusion"]
    assert (r["framework"][np.char.find(fw, "Megatron-Bridge") >= 0] == "megatron-bridge").all()
    assert (ce[np.char.find(fw, "Megatron-Bridge") >= 0] == "te").all()
    assert (ce[np.char.find(fw, "NeMo 2.0") >= 0] == "native").sum() == 43  # dgxc v25.04 34, NeMo 25.02/25.04 9
    assert (ce[np.char.find(fw, "NeMo launcher") >= 0] == "none").sum() == 54  # dgxc v24.11.1 and GPT-3
    assert (r["framework"][np.char.find(fw, "NeMo launcher") >= 0] == "nemo-1").sum() == 54


def test_split_with_two_stages_is_the_even_split():
    # pp = 2: the first stage builds (L + 2)/2 - 1 = L/2 layers beside the embedding, the last the same beside
    # the logits; there is no middle stage, so the split costs what the even split does
    g = load_system("gb200")
    two = dict(layers=30, pp=2, vpp=8, dp=8)
    assert iteration(cols(**two, pipeline_split_extra_layers=2), g)["iter_time_s"][0] == pytest.approx(
        iteration(cols(**two), g)["iter_time_s"][0], rel=1e-12)


@pytest.mark.parametrize("value", [np.inf, -np.inf, -1.0])
def test_network_override_must_be_a_finite_positive_bandwidth(value):
    with pytest.raises(ValueError, match="network_gbps = .*allowed is a finite positive"):
        cols(network_gbps=value)


def test_network_override_on_a_large_table_keeps_every_row_in_place():
    # >= 4096 rows take the distinct-configuration path; rows with and without an override interleave
    h = load_system("h100-sxm")
    n = 5000
    rows = {k: np.full(n, v) for k, v in L405.items() if k != "vpp"}
    rows.update(tp=np.full(n, 8), pp=np.full(n, 1), dp=np.full(n, 16), gpu=np.full(n, "H100"),
                global_batch=np.where(np.arange(n) % 3 == 0, 16, 32),
                network_gbps=np.where(np.arange(n) % 2 == 0, np.nan, 1.0))
    out = predict_table(rows)["pred_iter_time_s"]
    for i in (0, 1, 2, 3, 4, 5, n - 1):
        one = {k: v[i:i + 1] for k, v in rows.items()}
        assert out[i] == pytest.approx(predict_table(one)["pred_iter_time_s"][0], rel=1e-12)


def test_column_spellings_of_the_sources():
    g = _with(load_system("gb200"), mxfp8_eff=0.5)
    gemm = {r: layer_times(cols(precision="fp8", fp8_recipe=r), g)["gemm"][0]
            for r in ("blockwise", "mxfp8", "delayed")}
    assert gemm["blockwise"] == gemm["mxfp8"] > gemm["delayed"]  # block-scaled recipes share mxfp8_eff
    h = load_system("h100-sxm")
    assert logits_time(cols(cross_entropy_fusion="yes"), h)[0] == logits_time(cols(cross_entropy_fusion="native"), h)[0]


def test_a_hand_built_column_dict_reads_the_recipe_and_loss_names():
    # callers that skip normalise (as for recompute and precision, perf_ops.flag) name the recipe and the
    # loss implementation; they are priced as normalise would price them
    g = _with(load_system("gb200"), mxfp8_eff=0.5)
    norm = cols(precision="fp8", fp8_recipe="mxfp8", cross_entropy_fusion="te")
    hand = {k: v for k, v in norm.items() if k not in ("mxfp8", "ce_bytes")}
    hand.update(fp8_recipe=np.array(["mxfp8"]), cross_entropy_fusion=np.array(["te"]))
    assert layer_times(hand, g)["gemm"][0] == layer_times(norm, g)["gemm"][0]
    assert logits_time(hand, g)[0] == logits_time(norm, g)[0]
    bare = {k: v for k, v in hand.items() if k not in ("fp8_recipe", "cross_entropy_fusion")}
    assert layer_times(bare, g)["gemm"][0] < layer_times(norm, g)["gemm"][0]  # per-tensor scaling
    assert logits_time(bare, g)[0] > logits_time(norm, g)[0]  # megatron-core's unfused loss


def test_number_formats_the_gpu_lacks_are_refused_with_the_row():
    # mixed GPUs: rows are grouped by profile, the error names the row in the caller's numbering
    rows = {k: np.array([v] * 4) for k, v in L405.items()}
    rows.update(gpu=np.array(["GB200", "H100", "A100", "H100"]), precision=np.array(["fp8", "fp8", "bf16", "fp8"]),
                fp8_recipe=np.array(["mxfp8", "blockwise", "mxfp8", "tensorwise"]))
    out = predict_table(rows)  # MXFP8 on Blackwell, blockwise on Hopper, a bf16 row's recipe is moot
    assert np.isfinite(out["pred_iter_time_s"].astype(float)).all()
    with pytest.raises(ValueError, match=r"fp8_recipe = 'mxfp8' \(row 3\) on 'h100-sxm'.*allowed there are"):
        predict_table({**rows, "fp8_recipe": np.array(["mxfp8", "blockwise", "mxfp8", "mxfp8"])})
    with pytest.raises(ValueError, match=r"precision = 'fp8' \(row 2\) on 'a100-80gb': it has no FP8 tensor cores"):
        predict_table({**rows, "precision": np.array(["fp8", "fp8", "fp8", "fp8"])})
    one = {k: v[:1] for k, v in rows.items()}
    with pytest.raises(ValueError, match="precision = 'fp8' .row 0. on 'cpu-gloo'"):
        predict_table(one, "cpu-gloo")  # one profile for every row


def test_fp32_runs_at_the_cuda_core_peak_on_a_gpu_and_at_the_profile_peak_on_a_cpu():
    # session-5 audit: fp32 was priced at the 16-bit tensor-core peak with 2-byte operands (and beat bf16)
    h = load_system("h100-sxm")
    c16, c32 = cols(precision="bf16", tp=1, pp=1, dp=1), cols(precision="fp32", tp=1, pp=1, dp=1)
    g16, g32 = layer_times(c16, h)["gemm"][0], layer_times(c32, h)["gemm"][0]
    ratio = h.peak_tflops / h.peak_fp32_tflops  # datasheets: 989 / 67
    assert 0.8 * ratio < g32 / g16 < 1.05 * ratio  # compute-bound GEMMs (4-byte operands add a little)
    assert layer_times(c32, h)["attn"][0] > layer_times(c16, h)["attn"][0] * ratio * 0.5  # no flash in fp32
    assert iteration(c32, h)["iter_time_s"][0] > 5 * iteration(c16, h)["iter_time_s"][0]
    cpu = load_system("cpu-gloo")  # no separate fp32 peak: its peak is an fp32 one
    assert cpu.peak_fp32_tflops == 0
    tiny = dict(layers=2, hidden=64, heads=4, query_groups=4, ffn_hidden=256, seq_len=64, vocab=256)
    t32 = layer_times(cols(precision="fp32", tp=1, pp=1, dp=1, **tiny), cpu)["gemm"][0]
    t32_peak = layer_times(cols(precision="fp32", tp=1, pp=1, dp=1, **tiny),
                           dataclasses.replace(cpu, peak_fp32_tflops=cpu.peak_tflops))["gemm"][0]
    assert t32 == t32_peak


@pytest.mark.parametrize("column", ["sequence_parallel", "fp8", "gated_mlp", "distributed_optimizer"])
def test_a_yes_no_column_refuses_a_typo(column):
    # session-5 audit: "maybe" read as no (sequence_parallel = maybe turned a feasible row infeasible)
    rows = {k: np.array([v, v]) for k, v in L405.items() if k != "activation" or column != "gated_mlp"}
    with pytest.raises(ValueError, match=f"^{column} = 'maybe': allowed are yes/no"):
        predict_table({**rows, column: np.array(["yes", "maybe"])})
    ok = predict_table({**rows, column: np.array(["Yes", " no "])})
    assert np.isfinite(ok["pred_iter_time_s"].astype(float)).all()


def test_an_unknown_gpu_names_the_column_the_row_and_the_aliases():
    rows = {k: np.array([v, v]) for k, v in L405.items()}
    for gpus, row in ((["H100", "Foo"], 1), (["Foo", "Foo"], 0)):
        with pytest.raises(ValueError, match=rf"^gpu = 'Foo' \(row {row}\): unknown; allowed are the profiles .*h100-sxm"
                                             r".* GPU names as sources write them \(.*H100-SXM5-80GB"):
            predict_table({**rows, "gpu": np.array(gpus)})


def test_fp32_memory_prices_the_unfused_attention_its_step_time_prices():
    # review of session 5: fp32 turned flash off for time but memory still dropped the s x s scores
    from batchlaw.simulator.perf_mem import memory_gib

    h = load_system("h100-sxm")
    kw = dict(precision="fp32", tp=1, pp=1, dp=1, layers=24, seq_len=4096, micro_batch=1)
    with_flash, without = cols(flash_attention=True, **kw), cols(flash_attention=False, **kw)
    n = iteration(with_flash, h)["stage_params"]
    assert memory_gib(with_flash, h, n)[0] == memory_gib(without, h, n)[0]
    assert iteration(with_flash, h)["iter_time_s"][0] == iteration(without, h)["iter_time_s"][0]
