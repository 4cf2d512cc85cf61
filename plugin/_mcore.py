"""The adapter: the only batchlaw module that imports megatron-core (``tests/plugin/test_adapter.py``
checks it on the AST of every other module).

It owns everything that names a megatron API: config construction (TransformerConfig,
DistributedDataParallelConfig, OptimizerConfig), model/DDP/optimizer construction, the bucket-group
hook the noise scale reads, grad-buffer access, the pipeline schedules, optimizer-state access for
checkpoints, the indexed dataset and the ramp calculators. When an internal it relies on is missing
(a release renamed it), it raises ``MegatronInternalMissing`` naming the megatron-core version; it
never falls back to a silent default (a missing hook would log wrong noise-scale columns).

Supported and tested (CI legs): megatron-core 0.16.x (Python 3.11) and 0.19.x (Python 3.12).
Differences and how they are handled:

- Batch ramps: <= 0.17 ``init_num_microbatches_calculator(rampup_batch_size=[start, incr, n])``;
  >= 0.18 ignores ``rampup_batch_size`` (a warning, then a constant batch) in favour of
  ``step_batch_size_schedule="0:16 96:32"`` (Megatron-LM PR #4411). batchlaw drives the batch itself
  from its own ramp and passes ``num_microbatches`` to the schedule each step; ``megatron_ramp_kwargs``
  gives the equivalent arguments for Megatron-LM's own trainer, and ``megatron_batch_calculator``
  builds megatron's calculator from them (the test compares the staircase on both versions).
- ``get_gpt_layer_local_spec``: 0.16 has explicit keywords, 0.19 forwards ``**kwargs``; both accept
  ``normalization``, which must be passed (else apex's FusedLayerNorm is picked even for RMSNorm).
- 0.19 imports the triton-only ``moe/ops/paged_stash`` from the schedules and calls
  ``torch.cuda.current_stream`` in ``start_grad_sync``: both are stubbed by ``plugin/cpu.py`` on CPU.
- 0.19 adds optional arguments only (``initialize_model_parallel(gtp_remat_size=1)``,
  ``DistributedDataParallel(full_param_layout=None)``, ...); the defaults keep 0.16 behaviour.
- ``model_parallel_cuda_manual_seed(seed, inference_rng_tracker=True)`` is required on CPU.

Kernels: Transformer Engine's layer spec is used on a GPU when TE is installed; otherwise the local
spec, whose norm is apex's FusedLayerNorm when apex is installed (LayerNorm only) and torch's norm
otherwise; Adam is TE's or apex's FusedAdam when installed, else torch's AdamW (megatron's own
choice). ``kernels()`` reports what the built model and optimizer actually use.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from typing import Any, Callable

warnings.filterwarnings("ignore", message=".*Apex.*")
warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
warnings.filterwarnings("ignore", message=".*transformer_engine.*")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from megatron.core import package_info, parallel_state  # noqa: E402
from megatron.core.distributed import (DistributedDataParallel, DistributedDataParallelConfig,  # noqa: E402
                                       finalize_model_grads)
from megatron.core.models.gpt import GPTModel  # noqa: E402
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec  # noqa: E402
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer  # noqa: E402
from megatron.core.pipeline_parallel import get_forward_backward_func  # noqa: E402
from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate  # noqa: E402
from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed  # noqa: E402
from megatron.core.transformer.module import param_is_not_shared  # noqa: E402
from megatron.core.transformer.transformer_config import TransformerConfig  # noqa: E402

__all__ = [
    "MegatronInternalMissing", "VERSION", "bucket_groups", "build_ddp", "build_gpt", "build_optimizer",
    "destroy_parallel", "forward_backward", "grad_buffers", "grads_finite", "groups", "have_apex", "have_te",
    "indexed_dataset", "init_parallel", "install_grad_sync_hooks", "kernels", "layer_spec", "loss_scale",
    "megatron_batch_calculator", "megatron_ramp_kwargs", "optimizer_state", "load_optimizer_state", "optimizer_step",
    "param_counts_once", "seed_model_parallel", "set_lr", "transformer_config", "version_tuple", "zero_grads",
]

def _installed_version() -> str:
    """The installed distribution's version (0.19's ``package_info.__version__`` appends the git commit
    of the current directory, e.g. ``0.19.2+775c5a7`` inside a batchlaw checkout, so it varies)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("megatron-core")
    except PackageNotFoundError:  # a source checkout on sys.path
        return package_info.__version__


