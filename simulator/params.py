"""Parameter counts and FLOPs of a GPT decoder, vectorised over numpy arrays.

FLOPs convention (stated once, used everywhere): a multiply-add is 2 FLOPs; attention scores and
attention-times-values count the full s x s matrix (no causal halving), as Narayanan et al. 2021
(SC21, sec. 5.1, eq. for F) and Megatron-Core r0.8's ``num_floating_point_operations`` do, which is
the convention behind every row of ``published_throughput.csv``. Backward = 2 x forward.

- model FLOPs (MFU numerator), no recompute, MHA + GELU 4h reduces to
  ``72 B s l h^2 (1 + s/(6h) + V/(12 l h))`` (Narayanan et al. 2021, eq. 3 without recompute);
- full recompute adds one forward of every layer (not the logits):
  ``96 B s l h^2 (1 + s/(6h) + V/(16 l h))`` (Narayanan et al. 2021, eq. 3);
- selective recompute adds one forward of the attention core only:
  ``72 B s l h^2 (1 + s/(3h) + V/(12 l h))`` (Korthikanti et al. 2022, sec. 5, eq. 9).
The general forms below use the actual linear-layer parameter count, so GQA, SwiGLU and any ffn
size are counted exactly (Megatron ``num_floating_point_operations`` structure).
"""

from __future__ import annotations

import numpy as np

from batchlaw.simulator.spec import ModelShape

__all__ = ["flops_per_step", "layer_linear_params", "num_params", "num_params_arrays"]


def layer_linear_params(h, heads, groups, ffn, gated):
    """Weights of the linear layers of one transformer layer (QKV, output projection, MLP)."""
    h = np.asarray(h, dtype=np.float64)
    head_dim = h / heads
    qkv = h * (h + 2 * groups * head_dim)
    proj = h * h
    mlp = np.where(gated, 3.0, 2.0) * h * ffn
    return qkv + proj + mlp


def num_params_arrays(layers, h, heads, groups, ffn, vocab, *, gated=True, tied=False, bias=False,
                      layernorm=False, learned_pos_len=0):
    """Exact parameter count (vectorised). Norm weights: h each (LayerNorm also h biases)."""
    h = np.asarray(h, dtype=np.float64)
    head_dim = h / heads
    per_layer = layer_linear_params(h, heads, groups, ffn, gated)
    norm = np.where(layernorm, 2.0, 1.0) * h
    per_layer = per_layer + 2 * norm
    if np.any(bias):
        per_layer = per_layer + np.where(bias, (h + 2 * groups * head_dim) + h
                                         + np.where(gated, 2.0, 1.0) * ffn + h, 0.0)
    emb = vocab * h + learned_pos_len * h
    out = np.where(tied, 0.0, vocab * h)
    return layers * per_layer + emb + out + norm


def num_params(model: ModelShape) -> int:
    """Exact parameter count of a shape (embeddings and output layer included)."""
    n = num_params_arrays(model.layers, model.hidden, model.heads, model.num_query_groups, model.ffn,
                          model.vocab, gated=model.activation == "swiglu", tied=model.tied_embeddings,
                          bias=model.bias, layernorm=model.normalization == "layernorm",
                          learned_pos_len=model.seq_len if model.position == "learned" else 0)
    return int(round(float(n)))


def flops_per_step(batch, seq, layers, h, heads, groups, ffn, vocab, *, gated=True, recompute="none"):
    """(model FLOPs, hardware FLOPs) of one training step of ``batch`` sequences (vectorised).

    ``recompute`` is an array or scalar of 'none' | 'selective' | 'full'.
    """
    tokens = np.asarray(batch, dtype=np.float64) * seq
    h = np.asarray(h, dtype=np.float64)
    lin = 2.0 * layer_linear_params(h, heads, groups, ffn, gated)  # forward FLOPs per token per layer
    attn = 4.0 * seq * h  # QK^T and AV, full s x s
    logits = 2.0 * vocab * h
    fwd_layer = tokens * layers * (lin + attn)
    model = 3.0 * (fwd_layer + tokens * logits)
    rec = np.asarray(recompute)
    # Selective: Korthikanti et al.'s count 72Bslh^2(1 + s/3h + V/12lh) doubles the attention-core term
    # (12 -> 24 B s^2 l h), i.e. 3 x the forward attention core; it reproduces the HFU/MFU pairs of the
    # Megatron-LM README (May 2022) for 22B-1T.
    extra = np.where(rec == "full", fwd_layer, np.where(rec == "selective", 3.0 * tokens * layers * attn, 0.0))
    return model, model + extra
