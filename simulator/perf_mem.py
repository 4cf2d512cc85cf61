"""Peak memory per GPU on the most loaded pipeline stage, vectorised (docs/formulas.md, "Memory").

Assumptions, stated once:
- Model states per parameter: 18 bytes with 16-bit params, fp32 main grads and Adam (2 + 4 + 12), 16 with
  16-bit grads (``grad_reduce_in_fp32`` off); 6 + 12/n (4 + 12/n) with the distributed optimizer and 18/n
  with FSDP (ZeRO-3), n = dp x cp, the group Megatron shards over (Megatron distributed-optimizer docs;
  Rajbhandari et al. 2020, sec. 5). FSDP adds the unsharded 16-bit params and fp32 grads of two layers
  (prefetch buffers).
- Activations per layer and token (Korthikanti et al. 2022, Table 2, generalised to GQA and any ffn the
  way Megatron's ``theoretical_memory_usage`` does): QKV outputs 2(h + 2 g d), attention output 2h, MLP
  up output 2 f_up and activation output 2f, all / t; two norm inputs, two GEMM inputs 2h each and two
  1-byte dropout masks on the sequence-parallel shard (/ t with SP). FP8 stores the four GEMM inputs at 1
  byte (Transformer Engine saves the quantised copies). Unfused attention adds 5 a s bytes per token (2 a s
  without dropout); flash attention stores no s x s term. Full recompute keeps the 2h-byte layer input
  only; selective drops the s x s term. Dropout masks only where dropout > 0 (or unknown: the floor
  ``memory_range`` leaves them out).
- In flight on the first stage under 1F1B: min(p, m) micro-batches of L/p layers, x (1 + (p-1)/(p v))
  when interleaved (Narayanan et al. 2021, sec. 2.2; Megatron ``theoretical_memory_usage``); minus the
  layers whose activations are offloaded to the host (``activation_offload_layers``).
- Logits: 4 s b V / t bytes (fp32 for the loss) when p = 1.
- Plus the profile's fixed ``memory_overhead_gib`` (CUDA context, NCCL buffers, allocator slack).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from batchlaw.simulator.params import layer_linear_params
from batchlaw.simulator.perf_ops import flag, fused_attention
from batchlaw.simulator.system import SystemProfile

__all__ = ["ALLOCATOR_SLACK", "GIB", "layer_activation_bytes", "memory_gib", "memory_range", "stage_params"]

GIB = 2.0**30


def stage_params(c: Mapping[str, np.ndarray]) -> np.ndarray:
    """Parameters on the most loaded GPU: L/p layers + embedding (+ output layer when p = 1), / t."""
    h = c["hidden"]
    per_layer = layer_linear_params(h, c["heads"], c["query_groups"], c["ffn_hidden"], c["gated"]) + 2 * h
    emb = c["vocab"] * h
    out = np.where(c["tied"], 0.0, emb)
    first = c["layers"] / c["pp"] * per_layer + emb + np.where(c["pp"] == 1, out, 0.0)
    last = c["layers"] / c["pp"] * per_layer + out
    return np.maximum(first, last) / c["tp"]


def _state_bytes(c: Mapping[str, np.ndarray], n_local: np.ndarray) -> np.ndarray:
    p16 = ~flag(c, "fp32")
    shard = c["dp"] * c["cp"]
    grad = np.where(p16 & ~c["grad_reduce_in_fp32"], 2.0, 4.0)
    plain = np.where(p16, 14.0 + grad, 16.0)
    dist = np.where(p16, 2.0 + grad + 12 / shard, 8 + 8 / shard)
    fsdp = plain / shard
    per_param = np.where(c["fsdp"], fsdp, np.where(c["distributed_optimizer"], dist, plain))
    if not c["fsdp"].any():
        return n_local * per_param
    h = c["hidden"]
    layer = (layer_linear_params(h, c["heads"], c["query_groups"], c["ffn_hidden"], c["gated"]) + 2 * h) / c["tp"]
    return n_local * per_param + np.where(c["fsdp"], 2 * layer * (2.0 + 4.0), 0.0)


def _masks(c: Mapping[str, np.ndarray], optimistic: bool) -> np.ndarray:
    """Rows that keep dropout masks: dropout > 0, or an unknown dropout (NaN) unless ``optimistic``. With
    p = 0 PyTorch's dropout returns its input and stores no mask (ATen ``dropout``: ``if (p == 0 || !train
    ...) return input``), which megatron-core's bias-dropout-add calls."""
    drop = np.asarray(c["dropout"], dtype=float) if "dropout" in c else np.full(np.shape(c["hidden"]), np.nan)
    return (drop > 0) if optimistic else ~(drop == 0)