VERSION: str = _installed_version()
SUPPORTED = "0.16.x and 0.19.x"


class MegatronInternalMissing(RuntimeError):
    """A megatron-core internal that batchlaw relies on is missing in the installed version."""


def _need(obj: Any, name: str, what: str) -> Any:
    """``getattr(obj, name)``, or a loud error naming the megatron-core version."""
    try:
        return getattr(obj, name)
    except AttributeError:
        owner = obj.__name__ if isinstance(obj, type) or inspect.ismodule(obj) else type(obj).__name__
        raise MegatronInternalMissing(
            f"megatron-core {VERSION}: {owner}.{name} ({what}) is missing; batchlaw's adapter"
            f" (plugin/_mcore.py) supports megatron-core {SUPPORTED}: install one of those"
            " (pip install 'megatron-core==0.19.*') or port _mcore.py") from None


def version_tuple(version: str = VERSION) -> tuple[int, int]:
    """(major, minor) of a megatron-core version string."""
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


# parallel state --------------------------------------------------------------------------------
def init_parallel(tp: int, pp: int, vpp: int = 1) -> None:
    """Create megatron's process groups (world must already be initialised)."""
    kwargs: dict[str, Any] = dict(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    if vpp > 1:
        kwargs["virtual_pipeline_model_parallel_size"] = vpp
    parallel_state.initialize_model_parallel(**kwargs)


def destroy_parallel() -> None:
    """Tear down megatron's process groups (best effort on the way out)."""
    parallel_state.destroy_model_parallel()


def groups(tied_and_pp: bool) -> dict[str, Any]:
    """This process's groups and ranks: dp, mp (TP x PP), embedding (tied weights at PP > 1, else None)."""
    ps = parallel_state
    return dict(dp=ps.get_data_parallel_group(), mp=ps.get_model_parallel_group(),
                embedding=ps.get_embedding_group() if tied_and_pp else None,
                dp_rank=ps.get_data_parallel_rank(), dp_size=ps.get_data_parallel_world_size(),
                tp_rank=ps.get_tensor_model_parallel_rank(), pp_rank=ps.get_pipeline_model_parallel_rank(),
                pp_size=ps.get_pipeline_model_parallel_world_size())


def seed_model_parallel(seed: int, on_cpu: bool) -> None:
    """Seed megatron's tensor-parallel RNG tracker."""
    params = inspect.signature(model_parallel_cuda_manual_seed).parameters
    if on_cpu and "inference_rng_tracker" in params:
        model_parallel_cuda_manual_seed(seed, inference_rng_tracker=True)
    else:
        model_parallel_cuda_manual_seed(seed)


# kernels ---------------------------------------------------------------------------------------
def have_te() -> bool:
    """True when Transformer Engine can be imported."""
    try:
        import transformer_engine.pytorch  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken TE install counts as absent
        return False
    return True


def have_apex() -> bool:
    """True when NVIDIA apex (with its fused kernels) can be imported."""
    try:
        from apex.normalization import FusedLayerNorm  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def layer_spec(use_te: bool, normalization: str = "RMSNorm"):
    """Transformer Engine's layer spec when ``use_te`` (it must be installed), else the local one."""
    if use_te:
        if not have_te():
            raise ImportError("the Transformer Engine layer spec needs Transformer Engine: "
                              "pip install transformer-engine[pytorch]")
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

        return get_gpt_layer_with_transformer_engine_spec()
    return get_gpt_layer_local_spec(normalization=normalization)


def kernels(models, optimizer) -> dict[str, str]:
    """What the built model and optimizer actually run: norm, attention/linear and Adam classes."""
    names = {type(m).__module__.split(".")[0] + "." + type(m).__name__
             for chunk in models for m in chunk.modules()}
    norm = sorted(n for n in names if "Norm" in n) or ["none"]
    linear = sorted(n for n in names if n.endswith(("ColumnParallelLinear", "RowParallelLinear", "Linear"))) or ["none"]
    inner = [getattr(o, "optimizer", o) for o in _inner_optimizers(optimizer)]
    adam = sorted({type(o).__module__ + "." + type(o).__name__ for o in inner})
    return {"norm": ",".join(norm), "linear": ",".join(linear), "adam": ",".join(adam),
            "transformer_engine": str(have_te()), "apex": str(have_apex())}


# configs and construction ----------------------------------------------------------------------
def transformer_config(model, parallel, *, dtype: torch.dtype, on_cpu: bool) -> TransformerConfig:
    """TransformerConfig for a batchlaw ``ModelShape`` and ``Parallelism`` (Megatron's names stay here)."""
    recompute = {"none": {}, "selective": {"recompute_granularity": "selective"},
                 "full": {"recompute_granularity": "full", "recompute_method": "uniform",
                          "recompute_num_layers": 1}}[parallel.recompute]
    vpp = {"virtual_pipeline_model_parallel_size": parallel.vpp} if parallel.vpp > 1 else {}
    return TransformerConfig(
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
        **vpp, **recompute,
    )


def build_gpt(cfg: TransformerConfig, shape, *, use_te: bool) -> list:
    """This rank's GPTModel chunks (one per virtual pipeline stage)."""
    ps = parallel_state
    vpp = cfg.virtual_pipeline_model_parallel_size or 1
    chunks = []
    for vp in range(vpp):
        vp_kw = {"vp_stage": vp} if vpp > 1 else {}
        pre = ps.is_pipeline_first_stage(ignore_virtual=vpp == 1, **vp_kw)
        post = ps.is_pipeline_last_stage(ignore_virtual=vpp == 1, **vp_kw)
        chunks.append(GPTModel(
            config=cfg, transformer_layer_spec=layer_spec(use_te, cfg.normalization), vocab_size=shape.vocab,
            max_sequence_length=shape.seq_len, pre_process=pre, post_process=post,
            share_embeddings_and_output_weights=shape.tied_embeddings,
            position_embedding_type="rope" if shape.position == "rope" else "learned_absolute", **vp_kw))
    return chunks


def build_ddp(cfg: TransformerConfig, chunks: list, *, overlap_grad_reduce: bool, distributed_optimizer: bool) -> list:
    """Wrap each chunk in megatron's DistributedDataParallel and wire the gradient finalisation.

    Without ``finalize_model_grads_func`` DP gradients are never all-reduced (silently).
    """
    ddp_cfg = DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=overlap_grad_reduce,
                                            use_distributed_optimizer=distributed_optimizer)
    models = []
    for i, chunk in enumerate(chunks):
        # megatron's trainer disables bucketing for all chunks but the first (bucket_size None)
        models.append(DistributedDataParallel(config=cfg, ddp_config=ddp_cfg, module=chunk,
                                              **({"disable_bucketing": i > 0} if len(chunks) > 1 else {})))
    for m in models:
        _need(m, "buffers", "DDP gradient buffers")
        _need(m, "bucket_groups", "DDP bucket groups the noise-scale hook wraps")
    cfg.finalize_model_grads_func = finalize_model_grads
    no_sync = [m.no_sync for m in models]
    cfg.no_sync_func = no_sync[0] if len(no_sync) == 1 else no_sync
    return models


