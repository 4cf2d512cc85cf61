"""batchlaw.simulator: pure numpy/scipy core (specs, ramps, laws, fits, performance model, grid).

The names below are importable from here (``from batchlaw.simulator import RunSpec, predict_table``);
each is loaded on first use, so importing the package stays cheap. docs/api.md shows them in use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RunSpec": "runconfig", "RunConfig": "runconfig", "TrainConfig": "runconfig", "DataConfig": "runconfig",
    "LogConfig": "runconfig", "CheckpointConfig": "runconfig", "PLAN_COLUMNS": "runconfig",
    "load_run_config": "runconfig", "load_run_spec": "runconfig", "spec_from_dict": "runconfig",
    "spec_from_row": "runconfig", "spec_to_row": "runconfig",
    "ModelShape": "spec", "Parallelism": "spec", "SystemSpec": "spec", "Infeasible": "spec",
    "validate_run": "spec", "load_model": "spec", "model_names": "spec",
    "predict_table": "table",
    "GridConfig": "grid", "load_grid": "grid", "run_grid": "grid", "plan_rows": "grid",
    "SystemProfile": "system", "load_system": "system", "system_names": "system",
    "BatchRamp": "ramp", "RampTable": "ramp", "parse_ramp": "ramp", "num_steps": "ramp",
    "load_preset": "presets", "preset_names": "presets",
    "num_params": "params",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'batchlaw.simulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"batchlaw.simulator.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
