"""System profiles: a GPU, its node and network, and the efficiency parameters of the step-time
model (fitted by ``simulator/calibrate.py``). Files: ``configs/systems/<name>.toml`` with one
``[system]`` table (and an optional ``[efficiency]`` table written by calibration)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from batchlaw.simulator import checks
from batchlaw.simulator import config as _config
from batchlaw.simulator import resources

__all__ = ["Calibration", "Efficiency", "SystemProfile", "gpu_profile_name", "load_system", "prior_params",
           "save_system", "system_names", "GPU_ALIASES"]

# GPU names as they appear in published tables -> shipped profile names.
# Matching is case-insensitive (``gpu_profile_name``).
GPU_ALIASES = {"A100-SXM4-80GB": "a100-80gb", "A100-80GB": "a100-80gb", "A100": "a100-80gb",
               "A100-SXM4-40GB": "a100-40gb", "A100-40GB": "a100-40gb",
               "H100-SXM5-80GB": "h100-sxm", "H100-SXM": "h100-sxm", "H100-80GB": "h100-sxm", "H100": "h100-sxm",
               "DGX-H100": "h100-sxm", "H200": "h200", "H200-SXM-141GB": "h200", "DGX-H200": "h200",
               "B200": "b200", "DGX-B200": "b200", "B200-SXM-180GB": "b200",
               "GB200": "gb200", "GB200-NVL72": "gb200", "DGX-GB200": "gb200",
               "GB300": "gb300", "GB300-NVL72": "gb300", "DGX-GB300": "gb300"}
_ALIASES_LOWER = {k.lower(): v for k, v in GPU_ALIASES.items()}


@dataclass(frozen=True, kw_only=True, slots=True)
class Efficiency:
    """Efficiency parameters of the op-level step-time model (docs/formulas.md, "Step time")."""

    matmul_max: float = 0.75
    """Asymptotic fraction of the 16-bit peak reached by large 16-bit GEMMs."""
    fp8_matmul_max: float = 0.6
    """Asymptotic fraction of the FP8 peak reached by large FP8 GEMMs."""
    attention_eff: float = 0.5
    """Fraction of the 16-bit peak reached by the fused (flash) attention core, causal FLOPs."""
    cp_attention_eff: float = 0.85
    """Efficiency of the attention core under context parallelism (cp > 1) relative to one GPU's: the
    ring splits each rank's attention into cp partial kernels forward and backward, merges the partial
    outputs and accumulates dQ/dKV in fp32 per ring step (~24 bytes per query element and step, about 16%
    of the core's time at s = 8192 on H100: default 0.85), and shares SMs with the ring's send/receive
    kernels (Transformer Engine ``AttnFuncWithCPAndKVP2P``)."""
    mxfp8_eff: float = 1.0
    """Speed of MXFP8 GEMMs (1 x 32 blocks with E8M0 scales, Blackwell) relative to per-tensor-scaled FP8
    ones, quantisation included: Transformer Engine quantises every MXFP8 operand both row- and column-wise
    (a block's scale runs along the GEMM's K, which the backward GEMMs transpose) and the block-scaled
    kernels load scale factors beside the data. Start value 1 (no difference); the public Blackwell rows
    that publish both recipes for one layout identify it."""
    hbm_eff: float = 0.7
    """Achieved fraction of HBM bandwidth for memory-bound ops and GEMM operand traffic."""
    width_half: float = 64.0
    """GEMM width min(N, K) per GPU at which GEMM efficiency is half its maximum. Start value: a GEMM
    whose inner dimension K is one 64-element k-step of a tensor-core tile spends as long in the tile's
    prologue/epilogue as in math. The public rows do not identify it (docs/benchmarks.md)."""
    tokens_half: float = 256.0
    """GEMM rows (tokens per micro-batch per rank) at which an 8192-column GEMM's wave-fill factor is one
    half; a GEMM of N columns reaches it at 8192 / N times as many rows (the factor depends on the output
    tiles, M x N). Start value from wave quantisation: 256 rows x 8192 columns is 64 output tiles of
    128 x 256, about half a wave on 132 SMs (H100)."""
    network_eff: float = 0.8
    """Achieved fraction of the nominal link bandwidths (both tiers)."""
    tp_exposed: float = 0.3
    """Fraction of TP communication left exposed when TP-comm overlap is on."""
    dp_exposed: float = 0.2
    """Fraction of the DP communication never hidden, even with a long enough overlap window."""
    overhead_s: float = 0.02
    """Fixed per-step overhead (optimizer launch, framework bookkeeping), seconds."""
    overhead_mb_s: float = 0.001
    """Fixed overhead per micro-batch and pipeline stage (kernel launches, schedule), seconds."""
    overhead_layer_s: float = 0.0002
    """Fixed overhead per transformer layer and micro-batch, forward + backward (host-side module and
    kernel-launch work, FP8 scaling bookkeeping: ~40 kernels at ~5 us), seconds."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Calibration:
    """Record of the fit that produced a profile's efficiency parameters."""

    fitted_on: str = ""
    """Which rows the parameters were fitted on (file and filter)."""
    n_rows: int = 0
    """Number of rows fitted."""
    params: tuple[str, ...] = ()
    """Names of the fitted parameters."""
    stderr: tuple[float, ...] = ()
    """Standard errors of the fitted parameters (same order), from the Jacobian at the optimum."""
    median_abs_error: float = 0.0
    """Median |relative error| of iteration time on the fitted rows."""
    max_abs_error: float = 0.0
    """Worst |relative error| of iteration time on the fitted rows."""
    fixed: str = ""
    """Parameters held fixed and why."""
    not_identified: tuple[str, ...] = ()
    """Fitted parameters the rows did not constrain (their posterior stayed near the prior)."""
    framework: str = ""
    """The framework preset of the rows fitted when they share one (``batchlaw calibrate``: the kernels the
    logs say ran); '' for rows of several frameworks."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SystemProfile:
    """One GPU type in its node and cluster."""

    name: str
    """Profile name."""
    peak_tflops: float
    """Dense 16-bit peak per GPU, TFLOP/s."""
    peak_fp8_tflops: float = 0.0
    """Dense FP8 peak per GPU, TFLOP/s (0: no FP8 tensor cores; ``predict_table`` refuses FP8 rows)."""
    peak_fp32_tflops: float = 0.0
    """Dense FP32 peak per GPU on the CUDA cores, TFLOP/s: what fp32 GEMMs run at (PyTorch leaves TF32 off for
    matmuls, and neither megatron-core nor batchlaw's trainer turns it on). 0: ``peak_tflops`` (CPU
    profiles, whose peak is an fp32 one). NVIDIA datasheets: A100 19.5, H100/H200 SXM 67, HGX B200 80,
    GB200 90 (1200 W), GB300 80 (as tabulated by glennklockwood.com/garden/processors/B200 and verda.com,
    "GB300 NVL72 architecture")."""
    mxfp8: bool = False
    """Block-scaled MXFP8 tensor cores (1 x 32 blocks, E8M0 scales; Blackwell: B200, GB200, GB300).
    ``predict_table`` refuses ``fp8_recipe = mxfp8`` rows on a profile without them."""
    hbm_gbps: float
    """Memory bandwidth per GPU, GB/s."""
    memory_gib: float
    """Memory per GPU, GiB."""
    gpus_per_node: int = 8
    """GPUs in one NVLink domain (8 on DGX/HGX, 72 on GB200/GB300 NVL72)."""
    nvlink_gbps: float = 300.0
    """Intra-node bandwidth per GPU and direction, GB/s."""
    network_gbps: float = 25.0
    """Inter-node bandwidth per GPU and direction, GB/s."""
    latency_us: float = 10.0
    """Base latency of a collective (NCCL's ring, Simple protocol: 8.4 us, ``src/graph/tuning.cc``) and of one
    point-to-point transfer, microseconds."""
    hop_nvlink_us: float = 3.4
    """Latency of one ring step inside an NVLink domain (NCCL ``tuning.cc`` hwLat, NVLink, ring, Simple), us."""
    hop_net_us: float = 9.6
    """Latency of one ring step across the network (NCCL ``tuning.cc`` hwLat, NET, ring, Simple), us."""
    memory_overhead_gib: float = 2.0
    """CUDA context, NCCL buffers and allocator slack reserved per GPU, GiB."""
    host_gbps: float = 25.0
    """Host-memory bandwidth per GPU and direction for activation offloading, GB/s (PCIe Gen4 x16 ~25,
    Gen5 x16 ~50; Grace-Blackwell NVLink-C2C 450 per superchip and direction, shared by 2 GPUs)."""
    efficiency: Efficiency = field(default_factory=Efficiency)
    """Fitted efficiency parameters."""
    calibration: Calibration = field(default_factory=Calibration)
    """What the efficiency parameters were fitted on, and how well they fit."""

    def __post_init__(self) -> None:
        checks.check_system(self)


def prior_params(profile: SystemProfile) -> tuple[str, ...]:
    """Efficiency parameters of ``profile`` that are still priors: not among the fitted ones of its
    ``[calibration]``, or fitted but not identified by the rows (every one for an uncalibrated profile)."""
    cal = profile.calibration
    names = [f.name for f in fields(Efficiency)]
    return tuple(n for n in names if n not in cal.params or n in cal.not_identified)


def system_names() -> list[str]:
    """Profiles on the config search path (shipped ones and ``$BATCHLAW_CONFIG_PATH``)."""
    return resources.names("systems")


# Efficiency terms added after profiles were first fitted (session 3), at the value that switches them off:
# a profile whose [efficiency] table lacks them was fitted without them and keeps predicting as it did.
_NEUTRAL = {"overhead_layer_s": 0.0, "cp_attention_eff": 1.0, "mxfp8_eff": 1.0}


def load_system(name_or_path: str | Path) -> SystemProfile:
    """Load a profile by name (``h100-sxm``, or a published GPU name such as ``A100-SXM4-80GB``)
    or from a TOML path."""
    text = str(name_or_path)
    path = resources.resolve("systems", gpu_profile_name(text), field="system")
    data = _config.load_toml(path)
    unknown = set(data) - {"system", "efficiency", "calibration"}
    if unknown:
        raise ValueError(f"{path}: unknown table [{sorted(unknown)[0]}]; valid tables are system, efficiency,"
                         " calibration")
    checks.check_system_tables(data, path)
    cal = {k: tuple(v) if isinstance(v, list) else v for k, v in data.get("calibration", {}).items()}
    eff = data.get("efficiency", {})
    if eff:  # a fitted profile written before a term existed keeps the model it was fitted with
        eff = {**_NEUTRAL, **eff}
    return _config.build(SystemProfile, {**data["system"], "efficiency": eff, "calibration": cal}, "system")


def gpu_profile_name(name: str) -> str:
    """Shipped profile name for a GPU name as sources write it (``H100-SXM5-80GB`` -> ``h100-sxm``)."""
    text = str(name).strip()
    return _ALIASES_LOWER.get(text.lower(), text)


def save_system(profile: SystemProfile, path: str | Path, comment: str = "") -> None:
    """Write a profile TOML that ``load_system(path)`` reads back (atomically), with ``config.to_toml``."""
    data = _config.to_dict(profile)
    eff = data.pop("efficiency")
    cal = data.pop("calibration")
    tables = {"system": data, "efficiency": eff, **({"calibration": cal} if cal.get("n_rows") else {})}
    _config.write_text_atomic(path, _config.to_toml(tables, comment=comment))