def build_optimizer(cfg: TransformerConfig, models: list, train, *, precision: str, distributed_optimizer: bool):
    """megatron-core's Adam (decoupled weight decay) over the DDP chunks, with fp16 loss scaling wired.

    ``train.clip_grad = 0`` (no clipping) is passed as an infinite threshold: megatron then still
    computes the fully reduced norm after preparing the gradients (needed for the noise scale) and
    its clip coefficient ``max_norm / (norm + 1e-6)`` is never below 1 (clip_grads.py). fp16: dynamic
    loss scaling from ``train.loss_scale_init`` (default 2^16, torch.amp.GradScaler's; megatron's
    own default 2^32 overflows for the first ~17 steps of a small model), megatron's hysteresis 2 and window 1000; the
    schedule multiplies each micro-batch loss by the scale through ``grad_scale_func``.
    """
    clip = train.clip_grad if train.clip_grad > 0 else math.inf
    fp16 = {"initial_loss_scale": float(train.loss_scale_init)} if precision == "fp16" else {}
    ocfg = OptimizerConfig(
        optimizer="adam", lr=train.lr, min_lr=train.min_lr, weight_decay=train.weight_decay,
        adam_beta2=train.adam_beta2, clip_grad=clip, bf16=precision == "bf16", fp16=precision == "fp16",
        use_distributed_optimizer=distributed_optimizer, **fp16)
    optimizer = get_megatron_optimizer(ocfg, models)
    cfg.grad_scale_func = _need(optimizer, "scale_loss", "loss scaling")
    return optimizer


