"""Framework presets: the settings a training framework runs with, named by one word.

A published table or a user's plan gives the layout (tp, pp, micro batch, ...) but rarely the eight
settings that decide how fast that layout runs (flash attention, distributed optimizer, overlaps, the
gradient-reduction dtype, the loss kernel, ...). A ``framework`` names the bundle: each preset is one file
``configs/frameworks/<name>.toml`` holding one ``[framework]`` table (``Framework``), with the source
of every value in its comments. ``predict_table`` (``table.normalise``) fills every blank or missing
setting column of a row from the row's framework (the ``framework`` column, else the caller's default);
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

import numpy as np

from batchlaw.simulator import config as _config
from batchlaw.simulator import resources

__all__ = ["BOOL_SETTINGS", "DEFAULT", "Framework", "describe", "fill", "framework_names", "kernels_framework",
           "load_framework", "resolve_name", "te_installed"]

DEFAULT = "batchlaw"
"""The framework of a row that names none: this project's trainer."""

BOOL_SETTINGS = ("flash_attention", "distributed_optimizer", "overlap_grad_reduce", "grad_reduce_in_fp32",
                 "tp_comm_overlap", "overlap_p2p_comm")
"""Yes/no settings a preset fills (columns of ``predict_table`` of the same names)."""

_BLANK = ("", "nan", "unknown")  # cells that state nothing (published tables print "unknown")


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
    """Runs the interleaved pipeline schedule (vpp > 1); a blank vpp with pp > 1 is then an unknown
    priced over its choices. False: a blank vpp is 1."""
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


# -- filling a table's columns ----------------------------------------------------------------------

def _blank_text(values: np.ndarray) -> np.ndarray:
    """Cells of a column that state nothing: NaN, or text '', 'nan', 'unknown' (any case, any spaces)."""
    from batchlaw.simulator.table import _factorize

    if values.dtype.kind in "iub":
        return np.zeros(len(values), dtype=bool)
    if values.dtype.kind == "f":
        return np.isnan(values)
    uniq, codes = _factorize(values)
    return np.array([u.strip().lower() in _BLANK for u in uniq], dtype=bool)[codes] if uniq else \
        np.zeros(0, dtype=bool)


def _per_row(presets: list[Framework], codes: np.ndarray, name: str) -> np.ndarray:
    return np.asarray([getattr(p, name) for p in presets])[codes]


def _filled(cols: Mapping[str, Any], name: str, default: np.ndarray) -> np.ndarray:
    """Column ``name`` with its blank cells (or all of it, when absent) taken from ``default``."""
    if name not in cols:
        return default
    values = np.asarray(cols[name])
    blank = _blank_text(values)
    if not blank.any():
        return values
    if values.dtype.kind == "f" and default.dtype.kind in "bf":
        return np.where(blank, default, values)
    out = values.astype(object)
    out[blank] = default[blank]
    return out


def fill(cols: Mapping[str, Any], n: int, default: str = DEFAULT,
         system: str = "") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The columns of a table with every blank setting taken from each row's framework.

    Args:
        cols: the table (column -> array); a ``framework`` column names each row's preset (blank: ``default``).
        n: rows.
        default: the framework of rows that name none.
        system: the profile of rows without a ``gpu`` / ``system`` column (``batchlaw`` resolves by it).

    Returns:
        (columns, extra): the columns with ``framework`` (the concrete preset per row) and every setting of
        ``Framework`` filled in; ``extra`` holds ``vpp_unknown`` (blank vpp, pp > 1, a framework that
        interleaves), ``recompute_unknown`` (blank recompute the framework does not fix), ``split_auto``
        (blank ``pipeline_split_extra_layers`` under a framework that splits by the rule) and ``dropout``
        (NaN = unknown).

    Raises:
        ValueError: an unknown framework name (one line listing the presets).
    """
    from batchlaw.simulator.table import _factorize

    out = dict(cols)
    where = "gpu" if "gpu" in cols or "system" not in cols else "system"
    systems = np.asarray(cols[where]) if where in cols else np.full(n, system, dtype=object)
    names = np.asarray(cols["framework"]) if "framework" in cols else np.full(n, "", dtype=object)
    if names.dtype.kind == "f":  # an all-blank CSV column reads as NaN
        names = np.full(n, "", dtype=object)
    name_uniq, name_codes = _factorize(names) if n else ([], np.zeros(0, dtype=np.intp))
    sys_uniq, sys_codes = _factorize(systems) if n else ([], np.zeros(0, dtype=np.intp))
    concrete = [resolve_name(default if u.strip().lower() in _BLANK else u, s) for u in name_uniq for s in sys_uniq]
    kinds = list(dict.fromkeys(concrete))
    presets = {k: load_framework(k) for k in kinds}
    pair = name_codes * max(len(sys_uniq), 1) + sys_codes
    codes = np.array([kinds.index(k) for k in concrete], dtype=np.intp)[pair] if n else np.zeros(0, dtype=np.intp)
    plist = [presets[k] for k in kinds]
    out["framework"] = np.asarray(kinds, dtype=object)[codes] if n else np.zeros(0, dtype=object)
    for name in BOOL_SETTINGS + ("cross_entropy_fusion", "fp8_recipe"):
        out[name] = _filled(cols, name, _per_row(plist, codes, name))
    sp_default = _per_row(plist, codes, "sequence_parallel")
    out["sequence_parallel"] = _filled(cols, "sequence_parallel", sp_default)
    extra: dict[str, np.ndarray] = {}
    rec = np.asarray(cols["recompute"]) if "recompute" in cols else np.full(n, "", dtype=object)
    rec_blank = _blank_text(rec) if rec.dtype.kind != "f" else np.isnan(rec)
    rec_default = _per_row(plist, codes, "recompute")
    extra["recompute_unknown"] = rec_blank & (rec_default == "")
    out["recompute"] = _filled({"recompute": rec}, "recompute", np.where(rec_default == "", "none", rec_default))
    pp = np.asarray(cols["pp"], dtype=float) if "pp" in cols and np.asarray(cols["pp"]).dtype.kind in "iuf" else None
    vpp_blank = _blank_text(np.asarray(cols["vpp"])) if "vpp" in cols else np.ones(n, dtype=bool)
    inter = _per_row(plist, codes, "interleaving")
    extra["vpp_unknown"] = vpp_blank & inter & (pp > 1 if pp is not None else True)
    split_blank = (_blank_text(np.asarray(cols["pipeline_split_extra_layers"]))
                   if "pipeline_split_extra_layers" in cols else np.ones(n, dtype=bool))
    extra["split_auto"] = split_blank & _per_row(plist, codes, "split_embedding_loss")
    drop = _per_row(plist, codes, "dropout").astype(float)
    if "dropout" in cols:
        given = np.asarray(cols["dropout"])
        given = given.astype(float) if given.dtype.kind in "iuf" else np.where(_blank_text(given), "nan", given).astype(float)
        drop = np.where(np.isnan(given), drop, given)
    extra["dropout"] = drop
    return out, extra
