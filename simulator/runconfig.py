"""``RunSpec``: one frozen description of a training run, and its strict TOML loader.

Sections ``[model]``, ``[parallel]``, ``[train]``, ``[system]``, ``[data]``, ``[log]``, ``[checkpoint]``.
A ``run.toml`` is a RunSpec written out (``config.to_toml``); the HDF5 ``config`` attribute is the
same dict as JSON and reads back with ``spec_from_dict``. A grid is a table of RunSpecs whose columns
are the field names (``plan.PLAN_COLUMNS``; ``model.name`` and ``system.name`` are the columns ``model``
and ``system``): ``plan.spec_to_row`` and ``plan.spec_from_row`` are the only mapping between the two.
Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from batchlaw.simulator import checks
from batchlaw.simulator import config as _config
from batchlaw.simulator import resources
from batchlaw.simulator.ramp import parse_count
from batchlaw.simulator.rampspec import RampSpec
from batchlaw.simulator.spec import ModelShape, Parallelism, SystemSpec

__all__ = ["CheckpointConfig", "DataConfig", "LogConfig", "RunSpec", "SystemSpec", "TrainConfig", "find_run_config",
           "in_run_dir", "load_run_config", "spec_from_dict"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainConfig:
    """Optimisation and schedule."""

    global_batch: int
    """Final global batch size, sequences."""
    ramp: RampSpec = RampSpec()
    """Batch ramp (``rampspec.RampSpec``): written '' (constant), 'start,incr,ramp_samples', '0:8 1K:16' or a
    table ``{shape = ..., ...}`` whose keys are checked per shape; held as one parsed value."""
    steps: int = 0
    """Optimizer steps; 0 means derive from ``tokens``."""
    tokens: int | str = 0
    """Token budget used when ``steps`` is 0: an integer, or a string with a K/M/B/T suffix (``"8.8B"``)
    that is held as the integer it means."""
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

    def __post_init__(self) -> None:
        # each value parsed once here, whatever the spelling it came in (TOML, a plan cell, Python)
        object.__setattr__(self, "ramp", RampSpec.from_config(self.ramp, "train.ramp"))
        if isinstance(self.tokens, str):
            object.__setattr__(self, "tokens", parse_count(self.tokens, "train.tokens"))
        checks.check_train(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class DataConfig:
    """Training data."""

    kind: Literal["synthetic", "indexed"] = "synthetic"
    """synthetic: deterministic random tokens per sample index; indexed: Megatron .bin/.idx."""
    path: str = ""
    """Prefix of the indexed dataset (PREFIX.bin / PREFIX.idx) for kind = indexed."""
    valid_fraction: float = 0.01
    """Fraction of sequences held out for validation (indexed data)."""

    def __post_init__(self) -> None:
        checks.check_data(self)


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

    def __post_init__(self) -> None:
        checks.check_log(self)


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

    def __post_init__(self) -> None:
        checks.check_checkpoint(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class RunSpec:
    """One training run: model shape, layout, batch and ramp, token budget, precision and optimizer
    flags, system, seed (``plan`` fields), plus data, logging and checkpointing."""

    model: ModelShape
    """Model shape (``model.name`` of a shipped shape, optionally with overrides, or inline)."""
    parallel: Parallelism = field(default_factory=Parallelism)
    """Parallel layout; DP = world size / (tp x pp)."""
    train: TrainConfig
    """Optimisation."""
    system: SystemSpec = field(default_factory=SystemSpec)
    """The system profile, GPUs per node and nodes the run is planned for."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data."""
    log: LogConfig = field(default_factory=LogConfig)
    """Metrics."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoints."""

    def __post_init__(self) -> None:
        checks.check_run(self)

    def validate(self, world_size: int | None = None) -> int:
        """The trainer's pre-launch check (``spec.validate_run``, ramp included) at ``world_size``
        ranks (default: ``system.nodes x system.gpus_per_node``); returns the data-parallel size.

        Raises:
            Infeasible: naming the rule of ``rules.RULES`` the run breaks.
        """
        from batchlaw.simulator.spec import validate_run

        return validate_run(self.model, self.parallel, world_size=world_size or self.system.world_size,
                            global_batch=self.train.global_batch, ramp=self.train.ramp)

    def total_samples(self) -> int:
        """Sample budget: ``tokens / seq_len`` (0 when the run is bounded by ``steps``)."""
        return -(-parse_count(str(self.train.tokens), "train.tokens") // self.model.seq_len)


def _resolve_model(data: dict[str, Any]) -> dict[str, Any]:
    """Fill ``[model]`` from the shape named by ``model.name`` (inline keys win)."""
    model = dict(data.get("model", {}))
    name = model.get("name")
    if name:
        shipped = (resources.find("models", str(name)) if "layers" in model else
                   resources.resolve("models", str(name), field="model.name",
                                     inline="or give layers, hidden, heads inline"))
        if shipped is not None:
            model = {**_config.load_toml(shipped)["model"], **model}
    return {**data, "model": model}


def _check(cfg: RunSpec) -> RunSpec:
    if cfg.train.steps <= 0 and cfg.total_samples() <= 0:
        raise ValueError("train.steps = 0 and train.tokens = 0: give one of them")
    if cfg.data.kind == "indexed" and not cfg.data.path:
        raise ValueError("data.path = '': kind = 'indexed' needs the dataset prefix (batchlaw data build)")
    return cfg


def spec_from_dict(data: Mapping[str, Any]) -> RunSpec:
    """Build a RunSpec strictly from a nested dict (a run TOML, or the HDF5 ``config`` attribute)."""
    return _check(_config.build(RunSpec, _resolve_model(checks.check_run_data(dict(data)))))


def find_run_config(name_or_path: str | Path) -> Path:
    """A run TOML path, or the file of a run config name on the config search path."""
    return resources.resolve("runs", name_or_path, field="run config")


def load_run_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunSpec:
    """Load a run TOML (a path, or a name in ``configs/runs``), apply ``--set`` overrides, resolve
    ``model.name``, and build strictly."""
    data = _config.load_toml(find_run_config(path)) if path else {}
    return spec_from_dict(_config.apply_overrides(data, overrides))


def in_run_dir(spec: RunSpec, run_dir: str | Path, *, done_marker: bool = False) -> RunSpec:
    """``spec`` logging to ``run_dir/log.h5`` and checkpointing into ``run_dir/ckpt`` (and, with
    ``done_marker``, creating ``run_dir/COMPLETED`` when it completes), without building it again:
    a planner names the folder after the built spec, then places the spec in it."""
    run_dir = Path(run_dir)
    log = dataclasses.replace(spec.log, path=str(run_dir / "log.h5"),
                              done_marker=str(run_dir / "COMPLETED") if done_marker else spec.log.done_marker)
    return dataclasses.replace(spec, log=log, checkpoint=dataclasses.replace(spec.checkpoint, dir=str(run_dir / "ckpt")))