# per step --------------------------------------------------------------------------------------
def zero_grads(models: list, optimizer) -> None:
    """Zero the DDP grad buffers and the optimizer's main grads."""
    zero_grad_buffers(models)
    optimizer.zero_grad()


def set_lr(optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group (batchlaw's schedule replaces megatron's)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def loss_scale(optimizer) -> float:
    """The loss scale the next backward uses (1 for bf16/fp32)."""
    return float(optimizer.get_loss_scale())


def optimizer_step(optimizer) -> tuple[bool, float]:
    """One optimizer step: (applied, grad norm before clipping, loss scale removed).

    An fp16 overflow (inf/NaN in the unscaled gradients) skips the update: (False, NaN); the scaler
    has already lowered the scale for the next step.
    """
    applied, norm, _ = optimizer.step()
    if not applied:
        return False, math.nan
    if norm is None:
        raise MegatronInternalMissing(f"megatron-core {VERSION}: optimizer.step() returned no grad norm after a"
                                      f" successful update; batchlaw supports megatron-core {SUPPORTED}")
    return True, float(norm)


def forward_backward(*, step_fn: Callable, batches: list, models: list, num_micro_batches: int, seq_len: int,
                     micro_batch: int, forward_only: bool = False) -> list[dict]:
    """megatron's schedule for this layout (no pipelining, 1F1B, or interleaved 1F1B at vpp > 1).

    ``step_fn(data_iterator, model) -> (output, loss_func)`` is megatron's forward-step contract;
    ``batches`` holds one iterator of micro-batches per model chunk.
    """
    fb = get_forward_backward_func()
    single = len(models) == 1
    return fb(forward_step_func=step_fn, data_iterator=batches[0] if single else batches,
              model=models[0] if single else models, num_microbatches=num_micro_batches, seq_length=seq_len,
              micro_batch_size=micro_batch, forward_only=forward_only)


def zero_grad_buffers(models: list) -> None:
    """Zero the DDP gradient buffers only (the optimizer's main grads stay)."""
    for m in models:
        m.zero_grad_buffer()


def unwrapped_params(models: list) -> list:
    """The parameters of the model chunks inside their DDP wrappers."""
    return [p for m in models for p in m.module.parameters()]


def is_shared_embedding(param) -> bool:
    """True for a tied embedding / output-layer weight (megatron marks both copies ``shared_embedding``)."""
    return bool(getattr(param, "shared_embedding", False))


def grad_of(param):
    """The fp32 gradient of ``param``: its view into the DDP gradient buffer."""
    return param.main_grad


def grads_finite(models: list) -> bool:
    """True when every gradient buffer of this rank is finite. bf16/fp32 optimizers have no loss scaler
    that checks (megatron's ``optimizer.step()`` would clip with a NaN norm and write NaN weights)."""
    return all(bool(torch.isfinite(b).all()) for b in grad_buffers(models))


def grad_buffers(models: list) -> list:
    """The flat fp32 gradient buffers (``grad_data``) of every chunk, in a fixed order."""
    out = []
    for m in models:
        for buf in list(_need(m, "buffers", "DDP gradient buffers")) + list(getattr(m, "expert_parallel_buffers", [])):
            out.append(_need(buf, "grad_data", "flat gradient buffer"))
    return out


def buffer_params(models: list) -> list:
    """Every parameter that owns a slice of a grad buffer (its ``main_grad`` is a view into it)."""
    return [p for m in models for buf in list(_need(m, "buffers", "DDP gradient buffers"))
            + list(getattr(m, "expert_parallel_buffers", [])) for p in _need(buf, "params", "buffer parameters")]


def bucket_groups(ddp) -> list:
    """The DDP bucket groups whose ``start_grad_sync`` launches the DP reduction (loud if renamed)."""
    return list(_need(ddp, "bucket_groups", "DDP bucket groups the noise-scale hook wraps")) + \
        list(getattr(ddp, "expert_parallel_bucket_groups", []))


def install_grad_sync_hooks(models: list, before_sync: Callable[[list], None]) -> Callable[[], None]:
    """Call ``before_sync(params)`` in each bucket group's ``start_grad_sync`` before it scales the
    local gradient by 1/dp and reduces it; returns a function that removes the hooks."""
    originals = []
    for ddp in models:
        for bg in bucket_groups(ddp):
            original = _need(bg, "start_grad_sync", "the DP gradient reduction entry point")
            params = [p for b in _need(bg, "buckets", "bucket list") for p in _need(b, "params", "bucket parameters")]

            def wrapped(*a, _orig=original, _params=params, **k):
                before_sync(_params)
                return _orig(*a, **k)

            bg.start_grad_sync = wrapped
            originals.append((bg, original))

    def remove() -> None:
        for bg, original in originals:
            bg.start_grad_sync = original
        originals.clear()

    return remove


def param_counts_once(param) -> bool:
    """True if ``param`` is counted in a norm: not a TP duplicate and not a shared (tied) copy."""
    return bool(param_is_not_tensor_parallel_duplicate(param) and param_is_not_shared(param))


# parameters: what megatron records on them and how it names them ------------------------------
_LAYER = re.compile(r"decoder\.layers\.(\d+)\.")


def tp_partition_dim(param) -> int | None:
    """The dimension along which ``param`` is split over the TP ranks (None when it is replicated)."""
    if not getattr(param, "tensor_model_parallel", False):
        return None
    return int(param.partition_dim)


def global_param_name(chunk, name: str) -> str:
    """The name of ``chunk``'s parameter ``name`` in the whole model: layer indices counted over all
    pipeline stages, and the tied output layer named as the embedding it copies."""
    if name == "output_layer.weight" and getattr(chunk, "share_embeddings_and_output_weights", False):
        return "embedding.word_embeddings.weight"
    m = _LAYER.search(name)
    if not m:
        return name
    layer = chunk.decoder.layers[int(m.group(1))]
    return name[:m.start(1)] + str(layer.layer_number - 1) + name[m.end(1):]


def is_gated_fc1(name: str) -> bool:
    """True for the first MLP projection of a gated (SwiGLU) layer, stored as [gate_shard; up_shard]
    on each TP rank."""
    return name.endswith(("mlp.linear_fc1.weight", "mlp.linear_fc1.bias"))


def is_output_projection(name: str) -> bool:
    """True for the projections that write into the residual stream (attention out, MLP out)."""
    return name.endswith(("linear_proj.weight", "linear_fc2.weight"))


# checkpoints -----------------------------------------------------------------------------------
def _inner_optimizers(optimizer) -> list:
    """megatron's per-group optimizers (a ChainedOptimizer's parts, or the optimizer itself)."""
    return list(getattr(optimizer, "chained_optimizers", [optimizer]))


def optimizer_state(optimizer, distributed: bool) -> dict[str, Any]:
    """This rank's optimizer state. With the distributed optimizer each rank saves its own shard (the
    inner torch optimizer's fp32 main parameters and Adam moments) rather than megatron's gathered
    format, whose 0.16 loader fails without apex (KeyError 'step')."""
    if not distributed:
        return {"optimizer": optimizer.state_dict()}
    shards = []
    for o in _inner_optimizers(optimizer):
        inner = _need(o, "optimizer", "the torch optimizer inside megatron's optimizer")
        shards.append({"torch": inner.state_dict(),
                       "params": [p.detach().clone() for g in inner.param_groups for p in g["params"]]})
    return {"optimizer_shards": shards}


@torch.no_grad()
def load_optimizer_state(optimizer, state: dict[str, Any], distributed: bool) -> None:
    """Restore what ``optimizer_state`` saved."""
    if not distributed:
        optimizer.load_state_dict(state["optimizer"])
        return
    for o, saved in zip(_inner_optimizers(optimizer), state["optimizer_shards"], strict=True):
        inner = _need(o, "optimizer", "the torch optimizer inside megatron's optimizer")
        for p, value in zip([p for g in inner.param_groups for p in g["params"]], saved["params"], strict=True):
            p.copy_(value)
        inner.load_state_dict(saved["torch"])


# data and ramps --------------------------------------------------------------------------------
def indexed_dataset(path: str):
    """megatron's IndexedDataset (``.bin``/``.idx`` pair written by ``batchlaw data build``)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    return IndexedDataset(path)


def _step_schedule(ramp, max_samples: int) -> str:
    """``ramp`` as megatron-core 0.18+'s ``step_batch_size_schedule`` string (sample thresholds)."""
    from batchlaw.simulator.ramp import segments

    parts, last = [], None
    for batch, _, start in segments(ramp, max_samples):
        if batch != last:
            parts.append(f"{start}:{batch}")
            last = batch
    return " ".join(parts)


def megatron_ramp_kwargs(ramp, max_samples: int) -> dict[str, Any]:
    """Arguments of megatron's own microbatch calculator equivalent to the bound ``ramp`` (a
    ``simulator.ramp.BatchRamp``) for this version: ``step_batch_size_schedule`` from 0.18 on, the
    ``rampup_batch_size`` triple ``[start, incr, ramp_samples]`` of a linear staircase before."""
    from batchlaw.simulator.ramp import ConstantRamp, StaircaseRamp

    if version_tuple() >= (0, 18):
        return {"step_batch_size_schedule": _step_schedule(ramp, max_samples)}
    if isinstance(ramp, ConstantRamp):
        return {}
    if not isinstance(ramp, StaircaseRamp):
        raise ValueError(f"train.ramp: a {type(ramp).__name__}: megatron-core {VERSION} only supports the linear"
                         " staircase 'start,incr,ramp_samples'; batchlaw's trainer supports all shapes")
    return {"rampup_batch_size": [ramp.start, ramp.incr, ramp.ramp_samples]}


def megatron_batch_calculator(ramp, *, global_batch: int, micro_batch: int, dp: int, max_samples: int):
    """megatron's own calculator for ``ramp`` in this version: a function consumed -> global batch.

    Built through megatron's public init/update/get functions (its global singleton is reset first).
    """
    from megatron.core import num_microbatches_calculator as nmc

    kwargs = megatron_ramp_kwargs(ramp, max_samples)
    if "rampup_batch_size" in kwargs and kwargs["rampup_batch_size"][0] == global_batch:
        kwargs = {}  # start == final: megatron divides by zero; it is a constant batch
    nmc.destroy_num_microbatches_calculator()
    nmc.init_num_microbatches_calculator(0, global_batch_size=global_batch, micro_batch_size=micro_batch,
                                         data_parallel_size=dp, decrease_batch_size_if_needed=False, **kwargs)

    def batch(consumed: int) -> int:
        nmc.update_num_microbatches(consumed, consistency_check=True)
        return int(nmc.get_current_global_batch_size())

    return batch
