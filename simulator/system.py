"""System profiles: a GPU, its node and network, and the efficiency parameters of the step-time
model (fitted by ``simulator/calibrate.py``). Files: ``configs/systems/<name>.toml`` with one
``[system]`` table (and an optional ``[efficiency]`` table written by calibration)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from batchlaw.simulator import checks
from batchlaw.simulator import config as _config
from batchlaw.simulator import resources

__all__ = ["Efficiency", "SystemProfile", "load_system", "save_system", "system_names", "GPU_ALIASES"]

# GPU names as they appear in published tables -> shipped profile names.
GPU_ALIASES = {"A100-SXM4-80GB": "a100-80gb", "A100-SXM4-40GB": "a100-40gb", "H100-SXM5-80GB": "h100-sxm",
               "H100": "h100-sxm", "H200": "h200", "A100": "a100-80gb"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Efficiency:
    """Fitted efficiency parameters of the step-time model (see docs/formulas.md)."""

    matmul_max: float = 0.75
    """Asymptotic fraction of peak reached by large GEMMs."""
    width_half: float = 512.0
    """Per-GPU GEMM width (h / tp) at which GEMM efficiency is half its maximum."""
    tokens_half: float = 512.0
    """Tokens per micro-batch at which GEMM efficiency is half its maximum."""
    network_eff: float = 0.8
    """Achieved fraction of the nominal link bandwidths (both tiers)."""
    dp_exposed: float = 0.2
    """Fraction of the DP gradient communication not hidden behind the backward pass when overlapped."""
    overhead_s: float = 0.0
    """Fixed per-step overhead (launch, optimizer bookkeeping), seconds."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SystemProfile:
    """One GPU type in its node and cluster."""

    name: str
    """Profile name."""
    peak_tflops: float
    """Dense 16-bit peak per GPU, TFLOP/s."""
    hbm_gbps: float
    """Memory bandwidth per GPU, GB/s."""
    memory_gib: float
    """Memory per GPU, GiB."""
    gpus_per_node: int = 8
    """GPUs in one NVLink domain."""
    nvlink_gbps: float = 300.0
    """Intra-node bandwidth per GPU and direction, GB/s."""
    network_gbps: float = 25.0
    """Inter-node bandwidth per GPU and direction, GB/s."""
    latency_us: float = 10.0
    """Per-collective latency, microseconds."""
    memory_overhead_gib: float = 2.0
    """CUDA context, NCCL buffers and allocator slack reserved per GPU, GiB."""
    efficiency: Efficiency = field(default_factory=Efficiency)
    """Fitted efficiency parameters."""

    def __post_init__(self) -> None:
        checks.check_system(self)


def system_names() -> list[str]:
    """Profiles on the config search path (shipped ones and ``$BATCHLAW_CONFIG_PATH``)."""
    return resources.names("systems")


def load_system(name_or_path: str | Path) -> SystemProfile:
    """Load a profile by name (``h100-sxm``, or a published GPU name such as ``A100-SXM4-80GB``)
    or from a TOML path."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix != ".toml":
        path = resources.find("systems", GPU_ALIASES.get(text, text))
        if path is None:
            raise ValueError(f"system = {text!r}: unknown; shipped profiles are {', '.join(system_names())}"
                             f" (or a TOML path)")
    data = _config.load_toml(path)
    unknown = set(data) - {"system", "efficiency"}
    if unknown:
        raise ValueError(f"{path}: unknown table [{sorted(unknown)[0]}]; valid tables are system, efficiency")
    checks.check_system_tables(data, path)
    return _config.build(SystemProfile, {**data["system"], "efficiency": data.get("efficiency", {})}, "system")


def _toml_value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(float(v)) if isinstance(v, float) else str(v)


def save_system(profile: SystemProfile, path: str | Path, comment: str = "") -> None:
    """Write a profile TOML that ``load_system(path)`` reads back (atomically)."""
    data = _config.to_dict(profile)
    eff = data.pop("efficiency")
    lines = [f"# {line}" for line in comment.splitlines()] + ["[system]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in data.items()]
    lines += ["", "[efficiency]"] + [f"{k} = {_toml_value(v)}" for k, v in eff.items()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
