"""The shared vocabulary of simulator and plugin: model shape, parallel layout, cross-field rules.

Field names follow the columns of ``published_throughput.csv`` (``layers``, ``hidden``, ``heads``,
``tp``, ``pp``, ``vpp``, ``micro_batch`` ...) so that a grid row becomes a run without renaming.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from batchlaw.simulator import checks
from batchlaw.simulator import config as _config
from batchlaw.simulator import resources, rules

__all__ = ["Infeasible", "ModelShape", "Parallelism", "SystemSpec", "default_ffn", "load_model", "model_names",
           "validate_run"]

def _config_root() -> Path:
    """The shipped configs folder (kept for callers that join paths onto it)."""
    return resources.shipped_root()


CONFIG_ROOT = _config_root()


class Infeasible(ValueError):
    """A run that cannot be executed as specified; ``reason`` is written as a column by ``prune``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelShape:
    """A GPT decoder shape (megatron-core GPTModel)."""

    name: str = "custom"
    """Short name, e.g. ``gpt-180m``."""
    layers: int
    """Number of transformer layers."""
    hidden: int
    """Hidden size h."""
    heads: int
    """Attention heads a."""
    query_groups: int = 0
    """Key/value groups g for GQA; 0 means g = heads (multi-head attention)."""
    ffn_hidden: int = 0
    """MLP inner size; 0 means 4h (GELU) or the next multiple of 64 above 8h/3 (SwiGLU)."""
    vocab: int = 50304
    """Vocabulary size V (padded)."""
    seq_len: int = 2048
    """Sequence length s in tokens."""
    tied_embeddings: bool = False
    """Share the input embedding and the output layer."""
    activation: Literal["swiglu", "gelu"] = "gelu"
    """MLP activation; SwiGLU has three weight matrices, GELU two. The default is megatron-core's
    (``TransformerConfig``: gelu, no gated linear unit); every shipped model names its own."""
    bias: bool = False
    """Linear layers carry biases."""
    normalization: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    """Norm type (LayerNorm has a bias vector, RMSNorm does not)."""
    position: Literal["rope", "learned"] = "rope"
    """Position embedding: rotary, or a learned table of seq_len x h parameters."""

    def __post_init__(self) -> None:
        checks.check_model(self)

    @property
    def num_query_groups(self) -> int:
        """Effective key/value group count g."""
        return self.query_groups or self.heads

    @property
    def ffn(self) -> int:
        """Effective MLP inner size."""
        return self.ffn_hidden or int(default_ffn(self.hidden, self.activation == "swiglu"))


