"""GPTModel from a ``ModelShape``, initialised identically under every TP x PP layout.

Megatron initialises each pipeline stage from a seed offset by the PP rank, so the same run at PP1
and PP2 starts from different weights. Here every parameter is re-drawn from a generator seeded by
(seed, global parameter name) on the full, unsharded shape, and this rank's TP shard is sliced out,
so initial weights depend only on the seed (layer names use the global layer index).
Init: N(0, 0.02) for matrices, N(0, 0.02 / sqrt(2 L)) for output projections (GPT-2, Radford et al.
2019, sec. 2.3; Megatron ``scaled_init_method_normal``), ones for norm weights, zeros for biases.
"""

from __future__ import annotations

import math
import zlib

import torch

from batchlaw.plugin import _mcore
from batchlaw.simulator.spec import ModelShape, Parallelism

__all__ = ["build_model", "reinit_layout_independent"]


def _full_shape_and_slicer(param: torch.Tensor, name: str, tp: int, tp_rank: int, gated: bool):
    """Full (TP=1) shape of ``param`` and a function that cuts this rank's shard from it."""
    dim = _mcore.tp_partition_dim(param)
    if dim is None or tp == 1:
        return tuple(param.shape), lambda full: full
    shape = list(param.shape)
    shape[dim] *= tp
    if gated and _mcore.is_gated_fc1(name):
        def cut(full):  # megatron stores [gate_shard; up_shard] per rank
            gate, up = full.chunk(2, dim=dim)
            return torch.cat([gate.chunk(tp, dim=dim)[tp_rank], up.chunk(tp, dim=dim)[tp_rank]], dim=dim)
        return tuple(shape), cut
    return tuple(shape), lambda full: full.chunk(tp, dim=dim)[tp_rank]


@torch.no_grad()
def reinit_layout_independent(chunk, shape: ModelShape, seed: int, tp: int, tp_rank: int) -> None:
    """Re-draw every parameter from (seed, global name) on the full shape and keep this TP shard."""
    out_std = 0.02 / math.sqrt(2.0 * shape.layers)
    for name, param in chunk.named_parameters():
        gname = _mcore.global_param_name(chunk, name)
        full_shape, cut = _full_shape_and_slicer(param, name, tp, tp_rank, shape.activation == "swiglu")
        if name.endswith("bias"):
            full = torch.zeros(full_shape)
        elif param.dim() == 1:
            full = torch.ones(full_shape)
        else:
            std = out_std if _mcore.is_output_projection(name) else 0.02
            gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(gname.encode()))
            full = torch.randn(full_shape, generator=gen) * std
        param.copy_(cut(full).to(param.dtype).view_as(param))


def build_model(shape: ModelShape, parallel: Parallelism, *, seed: int, dtype: torch.dtype, on_cpu: bool,
                use_te: bool | None = None):
    """Build this rank's GPTModel chunks (one per virtual pipeline stage) and their TransformerConfig.

    ``use_te`` None: Transformer Engine's layer spec on a GPU where it is installed, else the local one.
    """
    if use_te is None:
        use_te = not on_cpu and _mcore.have_te()
    cfg = _mcore.transformer_config(shape, parallel, dtype=dtype, on_cpu=on_cpu)
    chunks = _mcore.build_gpt(cfg, shape, use_te=use_te)
    tp_rank = _mcore.groups(False)["tp_rank"]
    for chunk in chunks:
        reinit_layout_independent(chunk, shape, seed, parallel.tp, tp_rank)
        if not on_cpu:
            chunk.cuda(torch.cuda.current_device())
    return chunks, cfg
