"""Step time and memory per GPU of a Megatron run, vectorised over numpy arrays (one system).

The step is composed from op-level parts (details and equations in docs/formulas.md, "Step time"):
- compute per layer and micro-batch: ``perf_ops.layer_times`` (GEMMs by shape, FP8, attention core fused
  or not, memory-bound ops, recompute) and ``perf_ops.logits_time``;
- communication by tier: ``perf_comm`` (NVLink domain vs network, slowest tier crossed);
- TP: 2 collectives of s b h activations forward and 2 backward per layer (Korthikanti et al. 2022, sec.
  4.2.2; all-reduce, or reduce-scatter + all-gather of the same volume with SP), 2 more with full
  recompute; a fraction ``tp_exposed`` stays exposed with TP-comm overlap, all of it without.
- CP: ring attention passes K and V around the cp ranks, (cp-1) chunk exchanges forward and 2 x backward,
  hidden behind the attention core (Liu et al. 2023, Ring Attention; Megatron CP docs).
- PP: 1F1B: m slots of the slowest stage (the last one carries the logits; with Megatron's
  embedding/loss-aware split it builds a layer fewer, ``_slowest_stage``) plus (p-1)/v slots of the
  average stage (Narayanan et al. 2021, sec. 2.2), p2p of the s b h (/t with SP) boundary activation
  forward and its gradient backward on the tier the boundary crosses, 2 (m v + p - 1) transfers on the
  critical path (each of the v model chunks sends its own); with ``overlap_p2p_comm`` (interleaved
  schedule only) each transfer hides behind one forward pass of a model chunk (a third of its forward +
  backward) and only the excess and the latency stay exposed (Megatron-Core
  ``schedules.forward_backward_pipelining_with_interleaving``, ``overlap_p2p_comm``).
- DP over dp x cp ranks: all-reduce of fp32 (or 16-bit, ``grad_reduce_in_fp32`` off) gradients, or
  reduce-scatter of gradients + all-gather of 16-bit parameters with the distributed optimizer
  (Rajbhandari et al. 2020, sec. 7), per micro-batch with FSDP. With overlap the reduce-scatter hides
  behind the last micro-batch's backward and the all-gather behind the first forward (Megatron
  ``--overlap-grad-reduce`` / ``--overlap-param-gather``); at least ``dp_exposed`` of it stays exposed.
- tied embeddings with p > 1: one all-reduce of the V h / t embedding gradient between the first and last
  stage (Shoeybi et al. 2019, sec. 3).
- optimizer: Adam memory-bound, 30 bytes per local (sharded) parameter.
- fixed overheads: ``overhead_s`` per step, ``overhead_mb_s`` per micro-batch and model chunk (launch,
  p2p synchronisation, schedule), so interleaving pays v of them per micro-batch, and ``overhead_layer_s``
  per layer and micro-batch (host-side module work and kernel launches that the GPU waits for when a
  layer's kernels are short). Memory: ``perf_mem.memory_gib``.
- CPU activation offloading (``activation_offload_layers``): the activations of each offloaded layer go to
  host memory at ``host_gbps`` and back; the copy hides behind the next layer's forward / backward and
  only the excess is exposed (Megatron-Core / Transformer Engine ``cpu_offloading``, which overlaps the
  copies on a side stream).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from batchlaw.simulator.params import flops_per_step
from batchlaw.simulator.perf_comm import collective, dp_collectives, p2p_bandwidth
from batchlaw.simulator.perf_mem import layer_activation_bytes, memory_gib, stage_params
from batchlaw.simulator.perf_ops import flag, layer_times, logits_time
from batchlaw.simulator.system import SystemProfile

__all__ = ["iteration", "memory_gib"]


def _buckets(n_local, n) -> np.ndarray:
    """Gradient buckets per rank: megatron-core's DistributedDataParallel launches one collective per bucket
    of ``max(40e6, 1e6 x dp)`` parameters (``DistributedDataParallelConfig.bucket_size`` left unset)."""
    return np.maximum(np.ceil(n_local / np.maximum(40e6, 1e6 * n)), 1.0)


def _dp_comm(c, system, n_local, stage_mb):
    """Exposed seconds of the data-parallel gradient/parameter collectives (NCCL ring or tree, one collective
    per gradient bucket, ``perf_comm``)."""
    e = system.efficiency
    n = c["dp"] * c["cp"]
    stride = c["tp"]
    k = _buckets(n_local, n)
    grad = np.where(c["grad_reduce_in_fp32"] | flag(c, "fp32"), 4.0, 2.0) * n_local
    rs, ag, ar = (k * x for x in dp_collectives(n, stride, grad / k, 2.0 * n_local / k, system))
    overlap = c["overlap_grad_reduce"]
    # distributed optimizer: RS hides behind the last backward (2/3 of a slot), AG behind the first forward
    dist = np.where(overlap, np.maximum(rs - 2 / 3 * stage_mb, e.dp_exposed * rs)
                    + np.maximum(ag - stage_mb / 3, e.dp_exposed * ag), rs + ag)
    plain = np.where(overlap, np.maximum(ar - 2 / 3 * stage_mb, e.dp_exposed * ar), ar)
    out = np.where(c["distributed_optimizer"], dist, plain)
    if c["fsdp"].any():
        # FSDP: all-gather forward and backward + reduce-scatter per micro-batch, overlapped layer by layer
        m = c["global_batch"] / (c["micro_batch"] * c["dp"])
        fsdp_mb = 2.0 * ag + rs
        out = np.where(c["fsdp"], m * np.maximum(fsdp_mb - stage_mb, e.dp_exposed * fsdp_mb), out)
    return out


def _offload(c, system, layer):
    """Exposed seconds per micro-batch of CPU activation offloading: each offloaded layer copies its
    activations to the host during its forward and back before its backward, on a side stream that
    overlaps the next layer's forward (a third of a layer's time) and backward (two thirds)."""
    if not (c["activation_offload_layers"] > 0).any():
        return 0.0
    wire = layer_activation_bytes(c) / (system.host_gbps * 1e9)
    per_layer = np.maximum(wire - layer / 3.0, 0.0) + np.maximum(wire - 2.0 * layer / 3.0, 0.0)
    return np.where(c["activation_offload_layers"] > 0,
                    np.minimum(c["activation_offload_layers"], c["layers"] / c["pp"]) * per_layer, 0.0)


def _slowest_stage(c, layer, stage, logit):
    """Seconds per micro-batch of the slowest pipeline stage.

    Even split: every stage runs layers / pp layers and the last one also the output layer and loss.
    With Megatron's ``account_for_embedding_in_pipeline_split`` / ``account_for_loss_in_pipeline_split``
    (``pipeline_split_extra_layers`` = 2) the embedding and the loss each take one layer slot of
    (layers + 2) / pp: the middle stages (pp > 2) run (layers + 2) / pp layers, the first and the last one
    a layer fewer beside the embedding / the output layer (Megatron-Core ``get_transformer_layer_offset`` /
    ``get_num_layers_to_build``), so the slowest stage is the larger of a middle and the last stage, not
    the average stage plus the logits. (The memory model keeps layers / pp per stage: at least the first
    stage's (layers + 2) / pp - 1, so it errs on the safe side.)"""
    extra = c.get("pipeline_split_extra_layers")
    if extra is None or not np.any(np.asarray(extra) > 0):
        return stage + logit
    pp = c["pp"]
    mid = (c["layers"] + extra) / pp
    # the first stage builds a layer fewer beside the embedding, the last a layer fewer beside the logits;
    # only pp > 2 has middle stages with the full (layers + 2) / pp
    middle = np.where(pp > 2, stage + (mid - c["layers"] / pp) * layer, 0.0)
    split = np.maximum(middle, stage + (mid - extra / 2 - c["layers"] / pp) * layer + logit)
    return np.where((extra > 0) & (pp > 1), split, stage + logit)


def iteration(c: Mapping[str, np.ndarray], system: SystemProfile) -> dict[str, np.ndarray]:
    """Predicted iteration time and its parts, model FLOPs and MFU."""
    e = system.efficiency
    s, b, h, t, pp, dp, vpp, cp = (c[k] for k in ("seq_len", "micro_batch", "hidden", "tp", "pp", "dp", "vpp", "cp"))
    gb, layers = c["global_batch"], c["layers"]
    m = gb / (b * dp)
    lt = layer_times(c, system)
    act_bytes = b * s / cp * h * np.where(flag(c, "fp32"), 4.0, 2.0)
    n_tp = np.where(flag(c, "rec_full"), 6.0, 4.0)
    tp_comm = n_tp * collective(t, 1.0, act_bytes, system, split=c["sequence_parallel"])
    tp_comm = tp_comm * np.where(c["tp_comm_overlap"], e.tp_exposed, 1.0)
    hd = h / c["heads"]
    kv_bytes = b * s / cp * 2 * c["query_groups"] * hd / t * 2.0
    cp_comm = 3.0 * (cp - 1) * kv_bytes / p2p_bandwidth(t, system)
    cp_exposed = np.maximum(cp_comm - lt["attn"], 0.0)
    layer = lt["gemm"] + lt["attn"] + lt["elem"] + lt["recompute"] + tp_comm + cp_exposed + e.overhead_layer_s
    stage = layers / pp * layer + vpp * e.overhead_mb_s + _offload(c, system, layer)
    logit = logits_time(c, system)
    slot_max = _slowest_stage(c, layer, stage, logit)
    pipeline = m * slot_max + (pp - 1) / vpp * (stage + logit / pp)
    p2p_bytes = act_bytes / np.where(c["sequence_parallel"], t, 1.0)
    stage_bw = p2p_bandwidth(t * cp * dp, system)  # neighbouring pipeline stages are t cp dp ranks apart
    p2p_wire = p2p_bytes / stage_bw
    # overlapped (interleaved schedule): each transfer hides behind the next chunk's forward or backward
    chunk_pass = (stage - vpp * e.overhead_mb_s) / vpp / 3.0
    p2p_one = (np.where(c["overlap_p2p_comm"] & (vpp > 1), np.maximum(p2p_wire - chunk_pass, 0.0), p2p_wire)
               + system.latency_us * 1e-6)
    p2p = np.where(pp > 1, 2.0 * (m * vpp + pp - 1) * p2p_one, 0.0)
    n_local = stage_params(c)
    dp_comm = _dp_comm(c, system, n_local, slot_max)
    emb_bytes = 4.0 * c["vocab"] * h / t
    tied = np.where(c["tied"] & (pp > 1), emb_bytes / stage_bw, 0.0)
    shard = np.where(c["distributed_optimizer"] | c["fsdp"], n_local / (dp * cp), n_local)
    optimizer = 30.0 * shard / (system.hbm_gbps * 1e9 * e.hbm_eff)
    total = pipeline + p2p + dp_comm + tied + optimizer + e.overhead_s
    model_f, _ = flops_per_step(gb, s, layers, h, c["heads"], c["query_groups"], c["ffn_hidden"], c["vocab"],
                                gated=c["gated"], recompute="none")
    gpus = t * pp * dp * cp
    tflops = model_f / gpus / total / 1e12
    return {"iter_time_s": total, "compute_s": m * layers / pp * (layer - tp_comm - cp_exposed) + m * logit,
            "bubble_s": (pp - 1) / vpp * (stage + logit / pp), "tp_comm_s": m * layers / pp * tp_comm,
            "dp_comm_s": dp_comm, "pp_comm_s": p2p, "model_flops": model_f, "tflops_per_gpu": tflops,
            "stage_params": n_local,
            "mfu": tflops / system.peak_tflops}
