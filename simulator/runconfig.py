"""Run configuration of the trainer: ``[model]``, ``[parallel]``, ``[train]``, ``[data]``, ``[log]``,
``[checkpoint]`` (TOML), loaded strictly with ``batchlaw.simulator.config``.

The parallel and batch keys use the simulator's column names (``parallel.tp``, ``parallel.micro_batch``,
``train.global_batch`` ...) so that a grid row becomes a run without renaming. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from batchlaw.simulator import config as _config
from batchlaw.simulator.ramp import parse_count
from batchlaw.simulator.spec import CONFIG_ROOT, ModelShape, Parallelism

__all__ = ["CheckpointConfig", "DataConfig", "LogConfig", "RunConfig", "TrainConfig", "load_run_config"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainConfig:
    """Optimisation and schedule."""

    global_batch: int
    """Final global batch size, sequences."""
    ramp: Any = None
    """Batch ramp: '' / 'start,incr,ramp_samples' / '0:8 1K:16' / a table (see docs/ramps.md)."""
    steps: int = 0
    """Optimizer steps; 0 means derive from ``tokens``."""
    tokens: int | str = 0
    """Token budget (an integer, or a string with a K/M/B/T suffix) used when ``steps`` is 0."""
    seed: int = 1234
    """Seed of weights, data order and RNG."""
    lr: float = 1e-3
    """Peak learning rate."""
    min_lr: float = 0.0
    """Final learning rate of the decay."""
    warmup_samples: int = 0
    """Linear warmup length in samples (never iterations: iterations change under a ramp)."""
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay shape from the end of warmup to the end of the token budget (in samples)."""
    lr_scaling: Literal["none", "sqrt", "linear"] = "none"
    """Rescale the LR with the ramp's batch relative to global_batch."""
    weight_decay: float = 0.1
    """AdamW weight decay."""
    adam_beta2: float = 0.95
    """AdamW beta2."""
    clip_grad: float = 1.0
    """Gradient clipping norm (0 disables; the noise scale then computes the norm itself)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto = bf16 on GPU, fp32 on CPU."""
    loss_scale_init: float = 65536.0
    """fp16 only: initial dynamic loss scale (torch.amp.GradScaler's default 2^16; Megatron-LM's 2^32
    overflows, and so skips, the first ~17 steps of a small model)."""
    eval_every: int = 0
    """Steps between validation passes (and one at the end); 0 = no validation."""
    eval_batches: int = 2
    """Micro-batches per validation pass."""
    exit_after_steps: int = 0
    """Checkpoint and exit (status 'interrupted') after this many steps of this launch; 0 = never
    (Megatron-LM's --exit-interval)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DataConfig:
    """Training data."""

    kind: Literal["synthetic", "indexed"] = "synthetic"
    """synthetic: deterministic random tokens per sample index; indexed: Megatron .bin/.idx."""
    path: str = ""
    """Prefix of the indexed dataset (PREFIX.bin / PREFIX.idx) for kind = indexed."""
    valid_fraction: float = 0.01
    """Fraction of sequences held out for validation (indexed data)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LogConfig:
    """Metrics."""

    path: str = ""
    """HDF5 run log; empty disables it."""
    flush_every: int = 10
    """Steps between HDF5 flushes."""
    gns: bool = True
    """Measure the gradient noise scale every step."""
    stdout_every: int = 1
    """Steps between one-line progress prints (0 = never)."""
    tensorboard: str = ""
    """Optional TensorBoard directory mirroring the step metrics."""
    done_marker: str = ""
    """File created by rank 0 when the run completes (the SLURM scripts skip runs that have one)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckpointConfig:
    """Checkpointing and resume."""

    dir: str = ""
    """Checkpoint directory; empty disables checkpoints (and resume)."""
    every: int = 0
    """Steps between checkpoints (0 = only on a signal and at the end)."""
    keep: int = 2
    """Checkpoints kept."""
    resume: bool = True
    """Resume from the newest checkpoint in ``dir`` when there is one."""
    stop_file: str = ""
    """If this file appears, checkpoint at the next step boundary and exit 0 (the sbatch script's
    signal trap creates it: torchrun itself dies on SIGTERM/SIGUSR1 instead of forwarding them)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunConfig:
    """One training run."""

    model: ModelShape
    """Model shape (``model.name`` of a shipped shape, optionally with overrides, or inline)."""
    parallel: Parallelism = field(default_factory=Parallelism)
    """Parallel layout; DP = world size / (tp x pp)."""
    train: TrainConfig
    """Optimisation."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data."""
    log: LogConfig = field(default_factory=LogConfig)
    """Metrics."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoints."""

    def total_samples(self) -> int:
        """Sample budget: ``tokens / seq_len`` (0 when the run is bounded by ``steps``)."""
        return -(-parse_count(str(self.train.tokens), "train.tokens") // self.model.seq_len)


def _resolve_model(data: dict[str, Any]) -> dict[str, Any]:
    model = dict(data.get("model", {}))
    name = model.get("name")
    shipped = CONFIG_ROOT / "models" / f"{name}.toml"
    if name and shipped.is_file():
        model = {**_config.load_toml(shipped)["model"], **model}
    return {**data, "model": model}


def load_run_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a run TOML, apply ``--set`` overrides, resolve ``model.name``, and build strictly."""
    data = _config.load_toml(path) if path else {}
    data = _resolve_model(_config.apply_overrides(data, overrides))
    cfg = _config.build(RunConfig, data)
    if cfg.train.steps <= 0 and cfg.total_samples() <= 0:
        raise ValueError("train.steps = 0 and train.tokens = 0: give one of them")
    if cfg.data.kind == "indexed" and not cfg.data.path:
        raise ValueError("data.path = '': kind = 'indexed' needs the dataset prefix (batchlaw data build)")
    return cfg
