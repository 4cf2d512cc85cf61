"""batchlaw.simulator: pure numpy/scipy core (specs, ramps, laws, fits, performance model, grid).

The names below are importable from here (``from batchlaw.simulator import RunSpec, predict_table``);
each is loaded on first use, so importing the package stays cheap. docs/api.md shows them in use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RunSpec": "runconfig", "TrainConfig": "runconfig", "DataConfig": "runconfig",
    "LogConfig": "runconfig", "CheckpointConfig": "runconfig", "load_run_config": "runconfig",
    "spec_from_dict": "runconfig",
    "PLAN_COLUMNS": "plan", "spec_from_row": "plan", "spec_to_row": "plan", "read_plan": "plan", "write_plan": "plan",
    "ModelShape": "spec", "Parallelism": "spec", "SystemSpec": "spec", "Infeasible": "spec",
    "validate_run": "spec", "load_model": "spec", "model_names": "spec",
    "predict_table": "table",
    "GridConfig": "grid", "load_grid": "grid", "run_grid": "grid", "plan_rows": "grid",
    "SystemProfile": "system", "load_system": "system", "system_names": "system",
    "BatchRamp": "ramp", "num_steps": "ramp", "RampSpec": "rampspec",
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