def _act_bytes_per_token(c: Mapping[str, np.ndarray], optimistic: bool = False) -> np.ndarray:
    h, t, s = c["hidden"], c["tp"], c["seq_len"]
    hd = h / c["heads"]
    up = np.where(c["gated"], 2.0, 1.0) * c["ffn_hidden"]
    fp8 = c["fp8"]
    masks = _masks(c, optimistic)
    g_in = np.where(fp8, 1.0, 2.0)  # bytes of a stored GEMM input
    tp_part = 2 * (h + 2 * c["query_groups"] * hd) + g_in * h + 2 * up + g_in * c["ffn_hidden"]
    # norm inputs (2), GEMM inputs (2), the two hidden-dropout masks (1 byte each)
    sp_part = 2 * h + 2 * h + g_in * 2 * h + np.where(masks, 2 * h, 0.0)
    # unfused attention core: softmax output 2as, its dropout mask as and output 2as per token (Korthikanti et
    # al. 2022, sec. 4.1); without dropout the softmax output feeds the AV product directly: 2as
    score = np.where(masks, 5.0, 2.0) * c["heads"] * s
    attn = np.where(fused_attention(c) | flag(c, "rec_selective"), 0.0, score)
    sp_div = np.where(c["sequence_parallel"], t, 1.0)
    per_tok = (tp_part + attn) / t + sp_part / sp_div
    per_tok = np.where(flag(c, "rec_full"), 2.0 * h / sp_div, per_tok)
    return per_tok * np.where(flag(c, "fp32"), 2.0, 1.0)


def layer_activation_bytes(c: Mapping[str, np.ndarray], optimistic: bool = False) -> np.ndarray:
    """Bytes one layer keeps for backward per micro-batch on one GPU (``optimistic``: an unknown dropout
    keeps no masks)."""
    return _act_bytes_per_token(c, optimistic) * c["micro_batch"] * c["seq_len"] / c["cp"]


def memory_gib(c: Mapping[str, np.ndarray], system: SystemProfile, n_local: np.ndarray | None = None, *,
               optimistic: bool = False) -> np.ndarray:
    """Peak memory per GPU on the most loaded pipeline stage, GiB (incl. the system's overhead).

    Args:
        n_local: ``stage_params(c)`` when the caller has it already (``iteration`` returns it).
        optimistic: the floor of what an unknown setting may need (an unknown dropout keeps no masks);
            ``memory_range`` uses it for feasibility.
    """
    states = _state_bytes(c, stage_params(c) if n_local is None else n_local)
    b, s, cp, pp, vpp = c["micro_batch"], c["seq_len"], c["cp"], c["pp"], c["vpp"]
    per_layer = layer_activation_bytes(c, optimistic)
    m = c["global_batch"] / (b * c["dp"])
    stage_layers = c["layers"] / pp
    kept = np.maximum(stage_layers - c["activation_offload_layers"], 0.0)
    in_flight = np.minimum(pp, m) * np.where(vpp > 1, 1 + (pp - 1) / (pp * vpp), 1.0)
    acts = per_layer * kept * in_flight
    logits = np.where(pp == 1, 4.0 * s / cp * b * c["vocab"] / c["tp"], 0.0)
    return (states + acts + logits) / GIB + system.memory_overhead_gib


ALLOCATOR_SLACK = 0.07
"""Memory PyTorch's caching allocator reserves beyond what is allocated, as a fraction of the allocated
peak: 3-7% (max_reserved / max_allocated per rank 1.03-1.07 on 8 measured Llama-3 70B/405B and DeepSeek
layouts on B200, SimuMax release v1.2, docs/b200/b200_release_v1.2_summary.json). Cached blocks are
released and the allocation retried before an out-of-memory error, so this slack is a risk, not a need."""


def memory_range(c: Mapping[str, np.ndarray], system: SystemProfile,
                 n_local: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(floor, estimate, ceiling) of the peak memory per GPU, GiB: the floor takes the optimistic side of the
    unknown settings; the estimate is ``memory_gib``; the ceiling adds the allocator's slack
    (``ALLOCATOR_SLACK``) to the allocated part. A run is infeasible when even the floor exceeds the
    capacity; between the floor and the ceiling it may or may not fit (``table`` says so)."""
    est = memory_gib(c, system, n_local)
    unknown = np.isnan(np.asarray(c["dropout"], dtype=float)) if "dropout" in c else np.ones(np.shape(est), bool)
    low = memory_gib(c, system, n_local, optimistic=True) if unknown.any() else est
    high = est + ALLOCATOR_SLACK * (est - system.memory_overhead_gib)
    return low, est, high
