"""Op-level compute time of one transformer layer and of the output layer, per micro-batch and GPU.

Vectorised over numpy arrays. Every op is costed on its own shape (docs/formulas.md, "Step time"):

- GEMMs (QKV, attention projection, MLP up/gate and down, logits): additive roofline
  ``t = 2MNK / (peak x eff) + bytes / (HBM x hbm_eff)`` with a size-dependent efficiency
  ``eff = e_max x w / (w + w_half) x MN / (MN + M_half x 8192)``, w = min(N, K) the GEMM width per GPU,
  M the tokens per micro-batch and rank, N the GEMM's output columns (Calculon's size-keyed efficiency
  tables, Isaev et al. SC'23, reduced to two saturating factors). The second is wave fill: a GEMM's
  output tiles (M N / tile area) are spread over the SMs and a fraction of a wave leaves SMs idle (NVIDIA,
  "Matrix Multiplication Background User's Guide", wave quantization), so it depends on M x N, not on the
  rows alone; ``M_half`` is the row count at which an 8192-column GEMM fills half a wave. Backward
  runs two GEMMs of the forward's size (dgrad, wgrad), so a GEMM costs 3 x its forward (Narayanan et
  al. 2021, sec. 5.1).
- FP8 GEMMs (Transformer Engine): the four linear layers of a block at the FP8 peak with their own
  e_max; operands 1 byte, plus a quantisation pass over the activation operand (read 2, write 1
  byte); the logits GEMM and the attention core stay 16-bit (Megatron/TE default). MXFP8 (``fp8_recipe``
  mxfp8) runs them at ``mxfp8_eff`` of the per-tensor-scaled speed.
- fp32 runs: GEMMs at the CUDA-core fp32 peak (``peak_fp32_tflops``; PyTorch's default leaves TF32 off
  for matmuls) with 4-byte operands and outputs, the attention core unfused (flash kernels take 16-bit
  inputs only), memory-bound ops moving 4-byte elements. A CPU profile's peak is already an fp32 one.
- Attention core: fused (flash) attention runs the causal half of the s x s products (Dao 2023,
  FlashAttention-2, sec. 3.1: masked blocks are skipped), backward 2.5 x forward FLOPs (five
  matmuls against two); unfused attention runs the full s x s batched GEMMs plus scale-mask-softmax
  and dropout over the s x s scores at HBM bandwidth (Korthikanti et al. 2022, sec. 4: 5as/h bytes
  per sbh stored, 11 bytes per score moved).
- Memory-bound ops (two norms, two bias-dropout-residual adds, the activation function) at HBM
  bandwidth, on s/t tokens with sequence parallelism and on s tokens without; backward 2 x forward.
- Recompute: ``full`` re-runs the forward of every op of the layer, ``selective`` re-runs the
  attention core only (Korthikanti et al. 2022, sec. 5).
- Cross-entropy: vocab-parallel softmax in fp32 over s x V/t logits at HBM bandwidth, ``CE_BYTES`` per
  logit (forward + backward) for the implementation the run uses (``cross_entropy_fusion``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from batchlaw.simulator.system import SystemProfile

__all__ = ["CE_BYTES", "block_scaled_of", "ce_bytes_of", "flag", "layer_times", "logits_time"]

_FLAGS = {"rec_full": ("recompute", "full"), "rec_selective": ("recompute", "selective"), "fp32": ("precision", "fp32")}


def flag(c: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """A boolean column that ``table.normalise`` precomputes (``rec_full``, ``rec_selective``, ``fp32``),
    derived from the string column when a caller built ``c`` by hand."""
    if name in c:
        return c[name]
    col, value = _FLAGS[name]
    return np.asarray(c[col]) == value


def fused_attention(c: Mapping[str, np.ndarray]) -> np.ndarray:
    """Rows whose attention core runs fused (flash): asked for and 16-bit (flash kernels take no fp32), so
    step time and memory price the same kernel."""
    fp32 = flag(c, "fp32")
    return c["flash_attention"] & ~fp32 if np.any(fp32) else c["flash_attention"]


# HBM bytes per logit of the vocab-parallel cross-entropy, forward + backward, by implementation
# (Megatron-Core ``cross_entropy_loss_fusion`` / ``cross_entropy_fusion_impl``; passes counted in
# ``tensor_parallel/cross_entropy.py`` and ``fusions/fused_cross_entropy.py``, core_r0.16):
# - none (the megatron-core default, batchlaw's trainer): cast the bf16 logits to fp32 (read 2, write 4),
#   max (read 4), subtract the max in place (8), exp in place (8), sum (4), divide by the sum (8); backward:
#   scale in place (8), cast the gradient back to bf16 (read 4, write 2): 52 bytes (40 with fp32 logits);
# - native (jit-fused): cast + max (6), subtract + exp + sum (8), divide (8), scale + cast back (6): 28;
# - te (Transformer Engine's Triton kernel): an online max/sum pass over the bf16 logits (2), a second
#   pass writing the gradient into them (read 2, write 2), backward scales it in place (4): 10.
CE_BYTES = {"none": 52.0, "native": 28.0, "te": 10.0}

# Megatron's --fp8-recipe names (tensorwise = current scaling; "current" as the tables print it) -> block-scaled
# (mxfp8 and blockwise share ``mxfp8_eff``; only mxfp8 rows fit it)
_RECIPES = {"": False, "nan": False, "tensorwise": False, "delayed": False, "current": False, "mxfp8": True,
            "blockwise": True}
# a yes/no cross_entropy_fusion is Megatron's --cross-entropy-loss-fusion, whose implementation defaults to native
_CE_ALIASES = {"": "none", "nan": "none", "no": "none", "false": "none", "yes": "native", "true": "native"}


def block_scaled_of(names: Sequence[str]) -> np.ndarray:
    """Whether each (stripped, lower-cased) ``fp8_recipe`` name is block-scaled; a one-line error else."""
    bad = [u for u in names if u not in _RECIPES]
    if bad:
        raise ValueError(f"fp8_recipe = {bad[0]!r}: allowed are tensorwise, delayed, current, mxfp8, blockwise")
    return np.array([_RECIPES[u] for u in names], dtype=bool)


def ce_bytes_of(names: Sequence[str]) -> np.ndarray:
    """``CE_BYTES`` of each (stripped, lower-cased) ``cross_entropy_fusion`` name; a one-line error else."""
    names = [_CE_ALIASES.get(u, u) for u in names]
    bad = [u for u in names if u not in CE_BYTES]
    if bad:
        raise ValueError(f"cross_entropy_fusion = {bad[0]!r}: allowed are {', '.join(CE_BYTES)}")
    return np.array([CE_BYTES[u] for u in names], dtype=float)


def _by_name(values, of) -> np.ndarray:
    """``of`` applied to the distinct stripped, lower-cased names of a string column, broadcast to its rows."""
    uniq, inverse = np.unique(np.char.lower(np.char.strip(np.asarray(values).astype(str))), return_inverse=True)
    return of(list(uniq))[inverse.reshape(-1)]


def _block_scaled(c: Mapping[str, np.ndarray]):
    """Rows whose FP8 GEMMs are block-scaled (``table.normalise``'s ``mxfp8``, or the ``fp8_recipe`` names of
    a column dict built by hand); False when neither column is there."""
    if "mxfp8" in c:
        return c["mxfp8"]
    return _by_name(c["fp8_recipe"], block_scaled_of) if "fp8_recipe" in c else False


def _ce_bytes(c: Mapping[str, np.ndarray], like: np.ndarray) -> np.ndarray:
    """HBM bytes per logit of each row's cross-entropy (``table.normalise``'s ``ce_bytes``, or the
    ``cross_entropy_fusion`` names of a column dict built by hand; megatron-core's unfused default)."""
    if "ce_bytes" in c:
        return np.asarray(c["ce_bytes"], dtype=float)
    if "cross_entropy_fusion" in c:
        return _by_name(c["cross_entropy_fusion"], ce_bytes_of)
    return np.full_like(np.asarray(like, dtype=float), CE_BYTES["none"])


