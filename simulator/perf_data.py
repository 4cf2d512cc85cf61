"""The public throughput rows (``data/throughput/throughput_megatron.csv``) as ``predict_table`` input.

The CSV gives the layout as published. Each row's framework is named once, from its ``framework_version``
(``framework_of``): ``megatron-lm-2021`` (Narayanan et al. SC21 A100 rows), ``megatron-deepspeed`` (BLOOM),
``megatron-core`` (the Megatron-LM README H100 table, Megatron-Core r0.8), ``nemo-1`` (NeMo 24.x launcher
containers), ``nemo-2`` (NeMo 2.0), ``megatron-bridge``; the settings come from those presets
(``configs/frameworks``, where each value's source is cited), not from rules of this module. What this
reader still takes from the provenance and the notes is what belongs to a row, not to its framework:

- BLOOM's tied embeddings (a model fact) and its network: Omni-Path, 4 links of 100 Gb/s per node of 8 A100
  (``network_gbps`` 6.25 per GPU);
- the FP8 recipe where the notes print MXFP8 / FP8-MX (else the preset's per-tensor scaling);
- Megatron-FSDP where the notes say "FSDP used" / "Megatron-FSDP used"; CPU activation offloading where the
  notes give ``cpu_offloading_num_layers`` for the table's own layout;
- ``vpp``: the provenance leaves it blank where a source says VP = 1 or gives nothing; only where the notes
  say it is not stated (the Megatron-LM README tables) is it left blank (an unknown, priced over its
  choices), else it is 1;
- where the provenance's recipe check says the table DIFFERS from the release's recipe only in the
  schedule knobs (micro batch, virtual pipeline size) while TP/PP/CP/FSDP, GBS and GPU count agree, the
  recipe's values are used. One row is affected beyond the micro batch: 26.02.01 GB300 Llama3-70B MXFP8
  (table: mbs 2, no VP; recipe: mbs 1, VP 5). The table's schedule cannot have run: 4 micro-batches of
  2 x 8192 tokens in flight on 20 layers need ~343 GB of activations by Megatron's own
  ``theoretical_memory_usage`` formula (s b h (18 + 4 f/h) per layer) on a 288 GB GPU, and its 6.83 s step
  equals the recipe layout's 6.91 / 6.74 s in the 26.04 / 26.04.01 rows of the same table.

``published_throughput.csv`` holds 15 of these rows again (A100 2021 and the first 5 H100 rows), so the
199 rows of ``throughput_megatron.csv`` are the whole public set.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from batchlaw.simulator.csvio import read_csv
from batchlaw.simulator.resources import data_root

__all__ = ["FRAMEWORK_OF_VERSION", "PUBLIC_CSV", "framework_of", "public_rows"]

PUBLIC_CSV = data_root() / "throughput" / "throughput_megatron.csv"  # shipped in the wheel too
_OFFLOAD = re.compile(r"(?<!not applicable)cpu_offloading_num_layers=(\d+)(?![^;]*not applicable)")


_UNSTATED_VP = re.compile(r"(VPP|interleaving) not stated")
_MX = re.compile(r"precision as printed: (MXFP8|FP8-MX)")
_DIFFERS = re.compile(r"DIFFERS - ([^;]*)")
_KNOB = re.compile(r"(\w+): recipe (\w+) vs table (\w+)")
_SCHEDULE = {"mbs": "micro_batch", "vp": "vpp"}


def _recipe_schedule(note: str) -> dict[str, float]:
    """The recipe's micro batch / VP size where a row's recipe check differs in nothing else."""
    m = _DIFFERS.search(note)
    if not m:
        return {}
    knobs = _KNOB.findall(m.group(1))
    if not knobs or any(k not in _SCHEDULE for k, _, _ in knobs):
        return {}
    # a recipe's VP of None is the plain schedule
    return {_SCHEDULE[k]: (1.0 if v == "None" and k == "vp" else np.nan if v == "None" else float(v))
            for k, v, _ in knobs}


FRAMEWORK_OF_VERSION = (("Megatron-LM (April 2021)", "megatron-lm-2021"), ("Megatron-DeepSpeed", "megatron-deepspeed"),
                        ("Megatron-Core", "megatron-core"), ("Megatron-Bridge", "megatron-bridge"),
                        ("NeMo 2.0", "nemo-2"), ("NeMo", "nemo-1"))
"""``framework_version`` text (first match wins) -> framework preset (``configs/frameworks``)."""


def framework_of(version: str) -> str:
    """The framework preset of a public row's ``framework_version`` (a one-line error for one not listed)."""
    for key, name in FRAMEWORK_OF_VERSION:
        if key in version:
            return name
    raise ValueError(f"framework_version = {version!r}: no framework preset matches; known are "
                     + ", ".join(k for k, _ in FRAMEWORK_OF_VERSION))


def _offload_layers(note: str) -> float:
    m = _OFFLOAD.search(note)
    return float(m.group(1)) if m else 0.0


def public_rows(path: str | Path = PUBLIC_CSV) -> dict[str, np.ndarray]:
    """Rows of the public throughput table with the framework settings of their source filled in."""
    cols = read_csv(path)
    src = cols["source"].astype(str)
    notes = cols["notes"].astype(str)
    bloom = np.char.find(src, "BLOOM") >= 0
    n = len(src)
    for i, note in enumerate(notes):
        for col, value in _recipe_schedule(note).items():
            cols[col][i] = value
    # the provenance leaves vpp blank where a source says VP = 1 or gives nothing; only where the notes say
    # it is not stated is it unknown (priced over its choices), else it is the plain schedule
    stated = np.array([not _UNSTATED_VP.search(t) for t in notes])
    cols["vpp"] = np.where(np.isnan(cols["vpp"]) & stated, 1.0, cols["vpp"])
    cols["framework"] = np.array([framework_of(v) for v in cols["framework_version"].astype(str)], dtype=object)
    cols["tied_embeddings"] = bloom
    cols["fsdp"] = np.array([("FSDP used" in t) or ("Megatron-FSDP used" in t) for t in notes])
    cols["activation_offload_layers"] = np.array([_offload_layers(t) for t in notes])
    # BLOOM's cluster (Jean Zay) is not a DGX A100: its provenance gives Omni-Path with 4 links of
    # 100 Gb/s per 8-GPU node, 6.25 GB/s per GPU (the a100 profile: 8 x 200 Gb/s HDR, 25 GB/s per GPU)
    cols["network_gbps"] = np.where(bloom, 4 * 100 / 8 / 8, np.nan)
    # the FP8 flavour is in the notes ("precision as printed: MXFP8" / "FP8-MX"; see the provenance)
    cols["fp8_recipe"] = np.array(["mxfp8" if _MX.search(t) else "" for t in notes], dtype=object)
    cols["iter_time_s"] = np.asarray(cols["iter_time_s"], dtype=float)
    cols["row"] = np.arange(n)
    return cols
