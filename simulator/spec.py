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

__all__ = ["Infeasible", "ModelShape", "Parallelism", "load_model", "model_names", "validate_run"]



def _config_root() -> Path:
    """``configs/`` of the checkout (editable install), else ``$BATCHLAW_CONFIG_DIR``, else ./configs."""
    import os

    env = os.environ.get("BATCHLAW_CONFIG_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent / "configs"
    return here if here.is_dir() else Path.cwd() / "configs"


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
    activation: Literal["swiglu", "gelu"] = "swiglu"
    """MLP activation; SwiGLU has three weight matrices, GELU two."""
    bias: bool = False
    """Linear layers carry biases."""
    normalization: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    """Norm type (LayerNorm has a bias vector, RMSNorm does not)."""
    position: Literal["rope", "learned"] = "rope"
    """Position embedding: rotary, or a learned table of seq_len x h parameters."""

    def __post_init__(self) -> None:
        for f in ("layers", "hidden", "heads", "vocab", "seq_len"):
            if getattr(self, f) < 1:
                raise ValueError(f"model.{f} = {getattr(self, f)!r}: must be a positive integer")
        if self.hidden % self.heads:
            raise ValueError(f"model.heads = {self.heads}: must divide model.hidden = {self.hidden}")
        if self.query_groups < 0 or (self.query_groups and self.heads % self.query_groups):
            raise ValueError(f"model.query_groups = {self.query_groups}: must be 0 or divide heads = {self.heads}")
        checks.check_model(self)

    @property
    def num_query_groups(self) -> int:
        """Effective key/value group count g."""
        return self.query_groups or self.heads

    @property
    def ffn(self) -> int:
        """Effective MLP inner size."""
        if self.ffn_hidden:
            return self.ffn_hidden
        if self.activation == "gelu":
            return 4 * self.hidden
        return -(-8 * self.hidden // 3 // 64) * 64


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
        for f in ("tp", "pp", "vpp", "micro_batch"):
            if getattr(self, f) < 1:
                raise ValueError(f"parallel.{f} = {getattr(self, f)!r}: must be a positive integer")


def validate_run(model: ModelShape, parallel: Parallelism, *, world_size: int,
                 global_batch: int) -> int:
    """Check every cross-field rule of a run before launch; return the data-parallel size.

    Used by the simulator's pruner and by the trainer's pre-launch check, so both refuse exactly
    the same layouts.

    Raises:
        Infeasible: naming the rule that failed.
    """
    tp, pp, vpp = parallel.tp, parallel.pp, parallel.vpp
    if world_size % (tp * pp):
        raise Infeasible(f"world size {world_size} is not divisible by tp x pp = {tp * pp}")
    dp = world_size // (tp * pp)
    if model.heads % tp:
        raise Infeasible(f"heads {model.heads} not divisible by tp {tp}")
    if model.num_query_groups % tp:
        raise Infeasible(f"query groups {model.num_query_groups} not divisible by tp {tp}")
    if model.layers % (pp * vpp):
        raise Infeasible(f"layers {model.layers} not divisible by pp x vpp = {pp * vpp}")
    if vpp > 1 and pp < 2:
        raise Infeasible(f"vpp {vpp} needs pp >= 2")
    if parallel.sequence_parallel and tp > 1 and model.seq_len % tp:
        raise Infeasible(f"seq_len {model.seq_len} not divisible by tp {tp} (sequence parallel)")
    per_step = parallel.micro_batch * dp
    if global_batch < 1 or global_batch % per_step:
        raise Infeasible(f"global batch {global_batch} not divisible by micro_batch x dp = {per_step}")
    num_micro = global_batch // per_step
    if vpp > 1 and num_micro % pp:
        raise Infeasible(f"interleaved schedule needs micro-batches {num_micro} divisible by pp {pp}")
    return dp


def model_names(root: Path | None = None) -> list[str]:
    """Names of the model shapes shipped in ``configs/models``."""
    return sorted(p.stem for p in ((root or CONFIG_ROOT) / "models").glob("*.toml"))


def load_model(name_or_path: str | Path, overrides: tuple[str, ...] = ()) -> ModelShape:
    """Load a model shape by name (``gpt-180m``) or from a TOML path; the file holds ``[model]``."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = CONFIG_ROOT / "models" / f"{name_or_path}.toml"
        if not path.is_file():
            raise ValueError(f"model = {str(name_or_path)!r}: unknown; shipped models are "
                             + ", ".join(model_names()))
    data = _config.apply_overrides(_config.load_toml(path), overrides)
    if set(data) != {"model"}:
        raise ValueError(f"{path}: a model file holds exactly one [model] table")
    return _config.build(ModelShape, data["model"], "model")


def replace(obj, **changes):
    """``dataclasses.replace`` re-exported for frozen specs."""
    return dataclasses.replace(obj, **changes)