_WAVE_N = 8192.0


def _gemm(m, n, k, *, peak, e_max, w_half, m_half, hbm, op_bytes, fp8=False, out_bytes=2.0):
    """Forward + backward seconds of one GEMM family of shape (M, N, K) (3 x the forward GEMM)."""
    w = np.minimum(n, k)
    eff = e_max * (w / (w + w_half)) * (m * n / (m * n + m_half * _WAVE_N))
    nbytes = op_bytes * (m * k + k * n) + out_bytes * m * n
    if fp8 is not False:
        nbytes = nbytes + np.where(fp8, 3.0 * m * k, 0.0)
    return 3.0 * (2.0 * m * n * k / (peak * eff) + nbytes / hbm)


def _precision_terms(fp32, system: SystemProfile):
    """(GEMM peak FLOP/s, bytes per activation element) of 16-bit rows, or of fp32 ones: the CUDA-core fp32
    peak on a GPU (no TF32), ``peak_tflops`` on a CPU profile. Scalars when no row is fp32 (the common case)."""
    p16 = system.peak_tflops * 1e12
    if not np.any(fp32):
        return p16, 2.0
    return np.where(fp32, (system.peak_fp32_tflops or system.peak_tflops) * 1e12, p16), np.where(fp32, 4.0, 2.0)


