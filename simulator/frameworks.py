"""Framework presets: the settings a training framework runs with, named by one word.

A published table or a user's plan gives the layout (tp, pp, micro batch, ...) but rarely the eight
settings that decide how fast that layout runs (flash attention, distributed optimizer, overlaps, the
gradient-reduction dtype, the loss kernel, ...). A ``framework`` names the bundle: each preset is one file
``configs/frameworks/<name>.toml`` holding one ``[framework]`` table (``Framework``), with the source
of every value in its comments. ``predict_table`` (``table.normalise``, ``columns.fill``) fills every blank
or missing setting column of a row from the row's framework (the ``framework`` column, else the caller's default);
a setting given in a column wins. The settings it resolved are written back as columns, with the
concrete preset name in ``framework``.

``batchlaw`` is this project's trainer and resolves to ``batchlaw-te`` (Transformer Engine's layer spec:
flash attention) or ``batchlaw-local`` (megatron-core's local spec: unfused attention), as the trainer
chooses (``plugin/model.py``: TE on a GPU where it is installed): ``batchlaw-local`` on a CPU system
(``cpu-*``), else ``batchlaw-te`` where ``transformer_engine`` is installed on this machine and
``batchlaw-local`` where it is not. A log's ``kernels`` attribute says which one ran
(``kernels_framework``); ``batchlaw calibrate`` compares it with the plan's.

Some settings may be left unknown by a preset (a recipe sets them per model): ``recompute = ""``,
``dropout = nan`` and, for frameworks that interleave, a blank ``vpp``. ``predict_table`` then prices
every choice and reports the range (``table``).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Mapping

from batchlaw.simulator import config as _config
from batchlaw.simulator import resources

__all__ = ["BOOL_SETTINGS", "DEFAULT", "Framework", "describe", "framework_names", "kernels_framework",
           "load_framework", "resolve_name", "te_installed"]

DEFAULT = "batchlaw"
"""The framework of a row that names none: this project's trainer."""

BOOL_SETTINGS = ("flash_attention", "distributed_optimizer", "overlap_grad_reduce", "grad_reduce_in_fp32",
                 "tp_comm_overlap", "overlap_p2p_comm")
"""Yes/no settings a preset fills (columns of ``predict_table`` of the same names)."""

@dataclass(frozen=True, kw_only=True, slots=True)
class Framework:
    """The settings one training framework runs a GPT with (its defaults or published recipe flags)."""

    description: str
    """What the preset stands for and where its values come from."""
    flash_attention: bool
    """Fused (flash) attention core (Transformer Engine / FlashAttention); False: megatron's unfused core."""
    distributed_optimizer: bool
    """Optimizer state sharded over the data-parallel ranks (Megatron distributed optimizer, ZeRO-1)."""
    overlap_grad_reduce: bool
    """Gradient reduce-scatter / all-reduce overlapped with the backward pass (and, with the distributed
    optimizer, the parameter all-gather with the forward)."""
    grad_reduce_in_fp32: bool
    """Gradients accumulated and reduced in fp32 (False: in 16 bits)."""
    tp_comm_overlap: bool
    """Tensor-parallel collectives overlapped with the GEMMs (Transformer Engine userbuffers; needs SP)."""
    overlap_p2p_comm: bool
    """Pipeline send/receive overlapped with compute in the interleaved schedule."""
    cross_entropy_fusion: Literal["none", "native", "te"]
    """Loss kernel: megatron's unfused vocab-parallel cross-entropy, its jit-fused one, or TE's."""
    sequence_parallel: bool
    """Sequence parallelism where tp > 1 when a row leaves it blank (or ``unknown``)."""
    split_embedding_loss: bool
    """Counts the embedding and the loss as pipeline layer slots where the layers need it (Megatron
    ``account_for_embedding/loss_in_pipeline_split``): a blank ``pipeline_split_extra_layers`` is 2 where
    layers do not divide by pp x vpp but layers + 2 do, else 0."""
    interleaving: bool
    """A blank vpp (pp > 1) may be interleaved: an unknown priced over its choices (recipes that interleave
    where the source does not say how). False: a blank vpp is 1, the plain schedule (a framework without
    the interleaved schedule, or batchlaw's trainer, whose RunSpec default is vpp = 1; an explicit vpp > 1
    is still priced)."""
    recompute: Literal["", "none", "selective", "full"]
    """Activation recomputation of a row that leaves it blank; '' = the framework does not fix it (an
    unknown priced over none, selective and full)."""
    dropout: float
    """Hidden dropout probability of a row that leaves it blank (decides whether dropout masks are kept
    for backward); nan = not fixed by the framework (a recipe sets it per model)."""
    fp8_recipe: Literal["tensorwise", "delayed", "current", "mxfp8", "blockwise"]
    """FP8 scaling of an fp8 row that leaves ``fp8_recipe`` blank."""

    def __post_init__(self) -> None:
        if not (math.isnan(self.dropout) or 0.0 <= self.dropout < 1.0):
            raise ValueError(f"framework.dropout = {self.dropout!r}: allowed is a probability in [0, 1), or nan")


def framework_names() -> list[str]:
    """Presets on the config search path, plus ``batchlaw`` (resolved to batchlaw-te or batchlaw-local)."""
    return sorted(set(resources.names("frameworks")) | {DEFAULT})


def te_installed() -> bool:
    """Whether Transformer Engine is installed here (found, not imported: no torch is loaded)."""
    return importlib.util.find_spec("transformer_engine") is not None


def resolve_name(name: str, system: str = "") -> str:
    """The concrete preset of a framework name: ``batchlaw`` -> ``batchlaw-local`` on a CPU system or where
    Transformer Engine is not installed, else ``batchlaw-te``; other names as given (stripped, lower-case)."""
    text = str(name).strip().lower() or DEFAULT
    if text != DEFAULT:
        return text
    return "batchlaw-te" if not str(system).startswith("cpu") and te_installed() else "batchlaw-local"


def load_framework(name_or_path: str | Path) -> Framework:
    """A preset by name (``nemo-2``; ``batchlaw`` is resolved first) or from a TOML file path.

    Raises:
        ValueError: one line naming the value and the presets, or the file's first bad key.
    """
    text = str(name_or_path)
    name = text if text.endswith(".toml") else resolve_name(text)
    path = resources.resolve("frameworks", name, field="framework")
    data = _config.load_toml(path)
    if set(data) != {"framework"}:
        raise ValueError(f"{path}: a framework file holds exactly one [framework] table")
    return _config.build(Framework, data["framework"], "framework")


def kernels_framework(kernels: Mapping[str, Any] | str) -> str:
    """The batchlaw preset a run log's ``kernels`` attribute (a dict or its JSON) says ran: ``batchlaw-te``
    when its linear layers are Transformer Engine's (``megatron.TE...Linear``, the TE layer spec, whose
    attention is TE's fused one), else ``batchlaw-local``; '' when the attribute names no linear layer."""
    import json

    k = json.loads(kernels) if isinstance(kernels, str) else dict(kernels)
    linear = str(k.get("linear", ""))
    if not linear or linear == "none":
        return ""
    return "batchlaw-te" if any(part.split(".")[-1].startswith("TE") for part in linear.split(",")) else "batchlaw-local"


def describe(name: str, fw: Framework) -> str:
    """One line naming every setting of a preset (what blank columns took)."""
    vals = [f"{f.name}={_word(getattr(fw, f.name))}" for f in fields(fw) if f.name != "description"]
    return f"framework {name}: " + ", ".join(vals)


def _word(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "unknown" if math.isnan(v) else f"{v:g}"
    return v if v != "" else "unknown"
