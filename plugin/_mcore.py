"""The one place that touches megatron-core APIs that differ between versions.

Supported: megatron-core 0.16.x (the newest on Python 3.11; tested in CI) and 0.18+ (checked by
reading the 0.19.2 wheel's source next to 0.16.1's; 0.17+ needs Python >= 3.12, so it cannot be
installed here without ``--ignore-requires-python``). Differences and how they are handled:

- Batch ramps: <= 0.17 ``init_num_microbatches_calculator(rampup_batch_size=[start, incr, n])``;
  >= 0.18 ignores ``rampup_batch_size`` (a warning, then a constant batch) in favour of
  ``step_batch_size_schedule="0:16 96:32"`` (Megatron-LM PR #4411, commit 532ad926b4). batchlaw
  drives the batch itself from its own ramp and passes ``num_microbatches`` to the schedule each
  step, so neither calculator is needed for training; ``megatron_ramp_kwargs`` gives the equivalent
  arguments for users of Megatron-LM's own trainer.
- ``get_gpt_layer_local_spec``: 0.16 has explicit keywords, 0.19 forwards ``*args, **kwargs`` to
  ``get_gpt_layer_local_submodules``; both accept ``normalization``, which must be passed: without
  it the spec picks apex's FusedLayerNorm whenever apex is installed, even for RMSNorm.
- 0.19 imports the triton-only ``moe/ops/paged_stash`` from the schedules and calls
  ``torch.cuda.current_stream`` in ``start_grad_sync``: both are stubbed by ``plugin/cpu.py`` on CPU.
- 0.19 adds optional arguments only (``initialize_model_parallel(gtp_remat_size=1, ...)``,
  ``get_data_parallel_group(with_gtp_remat=True)``, ``get_forward_backward_func(...,
  schedule_pg_collection=None)``, ``DistributedDataParallel(..., full_param_layout=None)``); the
  defaults keep 0.16 behaviour, so the calls below are the same for both.
- ``model_parallel_cuda_manual_seed(seed, inference_rng_tracker=True)`` is required on CPU (no
  CUDA RNG); versions without the keyword get the plain call.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

warnings.filterwarnings("ignore", message=".*Apex.*")
warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
warnings.filterwarnings("ignore", message=".*transformer_engine.*")

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
    "DistributedDataParallel", "DistributedDataParallelConfig", "GPTModel", "OptimizerConfig",
    "TransformerConfig", "VERSION", "finalize_model_grads", "get_forward_backward_func",
    "get_megatron_optimizer", "have_te", "init_parallel", "layer_spec", "megatron_ramp_kwargs",
    "param_counts_once", "parallel_state", "seed_model_parallel", "version_tuple",
]

VERSION: str = package_info.__version__


def version_tuple(version: str = VERSION) -> tuple[int, int]:
    """(major, minor) of a megatron-core version string."""
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def init_parallel(tp: int, pp: int, vpp: int = 1) -> None:
    """Create megatron's process groups (world must already be initialised)."""
    kwargs: dict[str, Any] = dict(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    if vpp > 1:
        kwargs["virtual_pipeline_model_parallel_size"] = vpp
    parallel_state.initialize_model_parallel(**kwargs)


def seed_model_parallel(seed: int, on_cpu: bool) -> None:
    """Seed megatron's tensor-parallel RNG tracker."""
    params = inspect.signature(model_parallel_cuda_manual_seed).parameters
    if on_cpu and "inference_rng_tracker" in params:
        model_parallel_cuda_manual_seed(seed, inference_rng_tracker=True)
    else:
        model_parallel_cuda_manual_seed(seed)


def have_te() -> bool:
    """True when Transformer Engine can be imported."""
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


def layer_spec(use_te: bool, normalization: str = "RMSNorm"):
    """Transformer Engine's layer spec when requested (it must be installed), else the local one.

    Args:
        use_te: use Transformer Engine's fused modules.
        normalization: "RMSNorm" or "LayerNorm", as in the TransformerConfig.
    """
    if use_te:
        if not have_te():
            raise ImportError("the Transformer Engine layer spec needs Transformer Engine: "
                              "pip install transformer-engine[pytorch]")
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

        return get_gpt_layer_with_transformer_engine_spec()
    return get_gpt_layer_local_spec(normalization=normalization)


def param_counts_once(param) -> bool:
    """True if ``param`` is counted in a norm: not a TP duplicate and not a shared (tied) copy."""
    return bool(param_is_not_tensor_parallel_duplicate(param) and param_is_not_shared(param))


def megatron_ramp_kwargs(ramp, max_samples: int) -> dict[str, Any]:
    """Arguments of megatron's own microbatch calculator equivalent to ``ramp`` for this version."""
    if version_tuple() >= (0, 18):
        return {"step_batch_size_schedule": ramp.to_step_schedule(max_samples)}
    triple = ramp.to_megatron_rampup()
    if triple is None:
        raise ValueError(f"train.ramp = {ramp.describe()!r}: megatron-core {VERSION} only supports the"
                         " linear staircase 'start,incr,ramp_samples'; batchlaw's trainer supports all shapes")
    return {"rampup_batch_size": triple}