def layer_times(c: Mapping[str, np.ndarray], system: SystemProfile) -> dict[str, np.ndarray]:
    """Seconds of one transformer layer for one micro-batch on one GPU.

    Returns ``gemm``, ``attn``, ``elem`` (forward + backward each) and ``recompute`` (extra forward).
    """
    e = system.efficiency
    s, b, h, t, cp = c["seq_len"], c["micro_batch"], c["hidden"], c["tp"], c["cp"]
    heads, groups, ffn = c["heads"], c["query_groups"], c["ffn_hidden"]
    fp8 = c["fp8"]
    tok = b * s / cp
    hd = h / heads
    hbm = system.hbm_gbps * 1e9 * e.hbm_eff
    fp32 = flag(c, "fp32")
    p16, width = _precision_terms(fp32, system)  # the 16-bit (or fp32) peak, bytes of an activation element
    p8 = (system.peak_fp8_tflops or system.peak_tflops) * 1e12
    peak = np.where(fp8, p8, p16)
    e_max = np.where(fp8, e.fp8_matmul_max * np.where(_block_scaled(c), e.mxfp8_eff, 1.0), e.matmul_max)
    op_bytes = np.where(fp8, 1.0, width)
    kw = dict(peak=peak, e_max=e_max, w_half=e.width_half, m_half=e.tokens_half, hbm=hbm, op_bytes=op_bytes, fp8=fp8,
              out_bytes=width)
    up = np.where(c["gated"], 2.0, 1.0) * ffn
    gemm = (_gemm(tok, (h + 2 * groups * hd) / t, h, **kw) + _gemm(tok, h, h / t, **kw)
            + _gemm(tok, up / t, h, **kw) + _gemm(tok, h, ffn / t, **kw))
    # attention core: QK^T and AV, 4 x tok x s x h/t multiply-add FLOPs for the full s x s matrix
    full = 4.0 * tok * s * h / t
    flash = fused_attention(c)
    flash_fwd = 0.5 * full / (p16 * e.attention_eff)
    un_w = np.minimum(s, hd)
    un_eff = e.matmul_max * (un_w / (un_w + e.width_half))
    score_bytes = 11.0 * width / 2.0 * b * heads / t * s * s / cp
    unfused_fwd = full / (p16 * un_eff) + score_bytes / hbm
    attn_fwd = np.where(flash, flash_fwd, unfused_fwd) / np.where(cp > 1, e.cp_attention_eff, 1.0)
    attn = np.where(flash, 3.5, 3.0) * attn_fwd
    # memory-bound ops per token, forward: 2 norms (read + write h) and 2 bias-dropout-add (read 2h,
    # write h, 1-byte mask): 11 h elements of 2 bytes on the sequence-parallel shard; activation function
    # reads 2f (gated) or f and writes f, on the TP shard
    tok_sp = np.where(c["sequence_parallel"], tok / t, tok)
    elem_fwd = width / 2.0 * (22.0 * h * tok_sp + 2.0 * (up + ffn) / t * tok) / hbm
    elem = 3.0 * elem_fwd
    recompute = np.where(flag(c, "rec_full"), gemm / 3.0 + attn_fwd + elem_fwd,
                         np.where(flag(c, "rec_selective"), attn_fwd, 0.0))
    return {"gemm": gemm, "attn": attn, "elem": elem, "recompute": recompute}


def logits_time(c: Mapping[str, np.ndarray], system: SystemProfile) -> np.ndarray:
    """Seconds of the output layer (16-bit GEMM) and the vocab-parallel cross-entropy, one micro-batch."""
    e = system.efficiency
    tok = c["micro_batch"] * c["seq_len"] / c["cp"]
    hbm = system.hbm_gbps * 1e9 * e.hbm_eff
    v_local = c["vocab"] / c["tp"]
    fp32 = flag(c, "fp32")
    peak, width = _precision_terms(fp32, system)
    gemm = _gemm(tok, v_local, c["hidden"], peak=peak,
                 e_max=e.matmul_max, w_half=e.width_half, m_half=e.tokens_half, hbm=hbm, op_bytes=width,
                 out_bytes=width)
    ce = _ce_bytes(c, tok)
    # fp32 logits: the unfused loss has no bf16 -> fp32 cast forward nor the cast back (6 + 6 bytes)
    ce = np.where((ce == CE_BYTES["none"]) & flag(c, "fp32"), ce - 12.0, ce)
    return gemm + ce * tok * v_local / hbm
