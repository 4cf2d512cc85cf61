"""The public throughput rows (``data/throughput/throughput_megatron.csv``) as ``predict_table`` input.

The CSV gives the layout as published; the framework settings each source ran with are read from its
provenance (``throughput_megatron.PROVENANCE.md``) and the row's ``notes``, once, here:

- Megatron-LM 2021 A100 rows (Narayanan et al. SC21) and BLOOM-176B (Megatron-DeepSpeed, 2022): no
  flash attention (it did not exist / was not used), no TP-comm overlap; BLOOM's DeepSpeed ZeRO-1 is a
  distributed optimizer; BLOOM has tied embeddings.
- Megatron-Core r0.8 (H100 README), NeMo and Megatron-Bridge recipes: flash attention, distributed
  optimizer with overlapped gradient reduce and parameter gather, TP-comm overlap with SP (the README
  lists ``--tp-comm-overlap``; the NeMo/Bridge performance recipes enable userbuffers overlap), pipeline
  p2p overlapped with compute in the interleaved schedule (Megatron-LM's ``overlap_p2p_comm`` argument
  default; NeMo's ``MegatronStrategy`` sets it for VP > 1).
- gradients reduced in bf16 in the NeMo / Megatron-Bridge performance scripts;
- the embedding/loss layer slots in the pipeline split where the layer count needs them;
- the cross-entropy implementation, by ``framework_version``: TE's fused kernel in Megatron-Bridge, the
  native fused one in NeMo 2.0, unfused elsewhere (the NeMo 1.x launcher rows do not say: megatron-core's
  default, unfused).
- the FP8 recipe: MXFP8 where the notes print MXFP8 / FP8-MX, else per-tensor scaling.
- BLOOM's network: Omni-Path, 4 links of 100 Gb/s per node of 8 A100 (``network_gbps`` 6.25 per GPU).
- Megatron-FSDP where the notes say "FSDP used" / "Megatron-FSDP used"; CPU activation offloading
  where the notes give ``cpu_offloading_num_layers`` for the table's own layout.
- Where the provenance's recipe check says the table DIFFERS from the release's recipe only in the
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

__all__ = ["PUBLIC_CSV", "public_rows"]

PUBLIC_CSV = data_root() / "throughput" / "throughput_megatron.csv"  # shipped in the wheel too
_OFFLOAD = re.compile(r"(?<!not applicable)cpu_offloading_num_layers=(\d+)(?![^;]*not applicable)")


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
    return {_SCHEDULE[k]: (np.nan if v == "None" else float(v)) for k, v, _ in knobs}


def _offload_layers(note: str) -> float:
    m = _OFFLOAD.search(note)
    return float(m.group(1)) if m else 0.0


def public_rows(path: str | Path = PUBLIC_CSV) -> dict[str, np.ndarray]:
    """Rows of the public throughput table with the framework settings of their source filled in."""
    cols = read_csv(path)
    src = cols["source"].astype(str)
    notes = cols["notes"].astype(str)
    old = np.char.find(src, "April 2021") >= 0
    bloom = np.char.find(src, "BLOOM") >= 0
    legacy = old | bloom
    n = len(src)
    for i, note in enumerate(notes):
        for col, value in _recipe_schedule(note).items():
            cols[col][i] = value
    cols["flash_attention"] = ~legacy
    cols["distributed_optimizer"] = ~old
    cols["overlap_grad_reduce"] = ~legacy
    cols["tp_comm_overlap"] = ~legacy
    cols["overlap_p2p_comm"] = ~legacy  # Megatron-LM / NeMo default (--no-overlap-p2p-communication off)
    cols["tied_embeddings"] = bloom
    cols["fsdp"] = np.array([("FSDP used" in t) or ("Megatron-FSDP used" in t) for t in notes])
    cols["activation_offload_layers"] = np.array([_offload_layers(t) for t in notes])
    # NeMo 2.0 and Megatron-Bridge performance scripts reduce gradients in bf16
    # (``set_basic_perf_overrides``: ``grad_reduce_in_fp32 = False``); Megatron-LM's default is fp32.
    recipe = (np.char.find(src, "NeMo") >= 0) | (np.char.find(src, "dgxc") >= 0) | (np.char.find(src, "Bridge") >= 0)
    cols["grad_reduce_in_fp32"] = ~recipe
    # 126-layer Llama 3.1 405B on pp x vpp = 32/64/128, 30/62-layer proxies and BLOOM's 70 layers on 12
    # stages ran, so they used the split that counts the embedding and loss as layer slots (Megatron
    # account_for_embedding/loss_in_pipeline_split; Megatron-DeepSpeed counts them as pipe layers).
    layers, slots = cols["layers"], cols["pp"] * np.nan_to_num(cols["vpp"], nan=1.0)
    cols["pipeline_split_extra_layers"] = np.where((layers % slots != 0) & ((layers + 2) % slots == 0), 2.0, 0.0)
    # BLOOM's cluster (Jean Zay) is not a DGX A100: its provenance gives Omni-Path with 4 links of
    # 100 Gb/s per 8-GPU node, 6.25 GB/s per GPU (the a100 profile: 8 x 200 Gb/s HDR, 25 GB/s per GPU)
    cols["network_gbps"] = np.where(bloom, 4 * 100 / 8 / 8, np.nan)
    # cross-entropy, by the framework each row ran (``framework_version``): Megatron-Bridge's performance
    # configs set cross_entropy_loss_fusion with the "te" implementation; NeMo 2.0 (dgxc-benchmarking v25.04
    # scripts/performance, the NeMo 25.02/25.04 summaries) defaults GPTConfig's cross_entropy_loss_fusion to
    # True ("native"); Megatron-LM r0.8, the 2021 and BLOOM runs ran unfused; the NeMo 1.x launcher rows
    # (NeMo 24.05-24.12 containers, "NeMo launcher") do not say and take megatron-core's default (unfused).
    fw = cols["framework_version"].astype(str)
    bridge = np.char.find(fw, "Megatron-Bridge") >= 0
    nemo2 = np.char.find(fw, "NeMo 2.0") >= 0
    cols["cross_entropy_fusion"] = np.where(bridge, "te", np.where(nemo2, "native", "none"))
    # the FP8 flavour is in the notes ("precision as printed: MXFP8" / "FP8-MX"; see the provenance)
    cols["fp8_recipe"] = np.array(["mxfp8" if _MX.search(t) else "tensorwise" for t in notes])
    cols["iter_time_s"] = np.asarray(cols["iter_time_s"], dtype=float)
    cols["row"] = np.arange(n)
    return cols
