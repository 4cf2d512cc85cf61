"""A study file (``batchlaw design STUDY.toml``): what to measure, how sure, with what, for how much.

Sections (every key has a default except ``sizes.models``; unknown keys are refused with the valid list):

- top level: ``name``, ``system`` and ``gpus_per_node`` (where it runs), ``base`` (the run config every
  point starts from: data, LR schedule, checkpoints), ``max_nodes``, ``max_wall_hours`` (per run),
  ``budget_gpu_hours`` (the whole study, all waves);
- ``[sizes]``: ``models`` and the token rule ``tokens_per_param`` (D = k N, Chinchilla-style);
- ``[target]``: ``exponent_half_width`` (the B_opt(N) exponent to +-, 80%) or ``b_opt_factor`` (each B_opt
  within that factor, 80%);
- ``[prior]``: the B_opt law the first wave centres on (``b_opt_law``, a preset in tokens of D or in N, D)
  and how far off it may be (``b_opt_sd``, in ln), the basin (``basin``), the between-seed noise prior
  (``seed_sd``, ``prior_dof``; 0 = the basin's ``noise_sd``);
- ``[lr]``: the learning-rate rule: ``law`` (a preset lr_opt(N, D[, B]) at the optimal batch, moved along the
  basin's ridge for other batches), ``scaled`` (``reference_lr`` at ``reference_batch``, scaled by
  ``scaling`` sqrt/linear in the batch), ``fixed`` (``value``; ``on_purpose = true`` silences the warning
  that a fixed LR far from the law biases B_opt), and ``sweep_factors`` (the LR sweep the planner may put
  around the rule at the batches that decide B_opt);
- ``[design]``: ``spacing`` (factor between neighbouring batches), ``max_batches_per_size``,
  ``max_seeds``, ``layouts`` (tp and pp values the planner may use), ``nodes`` (node counts it may use),
  ``first_seed`` (the training seed of every configuration's first run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from batchlaw.simulator import config as _config
from batchlaw.simulator import resources

__all__ = ["DesignConfig", "LrConfig", "PriorConfig", "SizesConfig", "StudyConfig", "TargetConfig", "load_study"]


@dataclass(frozen=True, kw_only=True, slots=True)
class SizesConfig:
    """The model sizes and their token budgets."""

    models: tuple[str, ...]
    """Model names (configs/models); a size law needs at least 3."""
    tokens_per_param: float = 50.0
    """Token budget per parameter, D = k N."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TargetConfig:
    """How sure the answer must be (80% intervals). Give one of the two."""

    exponent_half_width: float = 0.0
    """The B_opt(N) exponent to within +- this (0 = no exponent target)."""
    b_opt_factor: float = 0.0
    """Each size's B_opt within this factor (its 80% interval inside [B/f, B*f]; 0 = no per-size target)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PriorConfig:
    """What is assumed before the first wave."""

    b_opt_law: str = "steplaw-batch"
    """Preset B_opt law (tokens) the first wave centres each size's batches on."""
    b_opt_sd: float = 0.7
    """How far off that law may be for these runs: sd of ln B_opt (0.7 = a factor 2 is 1 sigma)."""
    basin: str = "steplaw-basin"
    """Basin preset: the loss surface's shape (curvatures, asymmetry, LR ridge) and the noise prior."""
    exponent_sd: float = 0.15
    """How far off the prior law's size exponent may be (sd): sizes move together, not independently."""
    scatter_sd: float = 0.05
    """A size's own deviation from a power law in N, sd of ln B_opt (lack of fit of the law's form)."""
    shape_sd: float = 0.25
    """Uncertainty of the basin's asymmetry (sd of the ln of a_above / a_below and of c_above / c_below)."""
    ridge_sd: float = 0.1
    """Uncertainty of the basin's LR ridge slope."""
    lr_sd: float = 0.5
    """How far off the LR rule may be for this study's runs (all sizes together): sd of ln lr_opt (0.5 = a
    factor 1.65 is 1 sigma)."""
    lr_scatter_sd: float = 0.2
    """A size's own deviation from the LR rule, sd of ln lr_opt (Step Law's lr law scatters by 0.32-0.34 in
    ln lr over the near-optimal runs, which include the basin's flat floor: docs/benchmarks.md, Fits)."""
    curvature_scale: float = 1.0
    """Multiplies the basin's curvatures (a study at another scale than the basin's data; 1 = as fitted)."""
    seed_sd: float = 0.0
    """Between-seed sd of a final loss, nats (0 = the basin's noise_sd)."""
    fit_window: float = 0.05
    """Nats above a sweep's floor within which the basin is quadratic (Step Law's data: 0.05, docs/design.md);
    runs further up the rim bracket the optimum but are not fitted."""
    prior_dof: float = 4.0
    """Degrees of freedom the noise prior is worth."""
    step_se: float = 0.0
    """Within-run standard error of a final loss expected for these runs, nats (0 = none)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LrConfig:
    """The learning-rate rule of every planned point."""

    rule: Literal["law", "scaled", "fixed"] = "law"
    """law: a preset lr_opt; scaled: a reference point scaled with the batch; fixed: one value."""
    law: str = "steplaw-lr"
    """Preset lr_opt law (rule = law, and the reference the fixed-LR warning compares with)."""
    scale: float = 1.0
    """Multiplies the law's LR (a known offset of these runs' optimum)."""
    reference_lr: float = 0.0
    """rule = scaled: the LR at reference_batch."""
    reference_batch: int = 0
    """rule = scaled: the batch (sequences) of reference_lr."""
    scaling: Literal["sqrt", "linear"] = "sqrt"
    """rule = scaled: how the LR follows the batch (Malladi et al. 2022 sqrt for Adam; Goyal et al. 2017 linear)."""
    value: float = 0.0
    """rule = fixed: the LR of every point."""
    on_purpose: bool = False
    """rule = fixed: the LR is fixed on purpose (no bias warning)."""
    sweep_factors: tuple[float, ...] = (0.5, 2.0)
    """Factors of the rule's LR the planner may add at the batch nearest the optimum (a 2-D basin)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DesignConfig:
    """What the planner may choose."""

    spacing: float = 2.0
    """Factor between neighbouring batches of a sweep."""
    max_batches_per_size: int = 9
    """Batches one size may get over all waves."""
    max_seeds: int = 3
    """Seeds one configuration may get."""
    nodes: tuple[int, ...] = (1, 2, 4, 8, 16)
    """Node counts the planner may give a run (it takes the cheapest in GPU-hours within max_wall_hours)."""
    tp: tuple[int, ...] = (1, 2, 4)
    """Tensor-parallel sizes it may use."""
    pp: tuple[int, ...] = (1, 2)
    """Pipeline-parallel sizes it may use."""
    micro_batch: tuple[int, ...] = ()
    """Micro batches it may use (empty: the fastest that fits)."""
    min_batch: int = 1
    """The smallest global batch it may plan (the noise scale at DP = 1 needs two micro-batches)."""
    simulations: int = 48
    """Simulated studies behind each printed prediction."""
    seed: int = 0
    """Seed of the planner's simulations (the same study file plans the same waves)."""
    first_seed: int = 0
    """Training seed of every configuration's first run (0: the base run's ``train.seed``, else 1234); the
    next seeds of a configuration count up from it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StudyConfig:
    """A study file."""

    name: str = "study"
    """Study name (plan files are named after it)."""
    system: str = "h100-sxm"
    """System profile the points are priced on."""
    gpus_per_node: int = 8
    """GPUs per node."""
    framework: str = ""
    """Framework preset the points are priced with (``configs/frameworks``); '' = the base run's
    ``system.framework`` (``batchlaw``: this project's trainer, TE when installed here)."""
    base: str = ""
    """Run config (name or TOML) every point starts from ('' = the RunSpec defaults)."""
    max_nodes: int = 16
    """Most nodes one run may take."""
    max_wall_hours: float = 72.0
    """Longest wall-clock one run may take, hours."""
    budget_gpu_hours: float = 0.0
    """GPU-hours for the whole study, all waves (0 = no limit)."""
    compare_grid: str = ""
    """A grid (name or TOML) whose plan ``design`` prices beside the study's, with the same predictions ('' = none)."""
    sizes: SizesConfig
    """Sizes and token budgets."""
    target: TargetConfig = field(default_factory=TargetConfig)
    """Precision target."""
    prior: PriorConfig = field(default_factory=PriorConfig)
    """Priors."""
    lr: LrConfig = field(default_factory=LrConfig)
    """Learning-rate rule."""
    design: DesignConfig = field(default_factory=DesignConfig)
    """Planner settings."""

    def __post_init__(self) -> None:
        check_study(self)


def _positive(field_name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{field_name} = {value!r}: must be a finite number {'>= 0' if allow_zero else '> 0'}")


def check_study(s: StudyConfig) -> None:
    """Cross-field rules of a study (one line each, naming the field, the value and what is allowed)."""
    if len(s.sizes.models) < 3:
        raise ValueError(f"sizes.models = {list(s.sizes.models)}: a size law needs at least 3 model sizes"
                         " (one size gives no B_opt(N) exponent); list 3 or more")
    if len(set(s.sizes.models)) != len(s.sizes.models):
        raise ValueError(f"sizes.models = {list(s.sizes.models)}: a model is listed twice")
    _positive("sizes.tokens_per_param", s.sizes.tokens_per_param)
    t = s.target
    _positive("target.exponent_half_width", t.exponent_half_width, allow_zero=True)
    if t.b_opt_factor and not (math.isfinite(t.b_opt_factor) and t.b_opt_factor > 1):
        raise ValueError(f"target.b_opt_factor = {t.b_opt_factor!r}: must be > 1 (e.g. 1.25), or 0 for none")
    if not (t.exponent_half_width or t.b_opt_factor):
        raise ValueError("target: give exponent_half_width (e.g. 0.05) or b_opt_factor (e.g. 1.25)")
    _positive("budget_gpu_hours", s.budget_gpu_hours, allow_zero=True)
    _positive("max_wall_hours", s.max_wall_hours)
    if s.max_nodes < 1 or s.gpus_per_node < 1:
        raise ValueError(f"max_nodes = {s.max_nodes}, gpus_per_node = {s.gpus_per_node}: must be >= 1")
    p = s.prior
    _positive("prior.b_opt_sd", p.b_opt_sd)
    _positive("prior.curvature_scale", p.curvature_scale)
    _positive("prior.lr_sd", p.lr_sd, allow_zero=True)
    _positive("prior.lr_scatter_sd", p.lr_scatter_sd, allow_zero=True)
    _positive("prior.exponent_sd", p.exponent_sd, allow_zero=True)
    _positive("prior.scatter_sd", p.scatter_sd, allow_zero=True)
    _positive("prior.shape_sd", p.shape_sd, allow_zero=True)
    _positive("prior.fit_window", p.fit_window)
    _positive("prior.ridge_sd", p.ridge_sd, allow_zero=True)
    _positive("prior.seed_sd", p.seed_sd, allow_zero=True)
    _positive("prior.prior_dof", p.prior_dof)
    _positive("prior.step_se", p.step_se, allow_zero=True)
    _check_lr(s.lr)
    d = s.design
    if not (math.isfinite(d.spacing) and d.spacing > 1):
        raise ValueError(f"design.spacing = {d.spacing!r}: must be > 1 (2 = batches a factor 2 apart)")
    if d.max_batches_per_size < 3:
        raise ValueError(f"design.max_batches_per_size = {d.max_batches_per_size}: a bracket needs at least 3")
    if d.first_seed < 0:
        raise ValueError(f"design.first_seed = {d.first_seed}: a training seed >= 1 (0: the base run's train.seed)")
    if d.max_seeds < 1 or d.simulations < 8:
        raise ValueError(f"design.max_seeds = {d.max_seeds}, design.simulations = {d.simulations}: need >= 1 and >= 8")
    for name in ("nodes", "tp", "pp"):
        values = getattr(d, name)
        if not values or any(v < 1 for v in values):
            raise ValueError(f"design.{name} = {list(values)}: a non-empty list of counts >= 1")


def _check_lr(lr: LrConfig) -> None:
    if lr.rule == "law" and not lr.law:
        raise ValueError("lr.law = '': rule = 'law' names no law; give a preset such as 'steplaw-lr' or"
                         " 'deepseek-lr', or rule = 'scaled' / 'fixed'")
    if lr.rule == "scaled" and not (lr.reference_lr > 0 and lr.reference_batch > 0):
        raise ValueError(f"lr.reference_lr = {lr.reference_lr!r}, lr.reference_batch = {lr.reference_batch!r}:"
                         " rule = 'scaled' needs both > 0")
    if lr.rule == "fixed" and not lr.value > 0:
        raise ValueError(f"lr.value = {lr.value!r}: rule = 'fixed' needs the LR (> 0)")
    _positive("lr.scale", lr.scale)
    if any(not (math.isfinite(f) and f > 0 and f != 1) for f in lr.sweep_factors):
        raise ValueError(f"lr.sweep_factors = {list(lr.sweep_factors)}: factors > 0 other than 1 (e.g. [0.5, 2])")


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> StudyConfig:
    """Load a study TOML (a path, or a name in configs/studies) strictly, with ``--set`` overrides."""
    path = resources.resolve("studies", path, field="study")
    data = _config.apply_overrides(_config.load_toml(path), overrides)
    return _config.build(StudyConfig, data)
