"""batchlaw vs Calculon vs llm-analysis on the same public Megatron rows: error and configs/s, in one run.

    python benchmarks/bench_peers.py --calculon /path/to/calculon [--no-llm-analysis]

- batchlaw: leave-one-model-out predictions (``bench_simulator.held_out``), i.e. never fitted on the
  model it predicts; speed of ``predict_table`` on the same rows.
- Calculon (github calculon-ai/calculon, read from the path given, never copied into this project): its
  own system files ``systems/a100_80g.json`` and ``systems/h100_80g_nvl8.json`` as shipped, so only A100
  and H100 rows; a row it cannot express (context parallelism, FSDP, GQA runs as MHA, SwiGLU as a
  1.5 x wider MLP of equal FLOPs) is run where the mapping is exact in FLOPs, skipped otherwise
  (CP, FSDP); a row it raises on is counted as rejected.
- llm-analysis (PyPI ``llm-analysis``): constant flops efficiency 0.5 (its examples' value), HBM
  efficiency 0.9, the GPU specs of batchlaw's profiles (FP8 rows at the FP8 peak); a row it raises on
  is counted as rejected. It models no pipeline bubble and no DP/PP communication.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import time
import warnings

import numpy as np

from bench_simulator import held_out, tagged_rows
from batchlaw.simulator.frameworks import BOOL_SETTINGS
from batchlaw.simulator.system import load_system
from batchlaw.simulator.table import predict_table

_CALCULON_SYSTEMS = {"a100-80gb": "a100_80g.json", "h100-sxm": "h100_80g_nvl8.json"}


def _i(x, default=1) -> int:
    return default if x != x else int(x)


def calculon_predict(rows, path: str, lift_memory: bool = False) -> tuple[np.ndarray, float, int]:
    """(iteration seconds or NaN, CPU seconds, rows attempted) from Calculon's Python API.

    ``lift_memory`` raises the HBM capacity of Calculon's system files so it reports the step time of
    layouts its memory model rejects (the runs did fit on the real GPUs)."""
    sys.path.insert(0, path)
    import calculon
    from calculon.llm import Llm

    logging.getLogger().setLevel(logging.ERROR)
    systems = {}
    for k, v in _CALCULON_SYSTEMS.items():
        cfg = calculon.io.read_json_file(f"{path}/systems/{v}")
        if lift_memory:
            cfg["mem1"]["GiB"] = 1e6
        systems[k] = calculon.System(cfg)
    n = len(rows["row"])
    out = np.full(n, np.nan)
    tried, t0, reasons = 0, time.process_time(), {}
    for i in range(n):
        name = rows["profile"][i]
        if name not in systems or rows["cp"][i] > 1 or rows["fsdp"][i]:
            continue
        tried += 1
        gated = str(rows["gated_mlp"][i]).lower() == "yes"
        h, heads = int(rows["hidden"][i]), int(rows["heads"][i])
        app = {"hidden": h, "feedforward": int(rows["ffn_hidden"][i] * (1.5 if gated else 1)),
               "seq_size": int(rows["seq_len"][i]), "attn_heads": heads, "attn_size": h // heads,
               "num_blocks": int(rows["layers"][i])}
        tp, pp, dp = int(rows["tp"][i]), int(rows["pp"][i]), int(rows["dp"][i])
        sp = rows["tp"][i] > 1 and str(rows["sequence_parallel"][i]).lower() in ("yes", "unknown")
        rec = {"full": "full", "selective": "attn_only"}.get(str(rows["recompute"][i]), "none")
        exe = {"num_procs": tp * pp * dp, "tensor_par": tp, "pipeline_par": pp, "data_par": dp,
               "tensor_par_net": 0, "pipeline_par_net": 1, "data_par_net": 1,
               "batch_size": int(rows["global_batch"][i]), "microbatch_size": _i(rows["micro_batch"][i]),
               "datatype": "float8" if rows["precision"][i] == "fp8" else "float16", "fused_activation": True,
               "attention_type": "multihead", "activation_recompute": rec,
               "pipeline_interleaving": _i(rows["vpp"][i]) if pp > 1 else 1,
               "optimizer_sharding": bool(rows["distributed_optimizer"][i]) and dp > 1,
               "tensor_par_comm_type": "rs_ag" if sp else "ar",
               "tensor_par_overlap": "ring" if (rows["tp_comm_overlap"][i] and tp > 1) else "none",
               "seq_par_ag_redo": False, "data_par_overlap": bool(rows["overlap_grad_reduce"][i]) and dp > 1,
               "weight_offload": False, "activations_offload": False, "optimizer_offload": False, "training": True}
        try:
            model = Llm(Llm.Application(app), logging.getLogger("calculon"))
            with contextlib.redirect_stdout(io.StringIO()):
                model.compile(systems[name], Llm.Execution.from_json(exe))
                model.run(systems[name])
            out[i] = model.get_total_time()
        except Exception as exc:  # Calculon signals unsupported layouts with Llm.Error and asserts
            why = str(exc).split(":")[0][:60] or type(exc).__name__
            reasons[why] = reasons.get(why, 0) + 1
    if reasons:
        print(f"Calculon rejections: {sum(reasons.values())} ({', '.join(sorted(reasons)[:3])}, ...)")
    return out, time.process_time() - t0, tried


def llm_analysis_predict(rows) -> tuple[np.ndarray, float, int]:
    """(iteration seconds or NaN, CPU seconds, rows attempted) from llm-analysis."""
    try:
        from llm_analysis.analysis import ActivationRecomputation, DSZeRO, LLMAnalysis
        from llm_analysis.config import DtypeConfig, GPUConfig, ModelConfig, ParallelismConfig
    except ImportError:
        raise ImportError("llm-analysis is missing: pip install llm-analysis") from None
    logging.getLogger("llm_analysis").setLevel(logging.ERROR)
    n = len(rows["row"])
    out = np.full(n, np.nan)
    t0 = time.process_time()
    for i in range(n):
        prof = load_system(rows["profile"][i])
        fp8 = rows["precision"][i] == "fp8"
        gpu = GPUConfig(name=prof.name, mem_per_GPU_in_GB=prof.memory_gib * 1.0737,
                        hbm_bandwidth_in_GB_per_sec=prof.hbm_gbps,
                        intra_node_bandwidth_in_GB_per_sec=prof.nvlink_gbps, intra_node_min_message_latency=8e-6,
                        peak_fp16_TFLOPS=prof.peak_fp8_tflops if fp8 else prof.peak_tflops,
                        inter_node_bandwidth_in_GB_per_sec=prof.network_gbps * 8)
        gated = str(rows["gated_mlp"][i]).lower() == "yes"
        dp = int(rows["dp"][i] * rows["cp"][i])
        par = ParallelismConfig(tp_size=int(rows["tp"][i]), pp_size=int(rows["pp"][i]), dp_size=dp)
        rec = {"full": ActivationRecomputation.FULL, "selective": ActivationRecomputation.SELECTIVE}.get(
            str(rows["recompute"][i]), ActivationRecomputation.NONE)
        zero = (DSZeRO.STAGE_3 if rows["fsdp"][i] else
                DSZeRO.STAGE_1 if rows["distributed_optimizer"][i] else DSZeRO.NONE)
        mb = _i(rows["micro_batch"][i])
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = ModelConfig(name="row", num_layers=int(rows["layers"][i]), n_head=int(rows["heads"][i]),
                                    hidden_dim=int(rows["hidden"][i]), vocab_size=int(rows["vocab"][i]),
                                    max_seq_len=int(rows["seq_len"][i]),
                                    num_key_value_heads=int(rows["query_groups"][i]),
                                    ffn_embed_dim=int(rows["ffn_hidden"][i]))
                a = LLMAnalysis(model, gpu, DtypeConfig(), par, flops_efficiency=0.5, hbm_memory_efficiency=0.9)
                res = a.training(batch_size_per_gpu=mb, global_batch_size=int(rows["global_batch"][i]),
                                 seq_len=int(rows["seq_len"][i]), activation_recomputation=rec, ds_zero=zero,
                                 flash_attn=bool(rows["flash_attention"][i]), mlp_gated_linear_units=gated)
            out[i] = res["latency_per_iter"]
        except Exception:  # llm-analysis raises on layouts it does not fit in memory or cannot express
            pass
    return out, time.process_time() - t0, n


def _stats(err: np.ndarray) -> str:
    a = np.abs(err[~np.isnan(err)])
    return f"n={len(a)} median |error| {np.median(a):.1%}, worst {a.max():.1%}" if len(a) else "n=0"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calculon", help="path to a checkout of github.com/calculon-ai/calculon")
    ap.add_argument("--no-llm-analysis", action="store_true")
    a = ap.parse_args()
    rows = tagged_rows()
    # the peers get the settings each row ran with: its framework preset's (the published micro batch and VP
    # stay as published, blank where the source gives none)
    resolved = predict_table(rows)
    rows = {**rows, **{k: resolved[k] for k in BOOL_SETTINGS}}
    meas = rows["iter_time_s"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = held_out(rows, "model_key")
    t0 = time.process_time()
    predict_table(rows)
    ours_s = time.process_time() - t0
    e_ours = ours / meas - 1
    print(f"batchlaw (LOMO) all rows: {_stats(e_ours)}; predict_table {len(meas) / ours_s:,.0f} configs/s CPU")
    if a.calculon:
        calc, calc_s, tried = calculon_predict(rows, a.calculon)
        ok = ~np.isnan(calc)
        print(f"Calculon (shipped system files): attempted {tried} rows (A100/H100, no CP/FSDP), ran {ok.sum()},"
              f" rejected {tried - ok.sum()}; {tried / calc_s:,.1f} configs/s CPU")
        calc, _, _ = calculon_predict(rows, a.calculon, lift_memory=True)
        ok = ~np.isnan(calc)
        e_calc = calc / meas - 1
        print(f"Calculon with memory capacity lifted: ran {ok.sum()} of {tried}")
        print(f"  on the rows Calculon ran: Calculon {_stats(e_calc[ok])} | batchlaw LOMO {_stats(e_ours[ok])}")
        for name in ("a100-80gb", "h100-sxm"):
            m = ok & (rows["profile"] == name)
            print(f"    {name}: Calculon {_stats(e_calc[m])} | batchlaw LOMO {_stats(e_ours[m])}")
    if not a.no_llm_analysis:
        la, la_s, tried = llm_analysis_predict(rows)
        ok = ~np.isnan(la)
        e_la = la / meas - 1
        from importlib.metadata import version
        print(f"llm-analysis {version('llm-analysis')}: attempted {tried}, ran {ok.sum()}, rejected {tried - ok.sum()};"
              f" {tried / la_s:,.1f} configs/s CPU")
        print(f"  on the rows llm-analysis ran: llm-analysis {_stats(e_la[ok])} | batchlaw LOMO {_stats(e_ours[ok])}")


if __name__ == "__main__":
    main()
