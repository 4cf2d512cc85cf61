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
import re
import zlib

import torch
import torch.nn.functional as F

from batchlaw.plugin import _mcore
from batchlaw.simulator.spec import ModelShape, Parallelism

__all__ = ["build_model", "transformer_config"]

_LAYER = re.compile(r"decoder\.layers\.(\d+)\.")


def transformer_config(model: ModelShape, parallel: Parallelism, *, dtype: torch.dtype, on_cpu: bool):
    """megatron-core TransformerConfig for this shape and layout (Megatron's names stay here)."""
    if parallel.sequence_parallel and on_cpu:
        raise ValueError("parallel.sequence_parallel = true needs Transformer Engine or NVIDIA apex on a GPU"
                         " (pip install transformer-engine[pytorch]); torch's LayerNorm is refused by megatron")
    recompute = {"none": {}, "selective": {"recompute_granularity": "selective"},
                 "full": {"recompute_granularity": "full", "recompute_method": "uniform",
                          "recompute_num_layers": 1}}[parallel.recompute]
    return _mcore.TransformerConfig(
        num_layers=model.layers, hidden_size=model.hidden, num_attention_heads=model.heads,
        num_query_groups=model.num_query_groups, ffn_hidden_size=model.ffn,
        gated_linear_unit=model.activation == "swiglu",
        activation_func=F.silu if model.activation == "swiglu" else F.gelu,
        add_bias_linear=model.bias, normalization="RMSNorm" if model.normalization == "rmsnorm" else "LayerNorm",
        hidden_dropout=0.0, attention_dropout=0.0, use_cpu_initialization=True,
        params_dtype=dtype, pipeline_dtype=dtype, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        tensor_model_parallel_size=parallel.tp, pipeline_model_parallel_size=parallel.pp,
        sequence_parallel=parallel.sequence_parallel, batch_p2p_sync=not on_cpu,
        gradient_accumulation_fusion=False, bias_activation_fusion=False, masked_softmax_fusion=False,
        persist_layer_norm=False, bias_dropout_fusion=False, apply_rope_fusion=False,
        **recompute,
    )


def _full_shape_and_slicer(param: torch.Tensor, name: str, tp: int, tp_rank: int, gated: bool):
    """Full (TP=1) shape of ``param`` and a function that cuts this rank's shard from it."""
    if not getattr(param, "tensor_model_parallel", False) or tp == 1:
        return tuple(param.shape), lambda full: full
    dim = param.partition_dim
    shape = list(param.shape)
    shape[dim] *= tp
    if gated and name.endswith("mlp.linear_fc1.weight") or gated and name.endswith("mlp.linear_fc1.bias"):
        def cut(full):  # megatron stores [gate_shard; up_shard] per rank
            gate, up = full.chunk(2, dim=dim)
            return torch.cat([gate.chunk(tp, dim=dim)[tp_rank], up.chunk(tp, dim=dim)[tp_rank]], dim=dim)
        return tuple(shape), cut
    return tuple(shape), lambda full: full.chunk(tp, dim=dim)[tp_rank]


def _global_name(module, name: str) -> str:
    if name == "output_layer.weight" and getattr(module, "share_embeddings_and_output_weights", False):
        return "embedding.word_embeddings.weight"  # tied: the last stage's copy of the embedding
    m = _LAYER.search(name)
    if not m:
        return name
    layer = module.decoder.layers[int(m.group(1))]
    return name[:m.start(1)] + str(layer.layer_number - 1) + name[m.end(1):]


@torch.no_grad()
def reinit_layout_independent(module, shape: ModelShape, seed: int, tp: int, tp_rank: int) -> None:
    """Re-draw every parameter from (seed, global name) on the full shape and keep this TP shard."""
    out_std = 0.02 / math.sqrt(2.0 * shape.layers)
    for name, param in module.named_parameters():
        gname = _global_name(module, name)
        full_shape, cut = _full_shape_and_slicer(param, name, tp, tp_rank, shape.activation == "swiglu")
        if name.endswith("bias"):
            full = torch.zeros(full_shape)
        elif param.dim() == 1:
            full = torch.ones(full_shape)
        else:
            std = out_std if name.endswith(("linear_proj.weight", "linear_fc2.weight")) else 0.02
            gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(gname.encode()))
            full = torch.randn(full_shape, generator=gen) * std
        param.copy_(cut(full).to(param.dtype).view_as(param))


def build_model(shape: ModelShape, parallel: Parallelism, *, seed: int, dtype: torch.dtype, on_cpu: bool,
                use_te: bool | None = None):
    """Build this rank's GPTModel stage and its TransformerConfig (vpp = 1).

    ``use_te`` None: Transformer Engine's layer spec on a GPU where it is installed, else the local one.
    """
    if use_te is None:
        use_te = not on_cpu and _mcore.have_te()
    if parallel.vpp > 1:
        raise ValueError(f"parallel.vpp = {parallel.vpp}: the batchlaw trainer runs vpp = 1 for now"
                         " (the simulator models interleaving)")
    ps = _mcore.parallel_state
    cfg = transformer_config(shape, parallel, dtype=dtype, on_cpu=on_cpu)
    model = _mcore.GPTModel(
        config=cfg, transformer_layer_spec=_mcore.layer_spec(use_te, cfg.normalization), vocab_size=shape.vocab,
        max_sequence_length=shape.seq_len, pre_process=ps.is_pipeline_first_stage(),
        post_process=ps.is_pipeline_last_stage(),
        share_embeddings_and_output_weights=shape.tied_embeddings,
        position_embedding_type="rope" if shape.position == "rope" else "learned_absolute",
    )
    reinit_layout_independent(model, shape, seed, parallel.tp, ps.get_tensor_model_parallel_rank())
    if not on_cpu:
        model.cuda(torch.cuda.current_device())
    return model, cfg