def default_ffn(hidden, gated):
    """MLP inner size when ``ffn_hidden`` is 0: 4h (GELU; Vaswani et al. 2017) or 8h/3 rounded up to a
    multiple of 64 (SwiGLU at equal parameters; Shazeer 2020, sec. 2). Works on scalars and arrays."""
    import numpy as np

    swiglu = -(-np.ceil(8 * np.asarray(hidden) / 3) // 64) * 64
    out = np.where(gated, swiglu, 4 * np.asarray(hidden))
    return out if np.ndim(out) else out.item()


@dataclass(frozen=True, kw_only=True, slots=True)
class Parallelism:
    """Megatron parallel layout and memory options of one run."""

    tp: int = 1
    """Tensor-parallel size."""
    pp: int = 1
    """Pipeline-parallel size."""
    vpp: int = 1
    """Virtual pipeline stages (model chunks) per pipeline rank; 1 means no interleaving."""
    micro_batch: int = 1
    """Sequences per micro-batch per DP rank."""
    sequence_parallel: bool = False
    """Megatron sequence parallelism (a no-op at tp = 1, as in Megatron-LM)."""
    distributed_optimizer: bool = False
    """Shard optimizer state (and main grads) over DP ranks (ZeRO-1)."""
    overlap_grad_reduce: bool = False
    """Overlap the DP gradient reduction with the backward pass."""
    recompute: Literal["none", "selective", "full"] = "none"
    """Activation recomputation mode."""

    def __post_init__(self) -> None:
        checks.check_parallel(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class SystemSpec:
    """Where the run is planned to execute (the simulator prices it on this profile)."""

    name: str = ""
    """System profile (configs/systems), e.g. ``h100-sxm``; '' = not planned on one."""
    gpus_per_node: int = 8
    """Ranks (GPUs) per node; ``batchlaw submit`` launches this many per node."""
    nodes: int = 1
    """Nodes; world size = nodes x gpus_per_node on a cluster."""
    framework: str = "batchlaw"
    """Framework whose settings the simulator prices the run with (a preset of ``configs/frameworks``):
    ``batchlaw`` is this project's trainer (resolved to ``batchlaw-te`` or ``batchlaw-local`` by what is
    installed; a plan records the resolved name, and ``batchlaw calibrate`` checks it against the kernels
    the log says ran)."""

    def __post_init__(self) -> None:
        checks.check_system_spec(self)

    @property
    def world_size(self) -> int:
        """nodes x gpus_per_node."""
        return self.nodes * self.gpus_per_node


def resolve_precision(precision: str, system: str) -> str:
    """``auto`` resolved: fp32 on a CPU, else bf16. The one place it is resolved: the trainer (on the device
    it runs on), grids and ``predict_table`` (on the system profile priced) and calibration all call it.

    Args:
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``; only ``auto`` is changed.
        system: a system profile name (``cpu-*`` is a CPU) or a device class (``cpu`` / ``gpu``).
    """
    if precision != "auto":
        return precision
    return "fp32" if device_class(system) == "cpu" else "bf16"


def device_class(system: str) -> str:
    """``cpu`` for a CPU profile (name ``cpu-*``), else ``gpu``: logs and profiles must agree on it."""
    return "cpu" if system.startswith("cpu") else "gpu"


def rule_values(model: ModelShape, parallel: Parallelism, *, world_size: int, global_batch: int,
                ramp=None) -> dict[str, object]:
    """The columns of ``rules`` for one run."""
    return {"tp": parallel.tp, "pp": parallel.pp, "vpp": parallel.vpp, "dp": world_size / (parallel.tp * parallel.pp),
            "micro_batch": parallel.micro_batch, "global_batch": global_batch, "heads": model.heads,
            "query_groups": model.num_query_groups, "layers": model.layers, "seq_len": model.seq_len,
            "sequence_parallel": parallel.sequence_parallel, "ramp": ramp}


def validate_run(model: ModelShape, parallel: Parallelism, *, world_size: int, global_batch: int,
                 ramp=None) -> int:
    """Check every cross-field rule of a run before launch; return the data-parallel size.

    The rules are ``rules.RULES``, the same table the vectorised pruner (``table.feasibility``)
    evaluates, so both refuse exactly the same runs with the same message.

    Args:
        model, parallel: the shape and layout.
        world_size: ranks of the launch.
        global_batch: final global batch size.
        ramp: the ``train.ramp`` value (None or '' = constant); checked against micro_batch x dp.

    Raises:
        Infeasible: naming the rule that failed.
    """
    reason = rules.first_violation(rule_values(model, parallel, world_size=world_size, global_batch=global_batch,
                                               ramp=ramp))
    if reason:
        raise Infeasible(reason)
    return world_size // (parallel.tp * parallel.pp)


def model_names(root: Path | None = None) -> list[str]:
    """Names of the model shapes on the config search path (``resources``), or in ``root/models``."""
    if root is not None:
        return sorted(p.stem for p in (root / "models").glob("*.toml"))
    return resources.names("models")


def load_model(name_or_path: str | Path, overrides: tuple[str, ...] = ()) -> ModelShape:
    """Load a model shape by name (``gpt-180m``) or from a TOML path; the file holds ``[model]``."""
    path = resources.resolve("models", name_or_path, field="model")
    data = _config.apply_overrides(_config.load_toml(path), overrides)
    if set(data) != {"model"}:
        raise ValueError(f"{path}: a model file holds exactly one [model] table")
    return _config.build(ModelShape, data["model"], "model")


def replace(obj, **changes):
    """``dataclasses.replace`` re-exported for frozen specs."""
    return dataclasses.replace(obj, **changes)
