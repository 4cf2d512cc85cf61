"""Step time and memory per GPU of a Megatron run, vectorised over numpy arrays (one system).

Sources of each term (details and equations in docs/formulas.md):
- FLOPs: ``params.flops_per_step`` (Narayanan et al. 2021; Korthikanti et al. 2022).
- GEMM efficiency grows with operation size: ``eff = e_max * w/(w + w_half) * n/(n + n_half)``, w =
  h/tp the per-GPU GEMM width, n = micro_batch x seq the GEMM rows (Calculon's size-keyed efficiency
  tables, Isaev et al. SC'23, reduced to two saturating factors fitted per system).
- TP: 2 all-reduces of s b h activations per layer forward and 2 backward (Korthikanti et al. 2022,
  sec. 4.2.2; with SP the same volume as reduce-scatter + all-gather), ring cost 2(t-1)/t bytes/bw.
- PP: 1F1B bubble (p-1)/v micro-batch slots (Narayanan et al. 2021, sec. 2.2), p2p of s b h
  activations per micro-batch and stage boundary.
- DP: ring all-reduce of fp32 gradients, or reduce-scatter of gradients + all-gather of 16-bit
  parameters with the distributed optimizer (Rajbhandari et al. 2020, sec. 7), partly hidden when
  overlapped; optimizer step memory-bound over the local shard.
- Memory: bytes per parameter 18 / (6 + 12/d) (Megatron distributed-optimizer docs); activations per
  layer from Korthikanti et al. 2022 Table 2, first stage holding min(p, m) micro-batches (1F1B) and
  x (1 + (p-1)/(p v)) when interleaved; logits 4 s b V / t bytes when p = 1.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from batchlaw.simulator.params import flops_per_step, layer_linear_params
from batchlaw.simulator.system import SystemProfile

__all__ = ["iteration", "memory_gib", "run_time"]

GIB = 2.0**30


def _ring(n, nbytes, bw_gbps, latency_s, factor=2.0):
    """Ring collective time: factor (n-1)/n bytes / bandwidth + latency (0 when n = 1)."""
    n = np.asarray(n, dtype=np.float64)
    return np.where(n > 1, factor * (n - 1) / n * nbytes / (bw_gbps * 1e9) + latency_s, 0.0)


def _stage_params(c: Mapping[str, np.ndarray]) -> np.ndarray:
    """Parameters on the most loaded GPU: L/p layers + embedding (+ output layer when p = 1), / t."""
    h = c["hidden"]
    per_layer = layer_linear_params(h, c["heads"], c["query_groups"], c["ffn_hidden"], c["gated"]) + 2 * h
    emb = c["vocab"] * h
    out = np.where(c["tied"], 0.0, emb)
    first = c["layers"] / c["pp"] * per_layer + emb + np.where(c["pp"] == 1, out, 0.0)
    last = c["layers"] / c["pp"] * per_layer + out
    return np.maximum(first, last) / c["tp"]


def memory_gib(c: Mapping[str, np.ndarray], system: SystemProfile) -> np.ndarray:
    """Peak memory per GPU on the most loaded pipeline stage, GiB (incl. the system's overhead)."""
    p16 = c["precision"] != "fp32"
    dp = c["dp"]
    bytes_per_param = np.where(c["distributed_optimizer"], np.where(p16, 6 + 12 / dp, 8 + 8 / dp),
                               np.where(p16, 18.0, 16.0))
    states = _stage_params(c) * bytes_per_param
    s, b, h, t, a = c["seq_len"], c["micro_batch"], c["hidden"], c["tp"], c["heads"]
    mlp_scale = np.where(c["gated"], 2.0, 1.0) * c["ffn_hidden"] / (4 * h)  # Korthikanti's 16 sbh MLP part
    sharded = 8.0 + 16.0 * mlp_scale  # the 24/t term, MLP generalised to ffn and SwiGLU
    # Flash attention never stores the s x s scores (Megatron's theoretical_memory_usage omits the term).
    attn_core = np.where(c["flash_attention"], 0.0, 5.0 * a * s / h)
    sp = c["sequence_parallel"]
    rec = c["recompute"]
    per_layer = np.where(
        rec == "full", 2.0 / np.where(sp, t, 1),
        np.where(sp, (10.0 + sharded) / t, 10.0 + sharded / t) + np.where(rec == "selective", 0.0, attn_core / t))
    per_layer = per_layer * s * b * h * np.where(p16, 1.0, 2.0)
    m = c["global_batch"] / (b * dp)
    pp, vpp = c["pp"], c["vpp"]
    in_flight = np.minimum(pp, m) / pp * np.where(vpp > 1, 1 + (pp - 1) / (pp * vpp), 1.0)
    acts = per_layer * c["layers"] * in_flight
    logits = np.where(pp == 1, 4.0 * s * b * c["vocab"] / t, 0.0)
    return (states + acts + logits) / GIB + system.memory_overhead_gib


def iteration(c: Mapping[str, np.ndarray], system: SystemProfile) -> dict[str, np.ndarray]:
    """Predicted iteration time and its parts, model FLOPs and MFU."""
    e = system.efficiency
    s, b, h, t, pp, dp, vpp = (c[k] for k in ("seq_len", "micro_batch", "hidden", "tp", "pp", "dp", "vpp"))
    gb, layers = c["global_batch"], c["layers"]
    model_f, hw_f = flops_per_step(gb, s, layers, h, c["heads"], c["query_groups"], c["ffn_hidden"], c["vocab"],
                                   gated=c["gated"], recompute=c["recompute"])
    width, rows = h / t, b * s
    eff = e.matmul_max * width / (width + e.width_half) * rows / (rows + e.tokens_half)
    gpus = t * pp * dp
    compute = hw_f / gpus / (system.peak_tflops * 1e12 * eff)
    m = gb / (b * dp)
    lat = system.latency_us * 1e-6
    intra = np.where(t <= system.gpus_per_node, system.nvlink_gbps, system.network_gbps) * e.network_eff
    act_bytes = s * b * h * np.where(c["precision"] == "fp32", 4.0, 2.0)
    tp_per_mb = _ring(t, act_bytes, intra, lat) * 4 * layers / pp
    tp_per_mb = tp_per_mb * np.where(c["recompute"] == "full", 1.5, 1.0)
    stage_mb = compute / m + tp_per_mb  # one micro-batch through one stage, fwd + bwd
    bubble = (pp - 1) / vpp * stage_mb
    p2p = np.where(pp > 1, 2 * act_bytes / (system.network_gbps * e.network_eff * 1e9) * m * vpp, 0.0)
    inter = np.where(gpus > system.gpus_per_node, system.network_gbps, system.nvlink_gbps) * e.network_eff
    n_local = _stage_params(c)
    grad_bytes = 4.0 * n_local
    dp_comm = np.where(c["distributed_optimizer"],
                       _ring(dp, grad_bytes, inter, lat, 1.0) + _ring(dp, 2.0 * n_local, inter, lat, 1.0),
                       _ring(dp, grad_bytes, inter, lat))
    dp_comm = dp_comm * np.where(c["overlap_grad_reduce"], e.dp_exposed, 1.0)
    shard = np.where(c["distributed_optimizer"], n_local / dp, n_local)
    optimizer = 24.0 * shard / (system.hbm_gbps * 1e9 * 0.7)
    total = m * stage_mb + bubble + p2p + dp_comm + optimizer + e.overhead_s
    tflops = model_f / gpus / total / 1e12
    return {"iter_time_s": total, "compute_s": m * compute / m, "bubble_s": bubble, "tp_comm_s": m * tp_per_mb,
            "dp_comm_s": dp_comm, "model_flops": model_f, "tflops_per_gpu": tflops,
            "mfu": tflops / system.peak_tflops}


def run_time(iter_time_s: float, *, total_samples: int, global_batch: int, ramp=None,
             time_at_batch=None) -> tuple[float, int]:
    """Whole-run seconds and steps for a sample budget, optionally under a batch ramp.

    Args:
        iter_time_s: step time at ``global_batch``.
        ramp: a ``BatchRamp`` (callable consumed -> batch) or None for a constant batch.
        time_at_batch: callable batch -> step time; defaults to scaling ``iter_time_s`` linearly
            with the batch (compute-bound), which is what a fixed layout does to first order.
    """
    if ramp is None:
        steps = -(-total_samples // global_batch)
        return steps * iter_time_s, steps
    from batchlaw.simulator.ramp import segments

    f = time_at_batch or (lambda batch: iter_time_s * batch / global_batch)
    seconds, steps = 0.0, 0
    for batch, n, _ in segments(ramp, total_samples):
        seconds += n * float(f(batch))
        steps += n
    return seconds, steps
