"""Names, dtypes and units of the HDF5 run log: the contract between writer (plugin) and readers (tools).

Standard library only, so that ``batchlaw.tools`` can import it without torch. The full description
with examples is in ``docs/hdf5_schema.md``.

Layout of one file per run::

    /                 attributes: see ATTRS
    /steps/<name>     1-D resizable chunked datasets, one row per optimizer step, aligned on
                      /steps/step (row i of every dataset belongs to step steps/step[i])
    /events/<name>    1-D resizable datasets of sparse events (eval, ramp decisions, restarts),
                      aligned on /events/<group>/step
"""

from __future__ import annotations

SCHEMA_VERSION = 1
"""Bumped on any incompatible change; readers refuse a newer major version."""

STEPS_GROUP = "steps"
EVENTS_GROUP = "events"

# name -> (numpy dtype string, description with unit). Every name carries its unit where it has one.
STEP_COLUMNS: dict[str, tuple[str, str]] = {
    "step": ("i8", "optimizer step index, starting at 1 after the first update"),
    "consumed_samples": ("i8", "sequences consumed after this step (cumulative)"),
    "tokens": ("i8", "tokens consumed after this step (cumulative) = consumed_samples x seq_len"),
    "global_batch_size": ("i8", "sequences in this step's global batch"),
    "num_micro_batches": ("i8", "micro-batches per DP rank in this step"),
    "lr": ("f8", "learning rate used for this step"),
    "loss": ("f8", "mean LM loss of this step's global batch (nats per token)"),
    "grad_norm": ("f8", "L2 norm of the DP-reduced gradient before clipping (loss scale removed)"),
    "gns_b_small": ("f8", "small batch of the two-batch estimator, sequences (harmonic mean if uneven)"),
    "gns_b_big": ("f8", "big batch of the two-batch estimator, sequences"),
    "gns_small_sq": ("f8", "|G_small|^2: mean over small batches of their squared gradient norm"),
    "gns_big_sq": ("f8", "|G_big|^2: squared norm of the full-batch gradient"),
    "gns_g2": ("f8", "unbiased estimate of |G|^2 (McCandlish et al. 2018, eq. A.3)"),
    "gns_trace": ("f8", "unbiased estimate of tr(Sigma) per sequence (McCandlish et al. 2018, eq. A.4)"),
    "step_time_s": ("f8", "wall-clock time of this step, seconds"),
    "tokens_per_s": ("f8", "tokens of this step divided by step_time_s"),
    "mfu": ("f8", "model FLOPs utilisation of this step (NaN on CPU)"),
    "mem_gib": ("f8", "peak accelerator memory of this step, GiB (NaN on CPU)"),
    "loss_scale": ("f8", "fp16 dynamic loss scale used by this step's backward (1 for bf16/fp32)"),
    "skipped": ("i8", "1 if the update was skipped because the loss or the gradients were not finite (fp16"
                      " overflow, or any precision; norms and noise-scale columns NaN), else 0"),
}

# Columns every writer must fill each step (the rest may be NaN when not applicable).
REQUIRED_STEP_COLUMNS = (
    "step", "consumed_samples", "tokens", "global_batch_size", "num_micro_batches", "lr", "loss",
    "grad_norm", "gns_b_small", "gns_b_big", "gns_small_sq", "gns_big_sq", "gns_g2", "gns_trace",
    "step_time_s", "tokens_per_s",
)

EVENT_COLUMNS: dict[str, dict[str, tuple[str, str]]] = {
    "eval": {
        "step": ("i8", "step after which validation ran"),
        "tokens": ("i8", "tokens consumed at that step"),
        "val_loss": ("f8", "mean validation LM loss, nats per token"),
    },
    "ramp": {
        "step": ("i8", "step at which the adaptive ramp decided"),
        "old_batch": ("i8", "global batch before the decision, sequences"),
        "new_batch": ("i8", "global batch after the decision, sequences"),
        "b_simple": ("f8", "smoothed noise scale tr(Sigma)/|G|^2 the decision was based on"),
    },
}

# File attributes (strings are JSON where noted).
ATTRS: dict[str, str] = {
    "schema_version": "int, SCHEMA_VERSION of the writer",
    "config": "JSON, the resolved run configuration",
    "git_sha": "str, commit of the batchlaw checkout, '-dirty' appended when tracked files differ ('unknown' outside git)",
    "config_history": "JSON list, present when a resume changed the config: [{until_step, config}] of the earlier launches",
    "cwd": "str, the folder the ranks started in: relative paths of the config (checkpoint.dir, data.path) are relative to it",
    "versions": "JSON, versions of batchlaw, torch, megatron-core, h5py, numpy, python",
    "layout": "JSON, parallel layout as launched: world_size, tp, pp, vpp, dp, micro_batch, precision (resolved), device",
    "restart_count": "int, how many times the run resumed from a checkpoint into this file",
    "model_name": "str, model shape name",
    "num_params": "int, exact parameter count of the model",
    "seq_len": "int, tokens per sequence",
    "ramp": "str, the batch ramp the run followed in its canonical text (rampspec.RampSpec.text: '' = constant,"
            " else an inline TOML table); RampSpec.from_config reads it back equal (older writers wrote prose)",
    "status": "str, 'running', 'completed', 'interrupted' or 'failed' (set on close)",
    "kernels": "JSON, the norm, linear and Adam implementations megatron-core ran, TE/apex availability",
}

CHUNK_ROWS = 1024
"""Rows per HDF5 chunk of the /steps datasets."""


def check_version(version: int) -> None:
    """Raise ValueError if a file was written by a newer, incompatible schema, or names none readable."""
    try:
        ok = float(version) == int(version) >= 0  # 0: the attribute is absent
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"schema_version = {version!r}: not a schema version (an integer up to {SCHEMA_VERSION})")
    if int(version) > SCHEMA_VERSION:
        raise ValueError(
            f"schema_version = {version}: this batchlaw reads up to {SCHEMA_VERSION}; upgrade batchlaw"
        )
